//! The typed index: inodes, directory entries, file contents, chunk records and
//! extended attributes, stored as versioned records in a [`MetaStore`].
//! Reads go straight to the store; writes are collected in a [`Batch`] and applied
//! atomically by the caller (see `fs.rs` for the locking rules).

use crate::format::{
    decode_record, encode_record, keys, ChunkId, ChunkRecord, ContentRecord, DirentRecord,
    InodeRecord, SnapshotRecord, SnapshotSettings, SuperRecord, TreeId, TreeRecord, TreeRefs,
};
use crate::meta::{Batch, MetaError, MetaStore};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("local index: {0}")]
    Damaged(String),
}

pub type IndexResult<T> = Result<T, IndexError>;

pub const ROOT_INO: u64 = 1;

#[derive(Clone)]
pub struct Index {
    store: Arc<dyn MetaStore>,
    journal: Option<Arc<Journal>>,
}

/// The journal of a journalled index: every applied batch is also written, in the
/// same atomic batch, as a `J` + seq entry, which the metadata log (`metalog.rs`)
/// uploads to the backends and then removes.
pub struct Journal {
    next: std::sync::Mutex<u64>,
    /// Woken at each new entry.
    pub wake: tokio::sync::Notify,
}

impl Index {
    /// An index whose changes are not journalled (tests of the core, tools).
    pub fn new(store: Arc<dyn MetaStore>) -> Self {
        Index {
            store,
            journal: None,
        }
    }

    /// An index whose every change is journalled for the metadata log.
    pub fn journaled(store: Arc<dyn MetaStore>) -> IndexResult<Self> {
        let idx = Index::new(store);
        let from_journal = idx.journal_entries(0, usize::MAX)?.last().map(|(s, _)| *s);
        let next = from_journal.unwrap_or(0).max(idx.log_state()?.pushed) + 1;
        Ok(Index {
            journal: Some(Arc::new(Journal {
                next: std::sync::Mutex::new(next),
                wake: tokio::sync::Notify::new(),
            })),
            ..idx
        })
    }

    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    /// Journal entries with a sequence number above `after`, oldest first.
    pub fn journal_entries(
        &self,
        after: u64,
        limit: usize,
    ) -> IndexResult<Vec<(u64, crate::format::LoggedOps)>> {
        let rows = self.store.scan(
            &[keys::JOURNAL],
            Some(&keys::ino(keys::JOURNAL, after)),
            limit,
        )?;
        rows.into_iter()
            .map(|(k, v)| {
                let seq = u64::from_be_bytes(k[1..9].try_into().expect("8-byte sequence"));
                Ok((seq, decode_record(&v).map_err(IndexError::Damaged)?))
            })
            .collect()
    }

    pub fn log_state(&self) -> IndexResult<crate::format::LogState> {
        Ok(self.get(keys::LOG_STATE)?.unwrap_or_default())
    }

    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.store
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> IndexResult<Option<T>> {
        match self.store.get(key)? {
            None => Ok(None),
            Some(v) => decode_record(&v).map(Some).map_err(IndexError::Damaged),
        }
    }

    pub fn superblock(&self) -> IndexResult<Option<SuperRecord>> {
        self.get(keys::SUPER)
    }
    pub fn inode(&self, ino: u64) -> IndexResult<Option<InodeRecord>> {
        self.get(&keys::ino(keys::INODE, ino))
    }
    pub fn dirent(&self, parent: u64, name: &[u8]) -> IndexResult<Option<DirentRecord>> {
        self.get(&keys::ino_name(keys::DIRENT, parent, name))
    }
    pub fn content(&self, ino: u64) -> IndexResult<Option<ContentRecord>> {
        self.get(&keys::ino(keys::CONTENT, ino))
    }
    pub fn chunk(&self, id: &ChunkId) -> IndexResult<Option<ChunkRecord>> {
        self.get(&keys::chunk(keys::CHUNK, id))
    }
    /// Shards recorded missing for chunk `id` (a degraded write).
    pub fn degraded(&self, id: &ChunkId) -> IndexResult<Option<crate::format::DegradedRecord>> {
        self.get(&keys::chunk(keys::DEGRADED, id))
    }

    /// Snapshot `id`.
    pub fn snapshot(&self, id: u32) -> IndexResult<Option<SnapshotRecord>> {
        self.get(&snapshot_key(id))
    }
    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> IndexResult<Vec<(u32, SnapshotRecord)>> {
        let mut all: Vec<(u32, SnapshotRecord)> = self
            .all::<SnapshotRecord>(keys::SNAPSHOT)?
            .into_iter()
            .map(|(k, r)| (u32::from_be_bytes(k[..4].try_into().expect("4-byte id")), r))
            .collect();
        all.sort_by_key(|(id, r)| (r.time, *id));
        Ok(all)
    }
    /// A snapshot tree, as stored (its bytes hash to its id).
    pub fn tree_bytes(&self, id: &TreeId) -> IndexResult<Option<Vec<u8>>> {
        Ok(self.store.get(&keys::tree(keys::TREE, id))?)
    }
    pub fn tree(&self, id: &TreeId) -> IndexResult<Option<TreeRecord>> {
        self.get(&keys::tree(keys::TREE, id))
    }
    /// How many snapshots and trees name tree `id`.
    pub fn tree_refs(&self, id: &TreeId) -> IndexResult<u64> {
        Ok(self
            .get::<TreeRefs>(&keys::tree(keys::TREE_REFS, id))?
            .map_or(0, |r| r.refs))
    }
    /// How many snapshot file entries use chunk `id`.
    pub fn chunk_tree_refs(&self, id: &ChunkId) -> IndexResult<u64> {
        Ok(self
            .get::<TreeRefs>(&keys::chunk(keys::CHUNK_TREE_REFS, id))?
            .map_or(0, |r| r.refs))
    }
    pub fn snapshot_settings(&self) -> IndexResult<SnapshotSettings> {
        Ok(self.get(keys::SNAPSHOT_SETTINGS)?.unwrap_or_default())
    }

    pub fn xattr(&self, ino: u64, name: &[u8]) -> IndexResult<Option<Vec<u8>>> {
        Ok(self.store.get(&keys::ino_name(keys::XATTR, ino, name))?)
    }

    /// Up to `limit` entries of directory `parent` with a cookie above `after`,
    /// in cookie order: (cookie, name).
    pub fn dir_entries(
        &self,
        parent: u64,
        after: u64,
        limit: usize,
    ) -> IndexResult<Vec<(u64, Vec<u8>)>> {
        let prefix = keys::ino(keys::DIRCOOKIE, parent);
        let start = keys::ino_u64(keys::DIRCOOKIE, parent, after);
        let rows = self.store.scan(&prefix, Some(&start), limit)?;
        Ok(rows
            .into_iter()
            .map(|(k, v)| (u64::from_be_bytes(k[9..17].try_into().unwrap()), v))
            .collect())
    }

    pub fn dir_is_empty(&self, ino: u64) -> IndexResult<bool> {
        Ok(self
            .store
            .scan(&keys::ino(keys::DIRENT, ino), None, 1)?
            .is_empty())
    }

    pub fn xattr_names(&self, ino: u64) -> IndexResult<Vec<Vec<u8>>> {
        let prefix = keys::ino(keys::XATTR, ino);
        Ok(self
            .store
            .scan(&prefix, None, usize::MAX)?
            .into_iter()
            .map(|(k, _)| k[9..].to_vec())
            .collect())
    }

    /// Every record under a one-byte prefix, decoded, with the key's remainder.
    pub fn all<T: serde::de::DeserializeOwned>(
        &self,
        prefix: u8,
    ) -> IndexResult<Vec<(Vec<u8>, T)>> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = self.store.scan(&[prefix], after.as_deref(), 4096)?;
            if rows.is_empty() {
                return Ok(out);
            }
            after = rows.last().map(|(k, _)| k.clone());
            for (k, v) in rows {
                out.push((
                    k[1..].to_vec(),
                    decode_record(&v).map_err(IndexError::Damaged)?,
                ));
            }
        }
    }

    /// Calls `f` with each record under a one-byte prefix, decoded, with the key's
    /// remainder, reading 256 records at a time: memory stays bounded however
    /// many there are (inline chunk records carry up to `inline_max` bytes each).
    pub fn each<T: serde::de::DeserializeOwned>(
        &self,
        prefix: u8,
        mut f: impl FnMut(&[u8], T),
    ) -> IndexResult<()> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = self.store.scan(&[prefix], after.as_deref(), 256)?;
            let Some((last, _)) = rows.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            for (k, v) in rows {
                f(&k[1..], decode_record(&v).map_err(IndexError::Damaged)?);
            }
        }
    }

    /// Applies a batch atomically; in a journalled index, with its journal entry.
    pub fn apply(&self, mut batch: Batch) -> IndexResult<()> {
        let Some(j) = &self.journal else {
            return Ok(self.store.apply(batch)?);
        };
        let mut next = j.next.lock().unwrap();
        let entry = encode_record(&batch.ops);
        batch.put(keys::ino(keys::JOURNAL, *next), entry);
        self.store.apply(batch)?;
        *next += 1;
        drop(next);
        j.wake.notify_one();
        Ok(())
    }

    /// Applies a batch without journalling it: the journal's own bookkeeping, and
    /// an index being rebuilt from the backends.
    pub fn apply_unjournaled(&self, batch: Batch) -> IndexResult<()> {
        Ok(self.store.apply(batch)?)
    }
    pub fn flush(&self) -> IndexResult<()> {
        Ok(self.store.flush()?)
    }
}

/// The key of snapshot `id`.
pub fn snapshot_key(id: u32) -> Vec<u8> {
    let mut k = vec![keys::SNAPSHOT];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Writes into a batch, with the same record encoding the getters read.
pub trait BatchExt {
    fn put_super(&mut self, r: &SuperRecord);
    fn put_inode(&mut self, ino: u64, r: &InodeRecord);
    fn put_content(&mut self, ino: u64, r: &ContentRecord);
    fn put_chunk(&mut self, id: &ChunkId, r: &ChunkRecord);
    fn put_dirent(&mut self, parent: u64, name: &[u8], r: &DirentRecord);
    fn del_dirent(&mut self, parent: u64, name: &[u8], cookie: u64);
}

impl BatchExt for Batch {
    fn put_super(&mut self, r: &SuperRecord) {
        self.put(keys::SUPER.to_vec(), encode_record(r));
    }
    fn put_inode(&mut self, ino: u64, r: &InodeRecord) {
        self.put(keys::ino(keys::INODE, ino), encode_record(r));
    }
    fn put_content(&mut self, ino: u64, r: &ContentRecord) {
        self.put(keys::ino(keys::CONTENT, ino), encode_record(r));
    }
    fn put_chunk(&mut self, id: &ChunkId, r: &ChunkRecord) {
        self.put(keys::chunk(keys::CHUNK, id), encode_record(r));
    }
    fn put_dirent(&mut self, parent: u64, name: &[u8], r: &DirentRecord) {
        self.put(keys::ino_name(keys::DIRENT, parent, name), encode_record(r));
        self.put(
            keys::ino_u64(keys::DIRCOOKIE, parent, r.cookie),
            name.to_vec(),
        );
    }
    fn del_dirent(&mut self, parent: u64, name: &[u8], cookie: u64) {
        self.delete(keys::ino_name(keys::DIRENT, parent, name));
        self.delete(keys::ino_u64(keys::DIRCOOKIE, parent, cookie));
    }
}
