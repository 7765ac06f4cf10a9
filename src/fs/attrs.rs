//! Attribute changes and checks: `setattr` (mode, owner, size, times), the
//! extended attributes (set, get, list, remove) and `access(2)` for callers
//! that do not rely on the kernel's default permission checks.

use super::snapview::is_view;
use super::{
    now_nanos, to_nanos, Attr, Caller, Errno, Fs, FsResult, SetAttr, SetTime, XATTR_CREATE,
    XATTR_NAME_MAX, XATTR_REPLACE, XATTR_SIZE_MAX,
};
use crate::format::{keys, Kind};
use crate::meta::index::BatchExt;
use crate::meta::Batch;

/// Extended attributes the volume does not keep, refused with `EOPNOTSUPP` as a
/// filesystem without them answers:
/// - POSIX ACLs (`system.posix_acl_access`, `system.posix_acl_default`): stored as
///   plain attributes they would not be enforced, and `cp -a` (which sets the ACL
///   instead of the mode when it can) would leave files with the wrong mode; refused,
///   tools fall back to chmod.
/// - The SELinux label (`security.selinux`): on a host running SELinux the kernel
///   labels a FUSE mount itself and never asks the filesystem; elsewhere a label
///   means nothing.
///
/// Answering "not supported" rather than "no such attribute" lets `ls -l` (which
/// asks for both on every file) stop after the first file: two requests per listing
/// instead of two per entry.
pub(super) fn not_kept(name: &[u8]) -> bool {
    name.starts_with(b"system.posix_acl_") || name == b"security.selinux"
}

impl Fs {
    pub async fn setattr(&self, ino: u64, set: SetAttr) -> FsResult<Attr> {
        let changes_meta = set.mode.is_some() || set.uid.is_some() || set.gid.is_some();
        if changes_meta || set.size.is_some() || set.atime.is_some() || set.mtime.is_some() {
            self.writable_at(&[ino])?;
        } else if is_view(ino) {
            return self.view_attr(ino);
        }
        if let Some(size) = set.size {
            let r = self.inode(ino)?;
            match r.kind {
                Kind::Dir => return Err(Errno::EISDIR),
                Kind::File => self.truncate(ino, size).await?,
                // truncate(2) of anything but a regular file, as the kernel answers.
                _ => return Err(Errno::EINVAL),
            }
        }
        if changes_meta || set.atime.is_some() || set.mtime.is_some() {
            let now = now_nanos();
            let resolve = |t: SetTime| match t {
                SetTime::Now => now,
                SetTime::At(t) => to_nanos(t),
            };
            if let Some(t) = set.mtime {
                // An open file with staged writes would commit its own mtime later.
                self.set_pending_mtime(ino, resolve(t)).await;
            }
            let _g = self.meta.lock().await;
            let mut r = self.inode(ino)?;
            if let Some(mode) = set.mode {
                r.perm = (mode & 0o7777) as u16;
            }
            if let Some(uid) = set.uid {
                r.uid = uid;
            }
            if let Some(gid) = set.gid {
                r.gid = gid;
            }
            if (set.uid.is_some() || set.gid.is_some()) && r.kind != Kind::Dir {
                r.perm &= !0o6000; // chown clears setuid/setgid, as on local filesystems
            }
            if let Some(t) = set.atime {
                r.atime = resolve(t);
            }
            if let Some(t) = set.mtime {
                r.mtime = resolve(t);
            }
            r.ctime = now;
            let mut b = Batch::default();
            b.put_inode(ino, &r);
            self.idx.apply(b)?;
        }
        self.getattr(ino).await
    }

    // ----------------------------------------------------------------- extended attributes

    pub async fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> FsResult<()> {
        self.writable_at(&[ino])?;
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return Err(Errno::ERANGE);
        }
        if value.len() > XATTR_SIZE_MAX {
            return Err(Errno::E2BIG);
        }
        if not_kept(name) {
            return Err(Errno::EOPNOTSUPP);
        }
        let _g = self.meta.lock().await;
        let mut r = self.inode(ino)?;
        let exists = self.idx.xattr(ino, name)?.is_some();
        if flags & XATTR_CREATE != 0 && exists {
            return Err(Errno::EEXIST);
        }
        if flags & XATTR_REPLACE != 0 && !exists {
            return Err(Errno::ENODATA);
        }
        r.ctime = now_nanos();
        let mut b = Batch::default();
        b.put(keys::ino_name(keys::XATTR, ino, name), value.to_vec());
        b.put_inode(ino, &r);
        self.idx.apply(b)?;
        Ok(())
    }

    pub async fn getxattr(&self, ino: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        self.getxattr_now(ino, name)
    }

    /// `getxattr` from the index alone (it never waits), for callers that answer
    /// at once. A name of a kind the volume does not keep is `EOPNOTSUPP` (unless
    /// an earlier version stored one), so tools stop asking for it.
    pub fn getxattr_now(&self, ino: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        let found = if is_view(ino) {
            self.view_xattrs(ino)?
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
        } else {
            self.inode(ino)?;
            self.idx.xattr(ino, name)?
        };
        match found {
            Some(v) => Ok(v),
            None if not_kept(name) => Err(Errno::EOPNOTSUPP),
            None => Err(Errno::ENODATA),
        }
    }

    /// Attribute names, each followed by a NUL byte, as listxattr(2) returns them.
    pub async fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        self.listxattr_now(ino)
    }

    /// `listxattr` from the index alone (it never waits).
    pub fn listxattr_now(&self, ino: u64) -> FsResult<Vec<u8>> {
        let names = if is_view(ino) {
            self.view_xattrs(ino)?.into_iter().map(|(n, _)| n).collect()
        } else {
            self.inode(ino)?;
            self.idx.xattr_names(ino)?
        };
        let mut out = Vec::new();
        for n in names {
            out.extend_from_slice(&n);
            out.push(0);
        }
        Ok(out)
    }

    pub async fn removexattr(&self, ino: u64, name: &[u8]) -> FsResult<()> {
        self.writable_at(&[ino])?;
        let _g = self.meta.lock().await;
        let mut r = self.inode(ino)?;
        if self.idx.xattr(ino, name)?.is_none() {
            return Err(if not_kept(name) {
                Errno::EOPNOTSUPP
            } else {
                Errno::ENODATA
            });
        }
        r.ctime = now_nanos();
        let mut b = Batch::default();
        b.delete(keys::ino_name(keys::XATTR, ino, name));
        b.put_inode(ino, &r);
        self.idx.apply(b)?;
        Ok(())
    }

    /// access(2) for callers that do not use default_permissions.
    pub async fn access(&self, ino: u64, mask: i32, caller: Caller) -> FsResult<()> {
        let r = if is_view(ino) {
            self.view_inode(ino)?
        } else {
            self.inode(ino)?
        };
        if mask == libc::F_OK {
            return Ok(());
        }
        if mask & libc::W_OK != 0 && (self.opts.read_only || is_view(ino)) {
            return Err(Errno::EROFS);
        }
        if caller.uid == 0 {
            if mask & libc::X_OK != 0 && r.kind != Kind::Dir && r.perm & 0o111 == 0 {
                return Err(Errno::EACCES);
            }
            return Ok(());
        }
        let bits = if caller.uid == r.uid {
            (r.perm >> 6) & 7
        } else if caller.gid == r.gid {
            (r.perm >> 3) & 7
        } else {
            r.perm & 7
        } as i32;
        if bits & mask == mask {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }
}
