//! Open files: staging, reads, writes and the commit that turns staged data into
//! stored chunks.
//!
//! Every open inode has one [`OpenFile`], shared by its handles. Writes land in a
//! sparse staging file in the state dir. A chunk is copied into staging from the
//! volume the first time a write touches only part of it ("materialised"), so
//! random writes, overwrites, appends and truncation are exact. A commit (on
//! flush, fsync, release and truncate) cuts the staged range into chunks, uploads
//! the new ones (write → chunk → encode → upload, a bounded number at a time) and
//! only then applies one index batch: the new chunk list, the inode's size and
//! times, and the reference counts.

use super::{Errno, Fs, FsResult, Handle, RefDelta};
use crate::erasure::Layout;
use crate::format::{ChunkId, ChunkRecord, ChunkRef, ContentRecord, Kind, Nanos};
use crate::index::BatchExt;
use crate::meta::Batch;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A sealed chunk: its index in the file, its reference, and, for data, the
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
    size: u64,
    mtime: Option<Nanos>,
    staging: Option<Arc<std::fs::File>>,
    staging_path: PathBuf,
    /// Chunks whose current bytes are in staging.
    present: HashSet<u64>,
    /// Chunks changed since the last commit.
    dirty: BTreeSet<u64>,
    /// Size or times changed since the last commit.
    meta_dirty: bool,
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

/// Reads `len` bytes at `off`; bytes past the end of the file read as zeros.
fn read_full_at(f: &std::fs::File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
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

impl FileState {
    fn cs(&self) -> u64 {
        self.content.chunk_size as u64
    }
    /// Length of chunk `i` of a file of `size` bytes.
    fn chunk_len(&self, i: u64, size: u64) -> u64 {
        let cs = self.cs();
        size.saturating_sub(i * cs).min(cs)
    }
    /// Is chunk `i` served from staging (rather than from the committed content)?
    fn staged(&self, i: u64) -> bool {
        self.present.contains(&i) || i as usize >= self.content.chunks.len()
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
            chunk_size: self.opts.chunk_size,
            k: self.vol.layout.k as u8,
            m: self.vol.layout.m as u8,
            chunks: Vec::new(),
        });
        let of = Arc::new(OpenFile {
            ino,
            opens: AtomicUsize::new(1),
            state: tokio::sync::RwLock::new(FileState {
                content,
                size: r.size,
                mtime: None,
                staging: None,
                staging_path: self.opts.staging_dir.join(format!("{ino}")),
                present: HashSet::new(),
                dirty: BTreeSet::new(),
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
        let result = if linked && !self.opts.read_only {
            let mut st = of.state.write().await;
            self.commit(of, &mut st).await
        } else {
            Ok(())
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
                let _ = std::fs::remove_file(&st.staging_path);
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

    /// Bytes of committed chunk `r`.
    async fn committed_chunk(&self, r: &ChunkRef) -> FsResult<Bytes> {
        match r {
            ChunkRef::Hole { len } => Ok(Bytes::from(vec![0u8; *len as usize])),
            ChunkRef::Data { id, .. } => {
                let rec = self.chunk_record(id)?;
                Ok(self.vol.load_chunk(*id, &rec).await?)
            }
        }
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let (h, of) = self.handle(fh)?;
        let st = of.state.read().await;
        let end = (offset + size as u64).min(st.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let cs = st.cs();
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            let i = pos / cs;
            let in_chunk = pos - i * cs;
            let take = (end - pos).min(cs - in_chunk) as usize;
            if st.staged(i) {
                let start = out.len();
                out.resize(start + take, 0);
                if let Some(f) = &st.staging {
                    read_full_at(f, &mut out[start..], pos)?;
                }
            } else {
                let data = self.committed_chunk(&st.content.chunks[i as usize]).await?;
                let avail = data.len().saturating_sub(in_chunk as usize).min(take);
                out.extend_from_slice(&data[in_chunk as usize..in_chunk as usize + avail]);
                out.resize(out.len() + take - avail, 0);
            }
            pos += take as u64;
        }
        // Sequential reader: fetch the next chunks in the background.
        let sequential = h.last_end.swap(end, Ordering::Relaxed) == offset || offset == 0;
        if sequential && self.opts.readahead_chunks > 0 {
            let first = end.div_ceil(cs);
            for j in first..first + self.opts.readahead_chunks as u64 {
                if st.staged(j) {
                    break;
                }
                if let ChunkRef::Data { id, .. } = st.content.chunks[j as usize] {
                    if let Ok(Some(rec)) = self.idx.chunk(&id) {
                        self.vol.prefetch(id, rec);
                    }
                }
            }
        }
        Ok(out)
    }

    fn ensure_staging(&self, st: &mut FileState) -> FsResult<Arc<std::fs::File>> {
        if let Some(f) = &st.staging {
            return Ok(f.clone());
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&st.staging_path)?;
        f.set_len(st.size)?;
        let f = Arc::new(f);
        st.staging = Some(f.clone());
        Ok(f)
    }

    /// Copies committed chunk `i` into staging so part of it can be changed.
    async fn materialise(&self, st: &mut FileState, i: u64) -> FsResult<()> {
        if st.staged(i) {
            return Ok(());
        }
        let f = self.ensure_staging(st)?;
        let data = self.committed_chunk(&st.content.chunks[i as usize]).await?;
        let off = i * st.cs();
        tokio::task::spawn_blocking(move || f.write_all_at(&data, off))
            .await
            .expect("staging task panicked")?;
        st.present.insert(i);
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
        if end > (1u64 << 50) {
            return Err(Errno::EFBIG);
        }
        let mut st = of.state.write().await;
        let cs = st.cs();
        // A partial last chunk grows when the file is extended: bring it in first.
        if end > st.size && st.size % cs != 0 {
            let last = st.size / cs;
            self.materialise(&mut st, last).await?;
        }
        for i in offset / cs..end.div_ceil(cs) {
            let (c0, clen) = (i * cs, st.chunk_len(i, st.size));
            let covers = offset <= c0 && end >= c0 + clen;
            if covers {
                if !st.staged(i) {
                    st.present.insert(i);
                }
            } else {
                self.materialise(&mut st, i).await?;
            }
            st.dirty.insert(i);
        }
        let f = self.ensure_staging(&mut st)?;
        f.write_all_at(data, offset)?;
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
        let cs = st.cs();
        if size > (1u64 << 50) {
            return Err(Errno::EFBIG);
        }
        // The chunk holding the new or the old end changes length: bring it in.
        let edge = size.min(st.size);
        if !edge.is_multiple_of(cs) {
            self.materialise(st, edge / cs).await?;
            st.dirty.insert(edge / cs);
        }
        let keep = size.div_ceil(cs);
        st.content.chunks.truncate(keep as usize);
        st.present.retain(|i| *i < keep);
        st.dirty.retain(|i| *i < keep);
        if size > st.size {
            for i in st.size.div_ceil(cs)..keep {
                st.dirty.insert(i);
            }
        }
        if let Some(f) = &st.staging {
            f.set_len(size)?;
        }
        st.size = size;
        self.touch(of, st);
        Ok(())
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

    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        let (h, of) = self.handle(fh)?;
        if !h.write {
            return Ok(());
        }
        let mut st = of.state.write().await;
        self.commit(&of, &mut st).await
    }

    /// Commits the file, makes the index durable locally, and puts the change in
    /// the metadata log on the backends.
    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        self.flush(fh).await?;
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

    /// Cuts chunk `i` out of staging, and stores it unless the volume has it already.
    async fn seal_chunk(
        &self,
        staging: Option<Arc<std::fs::File>>,
        i: u64,
        off: u64,
        len: usize,
        layout: Layout,
    ) -> FsResult<Sealed> {
        let Some(f) = staging else {
            return Ok((i, ChunkRef::Hole { len: len as u32 }, None));
        };
        let _slot = self
            .seal_slots
            .acquire()
            .await
            .expect("seal semaphore is never closed");
        let sealer = self.vol.sealer.clone();
        let (buf, id) =
            tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, Option<ChunkId>)> {
                let mut buf = vec![0u8; len];
                read_full_at(&f, &mut buf, off)?;
                let id = if is_zero(&buf) {
                    None
                } else {
                    Some(sealer.id_of(&buf).map_err(std::io::Error::other)?)
                };
                Ok((buf, id))
            })
            .await
            .expect("chunk task panicked")?;
        let Some(id) = id else {
            return Ok((i, ChunkRef::Hole { len: len as u32 }, None));
        };
        let guard = self.guards.reference(id).await;
        let (rec, missing, fresh) = match self.idx.chunk(&id)? {
            Some(rec) => (rec, Vec::new(), false),
            None => {
                let (rec, missing) = self.vol.store_chunk(id, Bytes::from(buf), layout).await?;
                (rec, missing, true)
            }
        };
        Ok((
            i,
            ChunkRef::Data {
                id,
                len: len as u32,
            },
            Some((id, rec, missing, guard, fresh)),
        ))
    }

    /// Seals chunks `todo` of `src` (a file of `size` bytes cut at `cs`), at most
    /// `upload_concurrency` at once; `progress` gets each chunk's length when stored.
    async fn seal_all(
        &self,
        src: Option<Arc<std::fs::File>>,
        todo: Vec<u64>,
        size: u64,
        cs: u64,
        layout: Layout,
        progress: &(dyn Fn(u64, bool) + Sync),
    ) -> FsResult<Vec<Sealed>> {
        futures::stream::iter(todo)
            .map(|i| {
                let len = (size - i * cs).min(cs) as usize;
                let src = src.clone();
                async move {
                    let s = self.seal_chunk(src, i, i * cs, len, layout).await?;
                    progress(len as u64, s.2.as_ref().is_some_and(|x| x.4));
                    Ok::<_, Errno>(s)
                }
            })
            .buffer_unordered(self.opts.upload_concurrency)
            .try_collect()
            .await
    }

    /// Makes `chunks` (every slot filled, from `sealed` or kept) the content of
    /// `ino` in one index batch: chunk list, size, mtime, reference counts and
    /// degraded-chunk records.
    async fn store_content(
        &self,
        ino: u64,
        mut chunks: Vec<Option<ChunkRef>>,
        sealed: Vec<Sealed>,
        template: &ContentRecord,
        size: u64,
        mtime: Option<Nanos>,
    ) -> FsResult<ContentRecord> {
        let mut refs = RefDelta::default();
        let mut guards = Vec::new();
        let mut degraded = Vec::new();
        for (i, r, stored) in sealed {
            chunks[i as usize] = Some(r);
            if let Some((id, rec, missing, g, _)) = stored {
                refs.known.insert(id, rec);
                if !missing.is_empty() {
                    degraded.push((id, missing));
                }
                guards.push(g);
            }
        }
        let content = ContentRecord {
            chunk_size: template.chunk_size,
            k: template.k,
            m: template.m,
            chunks: chunks
                .into_iter()
                .map(|c| c.expect("every chunk sealed"))
                .collect(),
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
            b.put_content(ino, &content);
            b.put_inode(ino, &inode);
            self.idx.apply(b)?;
        }
        drop(guards);
        Ok(content)
    }

    async fn commit(&self, of: &OpenFile, st: &mut FileState) -> FsResult<()> {
        if st.dirty.is_empty() && !st.meta_dirty && st.present.is_empty() {
            return Ok(());
        }
        let cs = st.cs();
        let n = st.size.div_ceil(cs);
        let layout = Layout {
            k: st.content.k as usize,
            m: st.content.m as usize,
        };
        let mut chunks: Vec<Option<ChunkRef>> = vec![None; n as usize];
        let mut todo = Vec::new();
        for i in 0..n {
            if st.staged(i) || st.dirty.contains(&i) {
                todo.push(i);
            } else {
                chunks[i as usize] = Some(st.content.chunks[i as usize]);
            }
        }
        let sealed = self
            .seal_all(st.staging.clone(), todo, st.size, cs, layout, &|_, _| {})
            .await?;
        let content = self
            .store_content(of.ino, chunks, sealed, &st.content, st.size, st.mtime)
            .await?;
        st.content = content;
        st.present.clear();
        st.dirty.clear();
        st.meta_dirty = false;
        st.mtime = None;
        if st.staging.take().is_some() {
            let _ = std::fs::remove_file(&st.staging_path);
        }
        *of.live.lock().unwrap() = None;
        Ok(())
    }

    /// Replaces the content of regular file `ino` (which nobody has open) with the
    /// `size` bytes of the local file `src`, read chunk by chunk straight into the
    /// volume: no staging copy. Chunks the volume already holds are not uploaded
    /// again. `progress(bytes, uploaded)` is called as each chunk is stored.
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
            chunk_size: self.opts.chunk_size,
            k: self.vol.layout.k as u8,
            m: self.vol.layout.m as u8,
            chunks: Vec::new(),
        };
        let cs = template.chunk_size as u64;
        let n = size.div_ceil(cs);
        let sealed = self
            .seal_all(
                Some(Arc::new(src)),
                (0..n).collect(),
                size,
                cs,
                self.vol.layout,
                progress,
            )
            .await?;
        // Opened through the mount meanwhile: that writer's content would meet
        // this one; the import gives way (shards it uploaded for no other file
        // are orphans, deleted by `fsck --repair` after the grace period).
        if self.files.lock().unwrap().contains_key(&ino) {
            return Err(Errno::EBUSY);
        }
        self.store_content(
            ino,
            vec![None; n as usize],
            sealed,
            &template,
            size,
            Some(mtime),
        )
        .await?;
        Ok(())
    }

    /// Whether regular file `ino` already holds exactly the `size` bytes of the
    /// local file `src`, compared chunk by chunk by content hash (no download).
    pub async fn same_content(&self, ino: u64, src: std::fs::File, size: u64) -> FsResult<bool> {
        let r = self.inode(ino)?;
        if r.kind != Kind::File || r.size != size || self.files.lock().unwrap().contains_key(&ino) {
            return Ok(false);
        }
        let Some(content) = self.idx.content(ino)? else {
            return Ok(size == 0);
        };
        let cs = content.chunk_size as u64;
        if content.chunks.len() as u64 != size.div_ceil(cs) {
            return Ok(false);
        }
        let src = Arc::new(src);
        for (i, stored) in content.chunks.iter().enumerate() {
            let off = i as u64 * cs;
            let len = (size - off).min(cs) as usize;
            let f = src.clone();
            let sealer = self.vol.sealer.clone();
            let mine = tokio::task::spawn_blocking(move || -> std::io::Result<ChunkRef> {
                let mut buf = vec![0u8; len];
                read_full_at(&f, &mut buf, off)?;
                Ok(if is_zero(&buf) {
                    ChunkRef::Hole { len: len as u32 }
                } else {
                    ChunkRef::Data {
                        id: sealer.id_of(&buf).map_err(std::io::Error::other)?,
                        len: len as u32,
                    }
                })
            })
            .await
            .expect("hash task panicked")?;
            if mine != *stored {
                return Ok(false);
            }
        }
        Ok(true)
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
