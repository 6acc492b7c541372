//! The local queueing delay of Salesforce requests: how long a request handed to the engine's
//! runtime waits before the runtime runs it. When FreeSWITCH keeps the CPUs busy (past its SIP
//! intake limit) the runtime thread is starved; a lookup whose deadline that wait alone would
//! eat is answered `overloaded` at once instead of holding the call, and none of it counts
//! against Salesforce (the org's breaker).
//!
//! The delay is measured, not guessed: every hand-off takes a ticket with its time; the age of
//! the oldest ticket the runtime has not started yet is a lower bound of the delay right now, and
//! it falls back to nothing as soon as the runtime catches up (so lookups recover by themselves).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Default)]
pub struct RuntimeQueue {
    /// Hand-offs not started yet: ticket number → when it was handed off. Ticket numbers grow,
    /// so the first entry is the oldest.
    waiting: Mutex<BTreeMap<u64, Instant>>,
    next_ticket: AtomicU64,
    /// The longest wait of a request the runtime started, in µs (for `sf status`).
    longest_wait_us: AtomicU64,
    /// Lookups answered `overloaded` without asking Salesforce.
    pub overloaded: AtomicU64,
}

/// One hand-off to the runtime. Dropped without `start` (the runtime dropped the task at
/// shutdown), it leaves the queue all the same.
pub struct Ticket {
    queue: Arc<RuntimeQueue>,
    number: u64,
    handed_off: Instant,
}

impl RuntimeQueue {
    pub fn hand_off(self: &Arc<Self>, now: Instant) -> Ticket {
        let number = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        self.waiting.lock().insert(number, now);
        Ticket {
            queue: self.clone(),
            number,
            handed_off: now,
        }
    }

    /// How long requests wait for the runtime right now: the age of the oldest hand-off not
    /// started yet (zero when none waits).
    pub fn delay(&self, now: Instant) -> Duration {
        self.waiting
            .lock()
            .first_key_value()
            .map_or(Duration::ZERO, |(_, since)| {
                now.saturating_duration_since(*since)
            })
    }

    /// Whether the wait alone would take a lookup past `deadline`.
    pub fn would_miss(&self, now: Instant, deadline: Instant) -> Option<Duration> {
        let delay = self.delay(now);
        (delay > Duration::ZERO && now + delay >= deadline).then_some(delay)
    }

    pub fn longest_wait(&self) -> Duration {
        Duration::from_micros(self.longest_wait_us.load(Ordering::Relaxed))
    }
}

impl Ticket {
    /// The runtime started the request: how long it waited.
    pub fn start(self, now: Instant) -> Duration {
        let waited = now.saturating_duration_since(self.handed_off);
        self.queue
            .longest_wait_us
            .fetch_max(waited.as_micros() as u64, Ordering::Relaxed);
        waited
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.queue.waiting.lock().remove(&self.number);
    }
}

/// Whether a request that was still on the wire at its deadline is Salesforce's doing: the
/// runtime started it with at least half the lookup's time left, and noticed the deadline
/// promptly (a late timer means the runtime was starved, and the answer may be sitting unread).
pub fn timeout_is_salesforces(
    budget: Duration,
    started: Instant,
    deadline: Instant,
    noticed: Instant,
) -> bool {
    deadline.saturating_duration_since(started) * 2 >= budget
        && noticed.saturating_duration_since(deadline) <= LATE_TIMER_TOLERANCE
}

/// How late the runtime may notice a deadline and still be taken as running normally.
pub const LATE_TIMER_TOLERANCE: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_is_the_oldest_waiting_hand_off_and_ends_with_it() {
        let queue = Arc::new(RuntimeQueue::default());
        let t0 = Instant::now();
        assert_eq!(queue.delay(t0), Duration::ZERO);
        let first = queue.hand_off(t0);
        let second = queue.hand_off(t0 + Duration::from_millis(40));
        let now = t0 + Duration::from_millis(100);
        assert_eq!(queue.delay(now), Duration::from_millis(100));
        assert_eq!(first.start(now), Duration::from_millis(100));
        assert_eq!(queue.delay(now), Duration::from_millis(60));
        assert_eq!(
            queue.would_miss(now, now + Duration::from_millis(60)),
            Some(Duration::from_millis(60))
        );
        assert_eq!(queue.would_miss(now, now + Duration::from_millis(61)), None);
        drop(second);
        assert_eq!(queue.delay(now), Duration::ZERO);
        assert_eq!(queue.would_miss(now, now), None);
        assert_eq!(queue.longest_wait(), Duration::from_millis(100));
    }

    #[test]
    fn only_a_fair_and_promptly_noticed_timeout_is_salesforces() {
        let t0 = Instant::now();
        let budget = Duration::from_millis(1000);
        let deadline = t0 + budget;
        // Started at once, noticed on time.
        assert!(timeout_is_salesforces(budget, t0, deadline, deadline));
        // Started with 100 ms left: the local queue ate the lookup's time.
        assert!(!timeout_is_salesforces(
            budget,
            deadline - Duration::from_millis(100),
            deadline,
            deadline
        ));
        // Noticed 300 ms late: the runtime was starved.
        assert!(!timeout_is_salesforces(
            budget,
            t0,
            deadline,
            deadline + Duration::from_millis(300)
        ));
    }
}
