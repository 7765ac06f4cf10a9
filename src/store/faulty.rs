//! A wrapping backend that injects failures, so tests can make a provider go down,
//! hang, slow down, lie or break with one line of setup.

use super::{Backend, ObjectInfo, StoreError, StoreResult, ThawState, ThawTier};
use crate::policy::class::StorageClass;
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Behaves like the wrapped backend.
    None,
    /// Every operation fails at once as unreachable (connection refused).
    Down,
    /// Every operation waits forever (a frozen server).
    Hang,
    /// Every operation is delayed, then runs.
    Slow(Duration),
    /// Reads return the object with one byte flipped in the middle.
    CorruptReads,
    /// Reads return only the first half of the object.
    TruncateReads,
    /// Writes fail as unreachable; reads work.
    RejectWrites,
    /// Flushes (`sync`) fail, as on a disk that reports a write error late;
    /// everything else works.
    RejectSync,
    /// The next `n` operations work, then every one fails as unreachable.
    FailAfter(u64),
    /// Every shard object (`chunks/...`) is in an archive class: reading one
    /// fails with [`StoreError::Archived`] until a thaw of it is requested
    /// ([`Backend::restore`]); from then on it reads (a thaw that completes at
    /// once). Other objects, and writes, work. Setting this fault again
    /// archives every shard again.
    Archived,
}

#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    fault: Mutex<Fault>,
    ops: AtomicU64,
    /// Under `Fault::Archived`: the shards whose thaw was requested.
    thawed: Mutex<HashSet<String>>,
    /// While thaws are held (`hold_thaws`): shards whose thaw was requested
    /// and is in progress (not readable yet).
    thawing: Mutex<Option<HashSet<String>>>,
    /// Thaw (restore) requests received.
    restores: AtomicU64,
}

impl FaultyBackend {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        FaultyBackend {
            inner,
            fault: Mutex::new(Fault::None),
            ops: AtomicU64::new(0),
            thawed: Mutex::new(HashSet::new()),
            thawing: Mutex::new(None),
            restores: AtomicU64::new(0),
        }
    }

    /// With `true`, thaws requested under `Fault::Archived` stay in progress
    /// (the shards unreadable, `thaw_state` says so) until `hold_thaws(false)`
    /// completes them all, as a provider's take hours.
    pub fn hold_thaws(&self, hold: bool) {
        let mut held = self.thawing.lock().unwrap();
        if hold {
            held.get_or_insert_with(HashSet::new);
        } else if let Some(keys) = held.take() {
            self.thawed.lock().unwrap().extend(keys);
        }
    }

    /// Thaw (restore) requests received so far.
    pub fn restores(&self) -> u64 {
        self.restores.load(Ordering::SeqCst)
    }

    /// Under `Fault::Archived` with thaws held, whether `key`'s thaw is in progress.
    fn thawing(&self, key: &str) -> bool {
        self.thawing
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|k| k.contains(key))
    }

    pub fn set(&self, fault: Fault) {
        if fault == Fault::Archived {
            self.thawed.lock().unwrap().clear();
            if let Some(held) = self.thawing.lock().unwrap().as_mut() {
                held.clear();
            }
        }
        *self.fault.lock().unwrap() = fault;
    }

    /// Under `Fault::Archived`, whether `key` is an archived shard not thawed.
    fn frozen(&self, key: &str) -> bool {
        self.fault() == Fault::Archived
            && crate::format::parse_shard_key(key).is_some()
            && !self.thawed.lock().unwrap().contains(key)
    }

    /// Fails a read of a frozen shard as the provider would.
    fn check_thawed(&self, key: &str) -> StoreResult<()> {
        if self.frozen(key) {
            return Err(StoreError::Archived(format!(
                "{} {key} (injected)",
                self.inner.describe()
            )));
        }
        Ok(())
    }

    /// Operations asked of this backend so far (whatever their outcome).
    pub fn operations(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap()
    }

    fn unreachable(&self, what: &str) -> StoreError {
        StoreError::Unavailable(format!("{} {what} (injected)", self.inner.describe()))
    }

    /// Applies the fault to one operation before it reaches the wrapped backend.
    async fn before(&self, write: bool) -> StoreResult<()> {
        self.ops.fetch_add(1, Ordering::SeqCst);
        let fault = {
            let mut f = self.fault.lock().unwrap();
            if let Fault::FailAfter(n) = *f {
                if n == 0 {
                    return Err(self.unreachable("failed after its allowed operations"));
                }
                *f = Fault::FailAfter(n - 1);
            }
            *f
        };
        match fault {
            Fault::Down => Err(self.unreachable("is down")),
            Fault::RejectWrites if write => Err(self.unreachable("rejects writes")),
            Fault::Hang => futures::future::pending().await,
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn mangle(&self, b: Bytes) -> Bytes {
        match self.fault() {
            Fault::CorruptReads if !b.is_empty() => {
                let mut v = b.to_vec();
                let mid = v.len() / 2;
                v[mid] ^= 0x5a;
                Bytes::from(v)
            }
            Fault::TruncateReads => b.slice(..b.len() / 2),
            _ => b,
        }
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.before(true).await?;
        self.inner.put(key, data).await
    }
    async fn put_unsynced(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.before(true).await?;
        self.inner.put_unsynced(key, data).await
    }
    async fn sync(&self) -> StoreResult<()> {
        self.before(true).await?;
        if self.fault() == Fault::RejectSync {
            return Err(StoreError::Other(format!(
                "{} could not flush its writes to disk (injected)",
                self.inner.describe()
            )));
        }
        self.inner.sync().await
    }
    async fn put_unsynced_in(
        &self,
        key: &str,
        data: Bytes,
        class: StorageClass,
    ) -> StoreResult<()> {
        self.before(true).await?;
        self.inner.put_unsynced_in(key, data, class).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<bool> {
        self.before(true).await?;
        self.inner.put_if_absent(key, data).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.before(false).await?;
        let data = self.inner.get(key).await?;
        self.check_thawed(key)?;
        Ok(self.mangle(data))
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.before(false).await?;
        let data = self.inner.get_range(key, range).await?;
        self.check_thawed(key)?;
        Ok(self.mangle(data))
    }
    async fn restore(&self, key: &str, days: u32, tier: ThawTier) -> StoreResult<ThawState> {
        self.before(false).await?;
        self.restores.fetch_add(1, Ordering::SeqCst);
        let state = self.inner.restore(key, days, tier).await?;
        if self.frozen(key) {
            match self.thawing.lock().unwrap().as_mut() {
                Some(held) => held.insert(key.to_string()),
                None => self.thawed.lock().unwrap().insert(key.to_string()),
            };
            return Ok(ThawState::InProgress {
                class: StorageClass::S3DeepArchive,
                tier: Some(tier),
            });
        }
        Ok(state)
    }
    async fn thaw_state(&self, key: &str) -> StoreResult<ThawState> {
        self.before(false).await?;
        let state = self.inner.thaw_state(key).await?;
        if self.fault() == Fault::Archived && crate::format::parse_shard_key(key).is_some() {
            let class = StorageClass::S3DeepArchive;
            return Ok(if self.thawing(key) {
                ThawState::InProgress { class, tier: None }
            } else if self.frozen(key) {
                ThawState::Archived { class }
            } else {
                ThawState::Ready { class, until: None }
            });
        }
        Ok(state)
    }
    async fn head(&self, key: &str) -> StoreResult<Option<u64>> {
        self.before(false).await?;
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.before(true).await?;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        self.before(false).await?;
        self.inner.list(prefix).await
    }
    fn capacity(&self) -> Option<(u64, u64)> {
        self.inner.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{shard_key, ChunkId};

    fn memory() -> Arc<dyn Backend> {
        Arc::new(
            crate::store::open_backend("memory://", &Default::default(), &Default::default())
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn archived_shards_read_only_after_a_thaw_request() {
        let b = FaultyBackend::new(memory());
        let s0 = shard_key(&ChunkId::of(b"chunk"), 0);
        let s1 = shard_key(&ChunkId::of(b"chunk"), 1);
        for k in [&s0, &s1, &"meta/superblock".to_string()] {
            b.put_unsynced_in(k, Bytes::from_static(b"data"), StorageClass::S3DeepArchive)
                .await
                .unwrap();
        }
        b.set(Fault::Archived);
        // Shards are archived; metadata objects are not.
        let e = b.get(&s0).await.unwrap_err();
        assert!(matches!(e, StoreError::Archived(_)), "{e}");
        assert!(e.to_string().contains("thawed"), "{e}");
        assert!(matches!(
            b.get_range(&s1, 0..2).await,
            Err(StoreError::Archived(_))
        ));
        assert_eq!(&b.get("meta/superblock").await.unwrap()[..], b"data");
        assert_eq!(
            b.thaw_state(&s0).await.unwrap(),
            ThawState::Archived {
                class: StorageClass::S3DeepArchive
            }
        );
        // A missing shard is missing, not archived.
        let missing = shard_key(&ChunkId::of(b"other"), 0);
        assert!(matches!(
            b.get(&missing).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            b.restore(&missing, 1, ThawTier::Standard).await,
            Err(StoreError::NotFound(_))
        ));
        // A thaw request thaws that shard only.
        let st = b.restore(&s0, 1, ThawTier::Bulk).await.unwrap();
        assert_eq!(
            st,
            ThawState::InProgress {
                class: StorageClass::S3DeepArchive,
                tier: Some(ThawTier::Bulk)
            }
        );
        assert_eq!(&b.get(&s0).await.unwrap()[..], b"data");
        assert!(b.thaw_state(&s0).await.unwrap().readable());
        assert!(matches!(b.get(&s1).await, Err(StoreError::Archived(_))));
        // Setting the fault again archives everything again; clearing it
        // leaves plain reads.
        b.set(Fault::Archived);
        assert!(matches!(b.get(&s0).await, Err(StoreError::Archived(_))));
        b.set(Fault::None);
        assert_eq!(&b.get(&s1).await.unwrap()[..], b"data");
        assert_eq!(b.thaw_state(&s1).await.unwrap(), ThawState::NotArchived);
        // Held thaws stay in progress until released.
        b.set(Fault::Archived);
        b.hold_thaws(true);
        let before = b.restores();
        b.restore(&s0, 1, ThawTier::Standard).await.unwrap();
        assert_eq!(b.restores(), before + 1);
        assert!(matches!(b.get(&s0).await, Err(StoreError::Archived(_))));
        assert!(matches!(
            b.thaw_state(&s0).await.unwrap(),
            ThawState::InProgress { .. }
        ));
        b.hold_thaws(false);
        assert_eq!(&b.get(&s0).await.unwrap()[..], b"data");
        assert!(matches!(b.get(&s1).await, Err(StoreError::Archived(_))));
    }
}
