//! The volume's event history: an append-only list of what happened (a backend
//! went down or came back, a write was degraded, scrub found damage, repair
//! fixed it, a backup job ran, a snapshot was made or pruned, the write lease
//! was lost). Each event is an `N` record of the index, so the metadata log
//! carries it to the backends and `recover` brings the history back. The newest
//! [`KEEP`] events are kept.

use crate::format::{decode_record, encode_record, keys, EventRecord, Nanos, Severity};
use crate::meta::index::Index;
use crate::meta::Batch;
use std::sync::atomic::{AtomicU32, Ordering};

/// Events kept; older ones are deleted as new ones come.
pub const KEEP: usize = 10_000;
/// The history is trimmed once every this many events recorded here.
const TRIM_EVERY: u32 = 256;

static SEQ: AtomicU32 = AtomicU32::new(0);

fn now() -> Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as Nanos)
        .unwrap_or(0)
}

/// Records an event (and logs it). A failure to record is logged, never an
/// error of what happened.
pub fn record(idx: &Index, kind: &str, severity: Severity, subject: &str, message: &str) {
    put(idx, kind, severity, subject, message, true)
}

/// Records an event in this machine's index only, not in the metadata log: for
/// a mount that lost the write lease (another writer owns the log now).
pub fn record_local(idx: &Index, kind: &str, severity: Severity, subject: &str, message: &str) {
    put(idx, kind, severity, subject, message, false)
}

fn put(idx: &Index, kind: &str, severity: Severity, subject: &str, message: &str, logged: bool) {
    match severity {
        Severity::Info => tracing::info!("event {kind}: {message}"),
        Severity::Warning => tracing::warn!("event {kind}: {message}"),
        Severity::Error => tracing::error!("event {kind}: {message}"),
    }
    crate::metrics::METRICS
        .events
        .get_or_create(&crate::metrics::EventLabel {
            kind: kind.to_string(),
            severity: severity.name(),
        })
        .inc();
    let ev = EventRecord {
        at: now(),
        kind: kind.to_string(),
        severity,
        subject: subject.to_string(),
        message: message.to_string(),
    };
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut b = Batch::default();
    b.put(keys::event(ev.at, seq), encode_record(&ev));
    let applied = if logged {
        idx.apply(b)
    } else {
        idx.apply_unjournaled(b)
    };
    if let Err(e) = applied {
        tracing::warn!("the event could not be recorded in the index: {e}");
        return;
    }
    if seq % TRIM_EVERY == TRIM_EVERY - 1 {
        if let Err(e) = trim(idx, KEEP) {
            tracing::warn!("trimming the event history: {e}");
        }
    }
}

/// Deletes all but the newest `keep` events.
pub fn trim(idx: &Index, keep: usize) -> Result<usize, String> {
    let rows = idx
        .store()
        .scan(&[keys::EVENT], None, usize::MAX)
        .map_err(|e| e.to_string())?;
    if rows.len() <= keep {
        return Ok(0);
    }
    let extra = rows.len() - keep;
    let mut b = Batch::default();
    for (k, _) in rows.into_iter().take(extra) {
        b.delete(k);
    }
    idx.apply(b).map_err(|e| e.to_string())?;
    Ok(extra)
}

/// A `--since` or `?since=`: a duration back from now ("1h", "7days"), or a
/// local time ("2026-12-01 08:00:00", "2026-12-01"), or RFC 3339 with an offset.
pub fn parse_since(s: &str) -> Result<Nanos, String> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now() - d.as_nanos().min(i64::MAX as u128) as Nanos);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t
            .timestamp_nanos_opt()
            .ok_or_else(|| format!("--since {s}: outside 1678 to 2262"));
    }
    let local = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
        });
    match local {
        Ok(t) => t
            .and_local_timezone(chrono::Local)
            .earliest()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(|| format!("--since {s}: not a time here (or outside 1678 to 2262)")),
        Err(_) => Err(format!(
            "--since {s:?}: write a duration back from now (\"1h\", \"7days\") or a time (\"2026-12-01 08:00:00\")"
        )),
    }
}

/// The key of the newest event (the history is kept short: a scan is enough).
pub fn newest_key(idx: &Index) -> Option<Vec<u8>> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = idx
            .store()
            .scan(&[keys::EVENT], after.as_deref(), 1024)
            .ok()?;
        match rows.last() {
            Some((k, _)) => after = Some(k.clone()),
            None => return after,
        }
    }
}

/// The events at or after `since` (all without it), oldest first.
pub fn list(idx: &Index, since: Option<Nanos>) -> Result<Vec<EventRecord>, String> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = since.map(|t| {
        // Just before the first key of time `t`.
        let mut k = keys::event(t, 0);
        k.truncate(9);
        k
    });
    loop {
        let rows = idx
            .store()
            .scan(&[keys::EVENT], after.as_deref(), 1024)
            .map_err(|e| format!("cannot read the event history: {e}"))?;
        let Some((last, _)) = rows.last() else {
            break;
        };
        after = Some(last.clone());
        for (_, v) in &rows {
            out.push(decode_record::<EventRecord>(v).map_err(|e| format!("event history: {e}"))?);
        }
    }
    Ok(out)
}

/// Watches the volume for what no single operation reports: a backend going
/// down or coming back, writes stored with missing shards (degraded) and
/// completed again, and writes refused for want of backends. Records one event
/// per change of state, checked every `every`.
pub fn spawn_watch(
    vol: std::sync::Arc<crate::data::volume::Volume>,
    idx: Index,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let n = vol.slots.len();
        let mut down: Vec<bool> = (0..n).map(|i| vol.health[i].is_down()).collect();
        let mut degraded = has_degraded(&idx);
        let mut last_failure = vol.last_write_failure().map(|f| f.at);
        loop {
            tokio::time::sleep(every).await;
            for (i, was) in down.iter_mut().enumerate() {
                let now = vol.health[i].is_down();
                if now == *was {
                    continue;
                }
                *was = now;
                let name = &vol.slots[i].name;
                if now {
                    let why = vol.health[i]
                        .snapshot()
                        .last_error
                        .unwrap_or_else(|| "it stopped answering".into());
                    record(
                        &idx,
                        "backend_down",
                        Severity::Error,
                        name,
                        &format!("backend {name} is down: {why}"),
                    );
                } else {
                    record(
                        &idx,
                        "backend_up",
                        Severity::Info,
                        name,
                        &format!("backend {name} answers again"),
                    );
                }
            }
            let d = has_degraded(&idx);
            if d != degraded {
                degraded = d;
                if d {
                    record(
                        &idx,
                        "degraded",
                        Severity::Warning,
                        "",
                        "chunks were written with fewer shards than their layout has (a backend did not answer); they are completed when it answers again, or by `cloudraid repair`",
                    );
                } else {
                    record(
                        &idx,
                        "degraded_cleared",
                        Severity::Info,
                        "",
                        "every chunk has all its shards again",
                    );
                }
            }
            let f = vol.last_write_failure();
            let at = f.as_ref().map(|f| f.at);
            if at != last_failure {
                last_failure = at;
                if let Some(f) = f {
                    let who: Vec<String> =
                        f.failed.iter().map(|(b, e)| format!("{b}: {e}")).collect();
                    record(
                        &idx,
                        "write_failed",
                        Severity::Error,
                        "",
                        &format!(
                            "a write was refused: {} of {} shards stored, {} needed ({})",
                            f.stored,
                            f.total,
                            f.needed,
                            who.join("; ")
                        ),
                    );
                }
            }
        }
    })
}

fn has_degraded(idx: &Index) -> bool {
    idx.store()
        .scan(&[keys::DEGRADED], None, 1)
        .is_ok_and(|r| !r.is_empty())
}
