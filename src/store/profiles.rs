//! Vehicle profiles: what the OEM / dealer registry knows about a vehicle and its owner
//! (`PUT /v1/vehicles/{vin}`; the simulator's bulk mode registers its fleet through the same
//! [`upsert_profiles`]). Creates the vehicle row when the registry knows a car before its data.

use super::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

// The type lives with the vehicle domain, below storage and the model.
pub use crate::vehicle::Powertrain;

/// A profile as written. Absent fields are stored as null (a PUT replaces the whole profile).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Profile {
    pub make: Option<String>,
    pub model: Option<String>,
    pub model_year: Option<i16>,
    pub powertrain: Option<Powertrain>,
    pub home_workshop: Option<String>,
    pub owner_ref: Option<String>,
    pub offers_consent: bool,
}

/// A stored profile, as `GET /v1/vehicles/{vin}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = RegistryProfile)]
pub struct StoredProfile {
    #[serde(flatten)]
    pub profile: Profile,
    pub updated_at: DateTime<Utc>,
}

/// Replaces the profiles of `vins` (creating vehicles on first sight) in one transaction.
/// Each VIN may appear once. Returns, in input order, whether each vehicle row was created by this call.
pub async fn upsert_profiles(
    pool: &PgPool,
    profiles: &[(String, Profile)],
) -> Result<Vec<bool>, StoreError> {
    if profiles.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    let vins: Vec<&str> = profiles.iter().map(|(v, _)| v.as_str()).collect();
    let created: Vec<String> = sqlx::query_scalar(
        "INSERT INTO vehicles (vin)
         SELECT vin FROM unnest($1::text[]) WITH ORDINALITY AS k(vin, n) ORDER BY n
         ON CONFLICT (vin) DO NOTHING RETURNING vin",
    )
    .bind(&vins)
    .fetch_all(&mut *tx)
    .await?;
    let field =
        |f: fn(&Profile) -> Option<String>| profiles.iter().map(|(_, p)| f(p)).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO vehicle_profiles (vehicle_id, make, model, model_year, powertrain,
                                       home_workshop, owner_ref, offers_consent, updated_at)
         SELECT v.id, p.make, p.model, p.model_year, p.powertrain, p.home_workshop, p.owner_ref,
                p.offers_consent, now()
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int2[], $5::text[], $6::text[],
                     $7::text[], $8::bool[])
              AS p(vin, make, model, model_year, powertrain, home_workshop, owner_ref,
                   offers_consent)
         JOIN vehicles v ON v.vin = p.vin
         ORDER BY v.id
         ON CONFLICT (vehicle_id) DO UPDATE SET
             make = EXCLUDED.make, model = EXCLUDED.model, model_year = EXCLUDED.model_year,
             powertrain = EXCLUDED.powertrain, home_workshop = EXCLUDED.home_workshop,
             owner_ref = EXCLUDED.owner_ref, offers_consent = EXCLUDED.offers_consent,
             updated_at = now()",
    )
    .bind(&vins)
    .bind(field(|p| p.make.clone()))
    .bind(field(|p| p.model.clone()))
    .bind(
        profiles
            .iter()
            .map(|(_, p)| p.model_year)
            .collect::<Vec<_>>(),
    )
    .bind(field(|p| p.powertrain.map(|t| t.as_str().to_owned())))
    .bind(field(|p| p.home_workshop.clone()))
    .bind(field(|p| p.owner_ref.clone()))
    .bind(
        profiles
            .iter()
            .map(|(_, p)| p.offers_consent)
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let created: std::collections::HashSet<String> = created.into_iter().collect();
    Ok(vins.iter().map(|v| created.contains(*v)).collect())
}

type ProfileRow = (
    Option<String>,
    Option<String>,
    Option<i16>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    DateTime<Utc>,
);

/// The stored profile of a vehicle, if it has one.
pub async fn profile(pool: &PgPool, vehicle_id: i32) -> Result<Option<StoredProfile>, StoreError> {
    let row: Option<ProfileRow> = sqlx::query_as(
        "SELECT make, model, model_year, powertrain, home_workshop, owner_ref, offers_consent,
                updated_at
         FROM vehicle_profiles WHERE vehicle_id = $1",
    )
    .bind(vehicle_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(
            make,
            model,
            model_year,
            powertrain,
            home_workshop,
            owner_ref,
            offers_consent,
            updated_at,
        )| {
            StoredProfile {
                profile: Profile {
                    make,
                    model,
                    model_year,
                    // The column's CHECK admits only known names.
                    powertrain: powertrain.and_then(|p| p.parse().ok()),
                    home_workshop,
                    owner_ref,
                    offers_consent,
                },
                updated_at,
            }
        },
    ))
}
