//! Health of each backend: a circuit breaker and recent latencies.
//!
//! After `TRIP_AFTER` consecutive failures a backend is marked down: reads go
//! straight to parity shards and writes fail at once instead of waiting on it. A
//! probe (see `Volume::probe_backends`) marks it up again when it answers.
//! Only failures of the backend itself count (unreachable, timeouts, server
//! errors); a missing object or a shard that fails its checksum does not.
//! A request overtaken by a hedged one (it ran past the backend's p95 latency)
//! is counted as slow, apart from errors; slow answers in a row still trip the
//! breaker, so a frozen backend is marked down. While its latency is unknown
//! (too few answers yet) an overtaken request only makes it suspect, and the
//! periodic check decides (see `Volume::probe_backends`).

use crate::policy::class::StorageClass;
use crate::store::{Backend, DynBackend, ObjectInfo, StoreError, StoreResult, ThawState, ThawTier};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const TRIP_AFTER: u32 = 3;
const LATENCY_WINDOW: usize = 256;

#[derive(Default)]
pub struct Health {
    state: Mutex<State>,
    requests: Arc<Requests>,
}

/// Requests a backend answered since the volume was opened, as providers bill
/// them: PUT-class (put, thaw requests, and list: one per page of 1,000 keys)
/// and GET-class (get, ranged get, head, thaw state). Deletes are free
/// everywhere and not counted; nor are requests that got no answer, or the
/// client's own retries.
#[derive(Debug, Default)]
pub struct Requests {
    put: AtomicU64,
    get: AtomicU64,
}

/// A backend whose answered requests are counted (for `cloudraid cost`) and
/// measured (the `cloudraid_backend_*` metrics).
#[derive(Debug)]
struct Counted {
    inner: DynBackend,
    n: Arc<Requests>,
    name: String,
}

impl Counted {
    /// Counts a request of operation `op` that started at `start`; `n` billed
    /// requests (PUT-class when `put`), `sent` bytes uploaded.
    fn count<T>(
        &self,
        op: &'static str,
        start: Instant,
        r: StoreResult<T>,
        put: bool,
        n: u64,
        sent: u64,
    ) -> StoreResult<T> {
        let answered = matches!(
            r,
            Ok(_)
                | Err(StoreError::NotFound(_))
                | Err(StoreError::AlreadyExists(_))
                | Err(StoreError::Archived(_))
        );
        if answered {
            let c = if put { &self.n.put } else { &self.n.get };
            c.fetch_add(n, Ordering::Relaxed);
        }
        let m = &crate::metrics::METRICS;
        let labels = crate::metrics::BackendOp {
            backend: self.name.clone(),
            op,
        };
        m.backend_requests.get_or_create(&labels).inc();
        m.backend_seconds
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64());
        if !answered {
            m.backend_errors.get_or_create(&labels).inc();
        } else if sent > 0 && r.is_ok() {
            m.backend_sent
                .get_or_create(&crate::metrics::BackendLabel {
                    backend: self.name.clone(),
                })
                .inc_by(sent);
        }
        r
    }

    /// Counts a download's bytes.
    fn received(&self, r: StoreResult<Bytes>) -> StoreResult<Bytes> {
        if let Ok(b) = &r {
            crate::metrics::METRICS
                .backend_received
                .get_or_create(&crate::metrics::BackendLabel {
                    backend: self.name.clone(),
                })
                .inc_by(b.len() as u64);
        }
        r
    }
}

#[async_trait]
impl Backend for Counted {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let (t, len) = (Instant::now(), data.len() as u64);
        self.count("put", t, self.inner.put(key, data).await, true, 1, len)
    }
    async fn put_unsynced(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let (t, len) = (Instant::now(), data.len() as u64);
        let r = self.inner.put_unsynced(key, data).await;
        self.count("put", t, r, true, 1, len)
    }
    async fn put_unsynced_in(
        &self,
        key: &str,
        data: Bytes,
        class: StorageClass,
    ) -> StoreResult<()> {
        let (t, len) = (Instant::now(), data.len() as u64);
        let r = self.inner.put_unsynced_in(key, data, class).await;
        self.count("put", t, r, true, 1, len)
    }
    async fn sync(&self) -> StoreResult<()> {
        self.inner.sync().await
    }
    async fn restore(&self, key: &str, days: u32, tier: ThawTier) -> StoreResult<ThawState> {
        let t = Instant::now();
        let r = self.inner.restore(key, days, tier).await;
        self.count("restore", t, r, true, 1, 0)
    }
    async fn thaw_state(&self, key: &str) -> StoreResult<ThawState> {
        let t = Instant::now();
        let r = self.inner.thaw_state(key).await;
        self.count("thaw_state", t, r, false, 1, 0)
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<bool> {
        let (t, len) = (Instant::now(), data.len() as u64);
        let r = self.inner.put_if_absent(key, data).await;
        self.count("put", t, r, true, 1, len)
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let t = Instant::now();
        let r = self.inner.get(key).await;
        self.received(self.count("get", t, r, false, 1, 0))
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let t = Instant::now();
        let r = self.inner.get_range(key, range).await;
        self.received(self.count("get", t, r, false, 1, 0))
    }
    async fn head(&self, key: &str) -> StoreResult<Option<u64>> {
        let t = Instant::now();
        let r = self.inner.head(key).await;
        self.count("head", t, r, false, 1, 0)
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        let t = Instant::now();
        let r = self.inner.delete(key).await;
        // Deletes are free: measured, not billed.
        self.count("delete", t, r, false, 0, 0)
    }
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        let t = Instant::now();
        let r = self.inner.list(prefix).await;
        let pages = r
            .as_ref()
            .map_or(1, |v| (v.len() as u64).div_ceil(1000).max(1));
        self.count("list", t, r, true, pages, 0)
    }
    fn capacity(&self) -> Option<(u64, u64)> {
        self.inner.capacity()
    }
}

#[derive(Default)]
struct State {
    failures_in_row: u32,
    down_since: Option<SystemTime>,
    latencies: VecDeque<Duration>,
    errors: u64,
    last_error: Option<String>,
    slow: u64,
    /// A request was overtaken while the backend's latency was still unknown,
    /// and nothing has answered since: the periodic check asks it directly.
    suspect: bool,
}

/// What `cloudraid status` shows of a backend's health.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HealthSnapshot {
    pub down: bool,
    /// Seconds since the epoch when it was marked down.
    pub down_since: Option<u64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Failed requests since the volume was opened.
    pub errors: u64,
    pub last_error: Option<String>,
    /// Requests overtaken by a hedged read (slower than the backend's recent
    /// 95th percentile) since the volume was opened; not errors.
    #[serde(default)]
    pub slow: u64,
    /// PUT-class and GET-class requests answered since the volume was opened
    /// (see [`Requests`]).
    #[serde(default)]
    pub puts: u64,
    #[serde(default)]
    pub gets: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[i])
}

impl Health {
    /// `backend` (named `name`), with the requests it answers counted in this
    /// health's snapshot, and every request measured in the metrics.
    pub fn counting(&self, name: &str, backend: DynBackend) -> DynBackend {
        Arc::new(Counted {
            inner: backend,
            n: self.requests.clone(),
            name: name.to_string(),
        })
    }

    pub fn is_down(&self) -> bool {
        self.state.lock().unwrap().down_since.is_some()
    }

    pub fn record_ok(&self, latency: Duration) {
        let mut s = self.state.lock().unwrap();
        s.failures_in_row = 0;
        s.suspect = false;
        if s.latencies.len() == LATENCY_WINDOW {
            s.latencies.pop_front();
        }
        s.latencies.push_back(latency);
    }

    /// Records a failure of the backend; returns true if this trips the breaker.
    pub fn record_failure(&self, error: &str) -> bool {
        let mut s = self.state.lock().unwrap();
        s.errors += 1;
        s.last_error = Some(error.to_string());
        s.failures_in_row += 1;
        if s.failures_in_row >= TRIP_AFTER && s.down_since.is_none() {
            s.down_since = Some(SystemTime::now());
            return true;
        }
        false
    }

    /// Records a request overtaken by a hedged one: counted as slow, not as an
    /// error. It still breaks a run of successes, so a backend whose requests keep
    /// running late (frozen) trips the breaker; returns true if this trips it.
    pub fn record_slow(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        s.slow += 1;
        s.failures_in_row += 1;
        if s.failures_in_row >= TRIP_AFTER && s.down_since.is_none() {
            s.errors += 1;
            s.last_error = Some(format!(
                "no answer in time {} times in a row (parity shards were read instead)",
                s.failures_in_row
            ));
            s.down_since = Some(SystemTime::now());
            return true;
        }
        false
    }

    /// Marks the backend down at once (it failed its check when the volume was opened).
    pub fn mark_down(&self, error: &str) {
        let mut s = self.state.lock().unwrap();
        s.errors += 1;
        s.last_error = Some(error.to_string());
        s.failures_in_row = TRIP_AFTER;
        s.down_since.get_or_insert_with(SystemTime::now);
    }

    pub fn mark_up(&self) {
        let mut s = self.state.lock().unwrap();
        s.down_since = None;
        s.failures_in_row = 0;
        s.suspect = false;
    }

    /// Records a request overtaken while the backend's normal latency is still
    /// unknown. That is no evidence by itself (a cold connection is slow too),
    /// so it only makes the backend suspect: the periodic check asks it for its
    /// marker, and marks it down if no answer comes in time.
    pub fn record_overtaken_unknown(&self) {
        self.state.lock().unwrap().suspect = true;
    }

    /// Is the backend up, but with a request overtaken and no answer since
    /// while its latency was unknown?
    pub fn is_suspect(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.suspect && s.down_since.is_none()
    }

    /// Has this backend answered often enough for its latency to be known?
    pub fn knows_latency(&self) -> bool {
        self.state.lock().unwrap().latencies.len() >= 8
    }

    /// How long to wait for a request before also asking another backend: the
    /// 95th percentile of recent latencies (at least 10 ms), or 300 ms while there
    /// are too few samples to tell.
    pub fn hedge_delay(&self) -> Duration {
        let enough = self.knows_latency();
        match self.latency(0.95) {
            Some(p95) if enough => p95.max(Duration::from_millis(10)),
            _ => Duration::from_millis(300),
        }
    }

    /// The given percentile of recent successful request latencies.
    pub fn latency(&self, p: f64) -> Option<Duration> {
        let s = self.state.lock().unwrap();
        let mut v: Vec<Duration> = s.latencies.iter().copied().collect();
        v.sort();
        percentile(&v, p)
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let s = self.state.lock().unwrap();
        let mut v: Vec<Duration> = s.latencies.iter().copied().collect();
        v.sort();
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        HealthSnapshot {
            down: s.down_since.is_some(),
            down_since: s
                .down_since
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            p50_ms: ms(percentile(&v, 0.5)),
            p99_ms: ms(percentile(&v, 0.99)),
            errors: s.errors,
            last_error: s.last_error.clone(),
            slow: s.slow,
            puts: self.requests.put.load(Ordering::Relaxed),
            gets: self.requests.get.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_consecutive_failures_only() {
        let h = Health::default();
        h.record_failure("x");
        h.record_failure("x");
        h.record_ok(Duration::from_millis(5));
        h.record_failure("x");
        h.record_failure("x");
        assert!(!h.is_down(), "a success in between resets the count");
        assert!(h.record_failure("boom"));
        assert!(h.is_down());
        assert!(!h.record_failure("again"), "trips once");
        let s = h.snapshot();
        assert!(s.down && s.down_since.is_some());
        assert_eq!((s.errors, s.last_error.as_deref()), (6, Some("again")));
        h.mark_up();
        assert!(!h.is_down());
    }

    #[test]
    fn slow_answers_are_not_errors_but_frozen_backends_trip() {
        let h = Health::default();
        assert!(!h.record_slow());
        h.record_ok(Duration::from_millis(5));
        let s = h.snapshot();
        assert_eq!((s.slow, s.errors, s.last_error), (1, 0, None));
        assert!(!h.record_slow());
        assert!(!h.record_slow());
        assert!(
            h.record_slow(),
            "three late answers in a row trip the breaker"
        );
        let s = h.snapshot();
        assert!(s.down);
        assert_eq!((s.slow, s.errors), (4, 1));
        assert!(s.last_error.unwrap().contains("no answer in time"));
    }

    #[tokio::test]
    async fn answered_requests_are_counted_by_billing_class() {
        let h = Health::default();
        let mem: DynBackend = Arc::new(
            crate::store::open_backend("memory://", &Default::default(), &Default::default())
                .unwrap(),
        );
        let b = h.counting("mem", mem);
        for i in 0..3 {
            b.put(&format!("k{i}"), Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        b.get("k0").await.unwrap();
        assert!(
            b.get("absent").await.is_err(),
            "a 404 is answered and billed"
        );
        b.head("k1").await.unwrap();
        b.get_range("k2", 0..1).await.unwrap();
        b.delete("k2").await.unwrap();
        assert_eq!(b.list("").await.unwrap().len(), 2);
        b.put_unsynced_in("k3", Bytes::from_static(b"x"), StorageClass::S3StandardIa)
            .await
            .unwrap();
        b.thaw_state("k0").await.unwrap();
        b.restore("k0", 1, ThawTier::Standard).await.unwrap();
        let s = h.snapshot();
        assert_eq!((s.puts, s.gets), (3 + 1 + 1 + 1, 4 + 1));
    }

    #[test]
    fn latency_percentiles() {
        let h = Health::default();
        for ms in 1..=100 {
            h.record_ok(Duration::from_millis(ms));
        }
        assert_eq!(h.latency(0.5), Some(Duration::from_millis(51)));
        assert_eq!(h.latency(0.99), Some(Duration::from_millis(99)));
        assert_eq!(Health::default().latency(0.5), None);
    }
}
