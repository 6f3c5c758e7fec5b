//! Single flight: callers asking for the same key at the same time share one piece of
//! work. The work runs on its own task, so a caller that gives up (a client that
//! disconnects) does not cancel it for the others, and whatever it caches is cached.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// The shared work panicked; every caller that joined it gets this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shared work for this request failed unexpectedly (see the server log)")]
pub struct FlightPanicked;

type Slot<V> = watch::Receiver<Option<Result<V, FlightPanicked>>>;

/// Work in progress, by key.
#[derive(Debug)]
pub struct Flights<K, V> {
    running: Arc<Mutex<HashMap<K, Slot<V>>>>,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            running: Arc::default(),
        }
    }
}

impl<K, V> Flights<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Joins the flight for `key`, starting it with `work` if none is running. The key is
    /// released just before the result is published, so a caller arriving afterwards
    /// starts afresh (and should find whatever the finished flight cached).
    pub async fn run<F, Fut>(&self, key: K, work: F) -> Result<V, FlightPanicked>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let mut receiver = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(receiver) = running.get(&key) {
                receiver.clone()
            } else {
                let (sender, receiver) = watch::channel(None);
                running.insert(key.clone(), receiver.clone());
                let flight = work();
                let registry = Arc::clone(&self.running);
                tokio::spawn(async move {
                    let value = tokio::spawn(flight).await.map_err(|_| FlightPanicked);
                    registry
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&key);
                    let _ = sender.send(Some(value));
                });
                receiver
            }
        };
        loop {
            if let Some(value) = receiver.borrow_and_update().clone() {
                return value;
            }
            if receiver.changed().await.is_err() {
                // The sender always publishes before it is dropped; this is unreachable
                // unless the runtime is shutting down.
                return receiver.borrow().clone().unwrap_or(Err(FlightPanicked));
            }
        }
    }

    /// How many flights are running (for tests and diagnostics).
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights: Arc<Flights<&'static str, usize>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut callers = Vec::new();
        for _ in 0..20 {
            let flights = Arc::clone(&flights);
            let runs = Arc::clone(&runs);
            callers.push(tokio::spawn(async move {
                flights
                    .run("page", move || async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        runs.fetch_add(1, Ordering::SeqCst) + 41
                    })
                    .await
            }));
        }
        for caller in callers {
            assert_eq!(caller.await.unwrap(), Ok(41));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0, "finished flights are released");
        // A later caller runs the work again.
        let again = flights.run("page", || async { 7 }).await;
        assert_eq!(again, Ok(7));
    }

    #[tokio::test]
    async fn a_cancelled_caller_does_not_cancel_the_work() {
        let flights: Arc<Flights<u8, u8>> = Arc::default();
        let done = Arc::new(AtomicUsize::new(0));
        let first = {
            let flights = Arc::clone(&flights);
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                flights
                    .run(1, move || async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        done.fetch_add(1, Ordering::SeqCst);
                        9
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        first.abort();
        let second = flights.run(1, || async { 0 }).await;
        assert_eq!(second, Ok(9), "joined the running flight");
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_panicking_flight_fails_its_callers_and_is_released() {
        let flights: Flights<u8, u8> = Flights::default();
        let failed = flights
            .run(1, || async { panic!("deliberate test panic") })
            .await;
        assert_eq!(failed, Err(FlightPanicked));
        assert_eq!(flights.run(1, || async { 3 }).await, Ok(3));
    }
}
