//! Admission of a batch before it is written: VINs and signal names become ids (created on
//! first sight), within the bounds on distinct signal names in total and per vehicle. A message
//! that would pass a bound is refused with its own reason, so a sender inventing names cannot
//! grow the dictionaries, the caches or a vehicle's view without limit. The caches in front of
//! the dictionaries are bounded too: a miss only costs a lookup.

use super::batch::BatchItem;
use super::{IdMap, Store, StoreError};
use crate::wire::{Reject, RejectReason};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;

/// Bounds on distinct signal names (`[storage]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalLimits {
    /// Distinct signal names in the whole database.
    pub max_signals: usize,
    /// Distinct signal names one vehicle may send.
    pub max_signals_per_vehicle: usize,
}

impl From<&crate::config::StorageConfig> for SignalLimits {
    fn from(c: &crate::config::StorageConfig) -> Self {
        SignalLimits {
            max_signals: c.max_signals,
            max_signals_per_vehicle: c.max_signals_per_vehicle,
        }
    }
}

impl Default for SignalLimits {
    fn default() -> Self {
        SignalLimits::from(&crate::config::StorageConfig::default())
    }
}

/// A batch's ids, and the messages refused by a bound.
#[derive(Debug, Default)]
pub struct Admission {
    pub vehicle_ids: IdMap,
    pub signal_ids: IdMap,
    /// (item index, why) for each refused message; every other message may be written.
    pub refused: Vec<(usize, Reject)>,
}

/// A map that forgets everything once it holds `max` entries.
pub(super) struct BoundedMap<K, V> {
    map: Mutex<HashMap<K, V, foldhash::fast::RandomState>>,
    max: usize,
}

impl<K: Eq + Hash + Clone, V: Copy> BoundedMap<K, V> {
    pub(super) fn new(max: usize) -> Self {
        BoundedMap {
            map: Mutex::new(HashMap::default()),
            max: max.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, V, foldhash::fast::RandomState>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().get(key).copied()
    }

    pub(super) fn insert_all(&self, entries: impl IntoIterator<Item = (K, V)>) {
        let mut map = self.lock();
        for (k, v) in entries {
            if map.len() >= self.max {
                map.clear();
            }
            map.insert(k, v);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Store {
    /// Resolves the ids of a batch's messages, creating vehicles, signal names and
    /// (vehicle, signal) pairs within the bounds. Runs outside the batch transaction: a name
    /// or a vehicle without data is harmless, and keeps the batch short.
    pub async fn admit(&self, items: &[BatchItem]) -> Result<Admission, StoreError> {
        let vins: Vec<&str> = super::batch::vins(items).collect();
        let vehicle_ids = self.resolve_vehicles(&vins).await?;
        let names: Vec<&str> = super::batch::signal_names(items).collect();
        let (signal_ids, over_total) = self.admit_signal_names(&names).await?;
        let mut refused = Vec::new();
        // Pairs of the messages still in, in order of first appearance.
        let mut pairs: Vec<(i32, i32)> = Vec::new();
        let mut seen: HashSet<(i32, i32), foldhash::fast::RandomState> = HashSet::default();
        let mut message_pairs: Vec<(usize, Vec<(i32, i32)>)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let BatchItem::Message { message, .. } = item else {
                continue;
            };
            let (vin, Some(samples)) = (message.vin(), message.samples()) else {
                continue;
            };
            let vehicle_id = vehicle_ids[vin.as_str()];
            if let Some(name) = samples
                .iter()
                .flat_map(|s| s.values.iter())
                .map(|(name, _)| name)
                .find(|name| over_total.contains(name.as_str()))
            {
                refused.push((
                    i,
                    Reject::new(
                        RejectReason::SignalLimit,
                        format!(
                            "signal {name:?} is new and the store already holds the most \
                             distinct signal names it keeps ({})",
                            self.limits.max_signals
                        ),
                    ),
                ));
                continue;
            }
            let mut mine = Vec::new();
            for s in samples {
                for (name, _) in &s.values {
                    let pair = (vehicle_id, signal_ids[name.as_str()]);
                    if seen.insert(pair) {
                        pairs.push(pair);
                    }
                    mine.push(pair);
                }
            }
            message_pairs.push((i, mine));
        }
        let over_vehicle = self.admit_vehicle_signals(&pairs).await?;
        if !over_vehicle.is_empty() {
            for (i, mine) in message_pairs {
                if mine.iter().any(|p| over_vehicle.contains(p)) {
                    refused.push((
                        i,
                        Reject::new(
                            RejectReason::VehicleSignalLimit,
                            format!(
                                "the message names a signal this vehicle never sent, and it \
                                 already sent the most distinct signals a vehicle may ({})",
                                self.limits.max_signals_per_vehicle
                            ),
                        ),
                    ));
                }
            }
            refused.sort_by_key(|(i, _)| *i);
        }
        Ok(Admission {
            vehicle_ids,
            signal_ids,
            refused,
        })
    }

    /// VIN to vehicle id, creating vehicles on first sight.
    pub(super) async fn resolve_vehicles(&self, vins: &[&str]) -> Result<IdMap, StoreError> {
        let mut found = IdMap::default();
        let mut missing: Vec<String> = Vec::new();
        for vin in vins {
            if found.contains_key(*vin) {
                continue;
            }
            match self.vehicle_ids.get(*vin) {
                Some(id) => {
                    found.insert((*vin).to_owned(), id);
                }
                None => {
                    found.insert((*vin).to_owned(), 0);
                    missing.push((*vin).to_owned());
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        missing.sort();
        let mut conn = self.pool.acquire().await?;
        sqlx::query(
            "INSERT INTO vehicles (vin) SELECT * FROM UNNEST($1::text[]) ON CONFLICT (vin) DO NOTHING",
        )
        .bind(&missing)
        .execute(&mut *conn)
        .await?;
        let rows: Vec<(i32, String)> =
            sqlx::query_as("SELECT id, vin FROM vehicles WHERE vin = ANY($1)")
                .bind(&missing)
                .fetch_all(&mut *conn)
                .await?;
        for (id, vin) in &rows {
            found.insert(vin.clone(), *id);
        }
        self.vehicle_ids
            .insert_all(rows.into_iter().map(|(id, vin)| (vin, id)));
        Ok(found)
    }

    /// Signal name to id, creating names while the store holds fewer than `max_signals`.
    /// Returns the ids and the new names over the bound (no id).
    pub(super) async fn admit_signal_names(
        &self,
        names: &[&str],
    ) -> Result<(IdMap, HashSet<String>), StoreError> {
        let mut found = IdMap::default();
        let mut missing: HashSet<&str, foldhash::fast::RandomState> = HashSet::default();
        for name in names {
            if found.contains_key(*name) || missing.contains(name) {
                continue;
            }
            match self.signal_ids.get(*name) {
                Some(id) => {
                    found.insert((*name).to_owned(), id);
                }
                None => {
                    missing.insert(name);
                }
            }
        }
        if missing.is_empty() {
            return Ok((found, HashSet::new()));
        }
        let mut missing: Vec<&str> = missing.into_iter().collect();
        missing.sort_unstable();
        let existing: Vec<(i32, String)> =
            sqlx::query_as("SELECT id, name FROM signals WHERE name = ANY($1)")
                .bind(&missing)
                .fetch_all(&self.pool)
                .await?;
        let mut known: IdMap = existing.into_iter().map(|(id, n)| (n, id)).collect();
        let new: Vec<&str> = missing
            .into_iter()
            .filter(|m| !known.contains_key(*m))
            .collect();
        let mut over = HashSet::new();
        if !new.is_empty() {
            // One creator at a time, so the count it reads stays true until it commits.
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('aftercare.signals'))")
                .execute(&mut *tx)
                .await?;
            let held: i64 = sqlx::query_scalar("SELECT count(*) FROM signals")
                .fetch_one(&mut *tx)
                .await?;
            let room = self.limits.max_signals.saturating_sub(held as usize);
            let (take, rest) = new.split_at(room.min(new.len()));
            over.extend(rest.iter().map(|n| (*n).to_owned()));
            if !take.is_empty() {
                sqlx::query(
                    "INSERT INTO signals (name) SELECT * FROM UNNEST($1::text[])
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(take)
                .execute(&mut *tx)
                .await?;
                let rows: Vec<(i32, String)> =
                    sqlx::query_as("SELECT id, name FROM signals WHERE name = ANY($1)")
                        .bind(take)
                        .fetch_all(&mut *tx)
                        .await?;
                known.extend(rows.into_iter().map(|(id, n)| (n, id)));
            }
            tx.commit().await?;
        }
        for (name, id) in &known {
            found.insert(name.clone(), *id);
        }
        self.signal_ids.insert_all(known);
        Ok((found, over))
    }

    /// Records (vehicle, signal) pairs, each vehicle up to `max_signals_per_vehicle` distinct
    /// signals; `pairs` in order of first appearance, the earlier admitted first. Returns the
    /// pairs over the bound.
    pub(super) async fn admit_vehicle_signals(
        &self,
        pairs: &[(i32, i32)],
    ) -> Result<HashSet<(i32, i32)>, StoreError> {
        let missing: Vec<(i32, i32)> = pairs
            .iter()
            .copied()
            .filter(|p| self.vehicle_signals.get(p).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(HashSet::new());
        }
        let (vids, sids): (Vec<i32>, Vec<i32>) = missing.iter().copied().unzip();
        let existing: Vec<(i32, i32)> = sqlx::query_as(
            "SELECT vs.vehicle_id, vs.signal_id
             FROM UNNEST($1::int4[], $2::int4[]) AS p (v, s)
             JOIN vehicle_signals vs ON vs.vehicle_id = p.v AND vs.signal_id = p.s",
        )
        .bind(&vids)
        .bind(&sids)
        .fetch_all(&self.pool)
        .await?;
        let existing: HashSet<(i32, i32)> = existing.into_iter().collect();
        self.vehicle_signals
            .insert_all(existing.iter().map(|p| (*p, ())));
        // New pairs per vehicle, in order of first appearance.
        let mut new: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in missing.iter().filter(|p| !existing.contains(p)) {
            new.entry(p.0).or_default().push(p.1);
        }
        if new.is_empty() {
            return Ok(HashSet::new());
        }
        let vehicles: Vec<i32> = new.keys().copied().collect();
        let mut tx = self.pool.begin().await?;
        // One creator per vehicle at a time (locks taken in vehicle order), so each count
        // stays true until the insert commits.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext('aftercare.vehicle_signals'), v)
             FROM UNNEST($1::int4[]) AS v ORDER BY v",
        )
        .bind(&vehicles)
        .execute(&mut *tx)
        .await?;
        let counts: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT vehicle_id, count(*) FROM vehicle_signals
             WHERE vehicle_id = ANY($1) GROUP BY vehicle_id",
        )
        .bind(&vehicles)
        .fetch_all(&mut *tx)
        .await?;
        let held: HashMap<i32, i64> = counts.into_iter().collect();
        let mut over = HashSet::new();
        let (mut take_v, mut take_s) = (Vec::new(), Vec::new());
        for (vehicle_id, signals) in &new {
            let room = self
                .limits
                .max_signals_per_vehicle
                .saturating_sub(held.get(vehicle_id).copied().unwrap_or(0) as usize);
            for (k, signal_id) in signals.iter().enumerate() {
                if k < room {
                    take_v.push(*vehicle_id);
                    take_s.push(*signal_id);
                } else {
                    over.insert((*vehicle_id, *signal_id));
                }
            }
        }
        if !take_v.is_empty() {
            sqlx::query(
                "INSERT INTO vehicle_signals (vehicle_id, signal_id)
                 SELECT * FROM UNNEST($1::int4[], $2::int4[]) ON CONFLICT DO NOTHING",
            )
            .bind(&take_v)
            .bind(&take_s)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.vehicle_signals
            .insert_all(take_v.into_iter().zip(take_s).map(|p| (p, ())));
        Ok(over)
    }

    /// Signal name to id for loads that must not pass the bound (the bulk paths): an error
    /// names the first name over it.
    pub async fn signal_ids(&self, names: &[&str]) -> Result<IdMap, StoreError> {
        let (ids, over) = self.admit_signal_names(names).await?;
        match over.into_iter().next() {
            None => Ok(ids),
            Some(name) => Err(StoreError::BulkLoad(format!(
                "signal {name:?} would pass the bound of {} distinct signal names",
                self.limits.max_signals
            ))),
        }
    }

    /// Entries in the dictionary caches (for the memory-bound tests).
    pub fn cached_entries(&self) -> usize {
        self.vehicle_ids.len() + self.signal_ids.len() + self.vehicle_signals.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_map_forgets_when_full() {
        let m: BoundedMap<String, i32> = BoundedMap::new(2);
        m.insert_all([("a".to_owned(), 1), ("b".to_owned(), 2)]);
        assert_eq!(m.get("a"), Some(1));
        m.insert_all([("c".to_owned(), 3)]);
        assert_eq!(m.len(), 1);
        assert_eq!(m.get("a"), None);
        assert_eq!(m.get("c"), Some(3));
    }
}
