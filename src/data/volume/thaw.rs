//! Thaws of chunks whose shards are in an archive class (S3 GLACIER or
//! DEEP_ARCHIVE, Azure Archive).
//!
//! A chunk needs a thaw when fewer than k of its shards can be read without
//! one. `thaw_chunk` asks for just enough of them: k minus the instantly
//! readable shards on backends that answer, the classes that thaw fastest
//! first. What was asked is remembered for a while, so that readers retrying
//! a read send no new requests; after that the provider is asked where the
//! thaw stands (`thaw_state`) before anything is requested again, which also
//! covers thaws asked by another process (`cloudraid thaw`, another mount).

use super::Volume;
use crate::format::{ChunkId, ChunkRecord};
use crate::policy::class::StorageClass;
use crate::store::{expected_wait, ThawState, ThawTier, ThawWait};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many days a thawed S3 copy stays readable unless asked otherwise.
pub const DEFAULT_THAW_DAYS: u32 = 7;

/// For this long after a thaw was asked for, it is taken to be in progress
/// without asking the provider again.
const TRUST_ASKED: Duration = Duration::from_secs(60);

/// How thaws are asked for: speed (and price) and, for S3, how long the
/// thawed copy stays readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThawSettings {
    pub tier: ThawTier,
    pub days: u32,
}

impl Default for ThawSettings {
    fn default() -> Self {
        ThawSettings {
            tier: ThawTier::Standard,
            days: DEFAULT_THAW_DAYS,
        }
    }
}

/// The class shard `i` of a chunk is stored in (Standard for records
/// without classes).
pub(crate) fn shard_class(rec: &ChunkRecord, i: usize) -> StorageClass {
    rec.classes
        .get(i)
        .and_then(|c| StorageClass::from_code(*c))
        .unwrap_or_default()
}

/// The longer of two waits (by their upper bound, then their lower one).
pub fn longer_wait(a: Option<ThawWait>, b: Option<ThawWait>) -> Option<ThawWait> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if (y.max, y.min) > (x.max, x.min) {
            y
        } else {
            x
        }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Shard keys whose thaw this process asked for, when, and the wait
/// expected; and the backends (slots) a read that needed a thaw could not
/// use shards of.
#[derive(Default)]
pub(super) struct Asked {
    keys: Mutex<HashMap<String, (Instant, Option<ThawWait>)>>,
    unusable: Mutex<HashMap<usize, Instant>>,
}

impl Asked {
    fn recent(&self, key: &str) -> Option<Option<ThawWait>> {
        let mut m = self.keys.lock().unwrap();
        m.retain(|_, (at, _)| at.elapsed() < TRUST_ASKED);
        m.get(key).map(|(_, w)| *w)
    }

    fn remember(&self, key: String, wait: Option<ThawWait>) {
        self.keys
            .lock()
            .unwrap()
            .insert(key, (Instant::now(), wait));
    }

    /// A read that needed a thaw could not use shards of these slots (a
    /// backend failing, not yet marked down): for a while, thaws count no
    /// instant shard there.
    pub(super) fn failed(&self, slots: Vec<usize>) {
        let mut m = self.unusable.lock().unwrap();
        m.retain(|_, at| at.elapsed() < TRUST_ASKED);
        for s in slots {
            m.insert(s, Instant::now());
        }
    }

    fn unusable(&self, slot: usize) -> bool {
        let m = self.unusable.lock().unwrap();
        m.get(&slot).is_some_and(|at| at.elapsed() < TRUST_ASKED)
    }
}

/// Where the thaw of one chunk stands after `thaw_chunk`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkThaw {
    /// Archived shards that must be readable for the chunk to be read (k minus
    /// its instantly readable shards on backends that answer); 0: none.
    pub needed: usize,
    /// Thaw (restore) requests sent now.
    pub requested: usize,
    /// Archived shards being thawed (asked now or before).
    pub in_progress: usize,
    /// Archived shards readable now (thawed).
    pub ready: usize,
    /// Of `needed`, shards no thaw could be asked for (see `errors`).
    pub short: usize,
    /// The longest usual wait of the thaws in progress.
    pub wait: Option<ThawWait>,
    /// Shards that could not be asked about, one line each.
    pub errors: Vec<String>,
}

impl ChunkThaw {
    /// Readable now: nothing to wait for.
    pub fn readable(&self) -> bool {
        self.ready >= self.needed
    }
}

impl Volume {
    /// Asks for the thaws chunk `id` needs to be read: enough of its archived
    /// shards to reach k readable ones, those whose class thaws fastest
    /// first. Shards thawed already or being thawed are counted, not asked
    /// again. An inline chunk, or one with k instantly readable shards, needs
    /// nothing.
    pub async fn thaw_chunk(&self, id: ChunkId, rec: &ChunkRecord, how: ThawSettings) -> ChunkThaw {
        let mut out = ChunkThaw::default();
        if rec.is_inline() {
            return out;
        }
        let total = rec.placement.len();
        let down = |i: usize| {
            let s = rec.placement[i] as usize % self.slots.len();
            self.health[s].is_down() || self.thaws.unusable(s)
        };
        let instant = (0..total)
            .filter(|&i| shard_class(rec, i).instant() && !down(i))
            .count();
        out.needed = (rec.k as usize).saturating_sub(instant);
        let mut candidates: Vec<usize> = (0..total)
            .filter(|&i| !shard_class(rec, i).instant() && !down(i))
            .collect();
        candidates.sort_by_key(|&i| {
            let w = expected_wait(shard_class(rec, i), how.tier);
            (w.map(|w| (w.max, w.min)), i)
        });
        for i in candidates {
            if out.ready + out.in_progress >= out.needed {
                break;
            }
            self.thaw_shard(id, rec, i, how, &mut out).await;
        }
        out.short = out.needed.saturating_sub(out.ready + out.in_progress);
        out
    }

    /// Where shard `i`'s thaw stands; asks for one if none is under way.
    async fn thaw_shard(
        &self,
        id: ChunkId,
        rec: &ChunkRecord,
        i: usize,
        how: ThawSettings,
        out: &mut ChunkThaw,
    ) {
        let key = rec.shard_key(&id, i);
        let s = rec.placement[i];
        let slot = self.slot(s);
        if let Some(wait) = self.thaws.recent(&key) {
            out.in_progress += 1;
            out.wait = longer_wait(out.wait, wait);
            return;
        }
        let mut state = self.guarded(s, slot.backend.thaw_state(&key)).await;
        if let Ok(ThawState::Archived { .. }) = state {
            state = self
                .guarded(s, slot.backend.restore(&key, how.days, how.tier))
                .await;
            if state.is_ok() {
                out.requested += 1;
            }
        }
        match state {
            Ok(ThawState::NotArchived | ThawState::Ready { .. }) => out.ready += 1,
            Ok(ThawState::InProgress { tier, .. }) => {
                // The class the shard was stored in (the record's).
                let wait = expected_wait(shard_class(rec, i), tier.unwrap_or(how.tier));
                self.thaws.remember(key, wait);
                out.in_progress += 1;
                out.wait = longer_wait(out.wait, wait);
            }
            Ok(ThawState::Archived { .. }) => out.errors.push(format!(
                "shard {i} on {}: still archived after a thaw request",
                slot.name
            )),
            Err(e) => out.errors.push(format!("shard {i} on {}: {e}", slot.name)),
        }
    }
}
