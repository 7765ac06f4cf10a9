//! Scrub: read back every shard of every chunk (or a sample) and check it on its
//! own — header, volume, chunk id, index, geometry and payload checksum — so rot,
//! tampering and lost objects are found before they are needed. Needs no key and
//! no other shard. Inline chunks (kept sealed in the index, no shards) are
//! checked by opening them, which needs the key.

use crate::config::human;
use crate::data::erasure::{verify_shard, Layout};
use crate::data::volume::{Volume, VolumeError};
use crate::format::{
    keys, ChunkId, ChunkRecord, ChunkRef, ContentRecord, DirentRecord, Kind, VolumeMarker,
    MARKER_KEY,
};
use crate::meta::index::Index;
use crate::store::StoreError;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Counts for one backend.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackendScrub {
    pub name: String,
    pub ok: u64,
    pub missing: u64,
    pub corrupt: u64,
    pub unreachable: u64,
    pub bytes: u64,
}

/// One shard that is not as it should be.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BadShard {
    pub chunk: String,
    pub index: usize,
    pub backend: String,
    pub problem: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScrubReport {
    pub chunks_checked: u64,
    pub chunks_total: u64,
    pub backends: Vec<BackendScrub>,
    pub bad: Vec<BadShard>,
    /// Chunks whose shards disagree where the altered one could not be named
    /// (one parity shard, and no key: `cloudraid repair` names and rewrites it).
    #[serde(default)]
    pub inconsistent: Vec<String>,
    /// Inline chunks (kept in the index) among those checked, opened and found good.
    #[serde(default)]
    pub inline_ok: u64,
    /// Inline chunks not opened for want of the volume's key.
    #[serde(default)]
    pub inline_unchecked: u64,
    /// Inline chunks that do not open: damaged in the index.
    #[serde(default)]
    pub damaged_inline: Vec<DamagedInline>,
}

/// An inline chunk whose sealed bytes in the index do not open.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DamagedInline {
    pub chunk: String,
    pub problem: String,
    /// Paths of the live files that hold it (each name of a hard-linked file;
    /// `#INO` for a file unlinked while open).
    pub files: Vec<String>,
    /// File-content positions of snapshots that hold it (their copies are the
    /// same chunk: damaged too).
    pub snapshot_refs: u64,
}

/// What to do about a damaged inline chunk (said once per report).
pub const INLINE_DAMAGE_HELP: &str = "an inline chunk exists only in the index and its metadata log, so `cloudraid repair` cannot rebuild it; if only this machine's index is damaged, `cloudraid recover` into a new state dir brings back the copy on the backends (scrub there to check); otherwise write those files again from another copy";

impl ScrubReport {
    pub fn clean(&self) -> bool {
        self.bad.is_empty() && self.inconsistent.is_empty() && self.damaged_inline.is_empty()
    }

    /// The one-line error of a scrub that is not clean.
    pub fn error_line(&self, k: usize) -> String {
        let mut parts = Vec::new();
        if !self.bad.is_empty() || !self.inconsistent.is_empty() {
            parts.push(format!(
                "scrub found {} missing, damaged or unreachable shard(s); files stay readable while each chunk keeps {k} good shards; `cloudraid repair` rebuilds them",
                self.bad.len()
            ));
        }
        if !self.damaged_inline.is_empty() {
            let files: usize = self.damaged_inline.iter().map(|d| d.files.len()).sum();
            parts.push(format!(
                "scrub found {} damaged inline chunk(s), held by {files} file(s) listed above: reading them fails; {INLINE_DAMAGE_HELP}",
                self.damaged_inline.len()
            ));
        }
        parts.join("; ")
    }
}

enum Verdict {
    /// Its size and payload.
    Ok(u64, bytes::Bytes),
    Missing,
    Corrupt(String),
    Unreachable(String),
}

/// Is this chunk in a `percent` sample? Chosen by id, so repeated runs with the
/// same percentage check the same chunks and different ids spread evenly.
fn sampled(id: &ChunkId, percent: f64) -> bool {
    let v = u16::from_be_bytes([id.0[2], id.0[3]]) as f64 / 65536.0 * 100.0;
    v < percent
}

async fn check(vol: &Volume, id: ChunkId, rec: &ChunkRecord, i: usize) -> Verdict {
    let slot = &vol.slots[rec.placement[i] as usize % vol.slots.len()];
    let layout = Layout {
        k: rec.k as usize,
        m: rec.m as usize,
    };
    match slot.backend.get(&rec.shard_key(&id, i)).await {
        Err(StoreError::NotFound(_)) => Verdict::Missing,
        Err(e) => Verdict::Unreachable(e.to_string()),
        Ok(obj) => match verify_shard(&obj, vol.id, &id, i, layout, rec.sealed_len as usize) {
            Ok(payload) => Verdict::Ok(obj.len() as u64, payload),
            Err(e) => Verdict::Corrupt(e.to_string()),
        },
    }
}

/// Checks the shards of `percent` of the chunks (100 for all), a few chunks at a
/// time. `progress` is called with (chunks done, chunks to check).
pub async fn scrub(
    vol: &Arc<Volume>,
    idx: &Index,
    percent: f64,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ScrubReport, String> {
    // A backend marked down that answers again is checked like the others.
    vol.probe_backends().await;
    // Sharded chunks to read back; inline ones are opened as the index is read
    // (a page at a time: their bytes are not all held at once), off the async
    // workers.
    let (sealer, index) = (vol.sealer.clone(), idx.clone());
    let (total, chosen, inline_ok, inline_unchecked, damaged) =
        tokio::task::spawn_blocking(move || {
            let mut total = 0u64;
            let mut chosen: Vec<(ChunkId, ChunkRecord)> = Vec::new();
            let (mut inline_ok, mut inline_unchecked) = (0u64, 0u64);
            let mut damaged: Vec<(ChunkId, String)> = Vec::new();
            let unlocked = sealer.is_unlocked();
            index.each::<ChunkRecord>(keys::CHUNK, |k, rec| {
                total += 1;
                let id = ChunkId(k[..32].try_into().expect("32-byte chunk id"));
                if !sampled(&id, percent) {
                    return;
                }
                match &rec.inline {
                    None => chosen.push((id, rec)),
                    Some(_) if !unlocked => inline_unchecked += 1,
                    Some(sealed) => match sealer.open(&id, sealed, rec.len as usize) {
                        Ok(_) => inline_ok += 1,
                        Err(e) => damaged.push((id, e.to_string())),
                    },
                }
            })?;
            Ok::<_, crate::meta::index::IndexError>((
                total,
                chosen,
                inline_ok,
                inline_unchecked,
                damaged,
            ))
        })
        .await
        .expect("scrub task panicked")
        .map_err(|e| e.to_string())?;
    let n = chosen.len() as u64;
    let damaged_inline = if damaged.is_empty() {
        Vec::new()
    } else {
        let index = idx.clone();
        tokio::task::spawn_blocking(move || holders(&index, damaged))
            .await
            .expect("scrub task panicked")
            .map_err(|e| e.to_string())?
    };
    let mut report = ScrubReport {
        chunks_checked: n + inline_ok + inline_unchecked + damaged_inline.len() as u64,
        chunks_total: total,
        backends: vol
            .slots
            .iter()
            .map(|s| BackendScrub {
                name: s.name.clone(),
                ..Default::default()
            })
            .collect(),
        bad: Vec::new(),
        inconsistent: Vec::new(),
        inline_ok,
        inline_unchecked,
        damaged_inline,
    };
    let mut results = futures::stream::iter(chosen)
        .map(|(id, rec)| async move {
            let verdicts = futures::future::join_all(
                (0..rec.placement.len()).map(|i| check(vol, id, &rec, i)),
            )
            .await;
            (id, rec, verdicts)
        })
        .buffer_unordered(8);
    let mut done = 0;
    progress(0, n);
    while let Some((id, rec, verdicts)) = results.next().await {
        let mut payloads = Vec::new();
        for (i, v) in verdicts.into_iter().enumerate() {
            let s = rec.placement[i] as usize % vol.slots.len();
            let b = &mut report.backends[s];
            let problem = match v {
                Verdict::Ok(bytes, payload) => {
                    b.ok += 1;
                    b.bytes += bytes;
                    payloads.push(payload);
                    continue;
                }
                Verdict::Missing => {
                    b.missing += 1;
                    "missing".to_string()
                }
                Verdict::Corrupt(why) => {
                    b.corrupt += 1;
                    format!("corrupt: {why}")
                }
                Verdict::Unreachable(why) => {
                    b.unreachable += 1;
                    format!("unreachable: {why}")
                }
            };
            report.bad.push(BadShard {
                chunk: id.hex(),
                index: i,
                backend: b.name.clone(),
                problem,
            });
        }
        // Every shard well-formed: do they agree? A shard altered together with
        // its checksum shows here (no key needed to see it, the key to name it
        // when m = 1).
        let layout = Layout {
            k: rec.k as usize,
            m: rec.m as usize,
        };
        if payloads.len() == layout.total() && !crate::data::erasure::consistent(&payloads, layout)
        {
            let (blob_len, len) = (rec.sealed_len as usize, rec.len as usize);
            let opens = |blob: &[u8]| vol.sealer.open(&id, blob, len).is_ok();
            let check: Option<crate::data::erasure::OpensFn> = if vol.sealer.is_unlocked() {
                Some(&opens)
            } else {
                None
            };
            match crate::data::erasure::locate_altered(&payloads, layout, blob_len, check) {
                Some(i) => {
                    let s = rec.placement[i] as usize % vol.slots.len();
                    let b = &mut report.backends[s];
                    b.ok -= 1;
                    b.corrupt += 1;
                    report.bad.push(BadShard {
                        chunk: id.hex(),
                        index: i,
                        backend: b.name.clone(),
                        problem: "altered: its checksum matches, but it disagrees with the chunk's other shards".into(),
                    });
                }
                None => report.inconsistent.push(id.hex()),
            }
        }
        done += 1;
        progress(done, n);
    }
    report
        .bad
        .sort_by(|a, b| (&a.backend, &a.chunk, a.index).cmp(&(&b.backend, &b.chunk, b.index)));
    Ok(report)
}

/// The damaged inline chunks with the files and snapshots that hold them: the
/// file contents are searched for them, and each file named by its paths (one
/// pass over the directory entries; only when something is damaged).
fn holders(
    idx: &Index,
    damaged: Vec<(ChunkId, String)>,
) -> Result<Vec<DamagedInline>, crate::meta::index::IndexError> {
    use std::collections::{HashMap, HashSet};
    let wanted: HashSet<ChunkId> = damaged.iter().map(|(id, _)| *id).collect();
    let be = |k: &[u8]| u64::from_be_bytes(k[..8].try_into().expect("8-byte inode number"));
    // Files holding a damaged chunk, per chunk.
    let mut files_of: HashMap<ChunkId, Vec<u64>> = HashMap::new();
    let mut held: HashSet<u64> = HashSet::new();
    idx.each::<ContentRecord>(keys::CONTENT, |k, c| {
        let ino = be(k);
        let mut seen = HashSet::new();
        for r in &c.chunks {
            if let ChunkRef::Data { id, .. } = r {
                if wanted.contains(id) && seen.insert(*id) {
                    files_of.entry(*id).or_default().push(ino);
                    held.insert(ino);
                }
            }
        }
    })?;
    // Names: each entry naming a held file, and every directory's (to build paths).
    let mut names: HashMap<u64, Vec<(u64, Vec<u8>)>> = HashMap::new();
    let mut dirs: HashMap<u64, (u64, Vec<u8>)> = HashMap::new();
    idx.each::<DirentRecord>(keys::DIRENT, |k, e| {
        let (parent, name) = (be(k), k[8..].to_vec());
        if e.kind == Kind::Dir {
            dirs.insert(e.ino, (parent, name));
        } else if held.contains(&e.ino) {
            names.entry(e.ino).or_default().push((parent, name));
        }
    })?;
    let path = |mut dir: u64, name: &[u8]| {
        let mut parts = vec![String::from_utf8_lossy(name).into_owned()];
        // Bounded by the directories' number, in case of a loop in a damaged index.
        for _ in 0..=dirs.len() {
            let Some((parent, n)) = dirs.get(&dir) else {
                break;
            };
            parts.push(String::from_utf8_lossy(n).into_owned());
            dir = *parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    };
    let mut out = Vec::new();
    for (id, problem) in damaged {
        let mut files = Vec::new();
        for ino in files_of.get(&id).into_iter().flatten() {
            match names.get(ino) {
                Some(ns) => files.extend(ns.iter().map(|(p, n)| path(*p, n))),
                None => files.push(format!("#{ino}")),
            }
        }
        files.sort();
        let snapshot_refs = idx.chunk_tree_refs(&id)?;
        out.push(DamagedInline {
            chunk: id.hex(),
            problem,
            files,
            snapshot_refs,
        });
    }
    Ok(out)
}

pub fn render(r: &ScrubReport) -> String {
    let mut out = format!(
        "checked {} of {} chunks\n\n",
        r.chunks_checked, r.chunks_total
    );
    let w = r
        .backends
        .iter()
        .map(|b| b.name.len())
        .max()
        .unwrap_or(7)
        .max(7);
    out += &format!(
        "{:<w$}  {:>8}  {:>8}  {:>8}  {:>11}  {:>10}\n",
        "BACKEND", "OK", "MISSING", "CORRUPT", "UNREACHABLE", "READ"
    );
    for b in &r.backends {
        out += &format!(
            "{:<w$}  {:>8}  {:>8}  {:>8}  {:>11}  {:>10}\n",
            b.name,
            b.ok,
            b.missing,
            b.corrupt,
            b.unreachable,
            human(b.bytes)
        );
    }
    if r.inline_ok + r.inline_unchecked > 0 || !r.damaged_inline.is_empty() {
        out += &format!(
            "\ninline chunks (kept in the index): {} intact, {} damaged",
            r.inline_ok,
            r.damaged_inline.len()
        );
        if r.inline_unchecked > 0 {
            out += &format!(
                ", {} not opened (opening them needs the volume's key)",
                r.inline_unchecked
            );
        }
        out += "\n";
    }
    for d in &r.damaged_inline {
        out += &format!(
            "  inline chunk {}: does not open ({}); held by {}{}\n",
            &d.chunk[..16],
            d.problem,
            if d.files.is_empty() {
                "no live file".to_string()
            } else {
                d.files.join(", ")
            },
            match d.snapshot_refs {
                0 => String::new(),
                n => format!(" and {n} snapshot file position(s)"),
            }
        );
    }
    if !r.damaged_inline.is_empty() {
        out += &format!("  ({INLINE_DAMAGE_HELP})\n");
    }
    if r.clean() {
        out += "\nall shards are present and intact\n";
    } else if r.bad.is_empty() && r.inconsistent.is_empty() {
        out += "\nall shards are present and intact; damaged inline chunks are listed above\n";
    } else {
        out += &format!("\n{} shard(s) need attention:\n", r.bad.len());
        for s in r.bad.iter().take(50) {
            out += &format!(
                "  {} shard {} of chunk {}: {}\n",
                s.backend,
                s.index,
                &s.chunk[..16],
                s.problem
            );
        }
        if r.bad.len() > 50 {
            out += &format!(
                "  ... and {} more (--json lists them all)\n",
                r.bad.len() - 50
            );
        }
        for c in &r.inconsistent {
            out += &format!(
                "  chunk {}: its shards disagree (one was altered along with its checksum); `cloudraid repair` finds and rewrites it with the key\n",
                &c[..16]
            );
        }
    }
    out
}

/// What `repair` did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepairReport {
    /// The scrub that found what to repair.
    pub scrub: ScrubReport,
    pub chunks_repaired: u64,
    pub shards_rewritten: u64,
    /// Shards on backends that could not be reached: left for a later repair.
    pub shards_skipped: u64,
    /// Backends whose volume marker was missing (an emptied or replaced bucket) and
    /// has been written again.
    #[serde(default)]
    pub markers_restored: Vec<String>,
    /// Chunks that could not be rebuilt (fewer than k good shards) or rewritten.
    pub failed: Vec<String>,
}

/// Scrubs every chunk, then rebuilds each missing or corrupt shard from the
/// chunk's good shards and writes it back in its place.
pub async fn repair(
    vol: &Arc<Volume>,
    idx: &Index,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<RepairReport, String> {
    let mut listed: std::collections::HashSet<Vec<u8>> = Default::default();
    idx.each::<ChunkRecord>(keys::CHUNK, |k, _| {
        listed.insert(k.to_vec());
    })
    .map_err(|e| e.to_string())?;
    let mut markers_restored = Vec::new();
    // A restored marker is a surviving one's copy (same key material), naming
    // its own backend.
    let mut template = None;
    for slot in &vol.slots {
        if let Ok(b) = slot.backend.get(MARKER_KEY).await {
            if let Ok(m) = VolumeMarker::from_bytes(&b) {
                if m.volume_id == vol.id.to_string() {
                    template = Some(m);
                    break;
                }
            }
        }
    }
    for (i, slot) in vol.slots.iter().enumerate() {
        let Some(template) = &template else { break };
        if let Ok(None) = slot.backend.head(MARKER_KEY).await {
            let marker = VolumeMarker {
                backend_name: slot.name.clone(),
                backend_slot: i as u16,
                ..template.clone()
            };
            if let Ok(true) = slot
                .backend
                .put_if_absent(MARKER_KEY, bytes::Bytes::from(marker.to_bytes()))
                .await
            {
                markers_restored.push(slot.name.clone());
            }
        }
    }
    let found = scrub(vol, idx, 100.0, progress).await?;
    let mut still_bad: std::collections::HashSet<String> = Default::default();
    let mut todo: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    let mut report = RepairReport {
        markers_restored,
        ..Default::default()
    };
    for b in &found.bad {
        if b.problem.starts_with("unreachable") {
            report.shards_skipped += 1;
            still_bad.insert(b.chunk.clone());
        } else {
            todo.entry(b.chunk.clone()).or_default().push(b.index);
        }
    }
    for c in &found.inconsistent {
        still_bad.insert(c.clone());
        report.failed.push(format!(
            "chunk {}: its shards disagree and the altered one cannot be told apart (several altered, or no key); read the files it belongs to and write them again",
            &c[..16]
        ));
    }
    for d in &found.damaged_inline {
        report.failed.push(format!(
            "inline chunk {} (held by {}): it does not open ({}) and has no shards to rebuild it from",
            &d.chunk[..16],
            if d.files.is_empty() {
                "no live file".to_string()
            } else {
                d.files.join(", ")
            },
            d.problem
        ));
    }
    let n = todo.len() as u64;
    for (done, (hex, which)) in todo.into_iter().enumerate() {
        progress(done as u64, n);
        let mut raw = [0u8; 32];
        hex::decode_to_slice(&hex, &mut raw).map_err(|e| e.to_string())?;
        let id = ChunkId(raw);
        let Some(rec) = idx.chunk(&id).map_err(|e| e.to_string())? else {
            continue;
        };
        // Rebuilt from the shards as stored now, checked by opening it.
        match vol.rewrite_shards(id, &rec, &which).await {
            Ok(()) => {
                report.chunks_repaired += 1;
                report.shards_rewritten += which.len() as u64;
            }
            Err(VolumeError::UploadFailed { failures, .. }) => {
                still_bad.insert(hex.clone());
                report.shards_rewritten += (which.len() - failures.len()) as u64;
                for f in failures {
                    report.failed.push(format!(
                        "chunk {} shard {} on {}: {}",
                        &hex[..16],
                        f.index,
                        f.backend,
                        f.reason
                    ));
                }
            }
            Err(e) => {
                still_bad.insert(hex.clone());
                report.failed.push(format!("chunk {}: {e}", &hex[..16]));
            }
        }
    }
    progress(n, n);
    // Chunks written during an outage that now have every shard are no longer degraded.
    let mut b = crate::meta::Batch::default();
    for (k, _) in idx
        .store()
        .scan(&[keys::DEGRADED], None, usize::MAX)
        .map_err(|e| e.to_string())?
    {
        let id = k[1..33].to_vec();
        if listed.contains(&id) && !still_bad.contains(&hex::encode(&id)) {
            b.delete(k);
        }
    }
    idx.apply(b).map_err(|e| e.to_string())?;
    report.scrub = found;
    Ok(report)
}

impl RepairReport {
    /// The one-line error of a repair that left something unrepaired.
    pub fn error_line(&self) -> String {
        let inline = self.scrub.damaged_inline.len();
        let shards = self.failed.len() - inline;
        let mut parts = Vec::new();
        if shards > 0 {
            parts.push(format!("{shards} chunk(s) or shard(s) could not be repaired (listed above); bring their backends back and run repair again"));
        }
        if inline > 0 {
            parts.push(format!(
                "{inline} damaged inline chunk(s) (listed above): {INLINE_DAMAGE_HELP}"
            ));
        }
        parts.join("; ")
    }
}

pub fn render_repair(r: &RepairReport) -> String {
    let mut out = format!(
        "checked {} chunks: {} shard(s) missing or damaged\n",
        r.scrub.chunks_checked,
        r.scrub.bad.len() as u64 - r.shards_skipped
    );
    out += &format!(
        "repaired {} chunk(s): {} shard(s) rewritten\n",
        r.chunks_repaired, r.shards_rewritten
    );
    for b in &r.markers_restored {
        out += &format!("wrote the missing volume marker on {b}\n");
    }
    if r.shards_skipped > 0 {
        out += &format!(
            "skipped {} shard(s) on unreachable backends; run repair again when they are back\n",
            r.shards_skipped
        );
    }
    for f in &r.failed {
        out += &format!("could not repair {f}\n");
    }
    out
}

/// The event of a scrub: damage found (an error), or a clean check.
pub fn record_scrub(idx: &Index, r: &ScrubReport) {
    use crate::format::Severity;
    let bad = r.bad.len() + r.inconsistent.len() + r.damaged_inline.len();
    let (kind, severity, message) = if bad > 0 {
        (
            "scrub_damage",
            Severity::Error,
            format!(
                "scrub found {bad} bad shard(s) or chunk(s) in {} of {} chunks checked; `cloudraid repair` rewrites them",
                r.chunks_checked, r.chunks_total
            ),
        )
    } else {
        (
            "scrub_clean",
            Severity::Info,
            format!(
                "scrub checked {} of {} chunks: all good",
                r.chunks_checked, r.chunks_total
            ),
        )
    };
    crate::meta::events::record(idx, kind, severity, "", &message);
    let m = &crate::metrics::METRICS;
    m.scrubs
        .get_or_create(&crate::metrics::ResultLabel {
            result: if bad > 0 { "damage" } else { "clean" },
        })
        .inc();
    m.scrub_bad.inc_by(bad as u64);
    m.scrub_last.set(crate::metrics::unix_now() as i64);
}

/// The event of a repair: what it fixed and what it could not.
pub fn record_repair(idx: &Index, r: &RepairReport) {
    use crate::format::Severity;
    let severity = if !r.failed.is_empty() {
        Severity::Error
    } else {
        Severity::Info
    };
    let m = &crate::metrics::METRICS;
    m.repairs.inc();
    m.repair_rewritten.inc_by(r.shards_rewritten);
    m.repair_failed.inc_by(r.failed.len() as u64);
    crate::meta::events::record(
        idx,
        "repair",
        severity,
        "",
        &format!(
            "repair rewrote {} shard(s) of {} chunk(s); {} left for backends that did not answer; {} chunk(s) could not be rebuilt",
            r.shards_rewritten,
            r.chunks_repaired,
            r.shards_skipped,
            r.failed.len()
        ),
    );
}
