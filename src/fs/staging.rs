//! The staging area of one open file: written bytes not yet cut into chunks.
//!
//! Staged bytes sit at their own offsets in sparse local files, so random
//! writes need no bookkeeping beyond the ranges the caller keeps. A local
//! filesystem caps a file's size (ext4: 16 TiB) below cloudraid's maximum file
//! size, so the offsets are split into windows of [`WINDOW`] bytes, one local
//! file each (`INO`, `INO.1`, `INO.2`, ...), created on the first write into
//! it. Bytes never written read as zeros; nothing is allocated for them.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Bytes of the file covered by one local staging file (1 TiB).
pub const WINDOW: u64 = 1 << 40;

pub(super) struct Staging {
    path: PathBuf,
    windows: Mutex<BTreeMap<u64, Arc<std::fs::File>>>,
}

impl Staging {
    pub(super) fn new(path: PathBuf) -> Staging {
        Staging {
            path,
            windows: Mutex::new(BTreeMap::new()),
        }
    }

    fn window_path(&self, w: u64) -> PathBuf {
        if w == 0 {
            self.path.clone()
        } else {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{w}"));
            p.into()
        }
    }

    fn window(&self, w: u64, create: bool) -> std::io::Result<Option<Arc<std::fs::File>>> {
        let mut windows = self.windows.lock().unwrap();
        if let Some(f) = windows.get(&w) {
            return Ok(Some(f.clone()));
        }
        if !create {
            return Ok(None);
        }
        let f = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(self.window_path(w))?,
        );
        windows.insert(w, f.clone());
        Ok(Some(f))
    }

    /// Pieces of `[off, off + len)` within single windows: (window, offset in
    /// it, offset in the buffer, length).
    fn pieces(off: u64, len: usize) -> impl Iterator<Item = (u64, u64, usize, usize)> {
        let mut done = 0usize;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let pos = off + done as u64;
            let (w, inner) = (pos / WINDOW, pos % WINDOW);
            let n = ((WINDOW - inner) as usize).min(len - done);
            let piece = (w, inner, done, n);
            done += n;
            Some(piece)
        })
    }

    pub(super) fn write_all_at(&self, data: &[u8], off: u64) -> std::io::Result<()> {
        for (w, inner, at, n) in Self::pieces(off, data.len()) {
            let f = self.window(w, true)?.expect("created");
            // Space first, so a full disk fails the write before a byte changes.
            super::file::allocate(&f, inner, n as u64)?;
            f.write_all_at(&data[at..at + n], inner)?;
        }
        Ok(())
    }

    /// Fills `buf` with the bytes at `off`; bytes never written read as zeros.
    pub(super) fn read_full_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        for (w, inner, at, n) in Self::pieces(off, buf.len()) {
            match self.window(w, false)? {
                Some(f) => super::file::read_full_at(&f, &mut buf[at..at + n], inner)?,
                None => buf[at..at + n].fill(0),
            }
        }
        Ok(())
    }

    /// Drops every staged byte at or past `size` (frees the local disk).
    pub(super) fn truncate(&self, size: u64) -> std::io::Result<()> {
        let mut windows = self.windows.lock().unwrap();
        let gone: Vec<u64> = windows
            .range(size.div_ceil(WINDOW)..)
            .map(|(w, _)| *w)
            .collect();
        for w in gone {
            windows.remove(&w);
            let _ = std::fs::remove_file(self.window_path(w));
        }
        if let Some(f) = windows.get(&(size / WINDOW)) {
            if f.metadata()?.len() > size % WINDOW {
                f.set_len(size % WINDOW)?;
            }
        }
        Ok(())
    }

    /// Deletes every local staging file.
    pub(super) fn remove(&self) {
        let mut windows = self.windows.lock().unwrap();
        for (w, _) in std::mem::take(&mut *windows) {
            let _ = std::fs::remove_file(self.window_path(w));
        }
    }
}
