//! `cloudraid status`: what the volume holds and where, computed from the local
//! index (no listing of backends) plus one small probe per backend.

use crate::config::human;
use crate::data::cache::CacheStats;
use crate::data::volume::Volume;
use crate::format::{keys, ChunkRecord, InodeRecord, Kind, MARKER_KEY};
use crate::meta::index::Index;
use crate::store::health::HealthSnapshot;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub url: String,
    pub reachable: bool,
    pub error: Option<String>,
    pub shards: u64,
    pub bytes: u64,
    /// Its failure domain when the config names one.
    #[serde(default)]
    pub domain: Option<String>,
    /// Circuit breaker and latencies as seen by the process that answered (the
    /// mount daemon when mounted).
    #[serde(default)]
    pub health: HealthSnapshot,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusReport {
    pub volume_name: String,
    pub volume_id: String,
    pub data_shards: usize,
    pub parity_shards: usize,
    pub mountpoint: Option<String>,
    pub pid: Option<u32>,
    pub backends: Vec<BackendStatus>,
    pub files: u64,
    pub directories: u64,
    pub logical_bytes: u64,
    pub chunks: u64,
    /// Plaintext bytes of the distinct chunks (after deduplication).
    pub unique_bytes: u64,
    /// Bytes of those chunks once sealed (compressed, encrypted), before parity.
    #[serde(default)]
    pub sealed_bytes: u64,
    /// Bytes of every shard on the backends (parity and headers included).
    /// Inline chunks have no shards and are not in it: see `inline_bytes`.
    pub stored_bytes: u64,
    /// Chunks kept in the index (at most `inline_max` bytes each; counted in
    /// `chunks` too), and their sealed bytes there. On the backends those bytes
    /// are in the metadata log (one copy per backend that answers), not in shards.
    #[serde(default)]
    pub inline_chunks: u64,
    #[serde(default)]
    pub inline_bytes: u64,
    pub cache: Option<CacheStats>,
    pub pending_files: usize,
    pub pending_bytes: u64,
    /// Chunks stored with fewer than k+m shards (written during an outage).
    #[serde(default)]
    pub degraded_chunks: u64,
    /// Index changes not yet in the metadata log on the backends.
    #[serde(default)]
    pub metadata_pending: u64,
    /// Whether new data can be stored now.
    #[serde(default)]
    pub writes: WriteStatus,
    /// The filesystem of the state dir (index and staging files).
    #[serde(default)]
    pub local_disk: Option<crate::meta::LocalDisk>,
    /// Snapshots of the volume, and the chunks only they hold (no live file
    /// uses them): their plaintext bytes and what they take on the backends.
    #[serde(default)]
    pub snapshots: u64,
    #[serde(default)]
    pub snapshot_only_chunks: u64,
    #[serde(default)]
    pub snapshot_only_bytes: u64,
    #[serde(default)]
    pub snapshot_only_stored_bytes: u64,
    /// The placement rules: name, layout and what their chunks survive.
    #[serde(default)]
    pub rules: Vec<RuleStatus>,
    /// What the backends and rules risk (look-alike backends without a
    /// domain, layouts a backend holds too much of).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One placement rule, as status shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleStatus {
    pub name: String,
    /// `ec:4+2` or `2 copies`.
    pub layout: String,
    /// The backends it may use, in its order of preference.
    pub backends: Vec<String>,
    /// What every chunk it places survives, e.g. "any 1 domain or any 2 backends".
    pub survives: String,
}

/// Can writes reach their quorum? `blocked` when fewer backends answer than the
/// write quorum of shards needs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WriteStatus {
    pub blocked: bool,
    /// Backends reachable and not marked down.
    pub answering: usize,
    pub backends: usize,
    /// Shards a chunk needs stored (write_quorum).
    pub quorum: usize,
    /// The last write that failed for want of backends, unless one succeeded since.
    pub last_failure: Option<crate::data::volume::WriteFailure>,
}

/// Probes a backend by reading its volume marker (bounded to 5 s).
async fn probe(vol: &Volume, i: usize) -> Result<(), String> {
    let b = &vol.slots[i].backend;
    match tokio::time::timeout(Duration::from_secs(5), b.head(MARKER_KEY)).await {
        Err(_) => Err("no answer within 5 s".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(None)) => Err("volume marker missing".into()),
        Ok(Ok(Some(_))) => Ok(()),
    }
}

pub async fn gather(vol: &Arc<Volume>, idx: &Index) -> Result<StatusReport, String> {
    let policies = vol.policies();
    let n = vol.slots.len();
    let mut shards = vec![0u64; n];
    let mut bytes = vec![0u64; n];
    let (mut chunks, mut unique, mut sealed, mut stored) = (0u64, 0u64, 0u64, 0u64);
    let (mut snap_chunks, mut snap_bytes, mut snap_stored) = (0u64, 0u64, 0u64);
    let (mut inline_chunks, mut inline_bytes) = (0u64, 0u64);
    idx.each::<ChunkRecord>(keys::CHUNK, |_, c| {
        if c.is_inline() {
            inline_chunks += 1;
            inline_bytes += c.sealed_len as u64;
        }
        if c.refs == 0 {
            snap_chunks += 1;
            snap_bytes += c.len as u64;
            snap_stored += c.shard_size as u64 * c.placement.len() as u64;
        }
        chunks += 1;
        unique += c.len as u64;
        sealed += c.sealed_len as u64;
        for s in &c.placement {
            let s = *s as usize % n;
            shards[s] += 1;
            bytes[s] += c.shard_size as u64;
            stored += c.shard_size as u64;
        }
    })
    .map_err(|e| e.to_string())?;
    let (mut files, mut dirs, mut logical) = (0u64, 0u64, 0u64);
    for (_, r) in idx
        .all::<InodeRecord>(keys::INODE)
        .map_err(|e| e.to_string())?
    {
        match r.kind {
            Kind::File if r.nlink > 0 => {
                files += 1;
                logical += r.size;
            }
            Kind::Dir => dirs += 1,
            _ => {}
        }
    }
    let probes = futures::future::join_all((0..n).map(|i| probe(vol, i))).await;
    // Answering for writes: reachable, not marked down, and not among those the
    // last write failed on (unless a write succeeded since: then it is cleared).
    let last_failure = vol.last_write_failure();
    let failed_writes = |name: &str| {
        last_failure
            .as_ref()
            .is_some_and(|f| f.failed.iter().any(|(b, _)| b == name))
    };
    let answering = probes
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            p.is_ok() && !vol.health[*i].is_down() && !failed_writes(&vol.slots[*i].name)
        })
        .count();
    let quorum = vol.quorum_for(vol.layout);
    let writes = WriteStatus {
        blocked: answering < quorum,
        answering,
        backends: n,
        quorum,
        last_failure,
    };
    let backends = vol
        .slots
        .iter()
        .zip(probes)
        .enumerate()
        .map(|(i, (s, p))| BackendStatus {
            name: s.name.clone(),
            url: s.backend.describe(),
            reachable: p.is_ok(),
            error: p.err(),
            shards: shards[i],
            bytes: bytes[i],
            domain: policies
                .rules
                .iter()
                .flat_map(|r| r.candidates.iter())
                .find(|c| c.slot as usize == i)
                .and_then(|c| policies.domains.get(c.domain as usize))
                .filter(|d| !d.starts_with("backend:"))
                .cloned(),
            health: vol.health[i].snapshot(),
        })
        .collect();
    Ok(StatusReport {
        volume_name: vol.name.clone(),
        volume_id: vol.id.to_string(),
        data_shards: vol.layout.k,
        parity_shards: vol.layout.m,
        mountpoint: None,
        pid: None,
        backends,
        files,
        directories: dirs,
        logical_bytes: logical,
        chunks,
        unique_bytes: unique,
        sealed_bytes: sealed,
        stored_bytes: stored,
        inline_chunks,
        inline_bytes,
        cache: None,
        pending_files: 0,
        pending_bytes: 0,
        degraded_chunks: idx
            .store()
            .scan(&[keys::DEGRADED], None, usize::MAX)
            .map_err(|e| e.to_string())?
            .len() as u64,
        metadata_pending: idx
            .store()
            .scan(&[keys::JOURNAL], None, usize::MAX)
            .map_err(|e| e.to_string())?
            .len() as u64,
        writes,
        local_disk: idx.store().local_disk(),
        snapshots: idx.snapshots().map_err(|e| e.to_string())?.len() as u64,
        snapshot_only_chunks: snap_chunks,
        snapshot_only_bytes: snap_bytes,
        snapshot_only_stored_bytes: snap_stored,
        rules: policies
            .rules
            .iter()
            .map(|r| RuleStatus {
                name: r.name.clone(),
                layout: r.describe_layout(),
                backends: r
                    .candidates
                    .iter()
                    .map(|c| vol.slots[c.slot as usize].name.clone())
                    .collect(),
                survives: crate::policy::check::survival(r, &policies),
            })
            .collect(),
        warnings: policies.warnings.clone(),
    })
}

pub fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let mounted = match (&r.mountpoint, r.pid) {
        (Some(m), Some(p)) if m.is_empty() => {
            format!("not mounted, open in `cloudraid serve` (pid {p})")
        }
        (Some(m), Some(p)) => format!("mounted at {m} (pid {p})"),
        (Some(m), None) => format!("mounted at {m}"),
        _ => "not mounted".into(),
    };
    out += &format!(
        "volume {} ({})  {}+{} shards  {}\n\n",
        r.volume_name, r.volume_id, r.data_shards, r.parity_shards, mounted
    );
    let w = r
        .backends
        .iter()
        .map(|b| b.name.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}ms")).unwrap_or_else(|| "-".into());
    out += &format!(
        "{:<w$}  {:<11}  {:>8}  {:>10}  {:>8}  {:>8}  {:>6}  {:>6}  {}\n",
        "BACKEND", "STATE", "SHARDS", "BYTES", "P50", "P99", "SLOW", "ERRORS", "URL"
    );
    for b in &r.backends {
        let state = if b.health.down {
            "DOWN"
        } else if b.reachable {
            "reachable"
        } else {
            "UNREACHABLE"
        };
        out += &format!(
            "{:<w$}  {:<11}  {:>8}  {:>10}  {:>8}  {:>8}  {:>6}  {:>6}  {}\n",
            b.name,
            state,
            b.shards,
            human(b.bytes),
            ms(b.health.p50_ms),
            ms(b.health.p99_ms),
            b.health.slow,
            b.health.errors,
            b.url
        );
        if let Some(since) = b.health.down_since {
            out += &format!(
                "{:<w$}    down for {}s: skipped by reads and writes until it answers again\n",
                "",
                now.saturating_sub(since)
            );
        }
        let last = b.health.last_error.as_ref().filter(|_| b.health.down);
        if let Some(e) = b.error.as_ref().or(last) {
            out += &format!("{:<w$}    {e}\n", "");
        }
    }
    let down = r
        .backends
        .iter()
        .filter(|b| !b.reachable || b.health.down)
        .count();
    let overhead = if r.logical_bytes > 0 {
        r.stored_bytes as f64 / r.logical_bytes as f64
    } else {
        0.0
    };
    out += "\n";
    out += &format!("files            {}\n", r.files);
    out += &format!("directories      {}\n", r.directories);
    out += &format!(
        "logical bytes    {} ({})\n",
        human(r.logical_bytes),
        r.logical_bytes
    );
    let pct = |part: u64, whole: u64| {
        if whole == 0 {
            100.0
        } else {
            part as f64 * 100.0 / whole as f64
        }
    };
    out += &format!(
        "unique chunks    {} ({}, {:.1}% of logical after deduplication)\n",
        r.chunks,
        human(r.unique_bytes),
        pct(r.unique_bytes, r.logical_bytes)
    );
    out += &format!(
        "sealed bytes     {} ({:.1}% of unique after compression)\n",
        human(r.sealed_bytes),
        pct(r.sealed_bytes, r.unique_bytes)
    );
    out += &format!(
        "stored bytes     {} ({})\n",
        human(r.stored_bytes),
        r.stored_bytes
    );
    if r.inline_chunks > 0 {
        out += &format!(
            "inline chunks    {} ({} sealed, kept in the index and its metadata log, not in shards)\n",
            r.inline_chunks,
            human(r.inline_bytes)
        );
    }
    out += &format!("overhead ratio   {overhead:.2}x (stored / logical)\n");
    if r.snapshots > 0 || r.snapshot_only_chunks > 0 {
        out += &format!(
            "snapshots        {} (held only by snapshots: {} in {} chunks, {} stored)\n",
            r.snapshots,
            human(r.snapshot_only_bytes),
            r.snapshot_only_chunks,
            human(r.snapshot_only_stored_bytes)
        );
    }
    match &r.cache {
        Some(c) => {
            out += &format!(
                "cache            {} of {} ({} chunks)\n",
                human(c.bytes),
                human(c.capacity),
                c.chunks
            )
        }
        None => out += "cache            empty (not mounted)\n",
    }
    if r.degraded_chunks > 0 {
        out += &format!(
            "degraded chunks  {} (written while backends were down; completed in the background or by `cloudraid repair`)\n",
            r.degraded_chunks
        );
    }
    if r.pending_files > 0 {
        out += &format!(
            "uncommitted      {} open file(s) with changes ({}); stored at their close, or by `cloudraid sync`\n",
            r.pending_files,
            crate::config::human(r.pending_bytes)
        );
    }
    if r.metadata_pending > 0 {
        out += &format!(
            "metadata log     {} change(s) not yet on the backends (pushed within seconds, or by `cloudraid sync`)\n",
            r.metadata_pending
        );
    }
    let w = &r.writes;
    if w.backends > 0 {
        out += &if w.blocked {
            format!(
                "writes           BLOCKED: writes blocked: {} of {} backends answer, {} needed (write_quorum); close and fsync fail with EIO until enough return\n",
                w.answering, w.backends, w.quorum
            )
        } else {
            format!(
                "writes           accepted: {} of {} backends answer, {} needed (write_quorum)\n",
                w.answering, w.backends, w.quorum
            )
        };
    }
    if let Some(f) = &w.last_failure {
        let failed: Vec<String> = f.failed.iter().map(|(b, e)| format!("{b}: {e}")).collect();
        out += &format!(
            "last failed write {}s ago: {} of {} shards stored, {} needed ({})\n",
            now.saturating_sub(f.at),
            f.stored,
            f.total,
            f.needed,
            failed.join("; ")
        );
    }
    if let Some(d) = &r.local_disk {
        out += &match &d.problem {
            Some(p) => format!(
                "local disk       FULL: {p}; {} free of {} at {}; changes fail with ENOSPC until space is freed there\n",
                human(d.free_bytes),
                human(d.total_bytes),
                d.path
            ),
            None => format!(
                "local disk       {} free of {} at {}\n",
                human(d.free_bytes),
                human(d.total_bytes),
                d.path
            ),
        };
    }
    for (i, rule) in r.rules.iter().enumerate() {
        out += &format!(
            "{}rule {}: {} over {}; survives {}\n",
            if i == 0 {
                "placement        "
            } else {
                "                 "
            },
            rule.name,
            rule.layout,
            rule.backends.join(", "),
            rule.survives
        );
    }
    for w in &r.warnings {
        out += &format!("warning          {w}\n");
    }
    let tolerance = r.parity_shards;
    out += &match down {
        0 => format!("health           all {} backends reachable; tolerates {tolerance} down\n", r.backends.len()),
        d if d <= tolerance => format!("health           DEGRADED: {d} backend(s) unreachable; files stay readable\n"),
        d => format!("health           FAILING: {d} backend(s) unreachable, more than the {tolerance} the volume tolerates; some reads will fail\n"),
    };
    out
}
