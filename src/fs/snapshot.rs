//! Snapshots: read-only, point-in-time views of the tree, kept in the index as
//! content-addressed trees (one `T` record per directory, named by the SHA-256 of
//! its bytes) and replicated to the backends with the rest of the index by the
//! metadata log.
//!
//! Creating one walks the live index under the namespace lock (so it is one
//! instant: every file as its last commit, nothing half-written) and stores only
//! the directories whose bytes are new: an unchanged directory hashes to a tree
//! that is already there and is shared. Nothing is uploaded; the chunks are the
//! live files' own.
//!
//! References: a tree record holds one reference on each subtree it names (`U`)
//! and one on each data chunk of its files, per position (`K`), counted apart
//! from the live files' references (`C.refs`). A chunk is collected when both
//! counts are zero; a tree when nothing names it (`V`, swept by
//! [`Fs::sweep_trees`]). Deleting a snapshot releases its root; the sweep then
//! releases whatever only it held, tree by tree, each in one atomic batch.

use super::{Errno, Fs};
use crate::format::{
    encode_record, keys, snapshot_id_hex, ChunkId, ChunkRef, ContentRecord, InodeRecord, Kind,
    SnapshotRecord, TreeEntry, TreeId, TreeRecord, TreeRefs,
};
use crate::meta::index::{snapshot_key, IndexError, ROOT_INO};
use crate::meta::Batch;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::SyncSender;
use std::sync::Mutex;

/// Why a snapshot operation failed: one line for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapError(pub String);

impl std::fmt::Display for SnapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SnapError {}
impl From<Errno> for SnapError {
    fn from(e: Errno) -> Self {
        SnapError(if e == Errno::EROFS {
            "the volume is open read-only (or another machine took its write lease over): snapshots cannot change".into()
        } else {
            format!("local index: {e}")
        })
    }
}
impl From<IndexError> for SnapError {
    fn from(e: IndexError) -> Self {
        SnapError(e.to_string())
    }
}
impl From<String> for SnapError {
    fn from(e: String) -> Self {
        SnapError(e)
    }
}

pub type SnapResult<T> = Result<T, SnapError>;

pub use super::release::Freed;

/// What a new snapshot is to hold and say about itself.
#[derive(Clone, Debug, Default)]
pub struct NewSnapshot {
    pub tags: Vec<String>,
    /// Paths within the volume to cover (`/docs`, `photos/2024`); empty: everything.
    pub paths: Vec<String>,
    /// Who takes it: "cli", "schedule", a job's name...
    pub origin: String,
}

/// A snapshot as listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: String,
    /// Nanoseconds since the epoch.
    pub time_ns: i64,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub bytes: u64,
    pub added_bytes: u64,
    pub new_trees: u64,
    pub new_tree_bytes: u64,
    pub origin: String,
}

impl SnapshotInfo {
    pub fn of(id: u32, r: &SnapshotRecord) -> Self {
        SnapshotInfo {
            id: snapshot_id_hex(id),
            time_ns: r.time,
            tags: r.tags.clone(),
            paths: r.paths.clone(),
            files: r.files,
            dirs: r.dirs,
            others: r.others,
            bytes: r.bytes,
            added_bytes: r.added_bytes,
            new_trees: r.new_trees,
            new_tree_bytes: r.new_tree_bytes,
            origin: r.origin.clone(),
        }
    }
}

/// Index operations and chunk reference changes gathered before a batch is
/// applied during a walk: this bounds a walk's memory whatever the tree size.
const FLUSH_OPS: usize = 8192;

/// Which entries of a directory a snapshot covers.
enum Filter {
    All,
    Only(BTreeMap<Vec<u8>, Filter>),
}

impl Filter {
    fn of_paths(paths: &[Vec<Vec<u8>>]) -> Filter {
        if paths.is_empty() || paths.iter().any(|p| p.is_empty()) {
            return Filter::All;
        }
        let mut m: BTreeMap<Vec<u8>, Vec<Vec<Vec<u8>>>> = BTreeMap::new();
        for p in paths {
            m.entry(p[0].clone()).or_default().push(p[1..].to_vec());
        }
        Filter::Only(
            m.into_iter()
                .map(|(k, rest)| (k, Filter::of_paths(&rest)))
                .collect(),
        )
    }
}

/// The components of a path within the volume (`/a/b`, `a/b/`, `.` all work).
pub fn path_components(path: &str) -> SnapResult<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(SnapError(format!(
                    "path {path:?}: '..' is not allowed in a volume path"
                )))
            }
            c => out.push(c.as_bytes().to_vec()),
        }
    }
    Ok(out)
}

/// Reference count changes of one batch.
#[derive(Default)]
pub(super) struct TreeDelta {
    /// Change and plaintext length of each chunk.
    pub(super) chunks: HashMap<ChunkId, (i64, u32)>,
    pub(super) trees: HashMap<TreeId, i64>,
}

impl TreeDelta {
    fn content(&mut self, c: &ContentRecord, d: i64) {
        for r in &c.chunks {
            if let ChunkRef::Data { id, len } = r {
                self.chunks.entry(*id).or_insert((0, *len)).0 += d;
            }
        }
    }
    /// The references a tree record holds: its files' chunks and its subtrees.
    pub(super) fn tree(&mut self, t: &TreeRecord, d: i64) {
        for e in &t.entries {
            if let Some(c) = &e.content {
                self.content(c, d);
            }
            if let Some(sub) = &e.tree {
                *self.trees.entry(*sub).or_default() += d;
            }
        }
    }
}

/// A batch of new trees and the reference changes they make, for the writer.
type Written = (Batch, TreeDelta, Vec<TreeId>);

/// A snapshot being built. The walk hands full batches to a writer thread (at
/// most one waiting), so reading the index and writing to it overlap.
struct Build<'a> {
    batch: Batch,
    delta: TreeDelta,
    /// Trees of `batch`.
    here: Vec<TreeId>,
    /// Trees made by this walk and not yet in the index.
    pending: &'a Mutex<HashSet<TreeId>>,
    writer: Option<SyncSender<Written>>,
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
    new_trees: u64,
    new_tree_bytes: u64,
}

/// A snapshot entry made from a live inode.
pub(super) fn entry_of(name: &[u8], ino: u64, r: &InodeRecord) -> TreeEntry {
    TreeEntry {
        name: name.to_vec(),
        kind: r.kind,
        perm: r.perm,
        uid: r.uid,
        gid: r.gid,
        size: r.size,
        atime: r.atime,
        mtime: r.mtime,
        ctime: r.ctime,
        crtime: r.crtime,
        target: r.target.clone(),
        link: if r.kind != Kind::Dir && r.nlink > 1 {
            ino
        } else {
            0
        },
        nlink: r.nlink,
        xattrs: Vec::new(),
        content: None,
        tree: None,
    }
}

/// The inode record a snapshot entry stands for (read-only views use it).
pub(super) fn inode_of(e: &TreeEntry) -> InodeRecord {
    InodeRecord {
        kind: e.kind,
        perm: e.perm,
        uid: e.uid,
        gid: e.gid,
        nlink: e.nlink.max(1),
        size: e.size,
        atime: e.atime,
        mtime: e.mtime,
        ctime: e.ctime,
        crtime: e.crtime,
        parent: 0,
        next_cookie: 0,
        target: e.target.clone(),
    }
}

/// Runs a synchronous walk of the index without stalling the runtime's other
/// tasks, on a thread whose stack fits any directory depth (the walk recurses
/// once per level; a path of 4096 bytes has at most 2048 levels).
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let run = || {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("snapshot walk".into())
                .stack_size(256 << 20)
                .spawn_scoped(s, f)
                .expect("a thread for the snapshot walk")
                .join()
                .expect("the snapshot walk panicked")
        })
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(run)
        }
        _ => run(),
    }
}

impl Fs {
    // ----------------------------------------------------------------- create

    /// Takes a snapshot of the tree (or of `new.paths`) as committed now.
    pub async fn create_snapshot(&self, new: NewSnapshot) -> SnapResult<SnapshotInfo> {
        self.writable()?;
        let mut paths = Vec::new();
        for p in &new.paths {
            paths.push(path_components(p)?);
        }
        let _s = self.snap_lock.lock().await;
        let _g = self.meta.lock().await;
        let (id, rec) = blocking(|| self.create_snapshot_locked(&new, &paths))?;
        drop(_g);
        drop(_s);
        // A name the kernel may have cached as missing.
        self.forget_name(super::snapview::VIEW_BASE, snapshot_id_hex(id).as_bytes())
            .await;
        crate::meta::events::record(
            &self.idx,
            "snapshot_created",
            crate::format::Severity::Info,
            &snapshot_id_hex(id),
            &format!(
                "snapshot {} taken{}: {} files, {} bytes, {} new trees",
                snapshot_id_hex(id),
                if rec.tags.is_empty() {
                    String::new()
                } else {
                    format!(" (tags {})", rec.tags.join(", "))
                },
                rec.files,
                rec.bytes,
                rec.new_trees
            ),
        );
        Ok(SnapshotInfo::of(id, &rec))
    }

    fn create_snapshot_locked(
        &self,
        new: &NewSnapshot,
        paths: &[Vec<Vec<u8>>],
    ) -> SnapResult<(u32, SnapshotRecord)> {
        let time = super::now_nanos();
        // Every path must exist (a typo would silently make an empty snapshot).
        let mut shown = Vec::new();
        for (p, raw) in paths.iter().zip(&new.paths) {
            let mut ino = ROOT_INO;
            for c in p {
                let d = self.idx.dirent(ino, c)?.ok_or_else(|| {
                    SnapError(format!(
                        "{raw}: no such file or directory in the volume (see cloudraid ls)"
                    ))
                })?;
                ino = d.ino;
            }
            shown.push(format!(
                "/{}",
                p.iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            ));
        }
        shown.sort();
        shown.dedup();
        let filter = Filter::of_paths(paths);
        let pending = Mutex::new(HashSet::new());
        let (walked, written) = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Written>(1);
            let pending = &pending;
            let writer = std::thread::Builder::new()
                .name("snapshot writer".into())
                .spawn_scoped(s, move || -> SnapResult<u64> {
                    let mut added = 0;
                    for (mut batch, delta, trees) in rx {
                        added += self.apply_tree_delta(&mut batch, delta)?;
                        self.idx.apply(batch)?;
                        // Only once applied: the walk then finds them in the index.
                        let mut p = pending.lock().unwrap();
                        for t in trees {
                            p.remove(&t);
                        }
                    }
                    Ok(added)
                })
                .expect("a thread to write the snapshot");
            let mut b = Build {
                batch: Batch::default(),
                delta: TreeDelta::default(),
                here: Vec::new(),
                pending,
                writer: Some(tx),
                files: 0,
                dirs: 0,
                others: 0,
                bytes: 0,
                new_trees: 0,
                new_tree_bytes: 0,
            };
            let walked = self
                .build_tree(&mut b, ROOT_INO, &filter)
                .and_then(|tree| self.flush_build(&mut b).map(|_| tree));
            b.writer = None;
            let written = writer.join().expect("the snapshot writer panicked");
            (walked.map(|tree| (tree, b)), written)
        });
        // The writer's error first: a walk stopped by it only says it stopped.
        let added_bytes = written?;
        let (tree, b) = walked?;
        let root_rec = self.inode(ROOT_INO)?;
        let mut root = entry_of(b"", ROOT_INO, &root_rec);
        root.xattrs = self.xattrs_of(ROOT_INO)?;
        root.tree = Some(tree);
        let id = loop {
            let id: u32 = rand_u32();
            if id != 0 && self.idx.snapshot(id)?.is_none() {
                break id;
            }
        };
        let rec = SnapshotRecord {
            time,
            tags: new.tags.clone(),
            paths: shown,
            root,
            files: b.files,
            dirs: b.dirs,
            others: b.others,
            bytes: b.bytes,
            added_bytes,
            new_trees: b.new_trees,
            new_tree_bytes: b.new_tree_bytes,
            origin: new.origin.clone(),
        };
        // The record and its reference on the root in one batch: until then the
        // root is unnamed (a crash leaves it to the sweep).
        let mut batch = Batch::default();
        batch.put(snapshot_key(id), encode_record(&rec));
        let mut d = TreeDelta::default();
        d.trees.insert(tree, 1);
        self.apply_tree_delta(&mut batch, d)?;
        self.idx.apply(batch)?;
        Ok((id, rec))
    }

    fn xattrs_of(&self, ino: u64) -> SnapResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for name in self.idx.xattr_names(ino)? {
            if let Some(v) = self.idx.xattr(ino, &name)? {
                out.push((name, v));
            }
        }
        Ok(out)
    }

    /// The tree of directory `ino` (stored if new), its entries walked first.
    fn build_tree(&self, b: &mut Build, ino: u64, filter: &Filter) -> SnapResult<TreeId> {
        let mut entries = Vec::new();
        let prefix = keys::ino(keys::DIRENT, ino);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = self
                .idx
                .store()
                .scan(&prefix, after.as_deref(), 1024)
                .map_err(IndexError::from)?;
            let Some((last, _)) = rows.last() else { break };
            after = Some(last.clone());
            for (k, v) in rows {
                let name = &k[9..];
                let sub = match filter {
                    Filter::All => &Filter::All,
                    Filter::Only(m) => match m.get(name) {
                        Some(f) => f,
                        None => continue,
                    },
                };
                let d: crate::format::DirentRecord =
                    crate::format::decode_record(&v).map_err(IndexError::Damaged)?;
                let Some(r) = self.idx.inode(d.ino)? else {
                    tracing::warn!(
                        "snapshot: entry {:?} names missing inode {}",
                        String::from_utf8_lossy(name),
                        d.ino
                    );
                    continue;
                };
                let mut e = entry_of(name, d.ino, &r);
                e.xattrs = self.xattrs_of(d.ino)?;
                match r.kind {
                    Kind::File => {
                        b.files += 1;
                        b.bytes += r.size;
                        e.content = Some(self.idx.content(d.ino)?.unwrap_or(ContentRecord {
                            chunk_size: self.opts.chunking.avg,
                            k: self.vol.layout.k as u8,
                            m: self.vol.layout.m as u8,
                            chunks: Vec::new(),
                            rule: None,
                        }));
                    }
                    Kind::Dir => {
                        b.dirs += 1;
                        e.tree = Some(self.build_tree(b, d.ino, sub)?);
                    }
                    _ => b.others += 1,
                }
                entries.push(e);
            }
        }
        let t = TreeRecord { entries };
        let bytes = encode_record(&t);
        let id = TreeId::of(&bytes);
        if b.pending.lock().unwrap().contains(&id) || self.idx.tree_bytes(&id)?.is_some() {
            return Ok(id);
        }
        // New: it holds references on its chunks and subtrees, and nothing names
        // it until its parent (or the snapshot) is written.
        b.delta.tree(&t, 1);
        b.new_trees += 1;
        b.new_tree_bytes += bytes.len() as u64;
        b.batch.put(keys::tree(keys::TREE, &id), bytes);
        b.batch.put(keys::tree(keys::TREE_GC, &id), Vec::new());
        b.pending.lock().unwrap().insert(id);
        b.here.push(id);
        if b.batch.ops.len() + b.delta.chunks.len() >= FLUSH_OPS {
            self.flush_build(b)?;
        }
        Ok(id)
    }

    /// Hands the batch to the writer.
    fn flush_build(&self, b: &mut Build) -> SnapResult<()> {
        let work = (
            std::mem::take(&mut b.batch),
            std::mem::take(&mut b.delta),
            std::mem::take(&mut b.here),
        );
        b.writer
            .as_ref()
            .expect("the writer runs during the walk")
            .send(work)
            .map_err(|_| SnapError("writing the snapshot stopped".into()))
    }

    /// Adds the reference count changes of `d` to `batch`; returns the plaintext
    /// bytes of chunks no tree held before. A chunk neither a file nor a tree uses
    /// any more goes to the collection queue; a tree nothing names, to the sweep's.
    pub(super) fn apply_tree_delta(&self, batch: &mut Batch, d: TreeDelta) -> SnapResult<u64> {
        let mut added = 0;
        let mut queued = false;
        for (id, (n, len)) in d.chunks {
            if n == 0 {
                continue;
            }
            let old = self.idx.chunk_tree_refs(&id)?;
            let now = (old as i64 + n).max(0) as u64;
            if now == 0 {
                batch.delete(keys::chunk(keys::CHUNK_TREE_REFS, &id));
                if let Some(rec) = self.idx.chunk(&id)?.filter(|r| r.refs == 0) {
                    batch.delete(keys::chunk(keys::CHUNK, &id));
                    batch.delete(keys::chunk(keys::DEGRADED, &id));
                    // An inline chunk was all in its record: nothing to collect.
                    if !rec.is_inline() {
                        batch.put(keys::chunk(keys::GC, &id), encode_record(&rec));
                        queued = true;
                    }
                }
            } else {
                // Taken from the file entry: a chunk record is not read per chunk
                // (a file whose chunk has no record is fsck's to report).
                if old == 0 {
                    added += len as u64;
                }
                batch.put(
                    keys::chunk(keys::CHUNK_TREE_REFS, &id),
                    encode_record(&TreeRefs { refs: now }),
                );
            }
        }
        for (id, n) in d.trees {
            if n == 0 {
                continue;
            }
            let old = self.idx.tree_refs(&id)?;
            let now = (old as i64 + n).max(0) as u64;
            if now == 0 {
                batch.delete(keys::tree(keys::TREE_REFS, &id));
                batch.put(keys::tree(keys::TREE_GC, &id), Vec::new());
            } else {
                batch.put(
                    keys::tree(keys::TREE_REFS, &id),
                    encode_record(&TreeRefs { refs: now }),
                );
                if old == 0 {
                    batch.delete(keys::tree(keys::TREE_GC, &id));
                }
            }
        }
        if queued {
            self.gc_wake.notify_one();
        }
        Ok(added)
    }

    // ----------------------------------------------------------------- list, find

    /// Every snapshot, oldest first.
    pub fn list_snapshots(&self) -> SnapResult<Vec<SnapshotInfo>> {
        Ok(self
            .idx
            .snapshots()?
            .iter()
            .map(|(id, r)| SnapshotInfo::of(*id, r))
            .collect())
    }

    /// The snapshot named `name`: its id in hex (a unique prefix of at least 4
    /// digits will do), or `latest`.
    pub fn find_snapshot(&self, name: &str) -> SnapResult<(u32, SnapshotRecord)> {
        let all = self.idx.snapshots()?;
        if name == "latest" {
            return all.into_iter().next_back().ok_or_else(|| {
                SnapError("the volume has no snapshot yet (cloudraid snapshot create)".into())
            });
        }
        let lower = name.to_ascii_lowercase();
        let valid =
            lower.len() >= 4 && lower.len() <= 8 && lower.bytes().all(|c| c.is_ascii_hexdigit());
        if !valid {
            return Err(SnapError(format!(
                "{name:?} is not a snapshot id: ids are 8 hex digits (or a unique prefix of at least 4) as `cloudraid snapshot list` shows, or `latest`"
            )));
        }
        let found: Vec<_> = all
            .into_iter()
            .filter(|(id, _)| snapshot_id_hex(*id).starts_with(&lower))
            .collect();
        match found.len() {
            1 => Ok(found.into_iter().next().expect("one")),
            0 => Err(SnapError(format!(
                "no snapshot {name} in this volume ({}): see cloudraid snapshot list",
                self.vol.id
            ))),
            n => Err(SnapError(format!(
                "{name} names {n} snapshots: give more digits of the id"
            ))),
        }
    }

    /// Tree `id` of snapshot `snap`, with a message naming the snapshot when it is
    /// missing or damaged.
    pub fn snapshot_tree(&self, snap: u32, id: &TreeId) -> SnapResult<TreeRecord> {
        let damaged = |why: String| {
            SnapError(format!(
                "snapshot {} is damaged: directory tree {} {why}; the other snapshots are not affected (cloudraid fsck lists what is wrong; cloudraid recover rebuilds the index from the backends)",
                snapshot_id_hex(snap),
                id
            ))
        };
        let bytes = self
            .idx
            .tree_bytes(id)?
            .ok_or_else(|| damaged("is missing from the index".into()))?;
        if TreeId::of(&bytes) != *id {
            return Err(damaged("does not match its hash".into()));
        }
        crate::format::decode_record(&bytes).map_err(damaged)
    }

    /// The entry at `path` (components) of snapshot `snap`; the root entry for an
    /// empty path.
    pub fn snapshot_entry(
        &self,
        snap: u32,
        rec: &SnapshotRecord,
        path: &[Vec<u8>],
    ) -> SnapResult<TreeEntry> {
        let mut cur = rec.root.clone();
        for (i, c) in path.iter().enumerate() {
            let Some(t) = cur.tree else {
                return Err(SnapError(format!(
                    "{}: not a directory in snapshot {}",
                    show_path(&path[..i]),
                    snapshot_id_hex(snap)
                )));
            };
            let tree = self.snapshot_tree(snap, &t)?;
            cur = tree
                .entries
                .into_iter()
                .find(|e| e.name == *c)
                .ok_or_else(|| {
                    SnapError(format!(
                        "{}: no such file or directory in snapshot {}",
                        show_path(&path[..=i]),
                        snapshot_id_hex(snap)
                    ))
                })?;
        }
        Ok(cur)
    }
}

pub fn show_path(p: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for c in p {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(c));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

fn rand_u32() -> u32 {
    let b = *uuid::Uuid::new_v4().as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
