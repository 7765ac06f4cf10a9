//! A wrapping backend that injects failures, so tests can make a provider go down,
//! lie or break with one line of setup.

use super::{Backend, ObjectInfo, StoreError, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Behaves like the wrapped backend.
    None = 0,
    /// Every operation fails as unreachable.
    Down = 1,
    /// Reads return the object with one byte flipped in the middle.
    CorruptReads = 2,
    /// Writes fail as unreachable; reads work.
    RejectWrites = 3,
}

#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    fault: AtomicU8,
}

impl FaultyBackend {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        FaultyBackend {
            inner,
            fault: AtomicU8::new(Fault::None as u8),
        }
    }

    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }

    fn fault(&self) -> Fault {
        match self.fault.load(Ordering::SeqCst) {
            1 => Fault::Down,
            2 => Fault::CorruptReads,
            3 => Fault::RejectWrites,
            _ => Fault::None,
        }
    }

    fn check(&self, write: bool) -> StoreResult<()> {
        match self.fault() {
            Fault::Down => Err(StoreError::Unavailable(format!(
                "{} is down (injected)",
                self.inner.describe()
            ))),
            Fault::RejectWrites if write => Err(StoreError::Unavailable(format!(
                "{} rejects writes (injected)",
                self.inner.describe()
            ))),
            _ => Ok(()),
        }
    }

    fn corrupt(&self, b: Bytes) -> Bytes {
        if self.fault() != Fault::CorruptReads || b.is_empty() {
            return b;
        }
        let mut v = b.to_vec();
        let mid = v.len() / 2;
        v[mid] ^= 0x5a;
        Bytes::from(v)
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.check(true)?;
        self.inner.put(key, data).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<bool> {
        self.check(true)?;
        self.inner.put_if_absent(key, data).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.check(false)?;
        Ok(self.corrupt(self.inner.get(key).await?))
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.check(false)?;
        Ok(self.corrupt(self.inner.get_range(key, range).await?))
    }
    async fn head(&self, key: &str) -> StoreResult<Option<u64>> {
        self.check(false)?;
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.check(true)?;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        self.check(false)?;
        self.inner.list(prefix).await
    }
    fn capacity(&self) -> Option<(u64, u64)> {
        self.inner.capacity()
    }
}
