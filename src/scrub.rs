//! Scrub: read back every shard of every chunk (or a sample) and check it on its
//! own — header, volume, chunk id, index, geometry and payload checksum — so rot,
//! tampering and lost objects are found before they are needed. Needs no key and
//! no other shard.

use crate::config::human;
use crate::erasure::{verify_shard, Layout};
use crate::format::{keys, shard_key, ChunkId, ChunkRecord};
use crate::index::Index;
use crate::store::StoreError;
use crate::volume::Volume;
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
}

impl ScrubReport {
    pub fn clean(&self) -> bool {
        self.bad.is_empty()
    }
}

enum Verdict {
    Ok(u64),
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
        Ok(obj) => match verify_shard(&obj, vol.id, &id, i, layout, rec.len as usize) {
            Ok(_) => Verdict::Ok(obj.len() as u64),
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
        for (i, v) in verdicts.into_iter().enumerate() {
            let s = rec.placement[i] as usize % vol.slots.len();
            let b = &mut report.backends[s];
            let problem = match v {
                Verdict::Ok(bytes) => {
                    b.ok += 1;
                    b.bytes += bytes;
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
    }
    out
}
