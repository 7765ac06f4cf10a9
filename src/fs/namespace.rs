//! Namespace changes: creating inodes (files, directories, devices, FIFOs,
//! sockets, symlinks), hard links, unlink, rmdir and rename (with the sticky
//! directory rule), and the bookkeeping they share: dropping a link, purging
//! an inode with its content, and applying chunk reference changes (chunks
//! that lose their last reference are queued for collection).

use super::{
    check_name, now_nanos, Attr, Caller, Errno, Fs, FsResult, RefDelta, RENAME_EXCHANGE,
    RENAME_NOREPLACE, SYMLINK_MAX,
};
use crate::format::{
    encode_record, keys, ChunkRecord, ContentRecord, DirentRecord, InodeRecord, Kind,
};
use crate::meta::index::{BatchExt, ROOT_INO};
use crate::meta::Batch;
use std::collections::HashMap;

impl Fs {
    // ----------------------------------------------------------------- namespace changes

    fn new_inode(
        &self,
        kind: Kind,
        perm: u16,
        caller: Caller,
        parent: &InodeRecord,
        parent_ino: u64,
    ) -> InodeRecord {
        let now = now_nanos();
        // setgid directories pass their group (and, to directories, the bit) on.
        let (gid, perm) = if parent.perm & 0o2000 != 0 {
            (
                parent.gid,
                if kind == Kind::Dir {
                    perm | 0o2000
                } else {
                    perm
                },
            )
        } else {
            (caller.gid, perm)
        };
        InodeRecord {
            kind,
            perm,
            uid: caller.uid,
            gid,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            size: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            parent: parent_ino,
            next_cookie: 3,
            target: Vec::new(),
        }
    }

    /// Adds `name` → `ino` to directory `parent` (whose record is `p`, updated here).
    pub(super) fn link_into(
        &self,
        b: &mut Batch,
        parent: u64,
        p: &mut InodeRecord,
        name: &[u8],
        ino: u64,
        kind: Kind,
    ) {
        let cookie = p.next_cookie;
        p.next_cookie += 1;
        let now = now_nanos();
        p.mtime = now;
        p.ctime = now;
        if kind == Kind::Dir {
            p.nlink += 1;
        }
        b.put_dirent(parent, name, &DirentRecord { ino, kind, cookie });
        self.names.learn(parent, name, ino);
    }

    async fn create_node(
        &self,
        parent: u64,
        name: &[u8],
        kind: Kind,
        perm: u16,
        caller: Caller,
        target: Vec<u8>,
    ) -> FsResult<Attr> {
        self.writable_at(&[parent])?;
        check_name(name)?;
        Self::not_reserved(parent, name, Errno::EEXIST)?;
        let _g = self.meta.lock().await;
        let mut p = self.dir(parent)?;
        if name == b"." || name == b".." || self.idx.dirent(parent, name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let mut b = Batch::default();
        let ino = self.alloc_ino(&mut b);
        let mut r = self.new_inode(kind, perm, caller, &p, parent);
        if kind == Kind::Symlink {
            r.size = target.len() as u64;
        }
        r.target = target;
        if kind == Kind::File {
            b.put_content(
                ino,
                &ContentRecord {
                    chunk_size: self.opts.chunking.avg,
                    k: self.vol.layout.k as u8,
                    m: self.vol.layout.m as u8,
                    chunks: Vec::new(),
                    rule: None,
                },
            );
        }
        self.link_into(&mut b, parent, &mut p, name, ino, kind);
        b.put_inode(parent, &p);
        b.put_inode(ino, &r);
        self.idx.apply(b)?;
        Ok(self.attr_of(ino, &r))
    }

    pub async fn mkdir(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.create_node(
            parent,
            name,
            Kind::Dir,
            (mode & 0o7777) as u16,
            caller,
            Vec::new(),
        )
        .await
    }

    /// A regular file (mknod(2) with `S_IFREG`).
    pub async fn mknod_file(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.mknod(parent, name, mode & 0o7777, 0, caller).await
    }

    /// mknod(2): a regular file, FIFO, socket, or character or block device
    /// (`rdev`, its device number, is kept for devices only). The file type is
    /// in `mode`'s `S_IFMT` bits; none means a regular file, as for mknod(2).
    /// Directories and symlinks have calls of their own (`EINVAL` here).
    pub async fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u64,
        caller: Caller,
    ) -> FsResult<Attr> {
        let kind = match mode & libc::S_IFMT {
            0 => Kind::File,
            t => Kind::from_mode(t).ok_or(Errno::EINVAL)?,
        };
        let target = match kind {
            Kind::File | Kind::Fifo | Kind::Socket => Vec::new(),
            Kind::CharDevice | Kind::BlockDevice => rdev.to_le_bytes().to_vec(),
            Kind::Dir | Kind::Symlink => return Err(Errno::EINVAL),
        };
        self.create_node(parent, name, kind, (mode & 0o7777) as u16, caller, target)
            .await
    }

    pub async fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        caller: Caller,
    ) -> FsResult<Attr> {
        if target.len() > SYMLINK_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        self.create_node(parent, name, Kind::Symlink, 0o777, caller, target.to_vec())
            .await
    }

    /// Creates a regular file and opens it. Returns its attributes and a handle.
    pub async fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> FsResult<(Attr, u64)> {
        let attr = match self.mknod_file(parent, name, mode, caller).await {
            Ok(a) => a,
            Err(Errno::EEXIST) if flags & libc::O_EXCL == 0 => {
                let a = self.lookup(parent, name).await?;
                if a.kind == Kind::Dir {
                    return Err(Errno::EISDIR);
                }
                a
            }
            Err(e) => return Err(e),
        };
        let fh = self.open(attr.ino, flags).await?;
        Ok((self.getattr(attr.ino).await?, fh))
    }

    pub async fn link(&self, ino: u64, newparent: u64, newname: &[u8]) -> FsResult<Attr> {
        self.writable_at(&[ino, newparent])?;
        check_name(newname)?;
        Self::not_reserved(newparent, newname, Errno::EEXIST)?;
        let _g = self.meta.lock().await;
        let mut r = self.inode(ino)?;
        if r.kind == Kind::Dir {
            return Err(Errno::EPERM);
        }
        if r.nlink == 0 {
            return Err(Errno::ENOENT);
        }
        if r.nlink >= u32::MAX - 1 {
            return Err(Errno::EMLINK);
        }
        let mut p = self.dir(newparent)?;
        if self.idx.dirent(newparent, newname)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let mut b = Batch::default();
        self.link_into(&mut b, newparent, &mut p, newname, ino, r.kind);
        r.nlink += 1;
        r.ctime = now_nanos();
        b.put_inode(newparent, &p);
        b.put_inode(ino, &r);
        self.idx.apply(b)?;
        Ok(self.attr_of(ino, &r))
    }

    /// Drops one link of `ino` (already removed from its directory). When the last
    /// link goes and nobody has the file open, the inode and its content go too.
    /// Drops one link of `ino`. At the last link the inode becomes an orphan,
    /// returned so that the caller, once its batch is applied, reaps it (deletes
    /// it unless a file handle or the kernel still references it).
    fn unlink_inode(&self, b: &mut Batch, ino: u64, r: &mut InodeRecord) -> Option<u64> {
        r.nlink = r
            .nlink
            .saturating_sub(if r.kind == Kind::Dir { r.nlink } else { 1 });
        r.ctime = now_nanos();
        b.put_inode(ino, r);
        if r.nlink > 0 {
            return None;
        }
        b.put(keys::ino(keys::ORPHAN, ino), Vec::new());
        Some(ino)
    }

    /// Deletes an inode with its content and attributes.
    pub(super) fn purge_into(&self, ino: u64, b: &mut Batch) -> FsResult<()> {
        let mut refs = RefDelta::default();
        if let Some(c) = self.idx.content(ino)? {
            refs.drop_content(&c);
            b.delete(keys::ino(keys::CONTENT, ino));
        }
        for name in self.idx.xattr_names(ino)? {
            b.delete(keys::ino_name(keys::XATTR, ino, &name));
        }
        b.delete(keys::ino(keys::INODE, ino));
        b.delete(keys::ino(keys::ORPHAN, ino));
        self.apply_refs(b, refs)
    }

    /// Adds the chunk record changes of `refs` to the batch. Chunks that lose their
    /// last reference (no file and no snapshot uses them) move to the collection queue.
    pub(super) fn apply_refs(&self, b: &mut Batch, refs: RefDelta) -> FsResult<()> {
        let mut queued = false;
        for (id, d) in refs.delta {
            if d == 0 {
                continue;
            }
            let existing = self.idx.chunk(&id)?;
            let mut rec = match existing {
                Some(r) => r,
                None if d > 0 => {
                    let Some(r) = refs.known.get(&id).cloned() else {
                        tracing::error!("chunk {id} is referenced but neither stored nor known");
                        return Err(Errno::EIO);
                    };
                    b.delete(keys::chunk(keys::GC, &id));
                    ChunkRecord { refs: 0, ..r }
                }
                None => {
                    tracing::warn!("chunk {id} lost a reference but has no record");
                    continue;
                }
            };
            let refs_now = rec.refs as i64 + d;
            if refs_now <= 0 && self.idx.chunk_tree_refs(&id)? > 0 {
                // No file uses it any more, a snapshot still does.
                rec.refs = 0;
                b.put_chunk(&id, &rec);
            } else if refs_now <= 0 {
                b.delete(keys::chunk(keys::CHUNK, &id));
                b.delete(keys::chunk(keys::DEGRADED, &id));
                // An inline chunk was all in its record: nothing left to collect.
                if !rec.is_inline() {
                    rec.refs = 0;
                    b.put(keys::chunk(keys::GC, &id), encode_record(&rec));
                    queued = true;
                }
            } else {
                rec.refs = refs_now as u64;
                b.put_chunk(&id, &rec);
            }
        }
        if queued {
            self.gc_wake.notify_one();
        }
        Ok(())
    }

    /// unlink(2) with the superuser's rights (the volume owner's own tools).
    pub async fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.unlink_as(parent, name, Caller::ROOT).await
    }

    /// unlink(2) by `caller`: in a sticky directory only the entry's owner, the
    /// directory's owner or root may remove it (`EPERM`).
    pub async fn unlink_as(&self, parent: u64, name: &[u8], caller: Caller) -> FsResult<()> {
        self.writable_at(&[parent])?;
        Self::not_reserved(parent, name, Errno::EISDIR)?;
        let _g = self.meta.lock().await;
        let p = self.dir(parent)?;
        let e = self.idx.dirent(parent, name)?.ok_or(Errno::ENOENT)?;
        if e.kind == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        let r = self.inode(e.ino)?;
        self.check_sticky(&p, &r, caller)?;
        self.remove_entry_locked(parent, p, name, e, r)
    }

    /// The removal shared by unlink and rmdir, under `meta`, once checked: the
    /// entry goes, the parent's times (and, for a directory, its link count)
    /// change, and the inode loses a link (reaped when nothing holds it).
    fn remove_entry_locked(
        &self,
        parent: u64,
        mut p: InodeRecord,
        name: &[u8],
        e: DirentRecord,
        mut r: InodeRecord,
    ) -> FsResult<()> {
        let mut b = Batch::default();
        b.del_dirent(parent, name, e.cookie);
        let now = now_nanos();
        p.mtime = now;
        p.ctime = now;
        if e.kind == Kind::Dir {
            p.nlink = p.nlink.saturating_sub(1);
        }
        b.put_inode(parent, &p);
        let victim = self.unlink_inode(&mut b, e.ino, &mut r);
        self.idx.apply(b)?;
        if let Some(v) = victim {
            self.reap_locked(v)?;
        }
        Ok(())
    }

    /// rmdir(2) with the superuser's rights (the volume owner's own tools).
    pub async fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.rmdir_as(parent, name, Caller::ROOT).await
    }

    /// rmdir(2) by `caller` (sticky directories: as `unlink_as`).
    pub async fn rmdir_as(&self, parent: u64, name: &[u8], caller: Caller) -> FsResult<()> {
        self.writable_at(&[parent])?;
        Self::not_reserved(parent, name, Errno::EROFS)?;
        match name {
            b"." => return Err(Errno::EINVAL),
            b".." => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let _g = self.meta.lock().await;
        let p = self.dir(parent)?;
        let e = self.idx.dirent(parent, name)?.ok_or(Errno::ENOENT)?;
        if e.kind != Kind::Dir {
            return Err(Errno::ENOTDIR);
        }
        let r = self.inode(e.ino)?;
        self.check_sticky(&p, &r, caller)?;
        if !self.idx.dir_is_empty(e.ino)? {
            return Err(Errno::ENOTEMPTY);
        }
        self.remove_entry_locked(parent, p, name, e, r)
    }

    /// The restricted deletion rule of sticky directories (mode 01000, like
    /// /tmp): removing or renaming away an entry of `dir` whose inode is
    /// `victim` needs the caller to own the entry or the directory, or to be
    /// root. Owners are compared as the kernel sees them (mount options `uid=`).
    fn check_sticky(
        &self,
        dir: &InodeRecord,
        victim: &InodeRecord,
        caller: Caller,
    ) -> FsResult<()> {
        if dir.perm & 0o1000 == 0 || caller.uid == 0 {
            return Ok(());
        }
        let shown = |uid: u32| self.opts.show_uid.unwrap_or(uid);
        if caller.uid == shown(victim.uid) || caller.uid == shown(dir.uid) {
            return Ok(());
        }
        Err(Errno::EPERM)
    }

    /// Is `ino` the directory `ancestor` or inside it?
    fn is_within(&self, mut ino: u64, ancestor: u64) -> FsResult<bool> {
        for _ in 0..100_000 {
            if ino == ancestor {
                return Ok(true);
            }
            if ino == ROOT_INO {
                return Ok(false);
            }
            ino = self.inode(ino)?.parent;
        }
        Err(Errno::EIO)
    }

    /// rename(2) with the superuser's rights (the volume owner's own tools).
    pub async fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        self.rename_as(parent, name, newparent, newname, flags, Caller::ROOT)
            .await
    }

    /// rename(2) by `caller`: moving an entry out of a sticky directory, or
    /// replacing one in a sticky directory, is allowed only to the entry's
    /// owner, the directory's owner or root (`EPERM`), as removing it is.
    pub async fn rename_as(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
        caller: Caller,
    ) -> FsResult<()> {
        self.writable_at(&[parent, newparent])?;
        check_name(newname)?;
        Self::not_reserved(parent, name, Errno::EROFS)?;
        Self::not_reserved(newparent, newname, Errno::EROFS)?;
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || (flags & RENAME_NOREPLACE != 0 && flags & RENAME_EXCHANGE != 0)
        {
            return Err(Errno::EINVAL);
        }
        if matches!(name, b"." | b"..") || matches!(newname, b"." | b"..") {
            return Err(Errno::EINVAL);
        }
        let _g = self.meta.lock().await;
        let from_dir = self.dir(parent)?;
        let to_dir = self.dir(newparent)?;
        let src = self.idx.dirent(parent, name)?.ok_or(Errno::ENOENT)?;
        let dst = self.idx.dirent(newparent, newname)?;
        if parent == newparent && name == newname {
            return if flags & RENAME_NOREPLACE != 0 {
                Err(Errno::EEXIST)
            } else {
                Ok(())
            };
        }
        if src.kind == Kind::Dir && self.is_within(newparent, src.ino)? {
            return Err(Errno::EINVAL);
        }
        if flags & RENAME_NOREPLACE != 0 && dst.is_some() {
            return Err(Errno::EEXIST);
        }
        // Two names of one inode: nothing happens, so nothing is checked.
        if dst.is_none_or(|d| d.ino != src.ino) {
            self.check_sticky(&from_dir, &self.inode(src.ino)?, caller)?;
            if let Some(d) = &dst {
                self.check_sticky(&to_dir, &self.inode(d.ino)?, caller)?;
            }
        }
        let now = now_nanos();
        let mut b = Batch::default();
        let mut reap: Option<u64> = None;
        // Parent records, loaded once even when both parents are the same directory.
        let mut parents: HashMap<u64, InodeRecord> = HashMap::new();
        parents.insert(parent, self.inode(parent)?);
        parents.entry(newparent).or_insert(self.inode(newparent)?);

        if flags & RENAME_EXCHANGE != 0 {
            let dst = dst.ok_or(Errno::ENOENT)?;
            if dst.kind == Kind::Dir && self.is_within(parent, dst.ino)? {
                return Err(Errno::EINVAL);
            }
            b.put_dirent(
                parent,
                name,
                &DirentRecord {
                    ino: dst.ino,
                    kind: dst.kind,
                    cookie: src.cookie,
                },
            );
            b.put_dirent(
                newparent,
                newname,
                &DirentRecord {
                    ino: src.ino,
                    kind: src.kind,
                    cookie: dst.cookie,
                },
            );
            for (moved, from, to) in [(src, parent, newparent), (dst, newparent, parent)] {
                let mut r = self.inode(moved.ino)?;
                r.ctime = now;
                if moved.kind == Kind::Dir && from != to {
                    r.parent = to;
                    parents.get_mut(&from).unwrap().nlink -= 1;
                    parents.get_mut(&to).unwrap().nlink += 1;
                }
                b.put_inode(moved.ino, &r);
            }
        } else {
            if let Some(dst) = dst {
                if flags & RENAME_NOREPLACE != 0 {
                    return Err(Errno::EEXIST);
                }
                if dst.ino == src.ino {
                    return Ok(()); // two links to the same file: POSIX says do nothing
                }
                let mut victim = self.inode(dst.ino)?;
                match (src.kind == Kind::Dir, dst.kind == Kind::Dir) {
                    (false, true) => return Err(Errno::EISDIR),
                    (true, false) => return Err(Errno::ENOTDIR),
                    (true, true) => {
                        if !self.idx.dir_is_empty(dst.ino)? {
                            return Err(Errno::ENOTEMPTY);
                        }
                        parents.get_mut(&newparent).unwrap().nlink -= 1;
                    }
                    (false, false) => {}
                }
                b.del_dirent(newparent, newname, dst.cookie);
                reap = self.unlink_inode(&mut b, dst.ino, &mut victim);
            }
            b.del_dirent(parent, name, src.cookie);
            let mut r = self.inode(src.ino)?;
            r.ctime = now;
            if src.kind == Kind::Dir && parent != newparent {
                r.parent = newparent;
                parents.get_mut(&parent).unwrap().nlink -= 1;
            }
            let np = parents.get_mut(&newparent).unwrap();
            let cookie = np.next_cookie;
            np.next_cookie += 1;
            if src.kind == Kind::Dir && parent != newparent {
                np.nlink += 1;
            }
            b.put_dirent(
                newparent,
                newname,
                &DirentRecord {
                    ino: src.ino,
                    kind: src.kind,
                    cookie,
                },
            );
            b.put_inode(src.ino, &r);
            self.names.learn(newparent, newname, src.ino);
        }
        for (ino, mut p) in parents {
            p.mtime = now;
            p.ctime = now;
            b.put_inode(ino, &p);
        }
        self.idx.apply(b)?;
        if let Some(v) = reap {
            self.reap_locked(v)?;
        }
        Ok(())
    }
}
