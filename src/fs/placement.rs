//! Stored chunks moved to another placement: one chunk re-placed under a
//! stronger rule (by a commit that finds it stored by a weaker one, see
//! `ChunkStore::store`), and `policy apply`, which moves every file's chunks
//! to where the rules put them now.
//!
//! A chunk is re-placed in three steps: its new shards uploaded and made
//! durable; its record switched to them in one index batch; then the old
//! shards the new placement does not reuse deleted. Until the switch the
//! record names the old shards, all still there: a crash leaves the chunk as
//! it was plus orphans (deleted by `fsck --repair` after its grace period).

use super::commit::ChunkStore;
use super::Fs;
use crate::data::volume::replace::{placed_as, placed_record, same_shards};
use crate::format::{keys, ChunkId, ChunkRecord, ChunkRef, ContentRecord};
use crate::meta::index::BatchExt;
use crate::meta::Batch;
use crate::policy::rules::{describe_layout, FileFacts, PolicySet, Rule};
use crate::policy::strength::stronger_rule;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

impl ChunkStore {
    /// Re-places chunk `id`, stored as `old`, by `rule`: uploads, switches
    /// its record (references kept, degraded entries dropped: the new
    /// placement is complete), then deletes the old shards not reused. The
    /// caller holds a reference guard and the upload lock of `id`. Returns
    /// the record in the index afterwards: `old` itself when the chunk
    /// changed meanwhile (nothing switched, the new shards deleted again).
    pub(super) async fn replace(
        &self,
        id: ChunkId,
        old: &ChunkRecord,
        rule: &Rule,
    ) -> Result<ChunkRecord, String> {
        let new = self
            .vol
            .replace_chunk(id, old, rule)
            .await
            .map_err(|e| e.to_string())?;
        let switched = {
            let _g = self.meta.lock().await;
            match self.idx.chunk(&id) {
                Ok(Some(cur)) if same_shards(&cur, old) => {
                    let rec = ChunkRecord {
                        refs: cur.refs,
                        ..new.clone()
                    };
                    let mut b = Batch::default();
                    b.put_chunk(&id, &rec);
                    b.delete(keys::chunk(keys::DEGRADED, &id));
                    match self.idx.apply(b) {
                        Ok(()) => Ok(rec),
                        Err(e) => Err((Some(cur), Some(e.to_string()))),
                    }
                }
                Ok(cur) => Err((cur, None)),
                Err(e) => Err((None, Some(e.to_string()))),
            }
        };
        match switched {
            Ok(rec) => {
                self.vol.drop_shards(id, old, &[&rec]).await;
                Ok(rec)
            }
            Err((cur, why)) => {
                // Not switched: the new shards are nobody's.
                let mut kept = vec![old];
                kept.extend(cur.as_ref());
                self.vol.drop_shards(id, &new, &kept).await;
                match why {
                    Some(e) => Err(format!(
                        "chunk {id}: its record could not be switched to the new placement ({e}); it stays where it was"
                    )),
                    None => Ok(cur.unwrap_or_else(|| old.clone())),
                }
            }
        }
    }
}

/// A file whose rule changes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileMove {
    pub path: String,
    /// The rule its content names now (none: placed before rules).
    pub from: Option<String>,
    pub to: String,
    pub layout: String,
}

/// What moving the chunks costs one backend.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackendMove {
    pub name: String,
    pub upload_shards: u64,
    pub upload_bytes: u64,
    pub delete_shards: u64,
    pub delete_bytes: u64,
}

/// What `policy apply` found and did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApplyReport {
    pub dry_run: bool,
    pub files_checked: u64,
    pub chunks_checked: u64,
    /// Files whose rule (or layout) changes.
    pub files: Vec<FileMove>,
    /// Chunks not where their strongest rule puts them.
    pub chunks_to_move: u64,
    /// Plaintext bytes of those chunks.
    pub chunk_bytes: u64,
    pub chunks_moved: u64,
    pub files_updated: u64,
    pub backends: Vec<BackendMove>,
    /// Chunks that could not be moved, each with why (they stay where they were).
    pub failed: Vec<String>,
}

impl ApplyReport {
    pub fn error_line(&self) -> String {
        format!(
            "{} chunk(s) could not be moved (listed above) and stay where they were; bring their backends back and run `cloudraid policy apply` again",
            self.failed.len()
        )
    }
}

pub fn render_apply(r: &ApplyReport) -> String {
    let mut out = String::new();
    for f in &r.files {
        out += &format!(
            "file {}: rule {} → {} ({})\n",
            f.path,
            f.from.as_deref().unwrap_or("(none)"),
            f.to,
            f.layout
        );
    }
    let verb = if r.dry_run { "would move" } else { "moved" };
    let (moved, files) = if r.dry_run {
        (r.chunks_to_move, r.files.len() as u64)
    } else {
        (r.chunks_moved, r.files_updated)
    };
    out += &format!(
        "checked {} file(s) and {} chunk(s): {verb} {moved} chunk(s) ({}) of {files} file(s) whose rule changed\n",
        r.files_checked,
        r.chunks_checked,
        crate::config::human(r.chunk_bytes)
    );
    for b in r
        .backends
        .iter()
        .filter(|b| b.upload_shards + b.delete_shards > 0)
    {
        out += &format!(
            "  {}: upload {} shard(s), {}; delete {} shard(s), {}\n",
            b.name,
            b.upload_shards,
            crate::config::human(b.upload_bytes),
            b.delete_shards,
            crate::config::human(b.delete_bytes)
        );
    }
    if r.dry_run {
        out += "dry run: nothing changed\n";
    } else if r.chunks_to_move == 0 && r.files.is_empty() {
        out += "every chunk is where its rule puts it: nothing to do\n";
    }
    for f in &r.failed {
        out += &format!("could not move {f}\n");
    }
    out
}

/// One live file as `apply` sees it.
struct Walked {
    ino: u64,
    rule: Option<String>,
    k: u8,
    m: u8,
    chunks: Vec<ChunkId>,
}

impl Fs {
    /// `policy apply`: every live file's rule chosen again by `set` (its
    /// path, size and owner now), and every chunk a live file uses moved to
    /// where the strongest rule among its files puts it; the files' content
    /// records then name their rule. Chunks only snapshots hold stay where
    /// they are. Each chunk is switched in a batch of its own, so an
    /// interrupted run leaves every chunk whole, and running again does what
    /// is left. `progress(bytes, total)` counts the bytes of chunks moved.
    pub async fn policy_apply(
        &self,
        set: &PolicySet,
        dry_run: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<ApplyReport, String> {
        if !dry_run {
            self.writable().map_err(|e| e.to_string())?;
        }
        let err = |e: crate::meta::index::IndexError| e.to_string();
        let mut walked = Vec::new();
        self.idx
            .each::<ContentRecord>(keys::CONTENT, |k, c| {
                let Ok(ino) = k[..8].try_into().map(u64::from_be_bytes) else {
                    return;
                };
                walked.push(Walked {
                    ino,
                    rule: c.rule,
                    k: c.k,
                    m: c.m,
                    chunks: c
                        .chunks
                        .iter()
                        .filter_map(|r| match r {
                            ChunkRef::Data { id, .. } => Some(*id),
                            ChunkRef::Hole { .. } => None,
                        })
                        .collect(),
                })
            })
            .map_err(err)?;
        let mut report = ApplyReport {
            dry_run,
            backends: self
                .vol
                .slots
                .iter()
                .map(|s| BackendMove {
                    name: s.name.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let mut targets: HashMap<ChunkId, Arc<Rule>> = HashMap::new();
        let mut relabel = Vec::new();
        for w in walked {
            // A file unlinked while open has no path: it keeps its chunks
            // where they are (it goes when it is closed).
            let (Some(path), Some(inode)) = (
                self.path_of(w.ino).map_err(|e| e.to_string())?,
                self.idx.inode(w.ino).map_err(err)?,
            ) else {
                continue;
            };
            report.files_checked += 1;
            let rule = set.choose(&FileFacts {
                path: &path,
                size: inode.size,
                uid: inode.uid,
            });
            let named = (!rule.legacy).then(|| rule.name.clone());
            if (named.as_ref(), w.k as usize, w.m as usize)
                != (w.rule.as_ref(), rule.layout.k, rule.layout.m)
            {
                report.files.push(FileMove {
                    path,
                    from: w.rule.clone(),
                    to: rule.name.clone(),
                    layout: describe_layout(rule.layout),
                });
                relabel.push((w.ino, named, rule.layout));
            }
            for id in w.chunks {
                match targets.get(&id) {
                    Some(t) if std::ptr::eq(stronger_rule(t, rule, &id), &**t) => {}
                    _ => {
                        targets.insert(id, rule.clone());
                    }
                }
            }
        }
        // The chunks to move, in id order (a second run meets them in the
        // same order), with what each costs each backend.
        let targets: BTreeMap<ChunkId, Arc<Rule>> = targets.into_iter().collect();
        let mut moves = Vec::new();
        for (id, rule) in targets {
            let Some(rec) = self.idx.chunk(&id).map_err(err)? else {
                continue;
            };
            report.chunks_checked += 1;
            if rec.is_inline() || placed_as(&rec, &rule, &id) {
                continue;
            }
            let new = placed_record(&id, &rec, &rule);
            let places = |r: &ChunkRecord| -> Vec<(u16, String)> {
                r.placement
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (*s, r.shard_key(&id, i)))
                    .collect()
            };
            let (old_at, new_at) = (places(&rec), places(&new));
            let n = report.backends.len();
            for p in &new_at {
                let b = &mut report.backends[p.0 as usize % n];
                b.upload_shards += 1;
                b.upload_bytes += new.shard_size as u64;
            }
            for p in old_at.iter().filter(|p| !new_at.contains(p)) {
                let b = &mut report.backends[p.0 as usize % n];
                b.delete_shards += 1;
                b.delete_bytes += rec.shard_size as u64;
            }
            report.chunks_to_move += 1;
            report.chunk_bytes += rec.len as u64;
            moves.push((id, rule));
        }
        if dry_run {
            return Ok(report);
        }
        let total = report.chunk_bytes;
        let mut done = 0u64;
        progress(0, total);
        let store = self.chunk_store();
        for (id, rule) in moves {
            let _guard = self.guards.reference(id).await;
            let lock = self.guards.upload_lock(id);
            let _one = lock.lock().await;
            // As it is now (a commit may have moved or freed it meanwhile).
            let rec = match self.idx.chunk(&id).map_err(err)? {
                Some(r) if r.refs > 0 && !r.is_inline() && !placed_as(&r, &rule, &id) => r,
                _ => continue,
            };
            match store.replace(id, &rec, &rule).await {
                Ok(now) if !same_shards(&now, &rec) => report.chunks_moved += 1,
                Ok(_) => {}
                Err(e) => report.failed.push(e),
            }
            done += rec.len as u64;
            progress(done, total);
        }
        for (ino, rule, layout) in relabel {
            let _g = self.meta.lock().await;
            let Some(mut c) = self.idx.content(ino).map_err(err)? else {
                continue;
            };
            c.rule = rule;
            c.k = layout.k as u8;
            c.m = layout.m as u8;
            let mut b = Batch::default();
            b.put_content(ino, &c);
            self.idx.apply(b).map_err(err)?;
            report.files_updated += 1;
        }
        Ok(report)
    }
}

/// `policy apply` with the rules of the config at `path`: they must be this
/// volume's config (the same backends, in the same order). Unless `dry_run`,
/// the volume places new chunks by them from now on (a mount too).
pub async fn apply_config(
    fs: &Fs,
    path: &std::path::Path,
    dry_run: bool,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ApplyReport, String> {
    let cfg = crate::config::Config::load(path)?;
    let set = PolicySet::compile(&cfg)?;
    let vol = fs.volume();
    let theirs: Vec<&str> = cfg.backends.iter().map(|b| b.name.as_str()).collect();
    let ours: Vec<&str> = vol.slots.iter().map(|s| s.name.as_str()).collect();
    if theirs != ours {
        return Err(format!(
            "{} lists backends {} but the volume has {}: `policy apply` changes rules, not backends; give the volume's config with the new rules",
            path.display(),
            theirs.join(", "),
            ours.join(", ")
        ));
    }
    let set = Arc::new(set);
    if !dry_run {
        vol.set_policies(set.clone());
    }
    fs.policy_apply(&set, dry_run, progress).await
}
