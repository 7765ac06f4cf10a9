//! Re-placing a chunk: its sealed bytes, rebuilt from any k shards of the old
//! placement, encoded in another rule's layout and uploaded where that rule
//! says. The old shards are left alone here: the caller switches the chunk's
//! record to the new placement, and only then drops what the new one does not
//! reuse ([`Volume::drop_shards`]), so a chunk never has fewer shards than its
//! old redundancy.

use super::{ShardFailure, Volume, VolumeError};
use crate::data::erasure::Layout;
use crate::format::{ChunkId, ChunkRecord};
use crate::policy::class::StorageClass;
use crate::policy::rules::Rule;
use bytes::Bytes;

/// The classes of a record's shards, one per shard (an empty list: all standard).
fn classes_of(rec: &ChunkRecord) -> Vec<u8> {
    if rec.classes.is_empty() {
        vec![StorageClass::Standard.code(); rec.placement.len()]
    } else {
        rec.classes.clone()
    }
}

/// Whether two records of a chunk name the same shards: same layout, the same
/// backend and class for each, under the same keys.
pub fn same_shards(a: &ChunkRecord, b: &ChunkRecord) -> bool {
    a.inline.is_none()
        && b.inline.is_none()
        && (a.k, a.m, a.sealed_len) == (b.k, b.m, b.sealed_len)
        && a.placement == b.placement
        && a.key_layout() == b.key_layout()
        && classes_of(a) == classes_of(b)
}

/// Whether `rec` is where `rule` puts chunk `id`: the layout, backends and
/// classes it would give it (the keys aside: see [`placed_record`]).
pub fn placed_as(rec: &ChunkRecord, rule: &Rule, id: &ChunkId) -> bool {
    if rec.is_inline() {
        return true;
    }
    let p = rule.place(id);
    (rec.k as usize, rec.m as usize) == (rule.layout.k, rule.layout.m)
        && rec.placement == p.slots
        && classes_of(rec) == p.classes.iter().map(|c| c.code()).collect::<Vec<_>>()
}

/// The record of chunk `id`, stored now as `old`, once re-placed by `rule`:
/// the same sealed chunk (and references) in the rule's layout, backends and
/// classes. Keys without a layout (the rule of a volume without rules) are
/// kept only when the layout is the same: in another layout, they would name
/// other bytes under the keys of the old shards, so the new record names its
/// layout in its keys (its classes all standard).
pub fn placed_record(id: &ChunkId, old: &ChunkRecord, rule: &Rule) -> ChunkRecord {
    let p = rule.place(id);
    let layout = rule.layout;
    let same_layout = (old.k as usize, old.m as usize) == (layout.k, layout.m);
    let classes = if !rule.legacy {
        p.classes.iter().map(|c| c.code()).collect()
    } else if old.key_layout().is_none() && !same_layout {
        vec![StorageClass::Standard.code(); layout.total()]
    } else {
        Vec::new()
    };
    ChunkRecord {
        refs: old.refs,
        len: old.len,
        sealed_len: old.sealed_len,
        k: layout.k as u8,
        m: layout.m as u8,
        shard_size: layout.shard_object_len(old.sealed_len as usize) as u32,
        placement: p.slots,
        inline: None,
        classes,
    }
}

/// The (backend, key) of each shard of a record.
fn shard_places(id: &ChunkId, rec: &ChunkRecord) -> Vec<(u16, String)> {
    rec.placement
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, rec.shard_key(id, i)))
        .collect()
}

impl Volume {
    /// Stores chunk `id` (recorded as `old`) again as `rule` places it: its
    /// sealed chunk is rebuilt from any k shards (and checked by opening it,
    /// so the key is needed), encoded in the rule's layout, and every shard
    /// uploaded in its class and made durable. Returns the new record (same
    /// references); nothing is switched or deleted. When a shard cannot be
    /// stored, those uploaded are deleted again and the error names it: the
    /// chunk stays as it was. An inline chunk stays as it is.
    pub async fn replace_chunk(
        &self,
        id: ChunkId,
        old: &ChunkRecord,
        rule: &Rule,
    ) -> Result<ChunkRecord, VolumeError> {
        if old.is_inline() {
            return Ok(old.clone());
        }
        let new = placed_record(&id, old, rule);
        let (blob, _) = self.fetch_sealed(id, old, true).await?;
        let layout = Layout {
            k: new.k as usize,
            m: new.m as usize,
        };
        let objects = self.encode(id, Bytes::from(blob), layout).await?;
        let failures = self
            .put_shards(id, &new, &objects, 0..objects.len(), false)
            .await;
        let flushed = if failures.is_empty() {
            self.flush_stored().await
        } else {
            Err(VolumeError::UploadFailed {
                chunk: id,
                stored: layout.total() - failures.len(),
                total: layout.total(),
                needed: layout.total(),
                failures,
            })
        };
        if let Err(e) = flushed {
            self.drop_shards(id, &new, &[old]).await;
            return Err(e);
        }
        Ok(new)
    }

    /// Deletes the shards of `gone` that none of `kept` names (the same key on
    /// the same backend: the same bytes, as re-placing re-encodes the same
    /// sealed chunk), once reads of the chunk that started before are over.
    /// Returns the shards that could not be deleted (orphans: `fsck --repair`
    /// deletes them after its grace period); missing ones are no failure.
    pub async fn drop_shards(
        &self,
        id: ChunkId,
        gone: &ChunkRecord,
        kept: &[&ChunkRecord],
    ) -> Vec<ShardFailure> {
        self.settle(id).await;
        let keep: Vec<(u16, String)> = kept.iter().flat_map(|r| shard_places(&id, r)).collect();
        let dels = shard_places(&id, gone)
            .into_iter()
            .enumerate()
            .filter(|(_, p)| !keep.contains(p))
            .map(|(i, (s, key))| {
                let slot = self.slot(s).clone();
                async move {
                    match self.guarded(s, slot.backend.delete(&key)).await {
                        Ok(()) | Err(crate::store::StoreError::NotFound(_)) => Ok(()),
                        Err(e) => Err(ShardFailure {
                            index: i,
                            backend: slot.name.clone(),
                            reason: e.to_string(),
                        }),
                    }
                }
            });
        let failures: Vec<ShardFailure> = futures::future::join_all(dels)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        for f in &failures {
            tracing::warn!(chunk = %id, backend = %f.backend, "shard {} of the old placement not deleted ({}): an orphan now, deleted by `cloudraid fsck --repair`", f.index, f.reason);
        }
        failures
    }

    /// Waits for a fetch of chunk `id` in progress, if any (it may read
    /// shards about to be deleted).
    pub async fn settle(&self, id: ChunkId) {
        let running = self.inflight.lock().unwrap().get(&id).cloned();
        if let Some(f) = running {
            let _ = f.await;
        }
    }
}
