//! The commit path: staged changes (or a local file, for `put`) turned into
//! stored chunks. The changed regions of a file, widened to the committed chunk
//! boundaries, are planned into data and holes, cut into content-defined chunks,
//! sealed and uploaded a bounded number at a time (`seal_data`, `cut_region`),
//! and only then made the file's content in one index batch (`store_content`).
//! Also `import` (a local file stored without a staging copy) and
//! `same_content` (a local file compared with a stored one by chunk ids).

use super::file::{is_zero, read_full_at, FileState, OpenFile};
use super::{Errno, Fs, FsResult, RefDelta};
use crate::data::chunker::{segments, Chunking, Cutter, Segment};
use crate::format::{ChunkId, ChunkRecord, ChunkRef, ContentRecord, Kind, Nanos};
use crate::meta::index::BatchExt;
use crate::meta::Batch;
use crate::policy::rules::{FileFacts, Rule};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use rangemap::RangeSet;
use std::ops::Range;
use std::sync::Arc;

/// Bytes read at a time while cutting a region into chunks.
const READ_STEP: u64 = 1 << 20;

/// MiB of memory cutting `len` bytes holds at most: a read step and the
/// cutter's buffer (a largest chunk and a read step, with room to grow).
fn cut_units(chunking: &Chunking, len: u64) -> u32 {
    let most = 2 * (READ_STEP + chunking.max as u64);
    len.min(most).div_ceil(1 << 20).max(1) as u32
}

/// The cutting memory of all commits at once, in MiB: `slots` largest cuts.
pub(super) fn cut_budget_mib(chunking: &Chunking, slots: usize) -> u32 {
    cut_units(chunking, u64::MAX) * slots as u32
}

/// A sealed chunk: its offset in the file, its reference, and, for data, the
/// chunk's record, shards that could not be stored, the guard that keeps it from
/// the collector until the file's batch is applied, and whether it was uploaded
/// now (false: the volume already held it).
pub(super) type Sealed = (
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

/// What storing a chunk needs, owned, so that chunks of a streaming write are
/// stored on tasks of their own while the application goes on writing.
#[derive(Clone)]
pub(super) struct ChunkStore {
    pub(super) vol: Arc<crate::data::volume::Volume>,
    pub(super) idx: crate::meta::index::Index,
    pub(super) guards: Arc<super::guards::ChunkGuards>,
    /// The index lock (`Fs::meta`): a re-placed chunk's record is switched under it.
    pub(super) meta: Arc<tokio::sync::Mutex<()>>,
}

impl ChunkStore {
    /// Stores one chunk (at `off` in its file) unless the volume has it already;
    /// a chunk of zeros is a hole, stored nowhere. The caller holds a seal slot.
    pub(super) async fn store(&self, off: u64, data: Bytes, rule: &Rule) -> FsResult<Sealed> {
        let len = data.len() as u32;
        let sealer = self.vol.sealer.clone();
        let (data, id) =
            tokio::task::spawn_blocking(move || -> std::io::Result<(Bytes, Option<ChunkId>)> {
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
            // Stored by a weaker rule than this file's: placed by this one now
            // (a chunk has the placement of the strongest rule of its files).
            Some(rec) if crate::policy::strength::rule_is_stronger(rule, &id, &rec) => {
                match self.replace(id, &rec, rule).await {
                    Ok(now) => (now, Vec::new(), false),
                    Err(e) => {
                        tracing::warn!("{e}; `cloudraid policy apply` moves it later");
                        (rec, Vec::new(), false)
                    }
                }
            }
            Some(rec) => (rec, Vec::new(), false),
            None => match self.guards.stored(&id) {
                Some((rec, missing)) => (rec, missing, false),
                None => {
                    let (rec, missing) = self.vol.store_chunk(id, data, rule).await?;
                    self.vol.flush_if_due();
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
}

impl Fs {
    /// The placement rule that takes file `ino` with `size` bytes now.
    pub(super) fn rule_for(&self, ino: u64, size: u64) -> FsResult<Arc<Rule>> {
        let set = self.vol.policies();
        if set.rules.len() == 1 {
            return Ok(set.default_rule().clone());
        }
        let path = self.path_of(ino)?.unwrap_or_default();
        let uid = self.inode(ino)?.uid;
        Ok(set
            .choose(&FileFacts {
                path: &path,
                size,
                uid,
            })
            .clone())
    }

    /// The rule that will take file `ino` with `size` bytes once it is
    /// `name` in directory `parent`.
    fn rule_as(&self, ino: u64, (parent, name): (u64, &[u8]), size: u64) -> FsResult<Arc<Rule>> {
        let set = self.vol.policies();
        if set.rules.len() == 1 {
            return Ok(set.default_rule().clone());
        }
        let dir = self.path_of(parent)?.unwrap_or_default();
        let name = String::from_utf8_lossy(name);
        let path = if dir.is_empty() {
            name.into_owned()
        } else {
            format!("{dir}/{name}")
        };
        let uid = self.inode(ino)?.uid;
        Ok(set
            .choose(&FileFacts {
                path: &path,
                size,
                uid,
            })
            .clone())
    }

    /// The rule that takes file `ino` whatever size it grows to from `size`
    /// (a file written from its start); `None` while a size bound could still
    /// change it.
    pub(super) fn settled_rule(&self, ino: u64, size: u64) -> FsResult<Option<Arc<Rule>>> {
        let set = self.vol.policies();
        if set.rules.len() == 1 {
            return Ok(Some(set.default_rule().clone()));
        }
        let path = self.path_of(ino)?.unwrap_or_default();
        let uid = self.inode(ino)?.uid;
        Ok(set
            .settled(&FileFacts {
                path: &path,
                size,
                uid,
            })
            .cloned())
    }

    /// The rule name a content record keeps (none for the rule of a volume
    /// without rules: its records stay as they were).
    fn recorded_rule(rule: &Rule) -> Option<String> {
        (!rule.legacy).then(|| rule.name.clone())
    }

    pub(super) fn chunk_store(&self) -> ChunkStore {
        ChunkStore {
            vol: self.vol.clone(),
            idx: self.idx.clone(),
            guards: self.guards.clone(),
            meta: self.meta.clone(),
        }
    }

    /// Stores one chunk once a seal slot is free (see `ChunkStore::store`).
    async fn seal_data(&self, off: u64, data: Vec<u8>, rule: &Rule) -> FsResult<Sealed> {
        let _slot = self
            .seal_slots
            .acquire()
            .await
            .expect("seal semaphore is never closed");
        self.chunk_store().store(off, Bytes::from(data), rule).await
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
        rule: &Rule,
        progress: &(dyn Fn(u64, bool) + Sync),
    ) -> FsResult<Vec<Sealed>> {
        // Many commits at once (many files closed together) take turns here.
        let _cutting = self
            .cut_budget
            .acquire_many(cut_units(&self.opts.chunking, range.end - range.start))
            .await
            .expect("cut budget is never closed");
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
                    inflight.push(self.seal_data(off, chunk, rule));
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
    /// chunks stored for it). The shards stored so far are made durable first.
    /// The caller drops `sealed` (and with it the chunks' guards) afterwards.
    async fn store_content(
        &self,
        ino: u64,
        chunks: Vec<ChunkRef>,
        sealed: &[Sealed],
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
        let mut degraded = Vec::new();
        for (_, _, stored) in sealed {
            if let Some((id, rec, missing, _, _)) = stored {
                refs.known.insert(*id, rec.clone());
                if !missing.is_empty() {
                    degraded.push((*id, missing.clone()));
                }
            }
        }
        if !sealed.is_empty() {
            self.vol.flush_stored().await?;
        }
        let content = ContentRecord {
            chunk_size: self.opts.chunking.avg,
            k: template.k,
            m: template.m,
            chunks,
            rule: template.rule.clone(),
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
            let ra = if a >= cend && cend == st.natural_end {
                // The last chunk ends at a content-defined cut (it was cut while
                // the file was written): cutting on from there gives the chunks a
                // cut from its start would.
                cend
            } else if a >= cend {
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

    pub(super) async fn commit(&self, of: &OpenFile, st: &mut FileState) -> FsResult<()> {
        if let Some(e) = st.broken {
            return Err(e);
        }
        self.finish_stream(st).await?;
        if st.dirty.is_empty() && !st.meta_dirty {
            return Ok(());
        }
        // The rule that takes the file as it is now (path, size, owner) places
        // its new chunks; those it keeps stay where they are.
        let rule = self.rule_for(of.ino, st.size)?;
        let regions = Self::regions(st);
        let mut sealed = Vec::new();
        for r in &regions {
            sealed.extend(
                self.cut_region(&Source::Open(st), r.clone(), &rule, &|_, _| {})
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
        // The chunks stored while the file was written (see `stream`) go into
        // the same batch.
        let streamed = std::mem::take(&mut st.pending);
        let n_streamed = streamed.len();
        let mut all = streamed;
        all.extend(sealed);
        let template = ContentRecord {
            k: rule.layout.k as u8,
            m: rule.layout.m as u8,
            rule: Self::recorded_rule(&rule),
            ..st.content.clone()
        };
        let stored = self
            .store_content(of.ino, chunks, &all, &template, st.size, st.mtime)
            .await;
        let content = match stored {
            Ok(c) => c,
            Err(e) => {
                // Kept, with their guards, for a commit that tries again.
                all.truncate(n_streamed);
                st.pending = all;
                return Err(e);
            }
        };
        drop(all);
        st.natural_end = 0;
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
    ///
    /// `final_name` is the (parent, name) the file will have once imported
    /// (it is stored under a temporary name, then renamed): its placement rule
    /// matches that path, not the temporary one.
    pub async fn import(
        &self,
        ino: u64,
        final_name: (u64, &[u8]),
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
        let rule = self.rule_as(ino, final_name, size)?;
        let template = ContentRecord {
            chunk_size: self.opts.chunking.avg,
            k: rule.layout.k as u8,
            m: rule.layout.m as u8,
            chunks: Vec::new(),
            rule: Self::recorded_rule(&rule),
        };
        let src = Arc::new(src);
        let sealed = self
            .cut_region(&Source::Local(&src), 0..size, &rule, progress)
            .await?;
        // Opened through the mount meanwhile: that writer's content would meet
        // this one; the import gives way (shards it uploaded for no other file
        // are orphans, deleted by `fsck --repair` after the grace period).
        if self.files.lock().unwrap().contains_key(&ino) {
            return Err(Errno::EBUSY);
        }
        let chunks = sealed.iter().map(|s| s.1).collect();
        self.store_content(ino, chunks, &sealed, &template, size, Some(mtime))
            .await?;
        drop(sealed);
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
        // The stored list with adjacent holes merged, as a commit stores it, is
        // compared with the local file's cut (holes merged the same way).
        let mut next = stored.iter().copied().peekable();
        let mut pending_hole = 0u64;
        let all = self
            .cut_local(src, size, |mine| match mine {
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
            })
            .await?;
        Ok(all && pending_hole == 0 && next.next().is_none())
    }

    /// The bytes storing local file `src` (`size` bytes) would upload: its data
    /// chunks the volume holds nowhere yet (each counted once).
    pub async fn upload_estimate(&self, src: std::fs::File, size: u64) -> FsResult<u64> {
        let mut seen = std::collections::HashSet::new();
        let mut fresh = 0u64;
        let mut failed = None;
        self.cut_local(src, size, |c| {
            if let ChunkRef::Data { id, len } = c {
                if seen.insert(id) {
                    match self.idx.chunk(&id) {
                        Ok(Some(_)) => {}
                        Ok(None) => fresh += len as u64,
                        Err(e) => {
                            failed = Some(e);
                            return false;
                        }
                    }
                }
            }
            true
        })
        .await?;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(fresh),
        }
    }

    /// Cuts the local file `src` (`size` bytes) as storing it would, handing
    /// each chunk (a hole or a data chunk's id) to `each` in order; stops early
    /// (returning false) when `each` says so.
    async fn cut_local(
        &self,
        src: std::fs::File,
        size: u64,
        mut each: impl FnMut(ChunkRef) -> bool,
    ) -> FsResult<bool> {
        let src = Arc::new(src);
        let source = Source::Local(&src);
        for seg in self.plan(&source, 0..size).await? {
            let r = match seg {
                Segment::Zeros(r) => {
                    if !each(ChunkRef::Hole {
                        len: r.end - r.start,
                    }) {
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
                    if !each(mine) {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }
}
