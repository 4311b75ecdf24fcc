//! Both write methods store the same rows for the same batches, and redelivery is a no-op.

mod common;

use aftercare::config::WriteMethod;
use aftercare::simulator::Fleet;
use aftercare::store::{BatchItem, Outcome, Store};
use aftercare::wire::{parse_message, Limits};
use chrono::{Duration, Utc};
use common::*;

async fn run(method: WriteMethod) -> (i64, i64, u64) {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = Store::open(pool.clone()).await.unwrap();
    let mut fleet = Fleet::new(3, 200, Utc::now() - Duration::days(1));
    let now = Utc::now();
    let msgs: Vec<_> = (0..3000).map(|_| fleet.next_message()).collect();
    let items: Vec<BatchItem> = msgs
        .iter()
        .map(|m| BatchItem::Message {
            message: parse_message(&m.topic, &m.payload, now, &Limits::default()).unwrap(),
            received_at: now,
        })
        .collect();
    let values: usize = msgs.iter().map(|m| m.values).sum();
    let mut stored = 0;
    for chunk in items.chunks(1000) {
        stored += store
            .write_batch(chunk, method)
            .await
            .unwrap()
            .values_stored;
    }
    assert_eq!(stored, values as u64, "{method:?}: values reported stored");
    // Redelivering everything changes nothing.
    for chunk in items.chunks(1000) {
        let r = store.write_batch(chunk, method).await.unwrap();
        assert_eq!(r.values_stored, 0);
        assert!(r.outcomes.iter().all(|o| *o == Outcome::Duplicate));
    }
    store.fold_rollup_all().await.unwrap();
    (
        count(&pool, "SELECT count(*) FROM telemetry").await,
        count(&pool, "SELECT sum(n)::int8 FROM signal_daily").await,
        values as u64,
    )
}

#[tokio::test]
async fn copy_and_unnest_store_the_same() {
    let (t_copy, r_copy, values) = run(WriteMethod::Copy).await;
    let (t_unnest, r_unnest, _) = run(WriteMethod::Unnest).await;
    assert_eq!(t_copy, values as i64);
    assert_eq!(t_unnest, values as i64);
    assert_eq!(r_copy, values as i64);
    assert_eq!(r_unnest, values as i64);
}
