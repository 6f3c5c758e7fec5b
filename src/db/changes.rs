//! What a committed write changed, and who hears of it: this process's caches (rendered
//! pages, index access rules) and build waiters, and on PostgreSQL every other replica's.
//!
//! A write transaction names what it changes ([`WriteTx::changed`](super::WriteTx::changed))
//! as [`Change`]s. On commit they are applied to [`Stamps`]: one counter for the whole
//! process and, per change, the counter's value when it last happened. A cached page
//! remembers the counter's value read *before* it was rendered and the changes it depends
//! on (its index chain's settings and the project's files on each index of the chain);
//! it is served while none of them happened since. So a stage report or a lease heartbeat
//! (which name no change) leaves every page alone, and an upload of `demo` to a branch
//! index discards only `demo`'s pages of the indexes whose chains include that branch.
//!
//! Across PostgreSQL replicas ([`Fleet`]): the write transaction also sends its changes
//! with `NOTIFY kiln_changes` (delivered at commit, in commit order, never for a rolled
//! back transaction). Every replica LISTENs, applies them to its own stamps, and answers
//! on `kiln_acks`. A writer whose changes touch pages waits, after its commit and before
//! it answers its client, until every replica heard from recently has acknowledged
//! (bounded by [`ACK_WAIT`]; a replica that misses it is not waited for again until it
//! is heard from), so an upload acknowledged by one replica is on every replica's pages
//! at once, without any page request touching the database. A replica whose listener
//! connection drops serves no cached page until it has listened again and discarded
//! everything it held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::AnyPool;

/// One thing a write changed. A page depends on a few of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The set of indexes: one was created or deleted (pages of unknown indexes).
    Indexes,
    /// One index's settings or bases (every page whose chain includes it).
    Index(i64),
    /// The files of one project on one index: an upload, promotion, yank, or a mirror's
    /// new listing (applying it also applies [`Change::Project`]).
    Files(i64, String),
    /// The files of one project on any index (the mirror guard asks whether a name is
    /// published anywhere). Applied with every [`Change::Files`]; never named by a write.
    Project(String),
    /// The set of project names on one index (its project list).
    Projects(i64),
    /// A build's state on one index and project: wakes build waiters, changes no page.
    Builds(i64, String),
    /// Tokens: one was created or revoked (remembered token lookups).
    Tokens,
    /// Webhook subscriptions: one was added or removed (the remembered list).
    Webhooks,
    /// Webhook deliveries were queued: wakes every replica's sender, changes no page.
    Deliveries,
}

impl Change {
    /// Whether another replica must have applied this before the writer answers: what
    /// its caches may show (pages, index settings, tokens). Build states are only seen
    /// by waiters, who re-read the database anyway.
    #[must_use]
    pub fn needs_acks(&self) -> bool {
        !matches!(self, Self::Builds(..) | Self::Deliveries)
    }
}

/// Values read from the database, each kept with the counter read before it and the
/// changes it depends on, and handed out while none of them happened since. Bounded by
/// entry count; past it, it starts over.
#[derive(Debug)]
pub struct Remembered<K, V> {
    entries: Mutex<HashMap<K, Kept<V>>>,
    max: usize,
}

/// A remembered value: the counter read before it was read, and what it depends on.
type Kept<V> = (u64, Vec<Change>, V);

impl<K: std::hash::Hash + Eq, V: Clone> Remembered<K, V> {
    /// A cache of at most `max` entries.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            entries: Mutex::default(),
            max,
        }
    }

    /// The value kept for `key`, if nothing it depends on changed since it was read.
    pub fn get(&self, key: &K, stamps: &Stamps) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(read_at, depends_on, _)| stamps.unchanged_since(*read_at, depends_on))
            .map(|(_, _, value)| value.clone())
    }

    /// Keeps `value`, read after the counter read `read_at`, depending on `depends_on`.
    pub fn put(&self, key: K, read_at: u64, depends_on: Vec<Change>, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.max {
            entries.clear();
        }
        entries.insert(key, (read_at, depends_on, value));
    }
}

/// Most changes remembered by name; past it, everything cached is discarded and the
/// record starts over (a few MB of keys).
const MAX_REMEMBERED: usize = 250_000;

/// When each change last happened, on one process's counter.
#[derive(Debug)]
pub struct Stamps {
    inner: Mutex<Inner>,
    /// Woken after every change applied (local commit or another replica's).
    woken: tokio::sync::Notify,
    /// False while changes made by other replicas may be missed (listener down).
    live: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    /// The counter: how many batches of changes were applied.
    now: u64,
    /// Anything read before this value is stale (everything was discarded then).
    floor: u64,
    /// The counter's value when each change last happened.
    last: HashMap<Change, u64>,
}

impl Default for Stamps {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            woken: tokio::sync::Notify::new(),
            live: AtomicBool::new(true),
        }
    }
}

impl Stamps {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The counter now: read it *before* reading what a cached value is made of.
    #[must_use]
    pub fn now(&self) -> u64 {
        self.lock().now
    }

    /// True when none of `depends_on` happened after the counter read `read_at`, and no
    /// other replica's change can have been missed since.
    #[must_use]
    pub fn unchanged_since(&self, read_at: u64, depends_on: &[Change]) -> bool {
        if !self.is_live() {
            return false;
        }
        let inner = self.lock();
        read_at >= inner.floor
            && depends_on
                .iter()
                .all(|c| inner.last.get(c).is_none_or(|&at| at <= read_at))
    }

    /// Records that `changes` happened (after their commit) and wakes waiters.
    pub fn apply(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        {
            let mut inner = self.lock();
            inner.now += 1;
            let now = inner.now;
            if inner.last.len() + 2 * changes.len() > MAX_REMEMBERED {
                inner.last.clear();
                inner.floor = now;
            }
            for change in changes {
                if let Change::Files(_, project) = change {
                    inner.last.insert(Change::Project(project.clone()), now);
                }
                inner.last.insert(change.clone(), now);
            }
        }
        self.woken.notify_waiters();
    }

    /// Treats everything as changed: what was read before is stale.
    pub fn discard_all(&self) {
        {
            let mut inner = self.lock();
            inner.now += 1;
            inner.floor = inner.now;
            inner.last.clear();
        }
        self.woken.notify_waiters();
    }

    /// Woken after every change applied here, whoever made it (build waiters).
    #[must_use]
    pub fn woken(&self) -> &tokio::sync::Notify {
        &self.woken
    }

    /// False while other replicas' changes may be missed: caches must not be trusted.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::SeqCst);
    }
}

/// How long a writer waits for the other replicas to acknowledge its changes.
pub const ACK_WAIT: Duration = Duration::from_secs(2);
/// How often a replica says it is alive (so writers know whom to wait for).
const HELLO_EVERY: Duration = Duration::from_secs(3);
/// A replica not heard from for this long is not waited for.
const SILENT_AFTER: Duration = Duration::from_secs(10);
/// Largest `NOTIFY` payload sent; a bigger batch is sent as "everything changed".
const MAX_PAYLOAD: usize = 7_000;

const CHANGES_CHANNEL: &str = "kiln_changes";
const ACKS_CHANNEL: &str = "kiln_acks";

/// A batch of changes as sent on `kiln_changes`.
#[derive(Debug, Serialize, Deserialize)]
struct Announcement {
    /// The sending replica.
    o: String,
    /// The sender's batch number.
    n: u64,
    /// The changes; `None` when there were too many to send (everything changed).
    c: Option<Vec<Change>>,
}

/// What this replica knows of another.
#[derive(Debug)]
struct Peer {
    heard: Instant,
    /// The highest batch of ours it acknowledged.
    acked: u64,
    /// Missed a deadline: not waited for until heard from again.
    lagging: bool,
}

/// This replica's part in keeping every replica's caches in step (PostgreSQL only).
#[derive(Debug)]
pub struct Fleet {
    me: String,
    url: String,
    pool: AnyPool,
    stamps: Arc<Stamps>,
    sent: AtomicU64,
    peers: Mutex<HashMap<String, Peer>>,
    acked: tokio::sync::Notify,
    /// Whether the listener is connected and listening (acks can be heard).
    listening: AtomicBool,
    /// Set by [`Fleet::leave`]: the background tasks end.
    stop: tokio::sync::watch::Sender<bool>,
}

impl Fleet {
    /// Starts listening on `url`'s database; answers once the listener is ready (or has
    /// failed once and keeps retrying in the background, with caches bypassed).
    pub async fn start(url: &str, pool: AnyPool, stamps: Arc<Stamps>) -> Arc<Self> {
        let me = format!("{:016x}", rand::random::<u64>());
        let fleet = Arc::new(Self::new(me, url, pool, stamps));
        fleet.stamps.set_live(false);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(Arc::clone(&fleet).listen(ready_tx));
        let _ = ready_rx.await;
        tokio::spawn(Arc::clone(&fleet).say_hello());
        fleet
    }

    fn new(me: String, url: &str, pool: AnyPool, stamps: Arc<Stamps>) -> Self {
        Self {
            me,
            url: url.to_owned(),
            pool,
            stamps,
            sent: AtomicU64::new(0),
            peers: Mutex::default(),
            acked: tokio::sync::Notify::new(),
            listening: AtomicBool::new(false),
            stop: tokio::sync::watch::Sender::new(false),
        }
    }

    /// The payload announcing `changes` as this replica's next batch, and its number.
    pub fn announce(&self, changes: &[Change]) -> (u64, String) {
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        let mut announcement = Announcement {
            o: self.me.clone(),
            n,
            c: Some(changes.to_vec()),
        };
        let mut payload = serde_json::to_string(&announcement).unwrap_or_default();
        if payload.len() > MAX_PAYLOAD || payload.is_empty() {
            announcement.c = None;
            payload = serde_json::to_string(&announcement).unwrap_or_default();
        }
        (n, payload)
    }

    /// Waits until every replica heard from recently has applied batch `n` (or
    /// [`ACK_WAIT`] passes; those that missed it are then not waited for until heard).
    pub async fn await_acks(&self, n: u64) {
        if !self.listening.load(Ordering::SeqCst) {
            return;
        }
        let deadline = tokio::time::Instant::now() + ACK_WAIT;
        loop {
            let notified = self.acked.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let waiting = self.waiting_for(n);
            if waiting.is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
                for id in &waiting {
                    if let Some(peer) = peers.get_mut(id) {
                        peer.lagging = true;
                    }
                }
                tracing::warn!(replicas = ?waiting, batch = n, "replicas did not acknowledge a change in time; not waiting for them until they are heard from");
                return;
            }
        }
    }

    fn waiting_for(&self, n: u64) -> Vec<String> {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers
            .iter()
            .filter(|(_, p)| !p.lagging && p.heard.elapsed() < SILENT_AFTER && p.acked < n)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn heard(&self, id: &str, acked: Option<u64>) {
        if id == self.me {
            return;
        }
        {
            let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
            let peer = peers.entry(id.to_owned()).or_insert(Peer {
                heard: Instant::now(),
                acked: 0,
                lagging: false,
            });
            peer.heard = Instant::now();
            peer.lagging = false;
            if let Some(n) = acked {
                peer.acked = peer.acked.max(n);
            }
        }
        self.acked.notify_waiters();
    }

    fn forget(&self, id: &str) {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        self.acked.notify_waiters();
    }

    async fn send(&self, channel: &str, payload: &str) {
        let sent = sqlx::query("SELECT CAST(pg_notify($1, $2) AS TEXT)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await;
        if let Err(err) = sent {
            tracing::debug!(error = %err, channel, "could not notify the other replicas");
        }
    }

    async fn say_hello(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            if self.listening.load(Ordering::SeqCst) {
                self.send(ACKS_CHANNEL, &format!("{} hello", self.me)).await;
            }
            tokio::select! {
                () = tokio::time::sleep(HELLO_EVERY) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Tells the other replicas this one is leaving (they stop waiting for it) and ends
    /// the background tasks.
    pub async fn leave(&self) {
        self.send(ACKS_CHANNEL, &format!("{} bye", self.me)).await;
        self.stop.send_replace(true);
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// The listener: connects, discards what may have been missed, then applies every
    /// other replica's changes and acknowledges them; reconnects when the link drops.
    async fn listen(self: Arc<Self>, ready: tokio::sync::oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.listen_once(&mut ready).await {
                Ok(()) => return,
                Err(err) => {
                    self.listening.store(false, Ordering::SeqCst);
                    self.stamps.set_live(false);
                    tracing::warn!(error = %err, retry_in = ?backoff, "lost the change listener; cached pages are bypassed until it is back");
                }
            }
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            if self.stopped() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn listen_once(
        self: &Arc<Self>,
        ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.ignore_pool_close_event(true);
        listener.listen_all([CHANGES_CHANNEL, ACKS_CHANNEL]).await?;
        // Listening from here on; whatever happened before may have been missed.
        self.stamps.discard_all();
        self.listening.store(true, Ordering::SeqCst);
        self.stamps.set_live(true);
        self.send(ACKS_CHANNEL, &format!("{} hello", self.me)).await;
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        let mut stop = self.stop.subscribe();
        loop {
            let notification = tokio::select! {
                received = listener.try_recv() => received?,
                _ = stop.wait_for(|stop| *stop) => return Ok(()),
            };
            let Some(notification) = notification else {
                return Err(sqlx::Error::Protocol(
                    "the listener's connection closed".into(),
                ));
            };
            match notification.channel() {
                CHANGES_CHANNEL => self.on_changes(notification.payload()).await,
                ACKS_CHANNEL => self.on_ack(notification.payload()),
                _ => {}
            }
        }
    }

    async fn on_changes(&self, payload: &str) {
        let Ok(announcement) = serde_json::from_str::<Announcement>(payload) else {
            tracing::warn!(
                payload.len = payload.len(),
                "unreadable change notification; discarding every cached page"
            );
            self.stamps.discard_all();
            return;
        };
        if announcement.o == self.me {
            return;
        }
        match &announcement.c {
            Some(changes) => self.stamps.apply(changes),
            None => self.stamps.discard_all(),
        }
        self.send(
            ACKS_CHANNEL,
            &format!("{} ack {} {}", self.me, announcement.o, announcement.n),
        )
        .await;
    }

    fn on_ack(&self, payload: &str) {
        let words: Vec<&str> = payload.split(' ').collect();
        match words.as_slice() {
            [from, "bye"] => self.forget(from),
            [from, "ack", origin, n] if *origin == self.me => {
                self.heard(from, n.parse().ok());
            }
            [from, "hello" | "ack", ..] => self.heard(from, None),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_stale_only_after_what_it_depends_on_changed() {
        let stamps = Stamps::default();
        let demo = Change::Files(1, "demo".into());
        let deps = [Change::Index(1), demo.clone()];
        let read_at = stamps.now();
        stamps.apply(&[Change::Builds(1, "demo".into())]);
        stamps.apply(&[Change::Files(2, "demo".into())]);
        stamps.apply(&[Change::Files(1, "other".into())]);
        assert!(stamps.unchanged_since(read_at, &deps));
        assert!(
            !stamps.unchanged_since(read_at, &[Change::Project("demo".into())]),
            "a file of `demo` anywhere changes `Project(demo)`"
        );
        stamps.apply(std::slice::from_ref(&demo));
        assert!(!stamps.unchanged_since(read_at, &deps));
        let later = stamps.now();
        assert!(stamps.unchanged_since(later, &deps));
        stamps.discard_all();
        assert!(
            !stamps.unchanged_since(later, &[]),
            "everything was discarded"
        );
    }

    #[tokio::test]
    async fn a_batch_too_big_to_notify_is_sent_as_everything() {
        sqlx::any::install_default_drivers();
        let stamps = Arc::new(Stamps::default());
        let pool = sqlx::any::AnyPoolOptions::new()
            .connect_lazy("sqlite::memory:")
            .unwrap();
        let fleet = Fleet::new("me".into(), "", pool, stamps);
        let (n, small) = fleet.announce(&[Change::Index(3)]);
        assert_eq!(n, 1);
        assert!(small.contains("\"index\":3"), "{small}");
        let many: Vec<Change> = (0..2_000)
            .map(|i| Change::Files(i, format!("project-{i}")))
            .collect();
        let (n, big) = fleet.announce(&many);
        assert_eq!(n, 2);
        assert!(big.len() < MAX_PAYLOAD, "{}", big.len());
        let parsed: Announcement = serde_json::from_str(&big).unwrap();
        assert!(parsed.c.is_none());
    }
}
