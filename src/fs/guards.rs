//! Keeps garbage collection and new references of the same chunk apart.
//!
//! A commit registers every chunk it is about to reference (uploaded or found in
//! the index) before it looks at the index, and holds the registration until its
//! batch is applied. The collector only deletes chunks that nobody has registered,
//! and a commit that finds a chunk being deleted waits until the deletion is over
//! and then uploads it afresh.

use crate::format::ChunkId;
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
                s.referencing.remove(&self.id);
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
