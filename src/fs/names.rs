//! Namespace reads and the kernel's references: lookup, getattr, readlink,
//! readdir and statfs (no lock taken, no backend touched), and the kernel's
//! lookup counts (`remember`, `forget`) that keep an unlinked inode until the
//! kernel forgets it, then reap it.

use super::snapview::{is_view, SNAPDIR};
use super::{Attr, DirEntry, Errno, Fs, FsResult, StatFs, NAME_MAX};
use crate::format::Kind;
use crate::meta::index::ROOT_INO;
use crate::meta::Batch;
use std::sync::atomic::Ordering;

impl Fs {
    // ----------------------------------------------------------------- namespace reads

    pub async fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Attr> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if is_view(parent) || (parent == ROOT_INO && name == SNAPDIR) {
            return self.view_lookup(parent, name);
        }
        let p = self.dir(parent)?;
        let ino = match name {
            b"." => parent,
            b".." => p.parent,
            _ => self.idx.dirent(parent, name)?.ok_or(Errno::ENOENT)?.ino,
        };
        self.names.learn(parent, name, ino);
        self.getattr(ino).await
    }

    /// `lookup` for the kernel: the entry is resolved and the kernel's reference
    /// on its inode counted in one step, so no unlink can purge the inode in between.
    /// Reads the index only (never waits on a backend or on `meta`), so the FUSE
    /// adapter answers it at once.
    pub fn lookup_kernel(&self, parent: u64, name: &[u8]) -> FsResult<Attr> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if is_view(parent) || (parent == ROOT_INO && name == SNAPDIR) {
            // The view's inodes live as long as the volume is open: no count.
            return self.view_lookup(parent, name);
        }
        let mut refs = self.kernel_refs.lock().unwrap();
        let p = self.dir(parent)?;
        let ino = match name {
            b"." => parent,
            b".." => p.parent,
            _ => self.idx.dirent(parent, name)?.ok_or(Errno::ENOENT)?.ino,
        };
        let attr = self.attr_of(ino, &self.inode(ino)?);
        *refs.entry(ino).or_default() += 1;
        self.names.learn(parent, name, ino);
        Ok(attr)
    }

    /// Counts one more kernel reference on `ino` (an entry the kernel was given).
    pub fn remember(&self, ino: u64) {
        if is_view(ino) {
            return;
        }
        *self.kernel_refs.lock().unwrap().entry(ino).or_default() += 1;
    }

    /// The kernel dropped `n` references on `ino`; an unlinked inode nobody
    /// references any more is deleted.
    pub async fn forget(&self, ino: u64, n: u64) {
        if is_view(ino) {
            return;
        }
        let last = {
            let mut refs = self.kernel_refs.lock().unwrap();
            match refs.get_mut(&ino) {
                Some(c) if *c > n => {
                    *c -= n;
                    false
                }
                Some(_) => {
                    refs.remove(&ino);
                    self.names.forget(ino);
                    true
                }
                None => false,
            }
        };
        if last && !self.opts.read_only {
            let _g = self.meta.lock().await;
            if let Err(e) = self.reap_locked(ino) {
                tracing::warn!("deleting unlinked inode {ino}: {e}");
            }
        }
    }

    /// Deletes inode `ino` if it is unlinked, not open and unknown to the kernel.
    /// The caller holds `meta`; the check and the deletion happen under the
    /// kernel-reference lock, so a concurrent kernel lookup cannot slip between.
    pub(super) fn reap_locked(&self, ino: u64) -> FsResult<()> {
        let refs = self.kernel_refs.lock().unwrap();
        if refs.contains_key(&ino) || self.files.lock().unwrap().contains_key(&ino) {
            return Ok(());
        }
        if self.idx.inode(ino)?.is_none_or(|r| r.nlink != 0) {
            return Ok(());
        }
        let mut b = Batch::default();
        self.purge_into(ino, &mut b)?;
        self.idx.apply(b)?;
        drop(refs);
        Ok(())
    }

    pub async fn getattr(&self, ino: u64) -> FsResult<Attr> {
        self.getattr_now(ino)
    }

    /// `getattr` from the index alone (it never waits).
    pub fn getattr_now(&self, ino: u64) -> FsResult<Attr> {
        if is_view(ino) {
            return self.view_attr(ino);
        }
        self.getattr_live(ino)
    }

    pub(super) fn getattr_live(&self, ino: u64) -> FsResult<Attr> {
        let r = self.inode(ino)?;
        Ok(self.attr_of(ino, &r))
    }

    pub async fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        self.readlink_now(ino)
    }

    /// `readlink` from the index alone (it never waits).
    pub fn readlink_now(&self, ino: u64) -> FsResult<Vec<u8>> {
        let r = if is_view(ino) {
            self.view_inode(ino)?
        } else {
            self.inode(ino)?
        };
        if r.kind != Kind::Symlink {
            return Err(Errno::EINVAL);
        }
        Ok(r.target)
    }

    /// Entries after `offset` (0 to start), at most `limit` of them. Offsets are
    /// stable: entries added or removed meanwhile do not shift the others.
    pub async fn readdir(&self, ino: u64, offset: u64, limit: usize) -> FsResult<Vec<DirEntry>> {
        self.readdir_now(ino, offset, limit)
    }

    /// `readdir` from the index alone (it never waits).
    pub fn readdir_now(&self, ino: u64, offset: u64, limit: usize) -> FsResult<Vec<DirEntry>> {
        if is_view(ino) {
            return self.view_readdir(ino, offset, limit);
        }
        let d = self.dir(ino)?;
        let mut out = Vec::new();
        if offset < 1 {
            out.push(DirEntry {
                ino,
                offset: 1,
                kind: Kind::Dir,
                name: b".".to_vec(),
            });
        }
        if offset < 2 {
            out.push(DirEntry {
                ino: d.parent,
                offset: 2,
                kind: Kind::Dir,
                name: b"..".to_vec(),
            });
        }
        if out.len() >= limit {
            out.truncate(limit);
            return Ok(out);
        }
        for (cookie, name) in self
            .idx
            .dir_entries(ino, offset.max(2), limit - out.len())?
        {
            if let Some(e) = self.idx.dirent(ino, &name)? {
                out.push(DirEntry {
                    ino: e.ino,
                    offset: cookie,
                    kind: e.kind,
                    name,
                });
            }
        }
        Ok(out)
    }

    /// READDIRPLUS for the kernel: the entries after `offset` with their
    /// attributes, handed to `add` one at a time until it returns true (the
    /// kernel's buffer is full: that entry was not taken). Each entry taken but
    /// `.` and `..` counts one kernel reference on its inode, counted as its
    /// attributes are read, as `lookup_kernel` does. Entries removed meanwhile are
    /// skipped. Reads the index only.
    pub fn readdir_plus(
        &self,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(&DirEntry, &Attr) -> bool,
    ) -> FsResult<()> {
        const PAGE: usize = 128;
        let mut offset = offset;
        loop {
            let page = self.readdir_now(ino, offset, PAGE)?;
            let last = page.len() < PAGE;
            for e in &page {
                offset = e.offset;
                let counted = !is_view(e.ino) && e.name != b"." && e.name != b"..";
                let mut refs = self.kernel_refs.lock().unwrap();
                let Ok(a) = self.getattr_now(e.ino) else {
                    continue;
                };
                if add(e, &a) {
                    return Ok(());
                }
                if counted {
                    *refs.entry(e.ino).or_default() += 1;
                }
            }
            if last {
                return Ok(());
            }
        }
    }

    pub async fn statfs(&self) -> FsResult<StatFs> {
        const BSIZE: u64 = 4096;
        let k = self.vol.layout.k as u64;
        let width = self.vol.layout.total() as u64;
        let n = self.vol.slots.len() as u64;
        let caps: Vec<Option<(u64, u64)>> = self
            .vol
            .slots
            .iter()
            .map(|s| s.backend.capacity())
            .collect();
        let (total, free) = if caps.iter().all(|c| c.is_some()) {
            // Each logical byte puts (k+m)/(n·k) bytes on every backend; the fullest
            // backend limits what fits.
            let min_total = caps.iter().flatten().map(|c| c.0).min().unwrap_or(0);
            let min_free = caps.iter().flatten().map(|c| c.1).min().unwrap_or(0);
            let scale = |x: u64| (x as u128 * (n * k) as u128 / width.max(1) as u128) as u64;
            (scale(min_total), scale(min_free))
        } else {
            (1 << 50, 1 << 50)
        };
        Ok(StatFs {
            blocks: total / BSIZE,
            bfree: free / BSIZE,
            bavail: free / BSIZE,
            files: 1 << 40,
            ffree: (1 << 40) - self.next_ino.load(Ordering::Relaxed),
            bsize: BSIZE as u32,
            namelen: NAME_MAX as u32,
        })
    }
}
