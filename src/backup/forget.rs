//! `forget`: applies a retention policy to the volume's snapshots, deletes the
//! ones it does not keep and, with `prune`, deletes at once the shards nothing
//! references any more. The same operation serves the CLI, the control socket
//! and the mount daemon's schedule.

use super::retention::{self, KeepPolicy, SnapshotMeta};
use crate::format::snapshot_id_hex;
use crate::fs::snapshot::{Freed, SnapError, SnapResult};
use crate::fs::Fs;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ForgetRequest {
    pub policy: KeepPolicy,
    /// Only snapshots with at least one of these tags are considered (empty: all).
    #[serde(default)]
    pub only_tags: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// Delete the freed shards now and wait for it.
    #[serde(default)]
    pub prune: bool,
}

/// One snapshot's fate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fate {
    pub id: String,
    pub time_ns: i64,
    pub tags: Vec<String>,
    pub keep: bool,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ForgetReport {
    /// Every snapshot considered, newest first.
    pub snapshots: Vec<Fate>,
    pub removed: u64,
    pub kept: u64,
    /// What the removed snapshots alone held (with `dry_run`: would hold).
    pub freed: Freed,
    /// Chunks whose shards were deleted (with `prune`).
    pub pruned_chunks: u64,
    pub dry_run: bool,
}

/// Decides with `req.policy` and, unless `dry_run`, deletes the snapshots it
/// does not keep.
pub async fn forget(fs: &Fs, req: &ForgetRequest) -> SnapResult<ForgetReport> {
    if req.policy.is_empty() {
        return Err(SnapError(
            "forget needs at least one --keep-* rule: with none it would delete every snapshot (cloudraid snapshot delete ID removes one)".into(),
        ));
    }
    let all = fs.index().snapshots()?;
    let considered: Vec<_> = all
        .into_iter()
        .filter(|(_, r)| {
            req.only_tags.is_empty() || r.tags.iter().any(|t| req.only_tags.contains(t))
        })
        .collect();
    let metas: Vec<SnapshotMeta> = considered
        .iter()
        .map(|(id, r)| SnapshotMeta {
            id: snapshot_id_hex(*id),
            time: chrono::DateTime::from_timestamp_nanos(r.time),
            tags: r.tags.clone(),
            paths: r.paths.clone(),
        })
        .collect();
    let decisions = retention::apply(&req.policy, &metas, &chrono::Local);
    let mut report = ForgetReport {
        dry_run: req.dry_run,
        ..ForgetReport::default()
    };
    let mut doomed = Vec::new();
    for d in decisions {
        let (id, rec) = considered
            .iter()
            .find(|(id, _)| snapshot_id_hex(*id) == d.id)
            .expect("a decision per snapshot");
        if d.keep {
            report.kept += 1;
        } else {
            report.removed += 1;
            doomed.push(*id);
        }
        report.snapshots.push(Fate {
            id: d.id,
            time_ns: rec.time,
            tags: rec.tags.clone(),
            keep: d.keep,
            reasons: d.reasons,
        });
    }
    report.freed = fs.release_estimate(&doomed)?;
    if req.dry_run {
        return Ok(report);
    }
    if !doomed.is_empty() {
        fs.delete_snapshots(&doomed).await?;
    }
    // Prune even when no snapshot went: chunks files let go of are reclaimed too.
    if req.prune {
        report.pruned_chunks = fs.collect_garbage().await? as u64;
    }
    Ok(report)
}

/// The report as `forget` prints it: one line per snapshot (what happens to it,
/// id, local time, tags, and why it is kept), then the totals.
pub fn render(r: &ForgetReport) -> String {
    let mut out = String::new();
    let gone = if r.dry_run { "would remove" } else { "remove" };
    let width = gone.len();
    for s in &r.snapshots {
        let when = chrono::DateTime::from_timestamp_nanos(s.time_ns)
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S");
        let tags = if s.tags.is_empty() {
            String::new()
        } else {
            format!("  [{}]", s.tags.join(","))
        };
        let why = if s.keep {
            format!("  ({})", s.reasons.join(", "))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{:<width$}  {}  {when}{tags}{why}\n",
            if s.keep { "keep" } else { gone },
            s.id,
        ));
    }
    if r.snapshots.is_empty() {
        out.push_str("no snapshot to consider\n");
    }
    out.push_str(&format!(
        "{} kept, {} {}; {} {} ({} stored with parity) held by no other snapshot or file\n",
        r.kept,
        r.removed,
        if r.dry_run {
            "would be removed"
        } else {
            "removed"
        },
        if r.dry_run { "would free" } else { "freed" },
        crate::config::human(r.freed.bytes),
        crate::config::human(r.freed.stored_bytes),
    ));
    if r.dry_run {
        out.push_str("dry run: nothing was changed\n");
    } else if r.pruned_chunks > 0 {
        out.push_str(&format!(
            "pruned: {} chunk(s) deleted from the backends\n",
            r.pruned_chunks
        ));
    } else if r.removed > 0 && r.freed.chunks > 0 {
        out.push_str("their shards are deleted by the next garbage collection (the mount daemon's; --prune deletes them now)\n");
    }
    out
}
