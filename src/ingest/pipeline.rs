//! In-order pipelining: work on several items at once, hand results on in arrival order. The
//! writer uses it so that two batch transactions overlap (one commits while the next writes)
//! and acks still leave in the order the messages came. Generic and free of I/O, so its
//! ordering is tested on its own.

use std::collections::VecDeque;
use std::future::Future;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};

/// Runs `work` on up to `depth` items from `rx` at once, each on its own task, and passes the
/// outputs to `done` strictly in the order the items arrived. Returns when `rx` is closed and
/// everything is done, or after `done` returns false: then no further item is taken and the
/// outputs of items still running are awaited and dropped, never passed on.
pub async fn in_order<T, O, W, Fut, D>(
    mut rx: mpsc::Receiver<T>,
    depth: usize,
    work: W,
    mut done: D,
) where
    W: Fn(T) -> Fut,
    Fut: Future<Output = O> + Send + 'static,
    O: Send + 'static,
    D: FnMut(O) -> bool,
{
    let depth = depth.max(1);
    let mut running: VecDeque<JoinHandle<O>> = VecDeque::with_capacity(depth);
    let mut open = true;
    loop {
        let output = if open && running.len() < depth {
            // Biased to taking work: the pipeline stays full.
            tokio::select! {
                biased;
                item = rx.recv() => {
                    match item {
                        Some(item) => running.push_back(tokio::spawn(work(item))),
                        None => open = false,
                    }
                    continue;
                }
                output = head(&mut running), if !running.is_empty() => output,
            }
        } else if !running.is_empty() {
            head(&mut running).await
        } else {
            return;
        };
        running.pop_front();
        let go_on = match output {
            Ok(output) => done(output),
            Err(e) => {
                tracing::error!(error = %e, "pipelined task failed");
                false
            }
        };
        if !go_on {
            for task in running {
                let _ = task.await;
            }
            return;
        }
    }
}

/// Waits for the oldest task (the queue must not be empty).
async fn head<O>(running: &mut VecDeque<JoinHandle<O>>) -> Result<O, JoinError> {
    match running.front_mut() {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Items that finish in reverse order of arrival, `depth` at a time.
    async fn run(depth: usize, stop_after: Option<usize>) -> (Vec<u64>, usize, usize) {
        let (tx, rx) = mpsc::channel(100);
        for i in 0..12u64 {
            tx.send(i).await.unwrap();
        }
        drop(tx);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let work = |i: u64| {
            let (running, peak, started) = (running.clone(), peak.clone(), started.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Later items finish sooner.
                tokio::time::sleep(Duration::from_millis(5 * (12 - i % 4))).await;
                running.fetch_sub(1, Ordering::SeqCst);
                i
            }
        };
        let out = Mutex::new(Vec::new());
        in_order(rx, depth, work, |i| {
            let mut out = out.lock().unwrap();
            out.push(i);
            stop_after != Some(out.len())
        })
        .await;
        assert_eq!(running.load(Ordering::SeqCst), 0, "every task awaited");
        (
            out.into_inner().unwrap(),
            peak.load(Ordering::SeqCst),
            started.load(Ordering::SeqCst),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outputs_leave_in_arrival_order_with_depth_tasks_overlapping() {
        let (out, peak, started) = run(3, None).await;
        assert_eq!(out, (0..12).collect::<Vec<_>>());
        assert_eq!(peak, 3, "three items in flight at once, never more");
        assert_eq!(started, 12);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn depth_one_is_sequential() {
        let (out, peak, _) = run(1, None).await;
        assert_eq!(out, (0..12).collect::<Vec<_>>());
        assert_eq!(peak, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_output_stops_everything_after_it() {
        let (out, peak, started) = run(2, Some(3)).await;
        // Outputs 0..=2 were passed on; the one running beside item 2 is awaited and dropped.
        assert_eq!(out, vec![0, 1, 2]);
        assert_eq!(peak, 2);
        assert_eq!(started, 4, "no item taken after the refusal");
    }
}
