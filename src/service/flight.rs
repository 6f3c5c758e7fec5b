//! Single flight: callers asking for the same key at the same time share one piece of
//! work. The work runs on its own task, so a caller that gives up (a client that
//! disconnects) does not cancel it for the others, and whatever it caches is cached.
//!
//! One mechanism, two shapes: [`Streams`] lets callers follow the work's progress (a
//! mirrored file streams to every client while it arrives), and [`Flights`] is the
//! special case where callers wait for one final value (a page, a metadata file).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// The shared work panicked; every caller that joined it gets this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shared work for this request failed unexpectedly (see the server log)")]
pub struct FlightPanicked;

/// Work in progress, by key; each caller holds a receiver of its progress `S`.
#[derive(Debug)]
pub struct Streams<K, S> {
    running: Arc<Mutex<HashMap<K, watch::Receiver<S>>>>,
}

impl<K, S> Default for Streams<K, S> {
    fn default() -> Self {
        Self {
            running: Arc::default(),
        }
    }
}

/// Releases a key when the work ends, however it ends (a panic included), so the next
/// caller starts afresh.
struct Release<K: Eq + Hash, S> {
    key: K,
    running: Arc<Mutex<HashMap<K, watch::Receiver<S>>>>,
}

impl<K: Eq + Hash, S> Drop for Release<K, S> {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl<K, S> Streams<K, S>
where
    K: Eq + Hash + Clone + Send + 'static,
    S: Send + Sync + 'static,
{
    /// Joins the work for `key`, or starts it: `start` gets the sender of its progress
    /// (which begins at `initial`) and runs on its own task. The key is released when
    /// that task ends.
    pub fn join<F, Fut>(&self, key: K, initial: S, start: F) -> watch::Receiver<S>
    where
        F: FnOnce(watch::Sender<S>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(receiver) = running.get(&key) {
            return receiver.clone();
        }
        let (sender, receiver) = watch::channel(initial);
        running.insert(key.clone(), receiver.clone());
        let work = start(sender);
        let release = Release {
            key,
            running: Arc::clone(&self.running),
        };
        tokio::spawn(async move {
            let _release = release;
            work.await;
        });
        receiver
    }

    /// How much work is running (for tests and diagnostics).
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Work whose callers wait for one final value.
#[derive(Debug)]
pub struct Flights<K, V> {
    streams: Streams<K, Option<V>>,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            streams: Streams::default(),
        }
    }
}

impl<K, V> Flights<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Joins the flight for `key`, starting it with `work` if none is running. A caller
    /// arriving after it ended starts afresh (and should find whatever it cached).
    pub async fn run<F, Fut>(&self, key: K, work: F) -> Result<V, FlightPanicked>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let mut receiver = self.streams.join(key, None, |sender| {
            let work = work();
            async move {
                let value = work.await;
                let _ = sender.send(Some(value));
            }
        });
        loop {
            if let Some(value) = receiver.borrow_and_update().clone() {
                return Ok(value);
            }
            if receiver.changed().await.is_err() {
                // The work ended without a value: it panicked.
                return receiver.borrow().clone().ok_or(FlightPanicked);
            }
        }
    }

    /// How many flights are running (for tests and diagnostics).
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.streams.in_flight()
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
        // Cancelled once it has really started the work, however slow the machine.
        while flights.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
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
