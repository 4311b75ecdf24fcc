//! The notification outbox: events are written in the transaction of the state change they
//! announce (one row per channel), and the dispatcher takes due rows as a `SKIP LOCKED` work
//! queue, so several instances share it and a row is never in two senders' hands.

use super::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

/// An event to announce. `key` is its idempotency key, the same on every delivery attempt.
#[derive(Debug, Clone)]
pub struct Event {
    pub key: String,
    pub kind: &'static str,
    /// The vehicle it concerns; events with a VIN also go to `v1/vehicles/{vin}/offers`.
    pub vin: Option<String>,
    pub data: Value,
}

/// Writes the event for every channel. Writing it again (same key) changes nothing.
pub async fn enqueue(conn: &mut PgConnection, e: &Event) -> Result<(), StoreError> {
    let payload = serde_json::json!({
        "id": e.key,
        "kind": e.kind,
        "vin": e.vin,
        "occurred_at": Utc::now(),
        "data": e.data,
    });
    let channels: &[&str] = if e.vin.is_some() {
        &["webhook", "mqtt"]
    } else {
        &["webhook"]
    };
    sqlx::query(
        "INSERT INTO outbox (event_key, channel, kind, vin, payload)
         SELECT $1, c, $2, $3, $4 FROM unnest($5::text[]) c
         ON CONFLICT (event_key, channel) DO NOTHING",
    )
    .bind(&e.key)
    .bind(e.kind)
    .bind(&e.vin)
    .bind(&payload)
    .bind(channels)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Pending {
    pub id: i64,
    pub event_key: String,
    pub kind: String,
    pub vin: Option<String>,
    pub payload: Value,
    pub attempts: i32,
}

/// Due rows of one channel, locked for this transaction; rows another sender holds are
/// skipped.
pub async fn claim(
    conn: &mut PgConnection,
    channel: &str,
    limit: i64,
) -> Result<Vec<Pending>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, event_key, kind, vin, payload, attempts FROM outbox
         WHERE channel = $1 AND delivered_at IS NULL AND next_attempt_at <= now()
         ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(channel)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// Marks a row delivered. A delivered `offer.created` moves its offer from proposed to
/// notified (the owner has been told), in the same transaction.
pub async fn delivered(conn: &mut PgConnection, row: &Pending) -> Result<(), StoreError> {
    sqlx::query("UPDATE outbox SET delivered_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1")
        .bind(row.id)
        .execute(&mut *conn)
        .await?;
    if row.kind == "offer.created" {
        if let Some(offer) = row.payload["data"]["id"].as_i64() {
            sqlx::query(
                "UPDATE offers SET state = 'notified', last_notice_at = now(), updated_at = now()
                 WHERE id = $1 AND state = 'proposed'",
            )
            .bind(offer)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

pub async fn failed(
    conn: &mut PgConnection,
    id: i64,
    error: &str,
    retry_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3 WHERE id = $1")
        .bind(id)
        .bind(error)
        .bind(retry_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Undelivered rows per channel (for metrics and tests).
pub async fn backlog(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT channel, count(*) FROM outbox WHERE delivered_at IS NULL GROUP BY channel ORDER BY channel",
    )
    .fetch_all(pool)
    .await?)
}
