//! Write-behind of sequential writes.
//!
//! A file written from its start (a new file, or one opened with `O_TRUNC`) or
//! on from a content-defined cut at its end is not staged: its bytes go
//! through a [`Cutter`] as they arrive, and each chunk the cutter decides is
//! sealed, encoded and uploaded on a task of its own while the application goes
//! on writing. The chunks join the file's chunk list as they are stored (in
//! order), and their records and guards wait in `FileState::pending` for the
//! commit, which cuts the tail, waits for the chunks still in flight, flushes
//! the backends and applies one index batch, as for a staged file. The file is
//! still replaced atomically at close: until that batch, the index holds its
//! previous version.
//!
//! Memory: each streaming file holds at most one largest chunk plus one write
//! in its cutter, and at most `upload_concurrency` chunks are being stored over
//! the whole volume (a write waits for a seal slot before it hands a chunk on).
//! At most `upload_concurrency` files stream at once; the writes of other
//! files are staged on the local disk as before.
//!
//! Anything but the next sequential write (a write elsewhere, truncate, a read
//! of the part not stored yet, SEEK_DATA) first settles the stream: the chunks
//! in flight are waited for, and the bytes not in a complete chunk yet are
//! written to staging, so the staged representation takes over from there.

use super::commit::Sealed;
use super::file::FileState;
use super::{Errno, Fs, FsResult};
use crate::data::chunker::Cutter;
use crate::policy::rules::Rule;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;

/// A chunk being stored: whether its end is a content-defined cut (not the
/// end of the data), and the task storing it, which gives back the chunk's
/// offset and bytes with the outcome (so a chunk that could not be stored is
/// staged instead).
type InFlight = (bool, JoinHandle<(u64, Bytes, FsResult<Sealed>)>);

pub(super) struct Stream {
    cutter: Cutter,
    /// Where the next sequential write continues.
    pos: u64,
    inflight: VecDeque<InFlight>,
    /// The placement rule its chunks are stored under (settled when it began).
    rule: Arc<Rule>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Only a discarded stream still has chunks in flight.
        for (_, h) in &self.inflight {
            h.abort();
        }
    }
}

impl FileState {
    /// Whether a write at `offset` may start a stream: it continues the file at
    /// its end, everything before is in the chunk list, and the list ends at
    /// the start of the file or at a content-defined cut.
    fn may_stream(&self, offset: u64) -> bool {
        offset == self.size
            && self.dirty.is_empty()
            && self.present.is_empty()
            && self.committed_end() == self.size
            && (self.size == 0 || self.natural_end == self.size)
    }
}

impl Fs {
    /// Takes a write into the file's stream when it continues it or can start
    /// one; returns false when the write is to be staged (the stream, if any,
    /// is settled first).
    pub(super) async fn stream_write(
        &self,
        ino: u64,
        st: &mut FileState,
        offset: u64,
        data: &[u8],
    ) -> FsResult<bool> {
        match &st.stream {
            Some(s) if s.pos == offset => {}
            Some(_) => {
                self.settle(st).await?;
                return Ok(false);
            }
            None => {
                if !st.may_stream(offset) {
                    return Ok(false);
                }
                // A rule with a size bound the file may still cross decides
                // at the commit: until then the file is staged.
                let Some(rule) = self.settled_rule(ino, offset)? else {
                    return Ok(false);
                };
                let Ok(slot) = self.stream_slots.clone().try_acquire_owned() else {
                    return Ok(false);
                };
                st.stream = Some(Stream {
                    cutter: Cutter::new(self.opts.chunking, offset),
                    pos: offset,
                    inflight: VecDeque::new(),
                    rule,
                    _slot: slot,
                });
            }
        }
        let s = st.stream.as_mut().expect("stream present");
        s.cutter.push(data);
        s.pos = offset + data.len() as u64;
        while let Some((off, chunk)) = s.cutter.next_chunk(false) {
            self.send(s, off, chunk, true).await;
        }
        // Chunks stored meanwhile join the chunk list; one that could not be
        // stored is staged, and the commit tries it again.
        self.reap(st, false).await?;
        Ok(true)
    }

    /// Hands one chunk to a task of its own once a seal slot is free.
    async fn send(&self, s: &mut Stream, off: u64, chunk: Vec<u8>, natural: bool) {
        let slot = self
            .seal_slots
            .clone()
            .acquire_owned()
            .await
            .expect("seal semaphore is never closed");
        let store = self.chunk_store();
        let rule = s.rule.clone();
        let bytes = Bytes::from(chunk);
        s.inflight.push_back((
            natural,
            tokio::spawn(async move {
                let _slot = slot;
                let r = store.store(off, bytes.clone(), &rule).await;
                (off, bytes, r)
            }),
        ));
    }

    /// Moves the stored chunks at the front of the stream into the chunk list;
    /// with `all`, waits for every chunk in flight. A chunk that could not be
    /// stored ends the stream: it, the chunks after it and the cutter's rest
    /// are staged, so the next commit tries them again; the error is returned
    /// as `Ok(Some(..))` for a commit to fail with.
    async fn reap(&self, st: &mut FileState, all: bool) -> FsResult<Option<Errno>> {
        loop {
            let Some(s) = st.stream.as_mut() else {
                return Ok(None);
            };
            match s.inflight.front() {
                Some((_, h)) if all || h.is_finished() => {}
                _ => return Ok(None),
            }
            let (natural, h) = s.inflight.pop_front().expect("front present");
            let (off, bytes, r) = match h.await {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!("a chunk task of a streaming write failed: {e}");
                    st.stream = None;
                    st.broken = Some(Errno::EIO);
                    return Err(Errno::EIO);
                }
            };
            let sealed = match r {
                Ok(sealed) => sealed,
                Err(e) => {
                    tracing::warn!(
                        "a chunk written at offset {off} could not be stored yet ({e}); it is staged and stored again at close"
                    );
                    self.spill(st, off, bytes).await?;
                    return Ok(Some(e));
                }
            };
            let r = sealed.1;
            debug_assert_eq!(off, st.committed_end());
            st.content.chunks.push(r);
            st.starts.push(off);
            st.natural_end = if natural { off + r.len() } else { 0 };
            st.pending.push(sealed);
        }
    }

    /// Ends the stream after a chunk (at `off`) could not be stored: it, every
    /// chunk after it and the cutter's rest are staged.
    async fn spill(&self, st: &mut FileState, off: u64, bytes: Bytes) -> FsResult<()> {
        let Some(mut s) = st.stream.take() else {
            return Ok(());
        };
        self.stage(st, off, bytes).await?;
        while let Some((_, h)) = s.inflight.pop_front() {
            let Ok((off, bytes, _)) = h.await else {
                st.broken = Some(Errno::EIO);
                return Err(Errno::EIO);
            };
            self.stage(st, off, bytes).await?;
        }
        let (off, rest) = s.cutter.take_rest();
        self.stage(st, off, Bytes::from(rest)).await
    }

    /// Writes bytes of the stream to staging, as changed bytes for the commit.
    /// If that fails, the bytes are nowhere: the file's changes can only be dropped.
    async fn stage(&self, st: &mut FileState, off: u64, bytes: Bytes) -> FsResult<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let end = off + bytes.len() as u64;
        let staging = st.staging.clone();
        let r = tokio::task::spawn_blocking(move || staging.write_all_at(&bytes, off))
            .await
            .expect("staging task panicked");
        if let Err(e) = r {
            let e: Errno = e.into();
            st.stream = None;
            st.broken = Some(e);
            return Err(e);
        }
        st.present.insert(off..end);
        st.dirty.insert(off..end);
        Ok(())
    }

    /// Ends the stream before a commit: the rest is cut (its last chunk ends
    /// at the end of the data) and every chunk stored.
    pub(super) async fn finish_stream(&self, st: &mut FileState) -> FsResult<()> {
        let Some(s) = st.stream.as_mut() else {
            return Ok(());
        };
        while let Some((off, chunk)) = s.cutter.next_chunk(true) {
            let natural = s.cutter.pending() > 0;
            self.send(s, off, chunk, natural).await;
        }
        // A chunk that could not be stored fails this commit (it is staged, for
        // the next one), as a staged chunk's upload would.
        if let Some(e) = self.reap(st, true).await? {
            return Err(e);
        }
        st.stream = None;
        Ok(())
    }

    /// Ends the stream so that the staged representation takes over: the
    /// chunks in flight are stored and the bytes not in a complete chunk yet
    /// are staged (and changed, for the next commit).
    pub(super) async fn settle(&self, st: &mut FileState) -> FsResult<()> {
        if st.stream.is_none() {
            return Ok(());
        }
        self.reap(st, true).await?;
        let Some(mut s) = st.stream.take() else {
            return Ok(());
        };
        let (off, rest) = s.cutter.take_rest();
        self.stage(st, off, Bytes::from(rest)).await
    }
}
