//! The filesystem core: POSIX operations over the index and the volume, async, with
//! no knowledge of FUSE. The FUSE adapter (`crate::front::fuse`) and the tests call it.
//!
//! Locking: one async mutex (`meta`) serialises every change to the index, so a
//! read-modify-write of several records is applied as one atomic batch. Each open
//! file has a read-write lock over its staged state; a file lock is always taken
//! before `meta`, never the other way round. Namespace reads (lookup, getattr,
//! readdir) take no lock and never touch a backend.

mod attrs;
mod collect;
mod commit;
mod errno;
mod file;
pub mod fsck;
mod guards;
mod names;
mod namespace;
mod paths;
pub mod placement;
mod release;
pub mod restore;
pub mod scrub;
pub mod snapshot;
mod snapview;
mod staging;
mod stream;
pub mod thaw;

pub use errno::{Errno, FsResult};
pub use file::{commit_all_stats, MAX_FILE_SIZE};

use crate::data::erasure::Layout;
use crate::data::volume::Volume;
use crate::format::{
    keys, ChunkId, ChunkRecord, ChunkRef, ContentRecord, InodeRecord, Kind, Nanos, SuperRecord,
    VolumeId,
};
use crate::meta::index::{BatchExt, Index, ROOT_INO};
use crate::meta::Batch;
use file::OpenFile;
use guards::ChunkGuards;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

pub const NAME_MAX: usize = 255;
pub const SYMLINK_MAX: usize = 4095;
pub const XATTR_NAME_MAX: usize = 255;
pub const XATTR_SIZE_MAX: usize = 65536;
/// Below this much free space in the state dir, status calls its disk full
/// (only what status says: writes go on while they fit).
const NEARLY_FULL: u64 = 1 << 20;

#[derive(Clone, Debug)]
pub struct FsOptions {
    pub read_only: bool,
    pub staging_dir: PathBuf,
    /// Content-defined chunk sizes of new data.
    pub chunking: crate::data::chunker::Chunking,
    pub upload_concurrency: usize,
    pub readahead_chunks: usize,
    /// Identity of the state dir (recorded as the writer of the metadata log).
    pub writer: String,
    /// Show every inode as owned by this user / group (mount options uid=, gid=).
    pub show_uid: Option<u32>,
    pub show_gid: Option<u32>,
}

/// Attributes of an inode as the kernel sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub blocks: u64,
    /// Device number of a character or block device (`st_rdev`), else 0.
    pub rdev: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    /// Offset to pass to `readdir` to continue after this entry.
    pub offset: u64,
    pub kind: Kind,
    pub name: Vec<u8>,
}

/// A time to set with `setattr`.
#[derive(Clone, Copy, Debug)]
pub enum SetTime {
    Now,
    At(SystemTime),
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
}

/// Who is asking: used for ownership of new inodes, and for the checks the
/// kernel cannot make on its own (sticky directories).
#[derive(Clone, Copy, Debug, Default)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

impl Caller {
    /// The superuser: every check passes.
    pub const ROOT: Caller = Caller { uid: 0, gid: 0 };
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

pub const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
pub const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;
pub const XATTR_CREATE: i32 = libc::XATTR_CREATE;
pub const XATTR_REPLACE: i32 = libc::XATTR_REPLACE;

struct Handle {
    ino: u64,
    write: bool,
    /// End of the last read, to recognise sequential readers.
    last_end: AtomicU64,
}

pub struct Fs {
    vol: Arc<Volume>,
    idx: Index,
    opts: FsOptions,
    meta: Arc<tokio::sync::Mutex<()>>,
    next_ino: AtomicU64,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    guards: Arc<ChunkGuards>,
    gc_wake: Arc<Notify>,
    /// Chunks being sealed (read, hashed, encoded, uploaded) at once, over all files:
    /// this bounds the write path's memory whatever the number of files being closed.
    seal_slots: Arc<tokio::sync::Semaphore>,
    /// Files whose sequential writes are cut and stored as they arrive (see
    /// `stream.rs`): each holds up to one largest chunk in memory.
    stream_slots: Arc<tokio::sync::Semaphore>,
    /// MiB of cutting windows and read steps of commits (see `commit::cut_units`):
    /// bounds the memory of commits however many files are closed at once.
    cut_budget: tokio::sync::Semaphore,
    /// Set by the FUSE adapter: drops a name from the kernel's caches after a
    /// change made behind the kernel's back (a CLI put or rm while mounted).
    invalidator: std::sync::OnceLock<Invalidator>,
    /// Set by the FUSE adapter: drops an inode's cached attributes and pages
    /// (after uncommitted changes the kernel had seen were dropped).
    inode_invalidator: std::sync::OnceLock<Arc<dyn Fn(u64) + Send + Sync>>,
    /// Why the last staging write failed for want of local space (cleared by the
    /// next one that succeeds), for status.
    staging_full: Mutex<Option<String>>,
    /// How many references the kernel holds on each inode (its lookup count, as
    /// FUSE defines it). An inode unlinked while the kernel still knows it stays
    /// (as an orphan) until the kernel forgets it, so that an open racing with a
    /// rename over its name finds the old file instead of nothing.
    kernel_refs: Mutex<HashMap<u64, u64>>,
    /// The metadata log on the backends, when the index is journalled.
    metalog: Option<Arc<crate::meta::metalog::MetaLog>>,
    /// Set when another holder took the write lease over: no more changes.
    fenced: std::sync::atomic::AtomicBool,
    /// Serialises snapshot creation, deletion and the sweep of their trees.
    snap_lock: tokio::sync::Mutex<()>,
    /// The read-only view of the snapshots under `/.snapshots`.
    view: snapview::SnapView,
    /// The last name each inode was reached by (see `paths`).
    names: paths::Names,
    /// Files a read found archived (see `thaw`).
    thaw_notes: thaw::Notes,
}

/// Drops the kernel's cached entry `name` in directory `parent`.
pub type Invalidator = Arc<dyn Fn(u64, &[u8]) + Send + Sync>;

pub fn now_nanos() -> Nanos {
    to_nanos(SystemTime::now())
}

pub fn to_nanos(t: SystemTime) -> Nanos {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as Nanos,
        Err(e) => -(e.duration().as_nanos() as Nanos),
    }
}

pub fn from_nanos(n: Nanos) -> SystemTime {
    if n >= 0 {
        UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

fn check_name(name: &[u8]) -> FsResult<()> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty() || name.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Chunk reference changes of one batch: +1 per new reference, -1 per dropped one,
/// with the record to create where the chunk is not in the index yet.
#[derive(Default)]
struct RefDelta {
    delta: HashMap<ChunkId, i64>,
    known: HashMap<ChunkId, ChunkRecord>,
}

impl RefDelta {
    fn drop_content(&mut self, c: &ContentRecord) {
        for r in &c.chunks {
            if let ChunkRef::Data { id, .. } = r {
                *self.delta.entry(*id).or_default() -= 1;
            }
        }
    }
    fn add_content(&mut self, c: &ContentRecord) {
        for r in &c.chunks {
            if let ChunkRef::Data { id, .. } = r {
                *self.delta.entry(*id).or_default() += 1;
            }
        }
    }
}

impl Fs {
    /// Writes an empty filesystem (superblock and root directory) into `idx`.
    pub fn format(idx: &Index, volume: VolumeId, owner: Caller) -> FsResult<()> {
        if idx.superblock()?.is_some() {
            return Ok(());
        }
        let now = now_nanos();
        let mut b = Batch::default();
        b.put_super(&SuperRecord {
            volume_id: volume,
            next_ino: ROOT_INO + 1,
        });
        b.put_inode(
            ROOT_INO,
            &InodeRecord {
                kind: Kind::Dir,
                perm: 0o755,
                uid: owner.uid,
                gid: owner.gid,
                nlink: 2,
                size: 0,
                atime: now,
                mtime: now,
                ctime: now,
                crtime: now,
                parent: ROOT_INO,
                next_cookie: 3,
                target: Vec::new(),
            },
        );
        idx.apply(b)?;
        idx.flush()?;
        Ok(())
    }

    /// Opens the filesystem of `vol` stored in `idx`. Leftovers of a crash (unlinked
    /// inodes that were still open, staging files) are cleaned up.
    pub fn load(vol: Arc<Volume>, idx: Index, opts: FsOptions) -> Result<Arc<Fs>, String> {
        let sb = idx
            .superblock()
            .map_err(|e| e.to_string())?
            .ok_or("the local index is empty: the volume was never formatted")?;
        if sb.volume_id != vol.id {
            return Err(format!(
                "the local index belongs to volume {}, not {}: check state_dir in the config",
                sb.volume_id, vol.id
            ));
        }
        std::fs::create_dir_all(&opts.staging_dir).map_err(|e| {
            format!(
                "cannot create staging dir {}: {e}",
                opts.staging_dir.display()
            )
        })?;
        if let Ok(rd) = std::fs::read_dir(&opts.staging_dir) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let seal_permits = opts.upload_concurrency.max(1);
        let opts_chunking = opts.chunking;
        let metalog = idx.journal().map(|_| {
            Arc::new(crate::meta::metalog::MetaLog::new(
                vol.clone(),
                idx.clone(),
                opts.writer.clone(),
            ))
        });
        let fs = Arc::new(Fs {
            metalog,
            fenced: std::sync::atomic::AtomicBool::new(false),
            vol,
            idx,
            opts,
            meta: Arc::new(tokio::sync::Mutex::new(())),
            next_ino: AtomicU64::new(sb.next_ino),
            files: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            guards: Arc::new(ChunkGuards::default()),
            gc_wake: Arc::new(Notify::new()),
            seal_slots: Arc::new(tokio::sync::Semaphore::new(seal_permits)),
            stream_slots: Arc::new(tokio::sync::Semaphore::new(seal_permits)),
            cut_budget: tokio::sync::Semaphore::new(commit::cut_budget_mib(
                &opts_chunking,
                seal_permits,
            ) as usize),
            invalidator: std::sync::OnceLock::new(),
            inode_invalidator: std::sync::OnceLock::new(),
            staging_full: Mutex::new(None),
            kernel_refs: Mutex::new(HashMap::new()),
            names: Default::default(),
            thaw_notes: Default::default(),
            snap_lock: tokio::sync::Mutex::new(()),
            view: snapview::SnapView::default(),
        });
        if !fs.opts.read_only {
            let orphans: Vec<(Vec<u8>, Vec<u8>)> = fs
                .idx
                .store()
                .scan(&[keys::ORPHAN], None, usize::MAX)
                .map_err(|e| e.to_string())?;
            for (k, _) in orphans {
                let ino = u64::from_be_bytes(k[1..9].try_into().unwrap());
                let mut b = Batch::default();
                fs.purge_into(ino, &mut b).map_err(|e| e.to_string())?;
                fs.idx.apply(b).map_err(|e| e.to_string())?;
            }
        }
        Ok(fs)
    }

    /// Installs the hook that drops names from the kernel's caches (once).
    pub fn set_invalidator(&self, f: Invalidator) {
        let _ = self.invalidator.set(f);
    }

    /// The state dir's disk as status shows it: the index's view, plus a staging
    /// write that failed for want of space.
    pub fn local_disk(&self) -> Option<crate::meta::LocalDisk> {
        let mut d = self.idx.store().local_disk()?;
        if d.problem.is_none() {
            d.problem = self.staging_full.lock().unwrap().clone();
        }
        // Writes stage their bytes there: with (almost) nothing free, they fail
        // with ENOSPC before the index itself has hit the wall.
        if d.problem.is_none() && d.total_bytes > 0 && d.free_bytes < NEARLY_FULL {
            d.problem = Some(format!(
                "less than {} free for staging writes",
                crate::config::human(NEARLY_FULL)
            ));
        }
        Some(d)
    }

    /// Installs the hook that drops an inode's attributes and pages from the
    /// kernel's caches (once).
    pub fn set_inode_invalidator(&self, f: Arc<dyn Fn(u64) + Send + Sync>) {
        let _ = self.inode_invalidator.set(f);
    }

    /// Tells the kernel, if mounted, that what it cached of `ino` (size, pages)
    /// is gone. Runs on a blocking thread, not awaited, so it may be called
    /// while a kernel request is being served.
    fn forget_cached(&self, ino: u64) {
        if let Some(f) = self.inode_invalidator.get() {
            let f = f.clone();
            tokio::task::spawn_blocking(move || f(ino));
        }
    }

    /// Tells the kernel, if mounted, that `name` in `parent` changed without it
    /// seeing the change. Never call this from inside a kernel request. The
    /// kernel may wait for the directory's lock, held by a request this process
    /// is serving, so the call runs on a blocking thread, not a runtime worker.
    pub async fn forget_name(&self, parent: u64, name: &[u8]) {
        if let Some(f) = self.invalidator.get() {
            let (f, name) = (f.clone(), name.to_vec());
            let _ = tokio::task::spawn_blocking(move || f(parent, &name)).await;
        }
    }

    /// The metadata log on the backends (for a journalled index).
    pub fn metalog(&self) -> Option<&Arc<crate::meta::metalog::MetaLog>> {
        self.metalog.as_ref()
    }

    /// Uploads the index changes made so far to the metadata log. Best effort:
    /// what cannot be uploaded now stays in the local journal (durable with the
    /// index) and goes up with the next push.
    pub async fn push_metadata(&self) -> FsResult<()> {
        if let Some(log) = &self.metalog {
            if !self.opts.read_only {
                if let Err(e) = log.push().await {
                    tracing::warn!("metadata log not uploaded yet: {e}");
                }
            }
        }
        Ok(())
    }

    pub fn volume(&self) -> &Arc<Volume> {
        &self.vol
    }
    pub fn index(&self) -> &Index {
        &self.idx
    }
    pub fn read_only(&self) -> bool {
        self.opts.read_only
    }

    /// Stops all changes (the write lease was taken over): writes fail with EROFS.
    pub fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    fn writable(&self) -> FsResult<()> {
        if self.opts.read_only || self.fenced.load(Ordering::SeqCst) {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// `writable`, and none of `inos` is in the read-only snapshot view.
    fn writable_at(&self, inos: &[u64]) -> FsResult<()> {
        self.writable()?;
        if inos.iter().any(|i| snapview::is_view(*i)) {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    /// `/.snapshots` cannot be made, replaced or removed.
    fn not_reserved(parent: u64, name: &[u8], errno: Errno) -> FsResult<()> {
        if parent == ROOT_INO && name == snapview::SNAPDIR {
            return Err(errno);
        }
        Ok(())
    }

    fn inode(&self, ino: u64) -> FsResult<InodeRecord> {
        self.idx.inode(ino)?.ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: u64) -> FsResult<InodeRecord> {
        let r = self.inode(ino)?;
        if r.kind != Kind::Dir {
            return Err(Errno::ENOTDIR);
        }
        Ok(r)
    }

    fn alloc_ino(&self, b: &mut Batch) -> u64 {
        let ino = self.next_ino.fetch_add(1, Ordering::SeqCst);
        b.put_super(&SuperRecord {
            volume_id: self.vol.id,
            next_ino: ino + 1,
        });
        ino
    }

    fn attr_of(&self, ino: u64, r: &InodeRecord) -> Attr {
        let (mut size, mut mtime) = (r.size, r.mtime);
        if r.kind == Kind::File {
            if let Some(of) = self.files.lock().unwrap().get(&ino) {
                if let Some((s, m)) = of.live() {
                    size = s;
                    mtime = m;
                }
            }
        }
        let size = if r.kind == Kind::Symlink {
            r.target.len() as u64
        } else {
            size
        };
        Attr {
            ino,
            kind: r.kind,
            perm: r.perm,
            nlink: r.nlink,
            uid: self.opts.show_uid.unwrap_or(r.uid),
            gid: self.opts.show_gid.unwrap_or(r.gid),
            size,
            blocks: file::allocated(r, size).div_ceil(512),
            rdev: r.rdev(),
            atime: from_nanos(r.atime),
            mtime: from_nanos(mtime),
            ctime: from_nanos(r.ctime.max(if mtime != r.mtime { mtime } else { r.ctime })),
            crtime: from_nanos(r.crtime),
        }
    }

    /// How far ahead of a sequential reader the kernel should read: as far as
    /// `readahead_chunks` chunks of the average size reach (0: none asked for).
    pub fn read_ahead_bytes(&self) -> u64 {
        self.opts.readahead_chunks as u64 * self.opts.chunking.avg as u64
    }

    /// The placement geometry files are written with.
    pub fn layout(&self) -> Layout {
        self.vol.layout
    }
}
