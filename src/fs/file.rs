//! Open files: staging, reads, writes and the commit that turns staged data into
//! stored chunks.
//!
//! Every open inode has one [`OpenFile`], shared by its handles. Writes land in a
//! sparse staging file in the state dir; the byte ranges whose current bytes are
//! there ("present") and those changed since the last commit ("dirty") are kept
//! as range sets, so random writes, overwrites, appends and truncation are exact.
//! Other bytes are read from the committed chunks. A commit (on flush, fsync,
//! release and truncate) cuts each changed region — widened to the committed
//! chunk boundaries around it — into content-defined chunks (see `chunker`),
//! stores the new ones (write → chunk → seal → encode → upload, a bounded number
//! at a time) and only then applies one index batch: the new chunk list, the
//! inode's size and times, and the reference counts.

use super::staging::Staging;
use super::{Errno, Fs, FsResult, Handle, RefDelta};
use crate::chunker::{segments, Cutter, Segment};
use crate::erasure::Layout;
use crate::format::{ChunkId, ChunkRecord, ChunkRef, ContentRecord, Kind, Nanos};
use crate::index::BatchExt;
use crate::meta::Batch;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use rangemap::RangeSet;
use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes read at a time while cutting a region into chunks.
const READ_STEP: u64 = 1 << 20;

/// The largest file: 1 PiB (2^50 bytes). A write or truncate past it fails with
/// EFBIG at once.
pub const MAX_FILE_SIZE: u64 = 1 << 50;

/// A sealed chunk: its offset in the file, its reference, and, for data, the
/// chunk's record, shards that could not be stored, the guard that keeps it from
/// the collector until the file's batch is applied, and whether it was uploaded
/// now (false: the volume already held it).
type Sealed = (
    u64,
    ChunkRef,
    Option<(
        ChunkId,
        ChunkRecord,
        Vec<usize>,
        super::guards::RefGuard,
        bool,
    )>,
);

pub(super) struct OpenFile {
    ino: u64,
    /// Handles open on this inode (guarded by `Fs::files`).
    opens: AtomicUsize,
    state: tokio::sync::RwLock<FileState>,
    /// Size and mtime while there are uncommitted changes, for getattr.
    live: Mutex<Option<(u64, Nanos)>>,
}

struct FileState {
    content: ContentRecord,
    /// Offset of each committed chunk.
    starts: Vec<u64>,
    size: u64,
    mtime: Option<Nanos>,
    staging: Arc<Staging>,
    /// Byte ranges whose current bytes are in staging. Bytes neither here nor
    /// in a committed data chunk are zeros (never written, or holes).
    present: RangeSet<u64>,
    /// Byte ranges changed since the last commit.
    dirty: RangeSet<u64>,
    /// Size or times changed since the last commit.
    meta_dirty: bool,
}

/// Where the bytes being cut come from.
enum Source<'a> {
    /// An open file: staged bytes, else its committed chunks.
    Open(&'a FileState),
    /// A local file (`put`), read directly; its holes are not read.
    Local(&'a Arc<std::fs::File>),
}

/// The data extents of local file `f` within `range` (SEEK_DATA/SEEK_HOLE); the
/// rest reads as zeros. A filesystem that cannot tell gives the whole range.
fn local_extents(f: &std::fs::File, range: Range<u64>) -> std::io::Result<Vec<Range<u64>>> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos = range.start;
    while pos < range.end {
        // SAFETY: lseek on a descriptor we own; reads use pread, so moving the
        // file offset does not disturb them.
        let d = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if d < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENXIO) => Ok(out),
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) if out.is_empty() => Ok(vec![range]),
                _ => Err(e),
            };
        }
        let d = d as u64;
        if d >= range.end {
            break;
        }
        let h = unsafe { libc::lseek(fd, d as libc::off_t, libc::SEEK_HOLE) };
        if h < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let h = (h as u64).clamp(d + 1, range.end);
        out.push(d..h);
        pos = h;
    }
    Ok(out)
}

/// Bytes of regular file `r` (of `size` bytes now) that are data, not holes:
/// what `st_blocks` reports, so that sparse-aware tools (`cp`, `du`, `tar`) see
/// the holes. A file with holes keeps its data bytes in the inode (see FORMAT.md).
pub(super) fn allocated(r: &crate::format::InodeRecord, size: u64) -> u64 {
    match <[u8; 8]>::try_from(r.target.as_slice()) {
        Ok(b) if r.kind == Kind::File && size == r.size => u64::from_le_bytes(b),
        _ => size,
    }
}

/// Totals of uncommitted data, for status.
pub fn commit_all_stats(fs: &Fs) -> (usize, u64) {
    let files = fs.files.lock().unwrap();
    let mut n = 0;
    let mut bytes = 0;
    for of in files.values() {
        if let Some((size, _)) = *of.live.lock().unwrap() {
            n += 1;
            bytes += size;
        }
    }
    (n, bytes)
}

impl OpenFile {
    pub(super) fn live(&self) -> Option<(u64, Nanos)> {
        *self.live.lock().unwrap()
    }
}

fn is_zero(buf: &[u8]) -> bool {
    let (head, body, tail) = unsafe { buf.align_to::<u128>() };
    head.iter().all(|b| *b == 0) && body.iter().all(|w| *w == 0) && tail.iter().all(|b| *b == 0)
}

/// Allocates `[off, off + len)` of a staging file without changing its size or
/// bytes, so a write there cannot run out of space half-way (ENOSPC here).
pub(super) fn allocate(f: &std::fs::File, off: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor; the range is checked by the kernel.
    let r = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            off as libc::off_t,
            len as libc::off_t,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        // Filesystems without fallocate: the write itself finds out.
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(()),
        _ => Err(e),
    }
}

/// Reads `len` bytes at `off`; bytes past the end of the file read as zeros.
pub(super) fn read_full_at(f: &std::fs::File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn starts_of(c: &ContentRecord) -> Vec<u64> {
    let mut off = 0;
    c.chunks
        .iter()
        .map(|r| {
            let s = off;
            off += r.len();
            s
        })
        .collect()
}

impl FileState {
    fn set_content(&mut self, c: ContentRecord) {
        self.starts = starts_of(&c);
        self.content = c;
    }
    /// Where the committed chunks end (at most the size).
    fn committed_end(&self) -> u64 {
        match (self.starts.last(), self.content.chunks.last()) {
            (Some(s), Some(c)) => s + c.len(),
            _ => 0,
        }
    }
    /// The committed chunk holding byte `off` (< `committed_end`).
    fn chunk_at(&self, off: u64) -> usize {
        self.starts.partition_point(|s| *s <= off) - 1
    }
    fn chunk_end(&self, i: usize) -> u64 {
        self.starts[i] + self.content.chunks[i].len()
    }
    /// The ranges of `range` whose bytes are data (staged, or in a committed
    /// data chunk), merged; everything else reads as zeros. Work: the staged
    /// ranges and committed chunks that meet `range`.
    fn data_extents(&self, range: Range<u64>) -> RangeSet<u64> {
        let mut set = RangeSet::new();
        for r in self.present.overlapping(&range) {
            set.insert(r.start.max(range.start)..r.end.min(range.end));
        }
        if range.start < self.committed_end() {
            let mut i = self.chunk_at(range.start);
            while i < self.content.chunks.len() && self.starts[i] < range.end {
                if let ChunkRef::Data { .. } = self.content.chunks[i] {
                    let (a, b) = (self.starts[i], self.chunk_end(i));
                    set.insert(a.max(range.start)..b.min(range.end));
                }
                i += 1;
            }
        }
        set
    }
    /// The first data extent (staged bytes or committed data chunks, merged)
    /// at or after `from`; the bytes before it from `from` on are a hole. Work:
    /// the chunks and staged ranges of the extent and of one hole.
    fn next_extent(&self, from: u64) -> Option<Range<u64>> {
        if from >= self.size {
            return None;
        }
        let cend = self.committed_end();
        let staged = self
            .present
            .overlapping(&(from..self.size))
            .next()
            .map(|r| r.start.max(from));
        let mut committed = None;
        if from < cend {
            let mut i = self.chunk_at(from);
            while i < self.content.chunks.len() {
                if let ChunkRef::Data { .. } = self.content.chunks[i] {
                    committed = Some(self.starts[i].max(from));
                    break;
                }
                i += 1;
            }
        }
        let start = match (staged, committed) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let mut stop = start;
        loop {
            if let Some(r) = self.present.get(&stop) {
                stop = r.end;
                continue;
            }
            if stop < cend {
                let i = self.chunk_at(stop);
                if let ChunkRef::Data { .. } = self.content.chunks[i] {
                    stop = self.chunk_end(i);
                    continue;
                }
            }
            break;
        }
        Some(start..stop.min(self.size))
    }
}

impl Fs {
    fn open_file(&self, ino: u64) -> FsResult<Arc<OpenFile>> {
        let mut files = self.files.lock().unwrap();
        if let Some(of) = files.get(&ino) {
            of.opens.fetch_add(1, Ordering::SeqCst);
            return Ok(of.clone());
        }
        let r = self.inode(ino)?;
        if r.kind != Kind::File {
            return Err(if r.kind == Kind::Dir {
                Errno::EISDIR
            } else {
                Errno::EINVAL
            });
        }
        let content = self.idx.content(ino)?.unwrap_or(ContentRecord {
            chunk_size: self.opts.chunking.avg,
            k: self.vol.layout.k as u8,
            m: self.vol.layout.m as u8,
            chunks: Vec::new(),
        });
        let starts = starts_of(&content);
        let of = Arc::new(OpenFile {
            ino,
            opens: AtomicUsize::new(1),
            state: tokio::sync::RwLock::new(FileState {
                content,
                starts,
                size: r.size,
                mtime: None,
                staging: Arc::new(Staging::new(self.opts.staging_dir.join(format!("{ino}")))),
                present: RangeSet::new(),
                dirty: RangeSet::new(),
                meta_dirty: false,
            }),
            live: Mutex::new(None),
        });
        files.insert(ino, of.clone());
        Ok(of)
    }

    /// Drops one use of the open file; the last one also commits and, for an
    /// unlinked inode, deletes it.
    async fn close_file(&self, of: &Arc<OpenFile>) -> FsResult<()> {
        // Under the files lock, so a concurrent open sees a consistent count.
        let last = {
            let _files = self.files.lock().unwrap();
            of.opens.fetch_sub(1, Ordering::SeqCst) == 1
        };
        if !last {
            return Ok(());
        }
        let linked = self
            .idx
            .inode(of.ino)?
            .map(|r| r.nlink > 0)
            .unwrap_or(false);
        let (result, unstored) = if linked && !self.opts.read_only {
            let mut st = of.state.write().await;
            let r = self.commit(of, &mut st).await;
            let unstored = r.is_err() && (!st.dirty.is_empty() || st.meta_dirty);
            (r, unstored)
        } else {
            (Ok(()), false)
        };
        let gone = {
            let mut files = self.files.lock().unwrap();
            if of.opens.load(Ordering::SeqCst) == 0 {
                files.remove(&of.ino);
                true
            } else {
                false
            }
        };
        if gone {
            if let Ok(st) = of.state.try_read() {
                st.staging.remove();
            }
            if unstored {
                // The file is its previous version again: the kernel's size and
                // pages of the dropped changes must go too.
                tracing::error!(
                    "inode {}: changes that could not be stored were dropped at the last close; the file keeps its previous version",
                    of.ino
                );
                *of.live.lock().unwrap() = None;
                self.forget_cached(of.ino);
            }
            if !linked && !self.opts.read_only {
                let _g = self.meta.lock().await;
                self.reap_locked(of.ino)?;
            }
        }
        result
    }

    pub(super) async fn set_pending_mtime(&self, ino: u64, t: Nanos) {
        let Some(of) = self.files.lock().unwrap().get(&ino).cloned() else {
            return;
        };
        let mut st = of.state.write().await;
        if st.meta_dirty {
            st.mtime = Some(t);
            if let Some(l) = of.live.lock().unwrap().as_mut() {
                l.1 = t;
            }
        }
    }

    pub async fn open(&self, ino: u64, flags: i32) -> FsResult<u64> {
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        if write {
            self.writable()?;
        }
        let of = self.open_file(ino)?;
        if write && flags & libc::O_TRUNC != 0 {
            let mut st = of.state.write().await;
            if let Err(e) = self.truncate_state(&of, &mut st, 0).await {
                drop(st);
                let _ = self.close_file(&of).await;
                return Err(e);
            }
        }
        let fh = self.next_fh.fetch_add(1, Ordering::SeqCst);
        self.handles.lock().unwrap().insert(
            fh,
            Arc::new(Handle {
                ino,
                write,
                last_end: AtomicU64::new(u64::MAX),
            }),
        );
        Ok(fh)
    }

    fn handle(&self, fh: u64) -> FsResult<(Arc<Handle>, Arc<OpenFile>)> {
        let h = self
            .handles
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or(Errno::EBADF)?;
        let of = self
            .files
            .lock()
            .unwrap()
            .get(&h.ino)
            .cloned()
            .ok_or(Errno::EBADF)?;
        Ok((h, of))
    }

    /// The record needed to fetch chunk `id`.
    fn chunk_record(&self, id: &ChunkId) -> FsResult<ChunkRecord> {
        self.idx.chunk(id)?.ok_or_else(|| {
            tracing::error!("chunk {id} is referenced by a file but missing from the index");
            Errno::EIO
        })
    }

    /// Bytes of committed data chunk `id`.
    async fn committed_chunk(&self, id: &ChunkId) -> FsResult<Bytes> {
        let rec = self.chunk_record(id)?;
        Ok(self.vol.load_chunk(*id, &rec).await?)
    }

    /// Bytes `[off, off + len)` of an open file as it is now: staged bytes,
    /// else committed chunks, else zeros.
    async fn read_view(&self, st: &FileState, off: u64, len: u64) -> FsResult<Vec<u8>> {
        let end = off + len;
        let cend = st.committed_end();
        let mut out = Vec::with_capacity(len as usize);
        let mut pos = off;
        while pos < end {
            if let Some(r) = st.present.get(&pos) {
                let stop = r.end.min(end);
                let start = out.len();
                out.resize(start + (stop - pos) as usize, 0);
                st.staging.read_full_at(&mut out[start..], pos)?;
                pos = stop;
                continue;
            }
            let next_present = st
                .present
                .overlapping(&(pos..end))
                .next()
                .map_or(end, |r| r.start.max(pos));
            let stop = next_present.min(end);
            if pos < cend {
                let i = st.chunk_at(pos);
                let (cstart, cstop) = (st.starts[i], st.chunk_end(i).min(stop));
                match &st.content.chunks[i] {
                    ChunkRef::Hole { .. } => out.resize(out.len() + (cstop - pos) as usize, 0),
                    ChunkRef::Data { id, .. } => {
                        let data = self.committed_chunk(id).await?;
                        let (a, b) = ((pos - cstart) as usize, (cstop - cstart) as usize);
                        let avail = b.min(data.len());
                        out.extend_from_slice(&data[a.min(avail)..avail]);
                        out.resize(out.len() + (b - avail.max(a)), 0);
                    }
                }
                pos = cstop;
            } else {
                out.resize(out.len() + (stop - pos) as usize, 0);
                pos = stop;
            }
        }
        Ok(out)
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let (h, of) = self.handle(fh)?;
        let st = of.state.read().await;
        let end = (offset + size as u64).min(st.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let out = self.read_view(&st, offset, end - offset).await?;
        // Sequential reader: fetch the next chunks in the background.
        let sequential = h.last_end.swap(end, Ordering::Relaxed) == offset || offset == 0;
        if sequential && self.opts.readahead_chunks > 0 && end < st.committed_end() {
            let first = st.chunk_at(end);
            let last = (first + 1 + self.opts.readahead_chunks).min(st.content.chunks.len());
            for j in first..last {
                if st.present.contains(&st.starts[j]) {
                    break;
                }
                if let ChunkRef::Data { id, .. } = st.content.chunks[j] {
                    if let Ok(Some(rec)) = self.idx.chunk(&id) {
                        self.vol.prefetch(id, rec);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Copies the committed bytes of `range` that are not staged yet into
    /// staging, so that the chunks holding them can go.
    async fn materialise(&self, st: &mut FileState, range: Range<u64>) -> FsResult<()> {
        let gaps: Vec<Range<u64>> = st.present.gaps(&range).collect();
        for g in gaps {
            let data = self.read_view(st, g.start, g.end - g.start).await?;
            let f = st.staging.clone();
            let off = g.start;
            tokio::task::spawn_blocking(move || f.write_all_at(&data, off))
                .await
                .expect("staging task panicked")?;
            st.present.insert(g);
        }
        Ok(())
    }

    fn touch(&self, of: &OpenFile, st: &mut FileState) {
        let now = super::now_nanos();
        st.mtime = Some(now);
        st.meta_dirty = true;
        *of.live.lock().unwrap() = Some((st.size, now));
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.writable()?;
        let (h, of) = self.handle(fh)?;
        if !h.write {
            return Err(Errno::EBADF);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let mut st = of.state.write().await;
        // While the state dir's disk is full, writes fail (ENOSPC) before staging.
        self.idx
            .store()
            .accepts_changes()
            .map_err(crate::index::IndexError::from)?;
        // Staging allocates before it writes: on a full disk the write fails with
        // ENOSPC before any byte changes.
        if let Err(e) = st.staging.write_all_at(data, offset) {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                *self.staging_full.lock().unwrap() = Some(format!(
                    "a write to the staging file of inode {} failed: {e}",
                    of.ino
                ));
            }
            return Err(e.into());
        }
        *self.staging_full.lock().unwrap() = None;
        // A write past the end leaves a run of zeros before it: changed, but
        // nothing staged for it (it reads as zeros and is stored as a hole).
        st.present.insert(offset..end);
        let from = offset.min(st.size);
        st.dirty.insert(from..end);
        st.size = st.size.max(end);
        self.touch(&of, &mut st);
        Ok(data.len() as u32)
    }

    async fn truncate_state(&self, of: &OpenFile, st: &mut FileState, size: u64) -> FsResult<()> {
        if size == st.size {
            if size == 0 && !st.meta_dirty {
                self.touch(of, st); // O_TRUNC of an empty file still updates mtime
            }
            return Ok(());
        }
        if size > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        if size < st.size {
            // The committed chunk holding the new end goes: a hole is shortened,
            // the head of a data chunk is staged.
            if size < st.committed_end() {
                let i = st.chunk_at(size);
                let cstart = st.starts[i];
                let mut c = st.content.clone();
                match c.chunks[i] {
                    ChunkRef::Hole { .. } if size > cstart => {
                        c.chunks[i] = ChunkRef::Hole { len: size - cstart };
                        c.chunks.truncate(i + 1);
                    }
                    _ => {
                        if size > cstart {
                            self.materialise(st, cstart..size).await?;
                            st.dirty.insert(cstart..size);
                        }
                        c.chunks.truncate(i);
                    }
                }
                st.set_content(c);
            }
            st.present.remove(size..u64::MAX);
            st.dirty.remove(size..u64::MAX);
            st.staging.truncate(size)?;
        } else {
            // Zeros up to the new size: changed, nothing staged (a hole).
            let old = st.size;
            st.dirty.insert(old..size);
        }
        st.size = size;
        self.touch(of, st);
        Ok(())
    }

    /// The first data extent of open file `fh` at or after `from` (None: only
    /// a hole is left up to the end). For SEEK_DATA/SEEK_HOLE and for copying
    /// a sparse file out without writing its holes.
    pub async fn data_extent(&self, fh: u64, from: u64) -> FsResult<Option<Range<u64>>> {
        let (_, of) = self.handle(fh)?;
        let st = of.state.read().await;
        Ok(st.next_extent(from))
    }

    /// lseek(2) with SEEK_DATA or SEEK_HOLE on open file `fh`.
    pub async fn seek_data_or_hole(&self, fh: u64, offset: u64, whence: i32) -> FsResult<u64> {
        let (_, of) = self.handle(fh)?;
        let st = of.state.read().await;
        if offset >= st.size {
            return Err(Errno::ENXIO);
        }
        let next = st.next_extent(offset);
        match whence {
            libc::SEEK_DATA => next.map(|r| r.start).ok_or(Errno::ENXIO),
            libc::SEEK_HOLE => Ok(match next {
                Some(r) if r.start == offset => r.end,
                _ => offset,
            }),
            _ => Err(Errno::EINVAL),
        }
    }

    /// fallocate(2): mode 0 grows the file to `offset + len` (the new bytes are
    /// a hole: nothing is reserved, as storage is on the backends), and
    /// `FALLOC_FL_KEEP_SIZE` alone changes nothing. Punching holes and zeroing
    /// ranges are not offered (EOPNOTSUPP).
    pub async fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        self.writable()?;
        let (h, of) = self.handle(fh)?;
        if !h.write {
            return Err(Errno::EBADF);
        }
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        match mode {
            0 => {
                let mut st = of.state.write().await;
                if end > st.size {
                    self.truncate_state(&of, &mut st, end).await?;
                }
                Ok(())
            }
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    pub(super) async fn truncate(&self, ino: u64, size: u64) -> FsResult<()> {
        let of = self.open_file(ino)?;
        let r = async {
            let mut st = of.state.write().await;
            self.truncate_state(&of, &mut st, size).await
        }
        .await;
        // Commits now when nobody else has the file open.
        let c = self.close_file(&of).await;
        r.and(c)
    }

    /// close(2) of a descriptor: commits the file. If that fails and no other
    /// handle has the file open, the file is its previous version again at once
    /// (the changes are dropped, as they would be at the release that follows).
    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        let (h, of) = self.handle(fh)?;
        if !h.write {
            return Ok(());
        }
        let mut st = of.state.write().await;
        let r = self.commit(&of, &mut st).await;
        if r.is_err() && of.opens.load(Ordering::SeqCst) == 1 {
            self.discard(&of, &mut st)?;
        }
        r
    }

    /// Drops the uncommitted changes of an open file: it reads as committed again,
    /// and the kernel forgets the size and pages it had of them.
    fn discard(&self, of: &OpenFile, st: &mut FileState) -> FsResult<()> {
        if st.dirty.is_empty() && !st.meta_dirty {
            return Ok(());
        }
        tracing::error!(
            "inode {}: changes that could not be stored were dropped at close; the file keeps its previous version",
            of.ino
        );
        let committed = self
            .idx
            .content(of.ino)?
            .unwrap_or_else(|| st.content.clone());
        st.set_content(committed);
        st.size = self.idx.inode(of.ino)?.map_or(0, |r| r.size);
        st.present = RangeSet::new();
        st.dirty = RangeSet::new();
        st.meta_dirty = false;
        st.mtime = None;
        st.staging.remove();
        *of.live.lock().unwrap() = None;
        self.forget_cached(of.ino);
        Ok(())
    }

    /// Commits the file, makes the index durable locally, and puts the change in
    /// the metadata log on the backends.
    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        let (h, of) = self.handle(fh)?;
        if h.write {
            let mut st = of.state.write().await;
            self.commit(&of, &mut st).await?;
        }
        self.idx.flush()?;
        self.push_metadata().await
    }

    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let h = self
            .handles
            .lock()
            .unwrap()
            .remove(&fh)
            .ok_or(Errno::EBADF)?;
        let of = self
            .files
            .lock()
            .unwrap()
            .get(&h.ino)
            .cloned()
            .ok_or(Errno::EBADF)?;
        if h.write && of.opens.load(Ordering::SeqCst) > 1 {
            let mut st = of.state.write().await;
            self.commit(&of, &mut st).await?;
        }
        self.close_file(&of).await?;
        if h.write {
            // A closed file survives a crash: its commit is made durable now.
            self.idx.flush()?;
        }
        Ok(())
    }

    /// Commits every open file with uncommitted changes and makes the index durable.
    pub async fn sync_all(&self) -> FsResult<()> {
        let files: Vec<Arc<OpenFile>> = self.files.lock().unwrap().values().cloned().collect();
        let mut result = Ok(());
        for of in files {
            let linked = self
                .idx
                .inode(of.ino)?
                .map(|r| r.nlink > 0)
                .unwrap_or(false);
            if linked {
                let mut st = of.state.write().await;
                if let Err(e) = self.commit(&of, &mut st).await {
                    result = Err(e);
                }
            }
        }
        self.idx.flush()?;
        result?;
        self.push_metadata().await
    }

    /// Stores one chunk (at `off` in its file) unless the volume has it already;
    /// a chunk of zeros is a hole, stored nowhere.
    async fn seal_data(&self, off: u64, data: Vec<u8>, layout: Layout) -> FsResult<Sealed> {
        let len = data.len() as u32;
        let _slot = self
            .seal_slots
            .acquire()
            .await
            .expect("seal semaphore is never closed");
        let sealer = self.vol.sealer.clone();
        let (data, id) =
            tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, Option<ChunkId>)> {
                let id = if is_zero(&data) {
                    None
                } else {
                    Some(sealer.id_of(&data).map_err(std::io::Error::other)?)
                };
                Ok((data, id))
            })
            .await
            .expect("chunk task panicked")?;
        let Some(id) = id else {
            return Ok((off, ChunkRef::Hole { len: len as u64 }, None));
        };
        let guard = self.guards.reference(id).await;
        // One lookup-and-upload per chunk id at a time (see `guards`).
        let lock = self.guards.upload_lock(id);
        let _one = lock.lock().await;
        let (rec, missing, fresh) = match self.idx.chunk(&id)? {
            Some(rec) => (rec, Vec::new(), false),
            None => match self.guards.stored(&id) {
                Some((rec, missing)) => (rec, missing, false),
                None => {
                    let (rec, missing) =
                        self.vol.store_chunk(id, Bytes::from(data), layout).await?;
                    self.guards.remember(id, rec.clone(), missing.clone());
                    (rec, missing, true)
                }
            },
        };
        Ok((
            off,
            ChunkRef::Data { id, len },
            Some((id, rec, missing, guard, fresh)),
        ))
    }

    /// Bytes `[off, off + len)` of `src`.
    async fn read_source(&self, src: &Source<'_>, off: u64, len: u64) -> FsResult<Vec<u8>> {
        match src {
            Source::Open(st) => self.read_view(st, off, len).await,
            Source::Local(f) => {
                let f = (*f).clone();
                Ok(tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len as usize];
                    read_full_at(&f, &mut buf, off).map(|_| buf)
                })
                .await
                .expect("read task panicked")?)
            }
        }
    }

    /// `range` of `src` split into data to read and cut, and runs of zeros
    /// that become holes without being read (see `chunker::segments`).
    async fn plan(&self, src: &Source<'_>, range: Range<u64>) -> FsResult<Vec<Segment>> {
        let min_hole = self.opts.chunking.min as u64;
        Ok(match src {
            Source::Open(st) => segments(
                range.clone(),
                st.data_extents(range).iter().cloned(),
                min_hole,
            ),
            Source::Local(f) => {
                let f = (*f).clone();
                let r = range.clone();
                let extents = tokio::task::spawn_blocking(move || local_extents(&f, r))
                    .await
                    .expect("lseek task panicked")?;
                segments(range, extents, min_hole)
            }
        })
    }

    /// Cuts `range` of `src` into content-defined chunks and stores them, at
    /// most `upload_concurrency` at once; runs of zeros (holes) cost nothing.
    /// `progress` gets each chunk's length and whether it was uploaded. Memory:
    /// one read step, the cutter's window (the maximum chunk size) and the
    /// chunks being stored.
    async fn cut_region(
        &self,
        src: &Source<'_>,
        range: Range<u64>,
        layout: Layout,
        progress: &(dyn Fn(u64, bool) + Sync),
    ) -> FsResult<Vec<Sealed>> {
        let mut inflight = FuturesUnordered::new();
        let mut sealed = Vec::new();
        let done = |s: FsResult<Sealed>, sealed: &mut Vec<Sealed>| -> FsResult<()> {
            let s = s?;
            progress(s.1.len(), s.2.as_ref().is_some_and(|x| x.4));
            sealed.push(s);
            Ok(())
        };
        for seg in self.plan(src, range).await? {
            let data = match seg {
                Segment::Zeros(r) => {
                    done(
                        Ok((
                            r.start,
                            ChunkRef::Hole {
                                len: r.end - r.start,
                            },
                            None,
                        )),
                        &mut sealed,
                    )?;
                    continue;
                }
                Segment::Data(r) => r,
            };
            let mut cutter = Cutter::new(self.opts.chunking, data.start);
            let mut pos = data.start;
            while pos < data.end {
                let n = READ_STEP.min(data.end - pos);
                let bytes = self.read_source(src, pos, n).await?;
                cutter.push(&bytes);
                pos += n;
                while let Some((off, chunk)) = cutter.next_chunk(pos == data.end) {
                    inflight.push(self.seal_data(off, chunk, layout));
                    while inflight.len() >= self.opts.upload_concurrency {
                        let s = inflight.next().await.expect("not empty");
                        done(s, &mut sealed)?;
                    }
                }
            }
        }
        while let Some(s) = inflight.next().await {
            done(s, &mut sealed)?;
        }
        sealed.sort_by_key(|s| s.0);
        Ok(sealed)
    }

    /// Makes `chunks` the content of `ino` in one index batch: chunk list, size,
    /// mtime, reference counts and degraded-chunk records (of `sealed`, the
    /// chunks stored for it).
    async fn store_content(
        &self,
        ino: u64,
        chunks: Vec<ChunkRef>,
        sealed: Vec<Sealed>,
        template: &ContentRecord,
        size: u64,
        mtime: Option<Nanos>,
    ) -> FsResult<ContentRecord> {
        // Adjacent holes are one.
        let mut merged: Vec<ChunkRef> = Vec::with_capacity(chunks.len());
        for c in chunks {
            match (merged.last_mut(), c) {
                (Some(ChunkRef::Hole { len }), ChunkRef::Hole { len: more }) => *len += more,
                (_, ChunkRef::Hole { len: 0 }) => {}
                _ => merged.push(c),
            }
        }
        let chunks = merged;
        let total: u64 = chunks.iter().map(ChunkRef::len).sum();
        if total != size {
            tracing::error!(
                "chunk list of inode {ino} covers {total} bytes, not {size}; nothing stored"
            );
            return Err(Errno::EIO);
        }
        let mut refs = RefDelta::default();
        let mut guards = Vec::new();
        let mut degraded = Vec::new();
        for (_, _, stored) in sealed {
            if let Some((id, rec, missing, g, _)) = stored {
                refs.known.insert(id, rec);
                if !missing.is_empty() {
                    degraded.push((id, missing));
                }
                guards.push(g);
            }
        }
        let content = ContentRecord {
            chunk_size: self.opts.chunking.avg,
            k: template.k,
            m: template.m,
            chunks,
        };
        {
            let _g = self.meta.lock().await;
            let mut inode = self.inode(ino)?;
            let old = self.idx.content(ino)?.unwrap_or_default();
            refs.drop_content(&old);
            refs.add_content(&content);
            let mut b = Batch::default();
            for (id, missing) in &degraded {
                let rec = crate::format::DegradedRecord {
                    missing: missing.iter().map(|m| *m as u8).collect(),
                };
                b.put(
                    crate::format::keys::chunk(crate::format::keys::DEGRADED, id),
                    crate::format::encode_record(&rec),
                );
            }
            self.apply_refs(&mut b, refs)?;
            let now = super::now_nanos();
            inode.size = size;
            if let Some(m) = mtime {
                inode.mtime = m;
            }
            inode.ctime = now.max(inode.mtime);
            let data: u64 = content
                .chunks
                .iter()
                .filter(|c| matches!(c, ChunkRef::Data { .. }))
                .map(ChunkRef::len)
                .sum();
            inode.target = if data < size {
                data.to_le_bytes().to_vec()
            } else {
                Vec::new()
            };
            b.put_content(ino, &content);
            b.put_inode(ino, &inode);
            self.idx.apply(b)?;
        }
        drop(guards);
        Ok(content)
    }

    /// The regions a commit cuts again: each changed range widened to the
    /// committed chunk boundaries around it (a change at or past the committed
    /// end also takes the last chunk, so appends do not leave short chunks
    /// behind), merged where they touch.
    fn regions(st: &FileState) -> Vec<Range<u64>> {
        let cend = st.committed_end();
        let mut out: Vec<Range<u64>> = Vec::new();
        for r in st.dirty.iter() {
            let (a, b) = (r.start.min(st.size), r.end.min(st.size));
            if a >= b {
                continue;
            }
            let ra = if a >= cend {
                st.starts.last().copied().unwrap_or(0)
            } else {
                st.starts[st.chunk_at(a)]
            };
            let rb = if b >= cend {
                st.size
            } else {
                st.chunk_end(st.chunk_at(b - 1))
            };
            match out.last_mut() {
                Some(last) if ra <= last.end => last.end = last.end.max(rb),
                _ => out.push(ra..rb),
            }
        }
        out
    }

    async fn commit(&self, of: &OpenFile, st: &mut FileState) -> FsResult<()> {
        if st.dirty.is_empty() && !st.meta_dirty {
            return Ok(());
        }
        let layout = Layout {
            k: st.content.k as usize,
            m: st.content.m as usize,
        };
        let regions = Self::regions(st);
        let mut sealed = Vec::new();
        for r in &regions {
            sealed.extend(
                self.cut_region(&Source::Open(st), r.clone(), layout, &|_, _| {})
                    .await?,
            );
        }
        // The new chunk list: committed chunks outside the regions, new ones in them.
        let mut chunks = Vec::new();
        let mut fresh = sealed.iter().peekable();
        let mut i = 0;
        let n = st.content.chunks.len();
        for r in &regions {
            while i < n && st.starts[i] < r.start {
                chunks.push(st.content.chunks[i]);
                i += 1;
            }
            while let Some(s) = fresh.next_if(|s| s.0 < r.end) {
                chunks.push(s.1);
            }
            while i < n && st.starts[i] < r.end {
                i += 1;
            }
        }
        chunks.extend_from_slice(&st.content.chunks[i..]);
        let content = self
            .store_content(of.ino, chunks, sealed, &st.content, st.size, st.mtime)
            .await?;
        st.set_content(content);
        st.present = RangeSet::new();
        st.dirty = RangeSet::new();
        st.meta_dirty = false;
        st.mtime = None;
        st.staging.remove();
        *of.live.lock().unwrap() = None;
        Ok(())
    }

    /// Replaces the content of regular file `ino` (which nobody has open) with the
    /// `size` bytes of the local file `src`, read and cut into chunks straight into
    /// the volume: no staging copy. Chunks the volume already holds are not
    /// uploaded again. `progress(bytes, uploaded)` is called as each chunk is stored.
    pub async fn import(
        &self,
        ino: u64,
        src: std::fs::File,
        size: u64,
        mtime: Nanos,
        progress: &(dyn Fn(u64, bool) + Sync),
    ) -> FsResult<()> {
        self.writable()?;
        if self.inode(ino)?.kind != Kind::File {
            return Err(Errno::EISDIR);
        }
        if self.files.lock().unwrap().contains_key(&ino) {
            return Err(Errno::EBUSY);
        }
        let template = ContentRecord {
            chunk_size: self.opts.chunking.avg,
            k: self.vol.layout.k as u8,
            m: self.vol.layout.m as u8,
            chunks: Vec::new(),
        };
        let src = Arc::new(src);
        let sealed = self
            .cut_region(&Source::Local(&src), 0..size, self.vol.layout, progress)
            .await?;
        // Opened through the mount meanwhile: that writer's content would meet
        // this one; the import gives way (shards it uploaded for no other file
        // are orphans, deleted by `fsck --repair` after the grace period).
        if self.files.lock().unwrap().contains_key(&ino) {
            return Err(Errno::EBUSY);
        }
        let chunks = sealed.iter().map(|s| s.1).collect();
        self.store_content(ino, chunks, sealed, &template, size, Some(mtime))
            .await?;
        Ok(())
    }

    /// Whether regular file `ino` already holds exactly the `size` bytes of the
    /// local file `src`: the local file is cut as it would be stored and its
    /// chunk ids compared with the stored ones (nothing is downloaded).
    pub async fn same_content(&self, ino: u64, src: std::fs::File, size: u64) -> FsResult<bool> {
        let r = self.inode(ino)?;
        if r.kind != Kind::File || r.size != size || self.files.lock().unwrap().contains_key(&ino) {
            return Ok(false);
        }
        let stored = self.idx.content(ino)?.map(|c| c.chunks).unwrap_or_default();
        let src = Arc::new(src);
        let source = Source::Local(&src);
        // The stored list with adjacent holes merged, as a commit stores it, is
        // compared with the local file's cut (holes merged the same way).
        let mut next = stored.iter().copied().peekable();
        let mut pending_hole = 0u64;
        let mut matches = |mine: ChunkRef, next: &mut std::iter::Peekable<_>| -> bool {
            match mine {
                ChunkRef::Hole { len } => {
                    pending_hole += len;
                    if let Some(ChunkRef::Hole { len: theirs }) = next.peek().copied() {
                        if theirs == pending_hole {
                            next.next();
                            pending_hole = 0;
                        }
                    }
                    true
                }
                data => pending_hole == 0 && next.next() == Some(data),
            }
        };
        for seg in self.plan(&source, 0..size).await? {
            let r = match seg {
                Segment::Zeros(r) => {
                    if !matches(
                        ChunkRef::Hole {
                            len: r.end - r.start,
                        },
                        &mut next,
                    ) {
                        return Ok(false);
                    }
                    continue;
                }
                Segment::Data(r) => r,
            };
            let mut cutter = Cutter::new(self.opts.chunking, r.start);
            let mut pos = r.start;
            while pos < r.end {
                let n = READ_STEP.min(r.end - pos);
                cutter.push(&self.read_source(&source, pos, n).await?);
                pos += n;
                while let Some((_, chunk)) = cutter.next_chunk(pos == r.end) {
                    let sealer = self.vol.sealer.clone();
                    let mine = tokio::task::spawn_blocking(move || -> std::io::Result<ChunkRef> {
                        let len = chunk.len() as u32;
                        Ok(if is_zero(&chunk) {
                            ChunkRef::Hole { len: len as u64 }
                        } else {
                            ChunkRef::Data {
                                id: sealer.id_of(&chunk).map_err(std::io::Error::other)?,
                                len,
                            }
                        })
                    })
                    .await
                    .expect("hash task panicked")?;
                    if !matches(mine, &mut next) {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(pending_hole == 0 && next.next().is_none())
    }

    /// Chunk-level view of a file for `ls`-like tools: (chunks, bytes stored).
    pub fn file_chunks(&self, ino: u64) -> FsResult<Vec<ChunkRef>> {
        Ok(self.idx.content(ino)?.map(|c| c.chunks).unwrap_or_default())
    }

    /// Chunk reference counts recomputed from every file (for checks and tests).
    pub fn count_references(&self) -> FsResult<HashMap<ChunkId, u64>> {
        let mut counts = HashMap::new();
        for (_, c) in self
            .idx
            .all::<ContentRecord>(crate::format::keys::CONTENT)?
        {
            for r in c.chunks {
                if let ChunkRef::Data { id, .. } = r {
                    *counts.entry(id).or_default() += 1;
                }
            }
        }
        Ok(counts)
    }
}
