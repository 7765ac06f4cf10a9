//! Reads of files whose chunks are in an archive class, and the thaws they
//! need (`cloudraid thaw`, and reads that find a chunk archived).
//!
//! A read of a chunk with fewer than k shards readable without a thaw fails
//! with EAGAIN. Before it does, the thaws of the whole file are asked for (a
//! thaw takes hours: a reader going on through the file would otherwise wait
//! that long once per chunk), each chunk's only as many shards as it lacks,
//! and one line naming the file and the expected wait goes to the log. Later
//! reads find the thaws in progress and send nothing new.

use super::{Errno, Fs, FsResult};
use crate::data::volume::{longer_wait, ChunkThaw, ThawSettings};
use crate::format::ChunkRef;
use crate::store::ThawWait;
use futures::stream::{self, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Chunks of one file whose thaws are asked about at once.
const PARALLEL: usize = 16;

/// Where the thaws of one file stand after [`Fs::thaw_file`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileThaw {
    /// Distinct chunks stored as shards.
    pub chunks: usize,
    /// Chunks that cannot be read without a thaw (counted even once thawed).
    pub needing: usize,
    /// Chunks still waiting: a thaw in progress, or one that could not be asked.
    pub waiting: usize,
    /// Shards whose thaw was requested now.
    pub requested: usize,
    /// Shards being thawed (requested now or before).
    pub in_progress: usize,
    /// Archived shards readable now (thawed).
    pub ready: usize,
    /// Chunks lacking shards no thaw could be asked for (see `errors`).
    pub short: usize,
    /// The longest usual wait of the thaws in progress.
    pub wait: Option<ThawWait>,
    /// One line per shard that could not be asked about.
    pub errors: Vec<String>,
}

impl FileThaw {
    /// Every chunk is readable now.
    pub fn readable(&self) -> bool {
        self.waiting == 0
    }

    fn add(&mut self, c: ChunkThaw) {
        self.chunks += 1;
        if c.needed == 0 {
            return;
        }
        self.needing += 1;
        self.waiting += usize::from(!c.readable());
        self.requested += c.requested;
        self.in_progress += c.in_progress;
        self.ready += c.ready;
        self.short += usize::from(c.short > 0);
        self.wait = longer_wait(self.wait, c.wait);
        self.errors.extend(c.errors);
    }
}

/// The line a read that must wait for a thaw logs, and `get` prints.
pub fn wait_line(path: &str, t: &FileThaw) -> String {
    let wait = t
        .wait
        .map(|w| format!(", expected in {w}"))
        .unwrap_or_default();
    if t.short > 0 {
        let why = t.errors.first().cloned().unwrap_or_default();
        format!("{path} is in an archive class and a thaw it needs could not be requested ({why}); try again later, or see `cloudraid status`")
    } else if t.requested > 0 {
        format!("{path} is in an archive class; a thaw was requested{wait}; try again later")
    } else if t.in_progress > 0 {
        format!("{path} is in an archive class; its thaw is in progress{wait} from the request; try again later")
    } else {
        format!("{path} is in an archive class and was just thawed; read it again")
    }
}

/// The last wait line of each file a read found archived.
#[derive(Default)]
pub(super) struct Notes(Mutex<HashMap<u64, String>>);

impl Fs {
    /// Asks for the thaws file `ino` needs to be read (see `Volume::thaw_chunk`):
    /// for each of its chunks, enough archived shards to reach k readable ones.
    pub async fn thaw_file(&self, ino: u64, how: ThawSettings) -> FsResult<FileThaw> {
        let mut seen = HashSet::new();
        let mut recs = Vec::new();
        for c in self.file_chunks(ino)? {
            if let ChunkRef::Data { id, .. } = c {
                if seen.insert(id) {
                    if let Some(rec) = self.idx.chunk(&id)?.filter(|r| !r.is_inline()) {
                        recs.push((id, rec));
                    }
                }
            }
        }
        let vol = &self.vol;
        let mut out = FileThaw::default();
        let mut done = stream::iter(recs)
            .map(|(id, rec)| async move { vol.thaw_chunk(id, &rec, how).await })
            .buffer_unordered(PARALLEL);
        while let Some(c) = done.next().await {
            out.add(c);
        }
        Ok(out)
    }

    /// For a read of `ino` that failed for want of a thaw: asks for the
    /// file's thaws at the volume's settings, logs one line naming the file
    /// and the wait (at warn level when thaws were requested now or the file
    /// is met for the first time), and keeps it for [`Fs::thaw_note`].
    /// Returns EAGAIN.
    pub(super) async fn thaw_for_read(&self, ino: u64) -> Errno {
        let path = match self.path_of(ino) {
            Ok(Some(p)) => format!("/{p}"),
            _ => format!("inode {ino}"),
        };
        let t = match self.thaw_file(ino, self.vol.thaw).await {
            Ok(t) => t,
            Err(e) => return e,
        };
        let line = wait_line(&path, &t);
        let first = self
            .thaw_notes
            .0
            .lock()
            .unwrap()
            .insert(ino, line.clone())
            .is_none();
        if first || t.requested > 0 {
            tracing::warn!("{line}");
        } else {
            tracing::debug!("{line}");
        }
        Errno::EAGAIN
    }

    /// The line of the last read of `ino` that found it archived (what to
    /// tell a user whose read failed with EAGAIN).
    pub fn thaw_note(&self, ino: u64) -> Option<String> {
        self.thaw_notes.0.lock().unwrap().get(&ino).cloned()
    }
}
