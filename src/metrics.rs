//! What is measured: the Prometheus metrics of a daemon (`GET /metrics`).
//!
//! Two kinds, both in one registry:
//! - counters and histograms kept by the layers as they work: every request to a
//!   backend (`store::health`'s counting wrapper), chunk cache hits and misses,
//!   FUSE operations, backup job runs, scrubs, repairs and events;
//! - the volume's figures (files, bytes, shards per backend, degraded chunks...),
//!   set from the same tally as `cloudraid status` when `/metrics` is scraped
//!   (`front::api::metrics`), at most once per `TALLY_EVERY`.
//!
//! Names and labels follow Prometheus conventions: `cloudraid_` prefix, base
//! units (seconds, bytes), `_total` on counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// How old the volume's figures may be when `/metrics` is scraped.
pub const TALLY_EVERY: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendOp {
    pub backend: String,
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobResult {
    pub job: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub kind: String,
    pub severity: &'static str,
}

type FGauge = Gauge<f64, AtomicU64>;
type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_seconds() -> Histogram {
    // 1 ms .. 32 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn fuse_seconds() -> Histogram {
    // 10 µs .. 2.6 s.
    Histogram::new(exponential_buckets(0.00001, 4.0, 10))
}

fn job_seconds() -> Histogram {
    // 1 s .. 16 h.
    Histogram::new(exponential_buckets(1.0, 3.0, 11))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub backend_requests: Family<BackendOp, Counter>,
    pub backend_errors: Family<BackendOp, Counter>,
    pub backend_seconds: HistFamily<BackendOp>,
    pub backend_sent: Family<BackendLabel, Counter>,
    pub backend_received: Family<BackendLabel, Counter>,
    pub backend_up: Family<BackendLabel, Gauge>,
    pub backend_shards: Family<BackendLabel, Gauge>,
    pub backend_stored: Family<BackendLabel, Gauge>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_bytes: Gauge,
    pub cache_capacity: Gauge,
    pub fuse_seconds: HistFamily<OpLabel>,
    pub job_runs: Family<JobResult, Counter>,
    pub job_seconds: HistFamily<JobLabel>,
    pub job_last_run: Family<JobLabel, Gauge>,
    pub job_last_success: Family<JobLabel, Gauge>,
    pub scrubs: Family<ResultLabel, Counter>,
    pub scrub_bad: Counter,
    pub scrub_last: Gauge,
    pub repairs: Counter,
    pub repair_rewritten: Counter,
    pub repair_failed: Counter,
    pub events: Family<EventLabel, Counter>,
    pub alerts_firing: Gauge,
    pub alerts_sent: Counter,
    pub alerts_failed: Counter,
    pub alerts_suppressed: Counter,
    pub volume: VolumeGauges,
    pub start_time: Gauge,
}

/// The volume's figures, from the status tally.
#[derive(Default)]
pub struct VolumeGauges {
    pub files: Gauge,
    pub directories: Gauge,
    pub chunks: Gauge,
    pub logical: Gauge,
    pub unique: Gauge,
    pub sealed: Gauge,
    pub stored: Gauge,
    pub dedup_ratio: FGauge,
    pub compression_ratio: FGauge,
    pub overhead_ratio: FGauge,
    pub degraded: Gauge,
    pub pending_files: Gauge,
    pub pending_bytes: Gauge,
    pub metadata_pending: Gauge,
    pub snapshots: Gauge,
    pub writes_blocked: Gauge,
    pub state_free: Gauge,
    pub tally_time: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix("cloudraid");
        let m = Metrics {
            registry: Registry::default(),
            backend_requests: Family::default(),
            backend_errors: Family::default(),
            backend_seconds: Family::new_with_constructor(request_seconds),
            backend_sent: Family::default(),
            backend_received: Family::default(),
            backend_up: Family::default(),
            backend_shards: Family::default(),
            backend_stored: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_bytes: Gauge::default(),
            cache_capacity: Gauge::default(),
            fuse_seconds: Family::new_with_constructor(fuse_seconds),
            job_runs: Family::default(),
            job_seconds: Family::new_with_constructor(job_seconds),
            job_last_run: Family::default(),
            job_last_success: Family::default(),
            scrubs: Family::default(),
            scrub_bad: Counter::default(),
            scrub_last: Gauge::default(),
            repairs: Counter::default(),
            repair_rewritten: Counter::default(),
            repair_failed: Counter::default(),
            events: Family::default(),
            alerts_firing: Gauge::default(),
            alerts_sent: Counter::default(),
            alerts_failed: Counter::default(),
            alerts_suppressed: Counter::default(),
            volume: VolumeGauges::default(),
            start_time: Gauge::default(),
        };
        r.register(
            "backend_requests",
            "Requests sent to a backend, by operation",
            m.backend_requests.clone(),
        );
        r.register(
            "backend_errors",
            "Requests a backend failed (unreachable, timeout, server error; not a missing object)",
            m.backend_errors.clone(),
        );
        r.register(
            "backend_request_duration_seconds",
            "How long backend requests took, answered or not",
            m.backend_seconds.clone(),
        );
        r.register(
            "backend_sent_bytes",
            "Bytes uploaded to a backend",
            m.backend_sent.clone(),
        );
        r.register(
            "backend_received_bytes",
            "Bytes downloaded from a backend",
            m.backend_received.clone(),
        );
        r.register(
            "backend_up",
            "1 while a backend's circuit is closed (it answers), 0 while it is marked down",
            m.backend_up.clone(),
        );
        r.register(
            "backend_shards",
            "Shards the index places on a backend",
            m.backend_shards.clone(),
        );
        r.register(
            "backend_stored_bytes",
            "Bytes of the shards the index places on a backend",
            m.backend_stored.clone(),
        );
        r.register(
            "cache_hits",
            "Chunk reads answered by the chunk cache",
            m.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Chunk reads the chunk cache could not answer",
            m.cache_misses.clone(),
        );
        r.register(
            "cache_bytes",
            "Bytes held by the chunk cache",
            m.cache_bytes.clone(),
        );
        r.register(
            "cache_capacity_bytes",
            "The chunk cache's bound",
            m.cache_capacity.clone(),
        );
        r.register(
            "fuse_operation_duration_seconds",
            "FUSE operations by type and how long they took",
            m.fuse_seconds.clone(),
        );
        r.register(
            "backup_job_runs",
            "Backup job runs by result (success, partial, failed, skipped)",
            m.job_runs.clone(),
        );
        r.register(
            "backup_job_duration_seconds",
            "How long backup job runs took",
            m.job_seconds.clone(),
        );
        r.register(
            "backup_job_last_run_timestamp_seconds",
            "When a backup job's last recorded run ended (Unix time)",
            m.job_last_run.clone(),
        );
        r.register(
            "backup_job_last_success_timestamp_seconds",
            "When a backup job's last successful run ended (Unix time)",
            m.job_last_success.clone(),
        );
        r.register(
            "scrub_runs",
            "Scrubs by result (clean, damage)",
            m.scrubs.clone(),
        );
        r.register(
            "scrub_bad_shards",
            "Bad shards or chunks scrubs found",
            m.scrub_bad.clone(),
        );
        r.register(
            "scrub_last_run_timestamp_seconds",
            "When the last scrub ended (Unix time)",
            m.scrub_last.clone(),
        );
        r.register("repair_runs", "Repairs run", m.repairs.clone());
        r.register(
            "repair_rewritten_shards",
            "Shards repairs rewrote",
            m.repair_rewritten.clone(),
        );
        r.register(
            "repair_failed_chunks",
            "Chunks repairs could not rebuild",
            m.repair_failed.clone(),
        );
        r.register(
            "events",
            "Events recorded in the volume's history, by kind and severity",
            m.events.clone(),
        );
        r.register(
            "alerts_firing",
            "Alert incidents started and not yet cleared",
            m.alerts_firing.clone(),
        );
        r.register(
            "alert_messages_sent",
            "Alert messages delivered (one per target)",
            m.alerts_sent.clone(),
        );
        r.register(
            "alert_deliveries_failed",
            "Alert messages a target did not take after every try",
            m.alerts_failed.clone(),
        );
        r.register(
            "alert_messages_suppressed",
            "Alert messages not sent for max_per_hour",
            m.alerts_suppressed.clone(),
        );
        r.register(
            "start_time_seconds",
            "When the daemon started (Unix time)",
            m.start_time.clone(),
        );
        let v = &m.volume;
        let vol = r.sub_registry_with_prefix("volume");
        vol.register("files", "Files in the volume", v.files.clone());
        vol.register(
            "directories",
            "Directories in the volume",
            v.directories.clone(),
        );
        vol.register("chunks", "Distinct chunks", v.chunks.clone());
        vol.register(
            "logical_bytes",
            "Bytes of the files as they read",
            v.logical.clone(),
        );
        vol.register(
            "unique_bytes",
            "Plaintext bytes of the distinct chunks (after deduplication)",
            v.unique.clone(),
        );
        vol.register(
            "sealed_bytes",
            "Bytes of the distinct chunks compressed and encrypted, before parity",
            v.sealed.clone(),
        );
        vol.register(
            "stored_bytes",
            "Bytes of every shard on the backends, parity included",
            v.stored.clone(),
        );
        vol.register(
            "dedup_ratio",
            "Logical bytes over unique bytes",
            v.dedup_ratio.clone(),
        );
        vol.register(
            "compression_ratio",
            "Unique bytes over sealed bytes",
            v.compression_ratio.clone(),
        );
        vol.register(
            "overhead_ratio",
            "Stored bytes over sealed bytes (parity and shard headers)",
            v.overhead_ratio.clone(),
        );
        vol.register(
            "degraded_chunks",
            "Chunks stored with fewer than k+m shards",
            v.degraded.clone(),
        );
        vol.register(
            "pending_upload_files",
            "Files written and not yet uploaded",
            v.pending_files.clone(),
        );
        vol.register(
            "pending_upload_bytes",
            "Bytes written and not yet uploaded",
            v.pending_bytes.clone(),
        );
        vol.register(
            "metadata_pending_changes",
            "Index changes not yet in the metadata log on the backends",
            v.metadata_pending.clone(),
        );
        vol.register("snapshots", "Snapshots kept", v.snapshots.clone());
        vol.register(
            "writes_blocked",
            "1 while too few backends answer for a write to reach its quorum",
            v.writes_blocked.clone(),
        );
        vol.register(
            "state_free_bytes",
            "Free bytes on the filesystem of the state dir (index and staging)",
            v.state_free.clone(),
        );
        vol.register(
            "tally_timestamp_seconds",
            "When the volume's figures were last counted (Unix time)",
            v.tally_time.clone(),
        );
        m.start_time.set(unix_now() as i64);
        Metrics { registry: r, ..m }
    }

    /// The registry in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut s, &self.registry)
            .expect("writing to a String does not fail");
        s
    }
}

/// The Content-Type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Times one FUSE operation: recorded when dropped (the reply has been sent).
pub struct FuseTimer {
    op: &'static str,
    start: Instant,
}

impl FuseTimer {
    pub fn start(op: &'static str) -> FuseTimer {
        FuseTimer {
            op,
            start: Instant::now(),
        }
    }
}

impl Drop for FuseTimer {
    fn drop(&mut self) {
        METRICS
            .fuse_seconds
            .get_or_create(&OpLabel { op: self.op })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// A ratio, 0 when the divisor is.
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::new();
        m.backend_requests
            .get_or_create(&BackendOp {
                backend: "b1".into(),
                op: "put",
            })
            .inc();
        m.backend_seconds
            .get_or_create(&BackendOp {
                backend: "b1".into(),
                op: "put",
            })
            .observe(0.003);
        m.volume.dedup_ratio.set(1.5);
        let text = m.encode();
        assert!(
            text.contains("cloudraid_backend_requests_total{backend=\"b1\",op=\"put\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "cloudraid_backend_request_duration_seconds_bucket{backend=\"b1\",op=\"put\",le=\"0.004\"} 1\n"
        ), "{text}");
        assert!(
            text.contains("cloudraid_volume_dedup_ratio 1.5\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE cloudraid_cache_hits_total counter\n"));
        assert!(text.contains("# TYPE cloudraid_volume_files gauge\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("cloudraid_"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
                "{name}"
            );
        }
    }

    #[test]
    fn the_grafana_dashboard_uses_only_metrics_that_exist() {
        let m = Metrics::new();
        // A family shows in the page once it has a child.
        let bo = BackendOp {
            backend: "b".into(),
            op: "get",
        };
        let b = BackendLabel {
            backend: "b".into(),
        };
        let j = JobLabel { job: "j".into() };
        let _ = m.backend_requests.get_or_create(&bo);
        let _ = m.backend_errors.get_or_create(&bo);
        let _ = m.backend_seconds.get_or_create(&bo);
        for f in [&m.backend_sent, &m.backend_received] {
            let _ = f.get_or_create(&b);
        }
        for f in [&m.backend_up, &m.backend_shards, &m.backend_stored] {
            let _ = f.get_or_create(&b);
        }
        let _ = m.fuse_seconds.get_or_create(&OpLabel { op: "read" });
        let _ = m.job_runs.get_or_create(&JobResult {
            job: "j".into(),
            result: "success",
        });
        let _ = m.job_seconds.get_or_create(&j);
        let _ = m.job_last_run.get_or_create(&j);
        let _ = m.job_last_success.get_or_create(&j);
        let _ = m.scrubs.get_or_create(&ResultLabel { result: "clean" });
        let _ = m.events.get_or_create(&EventLabel {
            kind: "k".into(),
            severity: "info",
        });
        let text = m.encode();
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../contrib/grafana-dashboard.json")).unwrap();
        let mut checked = 0;
        for p in dashboard["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                let mut rest = expr;
                while let Some(i) = rest.find("cloudraid_") {
                    let name: String = rest[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    rest = &rest[i + name.len()..];
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .unwrap_or(&name);
                    assert!(
                        text.contains(&format!("# TYPE {base} ")),
                        "{name} (in {expr:?}) is not a metric"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 20, "{checked}");
    }
}
