//! The store layer: one [`Backend`] trait over every kind of storage provider.
//!
//! `object_store` is used in this module tree only (`object.rs`). Everything above
//! speaks `Backend`: put/get whole objects, ranged gets, head, list, delete, and a
//! conditional create where the provider supports one.

mod faulty;
pub mod health;
mod object;

pub use faulty::{Fault, FaultyBackend};
pub use object::{env_options, open_backend, ObjectBackend};

use async_trait::async_trait;
use bytes::Bytes;
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
    /// Makes every object stored by `put_unsynced` before this call durable.
    async fn sync(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Creates `key` only if it does not exist. Returns `false` if it already existed.
    /// Providers without conditional writes fall back to head-then-put.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<bool>;
    async fn get(&self, key: &str) -> StoreResult<Bytes>;
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes>;
    /// Size of the object, or `None` if it does not exist.
    async fn head(&self, key: &str) -> StoreResult<Option<u64>>;
    /// Deletes `key`; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> StoreResult<()>;
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>>;
    /// Total and available bytes, where the provider can tell (local folders).
    fn capacity(&self) -> Option<(u64, u64)> {
        None
    }
}

pub type DynBackend = Arc<dyn Backend>;

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
