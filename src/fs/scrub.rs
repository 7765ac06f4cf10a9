//! Scrub: read back every shard of every chunk (or a sample) and check it on its
//! own — header, volume, chunk id, index, geometry and payload checksum — so rot,
//! tampering and lost objects are found before they are needed. Needs no key and
//! no other shard.

use crate::config::human;
use crate::data::erasure::{verify_shard, Layout};
use crate::data::volume::{Volume, VolumeError};
use crate::format::{keys, shard_key, ChunkId, ChunkRecord, VolumeMarker, MARKER_KEY};
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
}

impl ScrubReport {
    pub fn clean(&self) -> bool {
        self.bad.is_empty() && self.inconsistent.is_empty()
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
    match slot.backend.get(&shard_key(&id, i)).await {
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
    vol.probe_down_backends().await;
    let all = idx
        .all::<ChunkRecord>(keys::CHUNK)
        .map_err(|e| e.to_string())?;
    let total = all.len() as u64;
    let chosen: Vec<(ChunkId, ChunkRecord)> = all
        .into_iter()
        .map(|(k, r)| (ChunkId(k[..32].try_into().unwrap()), r))
        .filter(|(id, _)| sampled(id, percent))
        .collect();
    let n = chosen.len() as u64;
    let mut report = ScrubReport {
        chunks_checked: n,
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
    if r.clean() {
        out += "\nall shards are present and intact\n";
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
    let listed: std::collections::HashSet<Vec<u8>> = idx
        .all::<ChunkRecord>(keys::CHUNK)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
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
