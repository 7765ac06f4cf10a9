//! Open files: staging, reads, writes, truncation, flush, fsync and release.
//! The commit that turns staged data into stored chunks is in `commit.rs`.
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
use super::{Errno, Fs, FsResult, Handle};
use crate::format::{ChunkId, ChunkRecord, ChunkRef, ContentRecord, Kind, Nanos};
use bytes::Bytes;
use rangemap::RangeSet;
use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The largest file: 1 PiB (2^50 bytes). A write or truncate past it fails with
/// EFBIG at once.
pub const MAX_FILE_SIZE: u64 = 1 << 50;

pub(super) struct OpenFile {
    pub(super) ino: u64,
    /// Handles open on this inode (guarded by `Fs::files`).
    opens: AtomicUsize,
    state: tokio::sync::RwLock<FileState>,
    /// Size and mtime while there are uncommitted changes, for getattr.
    pub(super) live: Mutex<Option<(u64, Nanos)>>,
}

pub(super) struct FileState {
    pub(super) content: ContentRecord,
    /// Offset of each committed chunk.
    pub(super) starts: Vec<u64>,
    pub(super) size: u64,
    pub(super) mtime: Option<Nanos>,
    pub(super) staging: Arc<Staging>,
    /// Byte ranges whose current bytes are in staging. Bytes neither here nor
    /// in a committed data chunk are zeros (never written, or holes).
    pub(super) present: RangeSet<u64>,
    /// Byte ranges changed since the last commit.
    pub(super) dirty: RangeSet<u64>,
    /// Size or times changed since the last commit.
    pub(super) meta_dirty: bool,
    /// Chunks at the end of `content` stored while the file was written and
    /// not in the index yet: their records and guards, for the commit.
    pub(super) pending: Vec<super::commit::Sealed>,
    /// Where `content` ends at a content-defined cut (0: not known to).
    pub(super) natural_end: u64,
    /// Sequential writes being cut and stored as they arrive.
    pub(super) stream: Option<super::stream::Stream>,
    /// Set when a chunk of the stream could not be stored: the file's changes
    /// cannot be committed, only dropped.
    pub(super) broken: Option<Errno>,
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

pub(super) fn is_zero(buf: &[u8]) -> bool {
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

/// The committed data chunk (id, offset) holding all of `[off, end)`, when no
/// staged byte lies there.
fn within_chunk(st: &FileState, off: u64, end: u64) -> Option<(ChunkId, u64)> {
    if end > st.committed_end() || st.present.overlaps(&(off..end)) {
        return None;
    }
    let i = st.chunk_at(off);
    match st.content.chunks[i] {
        ChunkRef::Data { id, .. } if end <= st.chunk_end(i) => Some((id, st.starts[i])),
        _ => None,
    }
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
    pub(super) fn set_content(&mut self, c: ContentRecord) {
        self.starts = starts_of(&c);
        self.content = c;
        self.natural_end = 0;
    }
    /// Where the committed chunks end (at most the size).
    pub(super) fn committed_end(&self) -> u64 {
        match (self.starts.last(), self.content.chunks.last()) {
            (Some(s), Some(c)) => s + c.len(),
            _ => 0,
        }
    }
    /// The committed chunk holding byte `off` (< `committed_end`).
    pub(super) fn chunk_at(&self, off: u64) -> usize {
        self.starts.partition_point(|s| *s <= off) - 1
    }
    pub(super) fn chunk_end(&self, i: usize) -> u64 {
        self.starts[i] + self.content.chunks[i].len()
    }
    /// The ranges of `range` whose bytes are data (staged, or in a committed
    /// data chunk), merged; everything else reads as zeros. Work: the staged
    /// ranges and committed chunks that meet `range`.
    pub(super) fn data_extents(&self, range: Range<u64>) -> RangeSet<u64> {
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
        let (r, content) = if super::snapview::is_view(ino) {
            let e = self.view_entry(ino)?;
            (super::snapshot::inode_of(&e), e.content)
        } else {
            (self.inode(ino)?, self.idx.content(ino)?)
        };
        if r.kind != Kind::File {
            return Err(if r.kind == Kind::Dir {
                Errno::EISDIR
            } else {
                Errno::EINVAL
            });
        }
        let content = content.unwrap_or(ContentRecord {
            chunk_size: self.opts.chunking.avg,
            k: self.vol.layout.k as u8,
            m: self.vol.layout.m as u8,
            chunks: Vec::new(),
            rule: None,
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
                pending: Vec::new(),
                natural_end: 0,
                stream: None,
                broken: None,
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
            if !linked && !self.opts.read_only && !super::snapview::is_view(of.ino) {
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
            self.writable_at(&[ino])?;
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

    /// The record needed to fetch chunk `id` (in the index, or stored for a
    /// commit still in progress).
    fn chunk_record(&self, id: &ChunkId) -> FsResult<ChunkRecord> {
        if let Some(rec) = self.idx.chunk(id)? {
            return Ok(rec);
        }
        self.guards.stored(id).map(|(rec, _)| rec).ok_or_else(|| {
            tracing::error!("chunk {id} is referenced by a file but missing from the index");
            Errno::EIO
        })
    }

    /// Bytes of committed data chunk `id`.
    async fn committed_chunk(&self, id: &ChunkId) -> FsResult<Bytes> {
        let rec = self.chunk_record(id)?;
        match self.vol.load_chunk(*id, &rec).await {
            // Re-placed (`policy apply`) between the lookup and the fetch: its
            // old shards may be gone; the new ones are named by its record now.
            Err(e) => match self.chunk_record(id) {
                Ok(now) if now != rec => Ok(self.vol.load_chunk(*id, &now).await?),
                _ => Err(e.into()),
            },
            ok => Ok(ok?),
        }
    }

    /// Bytes `[off, off + len)` of an open file as it is now: staged bytes,
    /// else committed chunks, else zeros.
    pub(super) async fn read_view(&self, st: &FileState, off: u64, len: u64) -> FsResult<Vec<u8>> {
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
        Ok(self.read_shared(fh, offset, size).await?.into())
    }

    /// `read`, for a caller that only borrows the bytes: a range inside one
    /// committed chunk (with nothing staged over it) is a view of the cached
    /// chunk, not a copy.
    pub async fn read_shared(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        match self.read_here(fh, offset, size).await {
            // A chunk must be thawed first: ask for it, and say so.
            Err(Errno::EAGAIN) => Err(self.thaw_for_read(self.handle(fh)?.0.ino).await),
            r => r,
        }
    }

    async fn read_here(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let (h, of) = self.handle(fh)?;
        let mut st = of.state.read().await;
        let end = (offset + size as u64).min(st.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        if st.stream.is_some() && end > st.committed_end() {
            drop(st);
            let mut w = of.state.write().await;
            self.settle(&mut w).await?;
            st = w.downgrade();
        }
        if let Some(e) = st.broken {
            return Err(e);
        }
        let whole = match within_chunk(&st, offset, end) {
            Some((id, start)) => {
                let data = self.committed_chunk(&id).await?;
                let (a, b) = ((offset - start) as usize, (end - start) as usize);
                (b <= data.len()).then(|| data.slice(a..b))
            }
            None => None,
        };
        let out = match whole {
            Some(b) => b,
            None => Bytes::from(self.read_view(&st, offset, end - offset).await?),
        };
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
        if let Some(e) = st.broken {
            return Err(e);
        }
        // While the state dir's disk is full, writes fail (ENOSPC) before staging.
        self.idx
            .store()
            .accepts_changes()
            .map_err(crate::meta::index::IndexError::from)?;
        // A sequential write is cut and stored as it arrives (see `stream`).
        if self.stream_write(of.ino, &mut st, offset, data).await? {
            st.size = st.size.max(end);
            self.touch(&of, &mut st);
            return Ok(data.len() as u32);
        }
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
        self.settle(st).await?;
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

    /// The file's state for reading, with its stream (if any) settled.
    async fn settled<'a>(
        &self,
        of: &'a OpenFile,
    ) -> FsResult<tokio::sync::RwLockReadGuard<'a, FileState>> {
        let st = of.state.read().await;
        if st.stream.is_none() {
            return Ok(st);
        }
        drop(st);
        let mut w = of.state.write().await;
        self.settle(&mut w).await?;
        Ok(w.downgrade())
    }

    /// The first data extent of open file `fh` at or after `from` (None: only
    /// a hole is left up to the end). For SEEK_DATA/SEEK_HOLE and for copying
    /// a sparse file out without writing its holes.
    pub async fn data_extent(&self, fh: u64, from: u64) -> FsResult<Option<Range<u64>>> {
        let (_, of) = self.handle(fh)?;
        let st = self.settled(&of).await?;
        Ok(st.next_extent(from))
    }

    /// lseek(2) with SEEK_DATA or SEEK_HOLE on open file `fh`.
    pub async fn seek_data_or_hole(&self, fh: u64, offset: u64, whence: i32) -> FsResult<u64> {
        let (_, of) = self.handle(fh)?;
        let st = self.settled(&of).await?;
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
        // Chunks in flight are abandoned; those stored become orphans (see
        // `fsck`), as after a crash.
        st.stream = None;
        st.pending = Vec::new();
        st.broken = None;
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

    /// Chunk-level view of a file for `ls`-like tools: (chunks, bytes stored).
    pub fn file_chunks(&self, ino: u64) -> FsResult<Vec<ChunkRef>> {
        if super::snapview::is_view(ino) {
            return Ok(self
                .view_entry(ino)?
                .content
                .map(|c| c.chunks)
                .unwrap_or_default());
        }
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
