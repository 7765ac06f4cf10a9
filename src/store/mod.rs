//! The store layer: one [`Backend`] trait over every kind of storage provider.
//!
//! `object_store` is used in this module tree only (`object.rs`). Everything above
//! speaks `Backend`: put/get whole objects, ranged gets, head, list, delete, and a
//! conditional create where the provider supports one; uploads in a storage
//! class, and thaws of objects in an archive class (`archive.rs`).

pub mod archive;
mod faulty;
pub mod health;
mod object;

pub use archive::{expected_wait, ThawState, ThawTier, ThawWait};
pub use faulty::{Fault, FaultyBackend};
pub use object::{env_options, open_backend, ObjectBackend};

use crate::policy::class::StorageClass;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The backend cannot be reached at all (folder missing, connection refused...).
    #[error("unreachable: {0}")]
    Unavailable(String),
    /// The object is in an archive class (S3 GLACIER or DEEP_ARCHIVE, Azure
    /// Archive) and cannot be read until it is thawed ([`Backend::restore`]).
    /// The backend answered: this is not a failure of the backend.
    #[error("{0} is in an archive storage class and cannot be read until it is thawed: request a thaw (restore) and read it again once the thaw has completed")]
    Archived(String),
    #[error("{0}")]
    Other(String),
    #[error("invalid backend URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// When it was last written, where the provider says.
    pub modified: Option<std::time::SystemTime>,
}

/// A storage provider holding one volume's objects under its root.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The URL (or another human description) of this backend.
    fn describe(&self) -> String;
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()>;
    /// Stores `key` like `put`, but the object may only survive a power cut once a
    /// later [`Backend::sync`] has returned. Shard uploads use it, so a local
    /// folder flushes a whole file's shards at once instead of one by one. A
    /// provider whose `put` is durable when it returns needs nothing else.
    async fn put_unsynced(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.put(key, data).await
    }
    /// Stores `key` like `put_unsynced`, in storage class `class` of the
    /// backend's provider (made durable by the same later `sync`). A cloud
    /// refuses a class that is not one of its provider's
    /// ([`Provider::classes`](crate::policy::class::Provider::classes)); a
    /// provider with a single class (local folders, memory) stores the object
    /// as `put_unsynced` does, whatever the class: that is what this default
    /// does, so a cloud implementation must override it.
    async fn put_unsynced_in(
        &self,
        key: &str,
        data: Bytes,
        class: StorageClass,
    ) -> StoreResult<()> {
        let _ = class;
        self.put_unsynced(key, data).await
    }
    /// Makes every object stored by `put_unsynced` before this call durable.
    async fn sync(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Creates `key` only if it does not exist. Returns `false` if it already existed.
    /// Providers without conditional writes fall back to head-then-put.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<bool>;
    async fn get(&self, key: &str) -> StoreResult<Bytes>;
    /// Reads the whole object `key` into two places: its first `head.len()`
    /// bytes into `head` and the `body_len` bytes after them appended to `body`
    /// (reserving room there if it has none). Returns the object's size; an
    /// object of any other size than `head.len() + body_len` is not read (head
    /// and body are left as they were). Chunk reads use it to read each shard's
    /// payload straight into its place in the chunk's buffer.
    async fn get_into(
        &self,
        key: &str,
        head: &mut [u8],
        body: &mut BytesMut,
        body_len: usize,
    ) -> StoreResult<u64> {
        get_into_by_get(self, key, head, body, body_len).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes>;
    /// Size of the object, or `None` if it does not exist.
    async fn head(&self, key: &str) -> StoreResult<Option<u64>>;
    /// Deletes `key`; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> StoreResult<()>;
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>>;
    /// Asks the provider to thaw `key` if it is in an archive class, for `days`
    /// days (how long S3 keeps the thawed copy readable; Azure moves the blob
    /// to the Hot tier for good and ignores it) at speed `tier`. Returns where
    /// the thaw stands after the request: `NotArchived` (nothing to thaw),
    /// `InProgress` (asked now or before), or `Ready` (already thawed: nothing
    /// is asked again). Fails with `NotFound` for a missing key. The default,
    /// for providers without archive classes, only checks that the key exists.
    async fn restore(&self, key: &str, days: u32, tier: ThawTier) -> StoreResult<ThawState> {
        let _ = (days, tier);
        self.thaw_state(key).await
    }
    /// Where a thaw of `key` stands, without asking for one (`Archived` when
    /// none was asked). Fails with `NotFound` for a missing key. The default,
    /// for providers without archive classes: `NotArchived` if the key exists.
    async fn thaw_state(&self, key: &str) -> StoreResult<ThawState> {
        match self.head(key).await? {
            Some(_) => Ok(ThawState::NotArchived),
            None => Err(StoreError::NotFound(key.to_string())),
        }
    }
    /// Total and available bytes, where the provider can tell (local folders).
    fn capacity(&self) -> Option<(u64, u64)> {
        None
    }
}

pub type DynBackend = Arc<dyn Backend>;

/// [`Backend::get_into`] for a provider that can only hand out whole objects: one
/// `get`, then a copy into `head` and `body`.
pub async fn get_into_by_get<B: Backend + ?Sized>(
    backend: &B,
    key: &str,
    head: &mut [u8],
    body: &mut BytesMut,
    body_len: usize,
) -> StoreResult<u64> {
    let obj = backend.get(key).await?;
    if obj.len() == head.len() + body_len {
        head.copy_from_slice(&obj[..head.len()]);
        body.extend_from_slice(&obj[head.len()..]);
    }
    Ok(obj.len() as u64)
}

/// How a cloud client treats a slow or dead provider. The defaults make a dead
/// provider fail within seconds instead of object_store's minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSettings {
    /// Time to establish a connection.
    pub connect_timeout: std::time::Duration,
    /// Time for a whole request, body included.
    pub request_timeout: std::time::Duration,
    /// Retries of a failed request.
    pub retries: usize,
    /// Time after which a request is not retried any more.
    pub retry_timeout: std::time::Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            connect_timeout: std::time::Duration::from_secs(2),
            request_timeout: std::time::Duration::from_secs(10),
            retries: 2,
            retry_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// Options of one backend from the config file (`[backend.options]`), handed to
/// the provider's client as configuration keys.
pub type BackendOptions = BTreeMap<String, String>;
