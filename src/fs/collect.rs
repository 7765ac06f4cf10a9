//! Background upkeep of the stored chunks: garbage collection (the shards of
//! chunks that lost their last reference are deleted from the backends, once
//! no file uses them again and no commit is about to) and the repair of
//! degraded chunks (shards that writes during an outage could not store are
//! written once their backends answer again), with the tasks that run both.
//! Inline chunks have no shards: one that loses its last reference goes with its
//! record (`apply_refs`), and neither task has anything to do for one.

use super::{Errno, Fs, FsResult};
use crate::format::{decode_record, keys, ChunkId, ChunkRecord};
use crate::meta::Batch;
use std::sync::Arc;
use std::time::Duration;

impl Fs {
    // ----------------------------------------------------------------- garbage collection

    /// Deletes the shards of chunks that lost their last reference. Returns how many
    /// chunks were deleted.
    pub async fn collect_garbage(&self) -> FsResult<usize> {
        let mut deleted = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .idx
                .store()
                .scan(&[keys::GC], after.as_deref(), 256)
                .map_err(|e| {
                    tracing::error!("{e}");
                    Errno::EIO
                })?;
            let Some((last, _)) = page.last() else {
                return Ok(deleted);
            };
            after = Some(last.clone());
            for (k, v) in page {
                if self.collect_one(k, &v).await? {
                    deleted += 1;
                }
            }
        }
    }

    /// Deletes the shards of one queued chunk unless it is in use again.
    async fn collect_one(&self, key: Vec<u8>, value: &[u8]) -> FsResult<bool> {
        let id = ChunkId(key[1..33].try_into().unwrap());
        let rec: ChunkRecord = decode_record(value).map_err(|e| {
            tracing::error!("collection queue: {e}");
            Errno::EIO
        })?;
        {
            // Take the chunk off the queue, unless a file uses it again or a commit
            // is about to.
            let _g = self.meta.lock().await;
            // In use again: its shards are used again, unless it is inline now
            // (stored anew while these shards waited): they go all the same.
            if self
                .idx
                .chunk(&id)?
                .is_some_and(|c| !c.is_inline() || rec.is_inline())
            {
                let mut b = Batch::default();
                b.delete(key);
                self.idx.apply(b)?;
                return Ok(false);
            }
            if rec.is_inline() {
                // Nothing on the backends: the queue entry was all that was left.
                let mut b = Batch::default();
                b.delete(key);
                self.idx.apply(b)?;
                return Ok(true);
            }
            if !self.guards.begin_delete(id) {
                return Ok(false);
            }
        }
        let result = self.vol.delete_chunk(id, &rec).await;
        let done = match result {
            Ok(()) => {
                let _g = self.meta.lock().await;
                let mut b = Batch::default();
                b.delete(key);
                self.idx.apply(b).map(|_| true)
            }
            Err(f) => {
                tracing::warn!(
                    "chunk {id}: deleting shard {} on {} failed, will retry: {}",
                    f.index,
                    f.backend,
                    f.reason
                );
                Ok(false)
            }
        };
        self.guards.end_delete(id);
        Ok(done?)
    }

    /// Rewrites the shards that writes during an outage could not store, for chunks
    /// whose missing backends answer again. Returns (chunks repaired, chunks still
    /// degraded).
    pub async fn repair_degraded(&self) -> FsResult<(usize, usize)> {
        let rows = self
            .idx
            .store()
            .scan(&[keys::DEGRADED], None, usize::MAX)
            .map_err(|e| {
                tracing::error!("{e}");
                Errno::EIO
            })?;
        let (mut repaired, mut left) = (0, 0);
        for (k, v) in rows {
            let id = ChunkId(k[1..33].try_into().unwrap());
            let d: crate::format::DegradedRecord = decode_record(&v).map_err(|e| {
                tracing::error!("degraded record: {e}");
                Errno::EIO
            })?;
            // Keep the collector away while the chunk is being completed.
            let _hold = self.guards.reference(id).await;
            // Gone, or inline (no shards to write): nothing to complete.
            let Some(rec) = self.idx.chunk(&id)?.filter(|r| !r.is_inline()) else {
                let _g = self.meta.lock().await;
                let mut b = Batch::default();
                b.delete(k);
                self.idx.apply(b)?;
                continue;
            };
            let missing: Vec<usize> = d.missing.iter().map(|m| *m as usize).collect();
            let n = self.vol.slots.len();
            if missing
                .iter()
                .any(|i| self.vol.health[rec.placement[*i] as usize % n].is_down())
            {
                left += 1;
                continue;
            }
            let done = self.vol.rewrite_shards(id, &rec, &missing).await.is_ok();
            if done {
                let _g = self.meta.lock().await;
                let mut b = Batch::default();
                b.delete(k);
                self.idx.apply(b)?;
                repaired += 1;
                tracing::info!(
                    "chunk {id}: {} missing shard(s) written; full redundancy again",
                    missing.len()
                );
            } else {
                left += 1;
            }
        }
        Ok((repaired, left))
    }

    /// Completes degraded chunks in the background, every `every`.
    pub fn spawn_degraded_repair(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(fs) = weak.upgrade() else { return };
                if !fs.opts.read_only {
                    let _ = fs.repair_degraded().await;
                }
            }
        })
    }

    /// Runs garbage collection whenever chunks are queued (and every minute),
    /// after the sweep of unnamed snapshot trees.
    pub fn spawn_collector(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let gc_wake = self.gc_wake.clone();
        tokio::spawn(async move {
            loop {
                let Some(fs) = weak.upgrade() else { return };
                let wake = gc_wake.notified();
                if !fs.opts.read_only {
                    // Snapshot trees nothing names (left by a crash while one was
                    // being taken or deleted) release their chunks first.
                    if let Err(e) = fs.sweep_trees().await {
                        tracing::warn!("sweeping snapshot trees: {e}");
                    }
                    let _ = fs.collect_garbage().await;
                }
                drop(fs);
                let _ = tokio::time::timeout(Duration::from_secs(60), wake).await;
            }
        })
    }
}
