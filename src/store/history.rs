//! What the model reads about vehicles, up to an instant: daily aggregates of the catalogued
//! signals (the daily rollup for whole days, raw values for the part of the current day
//! before the instant), DTC events, service records and registry profiles. Training,
//! evaluation and live scoring all load through `load`, so they see the same data the same
//! way. The same SQL runs on plain PostgreSQL and TimescaleDB.

use super::StoreError;
use crate::catalog;
use crate::component::Component;
use crate::vehicle::{day_index, day_start, floor_day, DayAgg, DtcEvent, History, ServiceEvent};
use crate::wire::DtcStatus;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashMap;

/// Catalogued signal ids in this database: id → index into `catalog::SIGNALS`.
async fn signal_ids(pool: &PgPool) -> Result<HashMap<i32, usize>, StoreError> {
    let names: Vec<&str> = catalog::SIGNALS.iter().map(|s| s.name).collect();
    let rows: Vec<(i32, String)> =
        sqlx::query_as("SELECT id, name FROM signals WHERE name = ANY($1)")
            .bind(&names)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, name)| Some((id, catalog::SIGNALS.iter().position(|s| s.name == name)?)))
        .collect())
}

/// Every vehicle id, ascending.
pub async fn vehicle_ids(pool: &PgPool) -> Result<Vec<i32>, StoreError> {
    Ok(sqlx::query_scalar("SELECT id FROM vehicles ORDER BY id")
        .fetch_all(pool)
        .await?)
}

/// First day and the end of the last day with odometer data in the rollup (one index probe
/// per vehicle at each end).
pub async fn data_range(
    pool: &PgPool,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, StoreError> {
    let range: (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT min(f.day), max(l.day) + INTERVAL '1 day'
         FROM vehicles v
         CROSS JOIN (SELECT id FROM signals WHERE name = $1) s
         CROSS JOIN LATERAL (SELECT day FROM signal_daily
                             WHERE vehicle_id = v.id AND signal_id = s.id
                             ORDER BY day LIMIT 1) f
         CROSS JOIN LATERAL (SELECT day FROM signal_daily
                             WHERE vehicle_id = v.id AND signal_id = s.id
                             ORDER BY day DESC LIMIT 1) l",
    )
    .bind(catalog::ODOMETER)
    .fetch_one(pool)
    .await?;
    Ok(match range {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    })
}

type ProfileRow = (i32, String, Option<String>, Option<i16>);
type DailyRow = (i32, i32, DateTime<Utc>, i64, f64, f64, f64, f64);
type RecordRow = (i32, DateTime<Utc>, Option<f64>, String, String);

/// How far back a history reaches, and where it ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span<'a> {
    /// Signal aggregates from here...
    pub signals_from: DateTime<Utc>,
    /// ...except these signals (catalogue names), read from `long_from`: a statistic with a
    /// longer window, without reading every signal that far back.
    pub long_signals: &'a [&'a str],
    pub long_from: DateTime<Utc>,
    /// DTC events from here.
    pub events_from: DateTime<Utc>,
    /// Everything before this instant.
    pub until: DateTime<Utc>,
}

/// Histories of `vehicle_ids` (unknown ids are skipped) over `span`.
pub async fn load(
    pool: &PgPool,
    vehicle_ids: &[i32],
    span: &Span<'_>,
) -> Result<Vec<History>, StoreError> {
    let Span {
        signals_from,
        long_signals,
        long_from,
        events_from,
        until,
    } = *span;
    let ids = signal_ids(pool).await?;
    let (mut long_list, mut signal_list) = (Vec::new(), Vec::new());
    for (&id, &i) in &ids {
        let long = catalog::SIGNALS
            .get(i)
            .is_some_and(|spec| long_signals.contains(&spec.name));
        if long {
            long_list.push(id);
        } else {
            signal_list.push(id);
        }
    }
    let all_signals: Vec<i32> = ids.keys().copied().collect();
    let profiles: Vec<ProfileRow> = sqlx::query_as(
        "SELECT v.id, v.vin, p.powertrain, p.model_year
         FROM vehicles v LEFT JOIN vehicle_profiles p ON p.vehicle_id = v.id
         WHERE v.id = ANY($1) ORDER BY v.id",
    )
    .bind(vehicle_ids)
    .fetch_all(pool)
    .await?;
    let mut histories: Vec<History> = profiles
        .into_iter()
        .map(|(id, vin, powertrain, model_year)| {
            let mut h = History::new(id, vin);
            h.profile.powertrain = powertrain.and_then(|p| p.parse().ok());
            h.profile.model_year = model_year.map(i32::from);
            h
        })
        .collect();
    let slot: HashMap<i32, usize> = histories
        .iter()
        .enumerate()
        .map(|(i, h)| (h.vehicle_id, i))
        .collect();

    // Whole days from the rollup; the current day's part before `until` from raw values.
    let today = floor_day(until);
    let mut whole: Vec<DailyRow> = Vec::new();
    for (signals, from) in [(&signal_list, signals_from), (&long_list, long_from)] {
        if signals.is_empty() {
            continue;
        }
        whole.extend(
            sqlx::query_as::<_, DailyRow>(
                "SELECT vehicle_id, signal_id, day, n, min, max, sum, sumsq FROM signal_daily
                 WHERE vehicle_id = ANY($1) AND signal_id = ANY($2) AND day >= $3 AND day < $4",
            )
            .bind(vehicle_ids)
            .bind(signals)
            .bind(floor_day(from))
            .bind(today)
            .fetch_all(pool)
            .await?,
        );
    }
    let partial: Vec<DailyRow> = if until > today {
        sqlx::query_as(
            "SELECT a.vehicle_id, u.signal_id, $3::timestamptz, count(*), min(u.value),
                    max(u.value), sum(u.value), sum(u.value * u.value)
             FROM all_samples a
             CROSS JOIN LATERAL unnest(a.signal_ids, a.signal_values) AS u (signal_id, value)
             WHERE a.vehicle_id = ANY($1) AND u.signal_id = ANY($2) AND a.ts >= $3 AND a.ts < $4
             GROUP BY a.vehicle_id, u.signal_id",
        )
        .bind(vehicle_ids)
        .bind(&all_signals)
        .bind(today)
        .bind(until)
        .fetch_all(pool)
        .await?
    } else {
        Vec::new()
    };
    for (vid, sid, day, n, min, max, sum, sumsq) in whole.into_iter().chain(partial) {
        let (Some(&h), Some(&s)) = (slot.get(&vid), ids.get(&sid)) else {
            continue;
        };
        let d = day_index(day);
        histories[h].signals[s].push(DayAgg {
            day: d,
            end: day_start(d + 1).min(until),
            n: n as f64,
            min,
            max,
            sum,
            sumsq,
        });
    }

    let firsts: Vec<(i32, DateTime<Utc>, f64)> = sqlx::query_as(
        "SELECT DISTINCT ON (d.vehicle_id) d.vehicle_id, d.day, d.min
         FROM signal_daily d JOIN signals s ON s.id = d.signal_id AND s.name = $2
         WHERE d.vehicle_id = ANY($1)
         ORDER BY d.vehicle_id, d.day",
    )
    .bind(vehicle_ids)
    .bind(catalog::ODOMETER)
    .fetch_all(pool)
    .await?;
    for (vid, day, odometer) in firsts {
        if let Some(&h) = slot.get(&vid) {
            histories[h].first_data = Some((day_index(day), odometer));
        }
    }

    let events: Vec<(i32, DateTime<Utc>, String, String)> = sqlx::query_as(
        "SELECT vehicle_id, ts, code, status FROM dtc_events
         WHERE vehicle_id = ANY($1) AND ts >= $2 AND ts < $3",
    )
    .bind(vehicle_ids)
    .bind(events_from)
    .bind(until)
    .fetch_all(pool)
    .await?;
    for (vid, ts, code, status) in events {
        let (Some(&h), Some(status)) = (slot.get(&vid), DtcStatus::parse(&status)) else {
            continue;
        };
        let component = catalog::dtc_component(&code).map(|d| d.component);
        histories[h].dtcs.push(DtcEvent {
            ts,
            code,
            status,
            component,
        });
    }

    let records: Vec<RecordRow> = sqlx::query_as(
        "SELECT vehicle_id, performed_at, odometer_km, component, kind FROM service_records
         WHERE vehicle_id = ANY($1) AND performed_at < $2",
    )
    .bind(vehicle_ids)
    .bind(until)
    .fetch_all(pool)
    .await?;
    for (vid, performed_at, odometer_km, component, kind) in records {
        let (Some(&h), Ok(component), Ok(kind)) =
            (slot.get(&vid), component.parse::<Component>(), kind.parse())
        else {
            continue;
        };
        histories[h].service.push(ServiceEvent {
            performed_at,
            odometer_km,
            component,
            kind,
        });
    }
    for h in &mut histories {
        h.sort();
    }
    Ok(histories)
}
