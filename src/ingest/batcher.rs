//! When to flush: a pure accumulator with size and time triggers, no I/O, so its rules are
//! tested without a broker or a database.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_messages: usize,
    pub max_values: usize,
    pub max_delay: Duration,
}

#[derive(Debug)]
pub struct Batcher<T> {
    limits: BatchLimits,
    items: Vec<T>,
    values: usize,
    opened: Option<Instant>,
}

impl<T> Batcher<T> {
    pub fn new(limits: BatchLimits) -> Self {
        Batcher {
            limits,
            items: Vec::with_capacity(limits.max_messages),
            values: 0,
            opened: None,
        }
    }

    /// Adds an item carrying `values` signal values; true when the batch should be flushed now.
    pub fn push(&mut self, item: T, values: usize, now: Instant) -> bool {
        self.opened.get_or_insert(now);
        self.items.push(item);
        self.values += values;
        self.items.len() >= self.limits.max_messages || self.values >= self.limits.max_values
    }

    /// When the oldest item has waited long enough; `None` while empty.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened.map(|t| t + self.limits.max_delay)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn take(&mut self) -> Vec<T> {
        self.opened = None;
        self.values = 0;
        std::mem::replace(
            &mut self.items,
            Vec::with_capacity(self.limits.max_messages),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        max_messages: 3,
        max_values: 100,
        max_delay: Duration::from_millis(50),
    };

    #[test]
    fn flushes_on_message_count() {
        let mut b = Batcher::new(LIMITS);
        let t = Instant::now();
        assert!(!b.push(1, 1, t));
        assert!(!b.push(2, 1, t));
        assert!(b.push(3, 1, t));
        assert_eq!(b.take(), vec![1, 2, 3]);
        assert!(b.is_empty());
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn flushes_on_value_count() {
        let mut b = Batcher::new(LIMITS);
        assert!(b.push(1, 100, Instant::now()));
    }

    #[test]
    fn deadline_runs_from_the_first_item() {
        let mut b = Batcher::new(LIMITS);
        let t0 = Instant::now();
        b.push(1, 1, t0);
        b.push(2, 1, t0 + Duration::from_millis(40));
        assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(50)));
        b.take();
        let t1 = t0 + Duration::from_millis(60);
        b.push(3, 1, t1);
        assert_eq!(b.deadline(), Some(t1 + Duration::from_millis(50)));
    }
}
