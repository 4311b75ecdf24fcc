//! API keys: created by the CLI, shown once, stored as a SHA-256 of the secret. A key is 256
//! random bits, so a fast hash is enough; there is nothing to brute-force.

use super::StoreError;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read vehicles, telemetry, DTCs and risk.
    FleetRead,
    /// Service advisors: offers, bookings, service records.
    Advisor,
    /// Capacity planners: workshops, capacity, demand preview.
    Planner,
    /// Platforms that push data: Traccar's forwarded positions, telemetry imports.
    Ingest,
    /// Everything.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::FleetRead,
        Scope::Advisor,
        Scope::Planner,
        Scope::Ingest,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::FleetRead => "fleet-read",
            Scope::Advisor => "advisor",
            Scope::Planner => "planner",
            Scope::Ingest => "ingest",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown scope {0:?} (expected fleet-read, advisor, planner, ingest or admin)")]
pub struct UnknownScope(String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Scope, UnknownScope> {
        Scope::ALL
            .into_iter()
            .find(|sc| sc.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl ApiKey {
    pub fn allows(&self, needed: Scope) -> bool {
        self.scopes
            .iter()
            .any(|s| *s == needed || *s == Scope::Admin)
    }
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Creates a key and returns its secret, which is not stored and cannot be shown again.
pub async fn create(pool: &PgPool, name: &str, scopes: &[Scope]) -> Result<String, StoreError> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret = format!("ack_{}", hex::encode(raw));
    let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    sqlx::query("INSERT INTO api_keys (name, prefix, secret_hash, scopes) VALUES ($1, $2, $3, $4)")
        .bind(name)
        .bind(&secret[..12])
        .bind(hash(&secret))
        .bind(&names)
        .execute(pool)
        .await?;
    Ok(secret)
}

/// The unrevoked key with this secret, if any.
pub async fn verify(pool: &PgPool, secret: &str) -> Result<Option<ApiKey>, StoreError> {
    let row: Option<(i64, String, Vec<String>)> = sqlx::query_as(
        "SELECT id, name, scopes FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash(secret))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(id, name, scopes)| ApiKey {
        id,
        name,
        // A scope this build does not know grants nothing.
        scopes: scopes.iter().filter_map(|s| s.parse().ok()).collect(),
    }))
}
