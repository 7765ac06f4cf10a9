//! A wrapping backend that injects failures, so tests can make a provider go down,
//! hang, slow down, lie or break with one line of setup.

use super::{Backend, ObjectInfo, StoreError, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
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
}

#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    fault: Mutex<Fault>,
    ops: AtomicU64,
}

impl FaultyBackend {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        FaultyBackend {
            inner,
            fault: Mutex::new(Fault::None),
            ops: AtomicU64::new(0),
        }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
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
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<bool> {
        self.before(true).await?;
        self.inner.put_if_absent(key, data).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.before(false).await?;
        Ok(self.mangle(self.inner.get(key).await?))
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.before(false).await?;
        Ok(self.mangle(self.inner.get_range(key, range).await?))
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
