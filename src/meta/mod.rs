//! The metadata layer: an ordered key-value store with atomic batches.
//!
//! `sled` is used in this module tree only (`sled_store.rs`). The typed index above
//! (`crate::meta::index`) is written once against [`MetaStore`]; [`MemMeta`] is the
//! in-memory implementation used by fast tests, and both pass one shared suite
//! (`tests/meta_conformance.rs`).

pub mod events;
pub mod index;
pub mod lease;
mod mem;
pub mod metalog;
mod sled_store;

pub use mem::MemMeta;
pub use sled_store::{disk_space, SledMeta, RESERVE_BYTES};

#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaError {
    #[error("local index: {0}")]
    Io(String),
    /// The local disk has no room for the index: changes are refused (ENOSPC).
    #[error("{0}")]
    Full(String),
    #[error(
        "local index at {path} is in use by another cloudraid process (is the volume mounted?)"
    )]
    Locked { path: String },
}

pub type MetaResult<T> = Result<T, MetaError>;

/// The filesystem under a persistent store (the state dir), for status.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LocalDisk {
    pub path: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Why changes are refused now (the disk is full), while that lasts.
    pub problem: Option<String>,
    /// Applied changes not yet written to disk (held in memory).
    pub unwritten_changes: u64,
}

/// A set of puts (`Some`) and deletes (`None`) applied all-or-nothing.
#[derive(Default, Debug, Clone)]
pub struct Batch {
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

pub trait MetaStore: Send + Sync {
    fn get(&self, key: &[u8]) -> MetaResult<Option<Vec<u8>>>;
    /// Up to `limit` entries whose key starts with `prefix` and sorts strictly after
    /// `after` (or from the start of the prefix), in key order.
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> MetaResult<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Applies every operation of the batch atomically, in order.
    fn apply(&self, batch: Batch) -> MetaResult<()>;
    /// Makes every applied batch durable.
    fn flush(&self) -> MetaResult<()>;
    /// Fails (with [`MetaError::Full`]) while changes would be refused, so that
    /// local writes beside the store (staging) stop too.
    fn accepts_changes(&self) -> MetaResult<()> {
        Ok(())
    }
    /// The local disk under the store, if it has one.
    fn local_disk(&self) -> Option<LocalDisk> {
        None
    }
}
