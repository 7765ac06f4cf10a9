//! Keeps garbage collection and new references of the same chunk apart.
//!
//! A commit registers every chunk it is about to reference (uploaded or found in
//! the index) before it looks at the index, and holds the registration until its
//! batch is applied. The collector only deletes chunks that nobody has registered,
//! and a commit that finds a chunk being deleted waits until the deletion is over
//! and then uploads it afresh.
//!
//! It also keeps one upload per chunk id at a time: sealing uses a random nonce,
//! so two uploads of the same chunk would store two different sealed forms under
//! the same shard names and mix their shards. A chunk uploaded by a commit whose
//! batch is not applied yet is remembered here, so a concurrent commit that
//! needs the same chunk uses that upload instead of making another.

use crate::format::{ChunkId, ChunkRecord};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
pub struct ChunkGuards {
    state: Mutex<GuardState>,
    deleted: Notify,
}

#[derive(Default)]
struct GuardState {
    referencing: HashMap<ChunkId, usize>,
    deleting: HashSet<ChunkId>,
    /// Held while a chunk is being looked up and, if need be, uploaded.
    uploading: HashMap<ChunkId, Arc<tokio::sync::Mutex<()>>>,
    /// Uploaded by a commit still in progress: the record and the shards that
    /// could not be stored.
    stored: HashMap<ChunkId, (ChunkRecord, Vec<usize>)>,
}

/// A commit's hold on one chunk; released on drop.
pub struct RefGuard {
    guards: Arc<ChunkGuards>,
    id: ChunkId,
}

impl Drop for RefGuard {
    fn drop(&mut self) {
        let mut s = self.guards.state.lock().unwrap();
        if let Some(n) = s.referencing.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                // Nobody is storing or about to reference it: what a commit
                // uploaded is in the index now (or was never referenced).
                s.referencing.remove(&self.id);
                s.uploading.remove(&self.id);
                s.stored.remove(&self.id);
            }
        }
    }
}

impl ChunkGuards {
    pub async fn reference(self: &Arc<Self>, id: ChunkId) -> RefGuard {
        loop {
            let notified = self.deleted.notified();
            {
                let mut s = self.state.lock().unwrap();
                if !s.deleting.contains(&id) {
                    *s.referencing.entry(id).or_default() += 1;
                    return RefGuard {
                        guards: self.clone(),
                        id,
                    };
                }
            }
            notified.await;
        }
    }

    /// The lock that makes uploads of `id` one at a time. Take it while holding a
    /// reference (so that the lock stays the same one for everybody).
    pub fn upload_lock(&self, id: ChunkId) -> Arc<tokio::sync::Mutex<()>> {
        self.state
            .lock()
            .unwrap()
            .uploading
            .entry(id)
            .or_default()
            .clone()
    }

    /// The upload of `id` by a commit still in progress, if any.
    pub fn stored(&self, id: &ChunkId) -> Option<(ChunkRecord, Vec<usize>)> {
        self.state.lock().unwrap().stored.get(id).cloned()
    }

    /// Remembers an upload of `id` until nobody references it any more.
    pub fn remember(&self, id: ChunkId, rec: ChunkRecord, missing: Vec<usize>) {
        self.state.lock().unwrap().stored.insert(id, (rec, missing));
    }

    /// Marks `id` as being deleted unless a commit references it.
    pub fn begin_delete(&self, id: ChunkId) -> bool {
        let mut s = self.state.lock().unwrap();
        if s.referencing.contains_key(&id) {
            return false;
        }
        s.deleting.insert(id)
    }

    pub fn end_delete(&self, id: ChunkId) {
        self.state.lock().unwrap().deleting.remove(&id);
        self.deleted.notify_waiters();
    }
}
