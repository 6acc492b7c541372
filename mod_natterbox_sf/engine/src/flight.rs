//! Single flight: concurrent misses for one key make one Salesforce request; every caller waits
//! for that request's answer, each until its own deadline.
//!
//! A flight is finished through its `FlightGuard`: if the task that fetches panics or is dropped
//! (runtime shutdown, an aborted task), the guard finishes the flight with an error, so waiters
//! hear at once and the next miss starts a new flight instead of joining a dead one.
//!
//! Call threads wait on a std `Condvar` (no thread-local state left behind in FreeSWITCH's
//! threads); async callers wait on a tokio `Notify`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

pub struct Flight<T> {
    result: Mutex<Option<T>>,
    done: Condvar,
    notify: Notify,
}

impl<T: Clone> Flight<T> {
    fn new() -> Flight<T> {
        Flight {
            result: Mutex::new(None),
            done: Condvar::new(),
            notify: Notify::new(),
        }
    }

    fn complete(&self, value: T) {
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
        self.done.notify_all();
        self.notify.notify_waiters();
    }

    /// Blocks the calling thread until the answer or the deadline.
    pub fn wait_until(&self, deadline: Instant) -> Option<T> {
        let mut result = self.result.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(value) = result.as_ref() {
                return Some(value.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            result = self
                .done
                .wait_timeout(result, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits asynchronously until the answer or the deadline.
    pub async fn wait(&self, deadline: tokio::time::Instant) -> Option<T> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(value) = self
                .result
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                return Some(value.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self
                    .result
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
            }
        }
    }
}

/// The flights in progress, by key.
pub struct Flights<K, T> {
    in_flight: Mutex<HashMap<K, Arc<Flight<T>>>>,
}

/// A caller's part in a flight.
pub enum Joined<T> {
    /// This caller must start the request and call `Flights::finish`.
    Leader(Arc<Flight<T>>),
    Follower(Arc<Flight<T>>),
}

impl<K: Eq + Hash + Clone, T: Clone> Flights<K, T> {
    pub fn new() -> Flights<K, T> {
        Flights {
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    pub fn join(&self, key: &K) -> Joined<T> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = map.get(key) {
            return Joined::Follower(flight.clone());
        }
        let flight = Arc::new(Flight::new());
        map.insert(key.clone(), flight.clone());
        Joined::Leader(flight)
    }

    /// Publishes the answer to every waiter and ends the flight.
    pub fn finish(&self, key: &K, value: T) {
        let flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if let Some(flight) = flight {
            flight.complete(value);
        }
    }

    /// Ends `flight` only if it is still the one in progress for `key`.
    fn finish_flight(&self, key: &K, flight: &Arc<Flight<T>>, value: T) {
        {
            let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if map.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
                map.remove(key);
            }
        }
        flight.complete(value);
    }

    pub fn len(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// How many hold a flight in progress (the map counts once): for tests to know every
    /// caller has joined.
    #[cfg(test)]
    pub(crate) fn holders(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(Arc::strong_count)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The leader's duty to finish its flight, carried into the task that fetches. Dropped without
/// `finish` (a panic, an aborted or dropped task), it finishes the flight with `abandoned`.
pub struct FlightGuard<K: Eq + Hash + Clone, T: Clone> {
    flights: Arc<Flights<K, T>>,
    key: K,
    flight: Arc<Flight<T>>,
    abandoned: Option<T>,
}

impl<K: Eq + Hash + Clone, T: Clone> FlightGuard<K, T> {
    /// `flight` is the one `join` returned as `Leader` for `key`.
    pub fn new(
        flights: Arc<Flights<K, T>>,
        key: K,
        flight: Arc<Flight<T>>,
        abandoned: T,
    ) -> FlightGuard<K, T> {
        FlightGuard {
            flights,
            key,
            flight,
            abandoned: Some(abandoned),
        }
    }

    pub fn finish(mut self, value: T) {
        self.abandoned = None;
        self.flights.finish_flight(&self.key, &self.flight, value);
    }
}

impl<K: Eq + Hash + Clone, T: Clone> Drop for FlightGuard<K, T> {
    fn drop(&mut self) {
        if let Some(value) = self.abandoned.take() {
            self.flights.finish_flight(&self.key, &self.flight, value);
        }
    }
}

impl<K: Eq + Hash + Clone, T: Clone> Default for Flights<K, T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_leader_many_followers_one_answer() {
        let flights: Arc<Flights<u32, u32>> = Arc::new(Flights::new());
        let leader = match flights.join(&7) {
            Joined::Leader(f) => f,
            Joined::Follower(_) => panic!("first caller leads"),
        };
        let (joined_tx, joined) = std::sync::mpsc::channel();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let flights = flights.clone();
                let joined_tx = joined_tx.clone();
                std::thread::spawn(move || match flights.join(&7) {
                    Joined::Follower(f) => {
                        joined_tx.send(()).unwrap();
                        f.wait_until(Instant::now() + Duration::from_secs(5))
                    }
                    Joined::Leader(_) => {
                        joined_tx.send(()).unwrap();
                        None
                    }
                })
            })
            .collect();
        // Finish only once every thread has joined the flight.
        for _ in 0..8 {
            joined.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        flights.finish(&7, 42);
        for w in waiters {
            assert_eq!(w.join().unwrap(), Some(42));
        }
        assert_eq!(leader.wait_until(Instant::now()), Some(42));
        assert!(flights.is_empty());
    }

    #[test]
    fn waiting_ends_at_the_deadline() {
        let flights: Flights<u32, u32> = Flights::new();
        let Joined::Leader(flight) = flights.join(&1) else {
            panic!()
        };
        let start = Instant::now();
        assert_eq!(flight.wait_until(start + Duration::from_millis(30)), None);
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    fn lead(flights: &Arc<Flights<u32, u32>>, key: u32) -> FlightGuard<u32, u32> {
        let Joined::Leader(flight) = flights.join(&key) else {
            panic!("first caller leads")
        };
        FlightGuard::new(flights.clone(), key, flight, 0)
    }

    #[test]
    fn a_panicking_leader_still_ends_its_flight() {
        let flights: Arc<Flights<u32, u32>> = Arc::new(Flights::new());
        let guard = lead(&flights, 3);
        let Joined::Follower(flight) = flights.join(&3) else {
            panic!("second caller follows")
        };
        let leader = std::thread::spawn(move || {
            let _guard = guard;
            panic!("injected: the fetch panicked");
        });
        assert!(leader.join().is_err());
        let start = Instant::now();
        assert_eq!(
            flight.wait_until(start + Duration::from_secs(5)),
            Some(0),
            "the follower hears the abandoned value"
        );
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(flights.is_empty());
        assert!(
            matches!(flights.join(&3), Joined::Leader(_)),
            "a new flight"
        );
    }

    #[tokio::test]
    async fn an_aborted_leader_task_still_ends_its_flight() {
        let flights: Arc<Flights<u32, u32>> = Arc::new(Flights::new());
        let guard = lead(&flights, 4);
        let Joined::Follower(flight) = flights.join(&4) else {
            panic!("second caller follows")
        };
        let task = tokio::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        task.abort();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        assert_eq!(flight.wait(deadline).await, Some(0));
        assert!(flights.is_empty());
    }

    #[test]
    fn a_finished_guard_publishes_its_answer_once() {
        let flights: Arc<Flights<u32, u32>> = Arc::new(Flights::new());
        let guard = lead(&flights, 5);
        let Joined::Follower(flight) = flights.join(&5) else {
            panic!()
        };
        guard.finish(9);
        assert_eq!(flight.wait_until(Instant::now()), Some(9));
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn async_waiters_get_the_answer() {
        let flights: Arc<Flights<u32, u32>> = Arc::new(Flights::new());
        let Joined::Leader(flight) = flights.join(&1) else {
            panic!()
        };
        let f2 = flights.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            f2.finish(&1, 5);
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        assert_eq!(flight.wait(deadline).await, Some(5));
    }
}
