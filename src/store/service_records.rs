//! Service records: completed workshop jobs, the model's labels. `POST /v1/service-records`
//! and the simulator's bulk mode both write through [`insert_service_records`], idempotent on
//! (source, external_id): a re-posted record returns the existing id and adds no row.

use super::StoreError;
use crate::component::Component;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};

// The type lives with the vehicle domain, below storage and the model.
pub use crate::vehicle::ServiceKind;

/// One completed job, as a dealer system (or the simulator) reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewServiceRecord {
    pub vin: String,
    pub source: String,
    pub external_id: String,
    pub performed_at: DateTime<Utc>,
    pub odometer_km: Option<f64>,
    pub workshop: Option<String>,
    pub component: Component,
    pub kind: ServiceKind,
    pub job: String,
    pub notes: Option<String>,
}

/// What became of one record: its id, and whether this call created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StoredRecord {
    pub id: i64,
    pub created: bool,
}

/// Stores records (creating vehicles on first sight) in one transaction and returns, in input
/// order, each record's id and whether it is new. A (source, external_id) already stored, or
/// repeated within `records`, is not stored again.
pub async fn insert_service_records(
    pool: &PgPool,
    records: &[NewServiceRecord],
) -> Result<Vec<StoredRecord>, StoreError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    // Sorted, so concurrent callers lock vehicle keys in one order.
    let mut vins: Vec<&str> = records.iter().map(|r| r.vin.as_str()).collect();
    vins.sort_unstable();
    vins.dedup();
    sqlx::query(
        "INSERT INTO vehicles (vin) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT (vin) DO NOTHING",
    )
    .bind(&vins)
    .execute(&mut *tx)
    .await?;
    let col = |f: fn(&NewServiceRecord) -> String| records.iter().map(f).collect::<Vec<_>>();
    let created: Vec<(i64, String, String)> = sqlx::query_as(
        "INSERT INTO service_records (vehicle_id, source, external_id, performed_at, odometer_km,
                                      workshop, component, kind, job, notes)
         SELECT v.id, r.source, r.external_id, r.performed_at, r.odometer_km, r.workshop,
                r.component, r.kind, r.job, r.notes
         FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
              WITH ORDINALITY AS r(vin, source, external_id, performed_at, odometer_km, workshop,
                                   component, kind, job, notes, n)
         JOIN vehicles v ON v.vin = r.vin
         ORDER BY r.n
         ON CONFLICT (source, external_id) DO NOTHING
         RETURNING id, source, external_id",
    )
    .bind(col(|r| r.vin.clone()))
    .bind(col(|r| r.source.clone()))
    .bind(col(|r| r.external_id.clone()))
    .bind(records.iter().map(|r| r.performed_at).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.odometer_km).collect::<Vec<_>>())
    .bind(
        records
            .iter()
            .map(|r| r.workshop.clone())
            .collect::<Vec<_>>(),
    )
    .bind(col(|r| r.component.as_str().to_owned()))
    .bind(col(|r| r.kind.as_str().to_owned()))
    .bind(col(|r| r.job.clone()))
    .bind(records.iter().map(|r| r.notes.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let mut ids: HashMap<(String, String), i64> = created
        .iter()
        .map(|(id, s, e)| ((s.clone(), e.clone()), *id))
        .collect();
    let mut fresh: HashSet<(String, String)> = ids.keys().cloned().collect();
    let missing: Vec<&NewServiceRecord> = records
        .iter()
        .filter(|r| !ids.contains_key(&(r.source.clone(), r.external_id.clone())))
        .collect();
    if !missing.is_empty() {
        let existing: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT s.id, s.source, s.external_id FROM service_records s
             JOIN unnest($1::text[], $2::text[]) AS k(source, external_id)
               ON s.source = k.source AND s.external_id = k.external_id",
        )
        .bind(missing.iter().map(|r| r.source.clone()).collect::<Vec<_>>())
        .bind(
            missing
                .iter()
                .map(|r| r.external_id.clone())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *tx)
        .await?;
        ids.extend(existing.into_iter().map(|(id, s, e)| ((s, e), id)));
    }
    tx.commit().await?;
    records
        .iter()
        .map(|r| {
            let key = (r.source.clone(), r.external_id.clone());
            let id = ids
                .get(&key)
                .copied()
                .ok_or_else(|| StoreError::Db(sqlx::Error::RowNotFound))?;
            // The first occurrence of a new key is the one that created it.
            let created = fresh.remove(&key);
            Ok(StoredRecord { id, created })
        })
        .collect()
}
