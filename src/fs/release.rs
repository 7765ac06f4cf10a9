//! Releasing snapshots: deleting them, sweeping the trees nothing names any more
//! (each tree in one atomic batch, releasing its chunks and subtrees), and what
//! snapshots alone hold or would free.

use super::snapshot::{SnapError, SnapResult, TreeDelta};
use super::Fs;
use crate::format::{encode_record, keys, snapshot_id_hex, ChunkId, ChunkRef, Nanos, TreeId};
use crate::meta::index::{snapshot_key, IndexError};
use crate::meta::Batch;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

impl Fs {
    // ----------------------------------------------------------------- delete, sweep

    /// Deletes snapshots (by id); what only they held is released by the sweep
    /// that follows.
    pub async fn delete_snapshots(&self, ids: &[u32]) -> SnapResult<()> {
        self.writable()?;
        {
            let _s = self.snap_lock.lock().await;
            let _g = self.meta.lock().await;
            let mut batch = Batch::default();
            let mut d = TreeDelta::default();
            for id in ids {
                let Some(rec) = self.idx.snapshot(*id)? else {
                    return Err(SnapError(format!(
                        "no snapshot {} in this volume: see cloudraid snapshot list",
                        snapshot_id_hex(*id)
                    )));
                };
                batch.delete(snapshot_key(*id));
                if let Some(t) = rec.root.tree {
                    *d.trees.entry(t).or_default() -= 1;
                }
            }
            self.apply_tree_delta(&mut batch, d)?;
            self.idx.apply(batch)?;
        }
        for id in ids {
            self.forget_name(super::snapview::VIEW_BASE, snapshot_id_hex(*id).as_bytes())
                .await;
        }
        let names: Vec<String> = ids.iter().map(|i| snapshot_id_hex(*i)).collect();
        crate::meta::events::record(
            &self.idx,
            "snapshot_deleted",
            crate::format::Severity::Info,
            &names.join(","),
            &format!("{} snapshot(s) deleted: {}", names.len(), names.join(", ")),
        );
        self.sweep_trees().await?;
        Ok(())
    }

    /// Deletes every tree nothing names, releasing its chunks and subtrees (which
    /// may in turn be deleted). Returns how many trees went.
    pub async fn sweep_trees(&self) -> SnapResult<u64> {
        let _s = self.snap_lock.lock().await;
        let mut gone = 0;
        loop {
            let page = self
                .idx
                .store()
                .scan(&[keys::TREE_GC], None, 256)
                .map_err(IndexError::from)?;
            if page.is_empty() {
                return Ok(gone);
            }
            for (k, _) in page {
                let id = TreeId(k[1..33].try_into().expect("32-byte tree id"));
                let _g = self.meta.lock().await;
                let mut batch = Batch::default();
                batch.delete(k.clone());
                if self.idx.tree_refs(&id)? == 0 {
                    let mut d = TreeDelta::default();
                    match self.idx.tree(&id) {
                        Ok(Some(t)) => d.tree(&t, -1),
                        Ok(None) => {}
                        Err(e) => {
                            // Its references cannot be known: they stay (nothing
                            // is lost; fsck reports the counts).
                            tracing::error!("deleting damaged snapshot tree {id}: {e}");
                        }
                    }
                    batch.delete(keys::tree(keys::TREE, &id));
                    batch.delete(keys::tree(keys::TREE_REFS, &id));
                    self.apply_tree_delta(&mut batch, d)?;
                    gone += 1;
                }
                self.idx.apply(batch)?;
            }
        }
    }

    /// Bytes held only by snapshots: chunks no live file uses.
    pub fn snapshot_only_usage(&self) -> SnapResult<Freed> {
        let mut u = Freed::default();
        self.idx
            .each::<crate::format::ChunkRecord>(keys::CHUNK, |_, rec| {
                if rec.refs == 0 {
                    u.add(&rec);
                }
            })?;
        Ok(u)
    }

    /// What deleting `snaps` would free: the chunks that only they hold (found
    /// by following the reference counts down from their roots, visiting only
    /// the trees that would go). Changes nothing.
    pub fn release_estimate(&self, snaps: &[u32]) -> SnapResult<Freed> {
        let mut tree_delta: HashMap<TreeId, i64> = HashMap::new();
        let mut chunk_delta: HashMap<ChunkId, i64> = HashMap::new();
        let mut todo = Vec::new();
        for id in snaps {
            if let Some(t) = self.idx.snapshot(*id)?.and_then(|r| r.root.tree) {
                todo.push(t);
            }
        }
        while let Some(t) = todo.pop() {
            let d = tree_delta.entry(t).or_default();
            *d -= 1;
            if self.idx.tree_refs(&t)? as i64 + *d != 0 {
                continue;
            }
            let Some(tree) = self.idx.tree(&t)? else {
                continue;
            };
            for e in tree.entries {
                if let Some(sub) = e.tree {
                    todo.push(sub);
                }
                for c in e.content.iter().flat_map(|c| c.chunks.iter()) {
                    if let ChunkRef::Data { id, .. } = c {
                        *chunk_delta.entry(*id).or_default() -= 1;
                    }
                }
            }
        }
        let mut f = Freed::default();
        for (id, d) in chunk_delta {
            if self.idx.chunk_tree_refs(&id)? as i64 + d <= 0 {
                if let Some(rec) = self.idx.chunk(&id)?.filter(|r| r.refs == 0) {
                    f.add(&rec);
                }
            }
        }
        Ok(f)
    }

    /// Turns snapshot protection on or off (`Q`, journalled like every index
    /// change). Who may do so is the front end's to check: turning it off, like
    /// deleting a protected snapshot, needs the volume's passphrase or key file
    /// given again (`control::execute`).
    pub async fn set_snapshot_protection(&self, on: bool) -> SnapResult<()> {
        self.writable()?;
        if on && !self.vol.sealer.is_encrypted() {
            return Err(SnapError(
                "this volume is not encrypted: it has no passphrase or key file that could protect its snapshots".into(),
            ));
        }
        let _s = self.snap_lock.lock().await;
        let _g = self.meta.lock().await;
        let mut settings = self.idx.snapshot_settings()?;
        settings.protected = on;
        let mut batch = Batch::default();
        batch.put(keys::SNAPSHOT_SETTINGS.to_vec(), encode_record(&settings));
        self.idx.apply(batch)?;
        Ok(())
    }

    /// Times of the snapshots, newest last (for schedules).
    pub fn snapshot_times(&self) -> SnapResult<Vec<(u32, Nanos, Vec<String>)>> {
        Ok(self
            .idx
            .snapshots()?
            .into_iter()
            .map(|(id, r)| (id, r.time, r.tags))
            .collect())
    }
}

/// Chunks and their bytes (plaintext, and stored on the backends with parity).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Freed {
    pub chunks: u64,
    pub bytes: u64,
    pub stored_bytes: u64,
}

impl Freed {
    fn add(&mut self, rec: &crate::format::ChunkRecord) {
        self.chunks += 1;
        self.bytes += rec.len as u64;
        self.stored_bytes += rec.shard_size as u64 * rec.placement.len() as u64;
    }
}
