//! The device register: tracker id (an IMEI, a Traccar `uniqueId`) to VIN, each registration
//! holding from its `valid_from` on, so re-registering a tracker to another car takes effect
//! from then and earlier positions stay with the car they came from.

use super::StoreError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The device was not in the register.
    New,
    /// It was registered to another VIN until `valid_from`.
    Moved,
    /// It already was registered to this VIN at that time: nothing changed.
    Unchanged,
}

/// Registers `device_id` to `vin` from `valid_from` on. Idempotent: registering a device to
/// the VIN it already has at that time adds nothing.
pub async fn register(
    pool: &PgPool,
    device_id: &str,
    vin: &str,
    valid_from: DateTime<Utc>,
) -> Result<Registered, StoreError> {
    let mut tx = pool.begin().await?;
    // One registrar per device at a time, so the check and the insert agree.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('aftercare.devices'), hashtext($1))")
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
    let current: Option<String> = sqlx::query_scalar(
        "SELECT vin FROM device_register WHERE device_id = $1 AND valid_from <= $2
         ORDER BY valid_from DESC LIMIT 1",
    )
    .bind(device_id)
    .bind(valid_from)
    .fetch_optional(&mut *tx)
    .await?;
    let known: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM device_register WHERE device_id = $1)")
            .bind(device_id)
            .fetch_one(&mut *tx)
            .await?;
    if current.as_deref() == Some(vin) {
        tx.commit().await?;
        return Ok(Registered::Unchanged);
    }
    sqlx::query(
        "INSERT INTO device_register (device_id, valid_from, vin) VALUES ($1, $2, $3)
         ON CONFLICT (device_id, valid_from) DO UPDATE SET vin = EXCLUDED.vin,
             registered_at = now()",
    )
    .bind(device_id)
    .bind(valid_from)
    .bind(vin)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(if known {
        Registered::Moved
    } else {
        Registered::New
    })
}

/// The VIN each `(device, time)` was registered to: the registration in force at that time,
/// or, for a time before the device's first registration, that first one (a tracker reports
/// from the car it was put in before anyone registered it). None: the device is unknown.
pub async fn vins_at(
    pool: &PgPool,
    lookups: &[(&str, DateTime<Utc>)],
) -> Result<Vec<Option<String>>, StoreError> {
    if lookups.is_empty() {
        return Ok(Vec::new());
    }
    let (devices, times): (Vec<&str>, Vec<DateTime<Utc>>) = lookups.iter().copied().unzip();
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT q.i, coalesce(
             (SELECT r.vin FROM device_register r
              WHERE r.device_id = q.d AND r.valid_from <= q.t
              ORDER BY r.valid_from DESC LIMIT 1),
             (SELECT r.vin FROM device_register r
              WHERE r.device_id = q.d ORDER BY r.valid_from LIMIT 1))
         FROM UNNEST($1::text[], $2::timestamptz[]) WITH ORDINALITY AS q (d, t, i)
         ORDER BY q.i",
    )
    .bind(&devices)
    .bind(&times)
    .fetch_all(pool)
    .await?;
    let mut out = vec![None; lookups.len()];
    for (i, vin) in rows {
        if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| out.get_mut(i)) {
            *slot = vin;
        }
    }
    Ok(out)
}
