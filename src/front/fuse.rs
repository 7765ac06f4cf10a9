//! The FUSE adapter: the only module that knows fuser. Requests the local index
//! answers on its own (lookup, getattr, readlink, readdir, readdirplus, getxattr,
//! listxattr) are answered on the session thread at once; every other request is
//! handed to a tokio task that runs the matching `Fs` operation and replies. The
//! session thread never waits on a backend or on the namespace lock.

use crate::format::Kind;
use crate::front::mountopts::MountOpts;
use crate::fs::{Attr, Caller, Errno as FsErrno, Fs, SetAttr, SetTime};
use crate::metrics::FuseTimer;
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long the kernel may cache attributes and names. Every change goes through
/// this mount, so the kernel's caches stay right.
const TTL: Duration = Duration::from_secs(1);

pub struct FuseAdapter {
    fs: Arc<Fs>,
    rt: tokio::runtime::Handle,
    /// KiB of write requests copied out of the kernel and not answered yet. The
    /// session thread waits for room before it takes the next write, so memory
    /// stays bounded however many processes write at once (the kernel holds
    /// their requests meanwhile).
    write_budget: Arc<tokio::sync::Semaphore>,
}

/// Room for write requests in flight: 32 MiB (32 requests of the kernel's 1 MiB).
const WRITE_BUDGET_KIB: u32 = 32 * 1024;

fn errno(e: FsErrno) -> Errno {
    Errno::from_i32(e.0)
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

fn fuse_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        // The kernel's 32-bit encoding of a device number is the same as user
        // space's 64-bit one for every major below 4096 and minor below 2^20,
        // which are the kernel's own limits.
        rdev: a.rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
    }
}

impl FuseAdapter {
    pub fn new(fs: Arc<Fs>, rt: tokio::runtime::Handle) -> Self {
        FuseAdapter {
            fs,
            rt,
            write_budget: Arc::new(tokio::sync::Semaphore::new(WRITE_BUDGET_KIB as usize)),
        }
    }

    /// Runs `f` on the runtime; it owns its reply and answers when done. The
    /// operation `op` is timed until then (`cloudraid_fuse_operation_*`).
    fn run<F, Fut>(&self, op: &'static str, f: F)
    where
        F: FnOnce(Arc<Fs>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let timer = FuseTimer::start(op);
        let fut = f(self.fs.clone());
        self.rt.spawn(async move {
            fut.await;
            drop(timer);
        });
    }
}

/// Replies with a new entry; the kernel now holds a reference on its inode.
macro_rules! entry_reply {
    ($fs:expr, $reply:expr, $res:expr) => {
        match $res {
            Ok(a) => {
                $fs.remember(a.ino);
                $reply.entry(&TTL, &fuse_attr(&a), Generation(0))
            }
            Err(e) => $reply.error(errno(e)),
        }
    };
}

macro_rules! empty_reply {
    ($reply:expr, $res:expr) => {
        match $res {
            Ok(()) => $reply.ok(),
            Err(e) => $reply.error(errno(e)),
        }
    };
}

impl fuser::Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        // Listings carry attributes, so `ls -l` needs no lookup per entry.
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        Ok(())
    }

    fn destroy(&mut self) {
        let fs = self.fs.clone();
        if let Err(e) = self.rt.block_on(fs.sync_all()) {
            tracing::error!("flushing at unmount failed: {e}");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _t = FuseTimer::start("lookup");
        // Answered here from the index; lookup_kernel counts the kernel's reference.
        match self.fs.lookup_kernel(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry(&TTL, &fuse_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.run("forget", move |fs| async move {
            fs.forget(ino.0, nlookup).await
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _t = FuseTimer::start("getattr");
        match self.fs.getattr_now(ino.0) {
            Ok(a) => reply.attr(&TTL, &fuse_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
        };
        self.run("setattr", move |fs| async move {
            match fs.setattr(ino.0, set).await {
                Ok(a) => reply.attr(&TTL, &fuse_attr(&a)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _t = FuseTimer::start("readlink");
        match self.fs.readlink_now(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        // Regular files, FIFOs, sockets and devices: each kept with its type (and
        // device number). The kernel opens FIFOs and devices itself.
        let (name, c) = (name.as_bytes().to_vec(), caller(req));
        let mode = mode & (libc::S_IFMT | !umask);
        self.run("mknod", move |fs| async move {
            entry_reply!(
                fs,
                reply,
                fs.mknod(parent.0, &name, mode, rdev as u64, c).await
            )
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (name, c) = (name.as_bytes().to_vec(), caller(req));
        self.run("mkdir", move |fs| async move {
            entry_reply!(fs, reply, fs.mkdir(parent.0, &name, mode & !umask, c).await)
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (name, c) = (name.as_bytes().to_vec(), caller(req));
        self.run("unlink", move |fs| async move {
            empty_reply!(reply, fs.unlink_as(parent.0, &name, c).await)
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (name, c) = (name.as_bytes().to_vec(), caller(req));
        self.run("rmdir", move |fs| async move {
            empty_reply!(reply, fs.rmdir_as(parent.0, &name, c).await)
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (name, target, c) = (
            link_name.as_bytes().to_vec(),
            target.as_os_str().as_bytes().to_vec(),
            caller(req),
        );
        self.run("symlink", move |fs| async move {
            entry_reply!(fs, reply, fs.symlink(parent.0, &name, &target, c).await)
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = (name.as_bytes().to_vec(), newname.as_bytes().to_vec());
        let (flags, c) = (flags.bits(), caller(req));
        self.run("rename", move |fs| async move {
            empty_reply!(
                reply,
                fs.rename_as(parent.0, &name, newparent.0, &newname, flags, c)
                    .await
            )
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let newname = newname.as_bytes().to_vec();
        self.run("link", move |fs| async move {
            entry_reply!(fs, reply, fs.link(ino.0, newparent.0, &newname).await)
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.run("open", move |fs| async move {
            match fs.open(ino.0, flags.0).await {
                // Every change goes through this mount, so the page cache stays valid.
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.run("read", move |fs| async move {
            match fs.read_shared(fh.0, offset, size).await {
                Ok(d) => reply.data(&d),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let kib = (data.len() as u32)
            .div_ceil(1024)
            .clamp(1, WRITE_BUDGET_KIB);
        let room = self
            .rt
            .block_on(self.write_budget.clone().acquire_many_owned(kib))
            .expect("write budget is never closed");
        let data = data.to_vec();
        self.run("write", move |fs| async move {
            let _room = room;
            match fs.write(fh.0, offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.run("fallocate", move |fs| async move {
            match fs.fallocate(fh.0, offset, length, mode).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        // The kernel answers SEEK_SET/CUR/END itself; SEEK_DATA and SEEK_HOLE
        // come here, so sparse-aware tools (cp, tar) skip the holes.
        self.run("lseek", move |fs| async move {
            let Ok(offset) = u64::try_from(offset) else {
                return reply.error(Errno::ENXIO);
            };
            match fs.seek_data_or_hole(fh.0, offset, whence).await {
                Ok(o) => reply.offset(o as i64),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.run("flush", move |fs| async move {
            empty_reply!(reply, fs.flush(fh.0).await)
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.run("release", move |fs| async move {
            empty_reply!(reply, fs.release(fh.0).await)
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.run("fsync", move |fs| async move {
            empty_reply!(reply, fs.fsync(fh.0).await)
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _t = FuseTimer::start("readdir");
        match self.fs.readdir_now(ino.0, offset, 512) {
            Ok(entries) => {
                for e in entries {
                    if reply.add(
                        INodeNo(e.ino),
                        e.offset,
                        file_type(e.kind),
                        OsStr::from_bytes(&e.name),
                    ) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _t = FuseTimer::start("readdirplus");
        // As many entries as the kernel's buffer takes; each one taken is counted
        // as a kernel reference by readdir_plus.
        let r = self.fs.readdir_plus(ino.0, offset, |e, a| {
            reply.add(
                INodeNo(e.ino),
                e.offset,
                OsStr::from_bytes(&e.name),
                &TTL,
                &fuse_attr(a),
                Generation(0),
            )
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.run("fsyncdir", move |fs| async move {
            match fs.index().flush() {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e.into())),
            }
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.run("statfs", move |fs| async move {
            match fs.statfs().await {
                Ok(s) => reply.statfs(
                    s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
                ),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let (name, value) = (name.as_bytes().to_vec(), value.to_vec());
        self.run("setxattr", move |fs| async move {
            empty_reply!(reply, fs.setxattr(ino.0, &name, &value, flags).await)
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _t = FuseTimer::start("getxattr");
        xattr_reply(reply, size, self.fs.getxattr_now(ino.0, name.as_bytes()));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _t = FuseTimer::start("listxattr");
        xattr_reply(reply, size, self.fs.listxattr_now(ino.0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.as_bytes().to_vec();
        self.run("removexattr", move |fs| async move {
            empty_reply!(reply, fs.removexattr(ino.0, &name).await)
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let c = caller(req);
        self.run("access", move |fs| async move {
            empty_reply!(reply, fs.access(ino.0, mask.bits(), c).await)
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (name, c) = (name.as_bytes().to_vec(), caller(req));
        self.run("create", move |fs| async move {
            match fs.create(parent.0, &name, mode & !umask, flags, c).await {
                Ok((a, fh)) => {
                    fs.remember(a.ino);
                    reply.created(
                        &TTL,
                        &fuse_attr(&a),
                        Generation(0),
                        FileHandle(fh),
                        FopenFlags::FOPEN_KEEP_CACHE,
                    )
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, res: Result<Vec<u8>, FsErrno>) {
    match res {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() <= size as usize => reply.data(&v),
        Ok(_) => reply.error(Errno::ERANGE),
        Err(e) => reply.error(errno(e)),
    }
}

/// The kernel's and fuser's view of the mount options.
fn fuser_config(opts: &MountOpts, source: &str) -> fuser::Config {
    use fuser::MountOption as M;
    let mut mo = vec![
        M::FSName(source.to_string()),
        M::CUSTOM("subtype=cloudraid".into()),
        M::DefaultPermissions,
        if opts.read_only { M::RO } else { M::RW },
    ];
    for f in &opts.flags {
        mo.push(match f.as_str() {
            "nosuid" => M::NoSuid,
            "suid" => M::Suid,
            "nodev" => M::NoDev,
            "dev" => M::Dev,
            "noexec" => M::NoExec,
            "exec" => M::Exec,
            "noatime" => M::NoAtime,
            "atime" => M::Atime,
            "sync" => M::Sync,
            "async" => M::Async,
            "dirsync" => M::DirSync,
            other => M::CUSTOM(other.to_string()),
        });
    }
    let mut c = fuser::Config::default();
    c.mount_options = mo;
    c.acl = if opts.allow_other {
        fuser::SessionACL::All
    } else if opts.allow_root {
        fuser::SessionACL::RootAndOwner
    } else {
        fuser::SessionACL::Owner
    };
    c.n_threads = Some(1);
    c
}

/// A live mount. Dropping it unmounts (if still mounted) and waits for the
/// session to end.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    mountpoint: std::path::PathBuf,
}

/// Mounts `fs` at `mountpoint`; returns once the kernel has completed the FUSE
/// handshake, i.e. the mount is live.
pub fn mount(
    fs: Arc<Fs>,
    mountpoint: &Path,
    source: &str,
    opts: &MountOpts,
) -> std::io::Result<Mounted> {
    let adapter = FuseAdapter::new(fs.clone(), tokio::runtime::Handle::current());
    let session = fuser::Session::new(adapter, mountpoint, &fuser_config(opts, source))?;
    let notifier = session.notifier();
    let inodes = session.notifier();
    fs.set_invalidator(std::sync::Arc::new(move |parent, name| {
        // ENOENT only means the kernel had nothing cached for it. The parent's
        // attributes (times, link count) go too: the kernel drops them with the
        // name only when it had the name cached.
        let _ = notifier.inval_entry(INodeNo(parent), OsStr::from_bytes(name));
        let _ = notifier.inval_inode(INodeNo(parent), -1, 0);
    }));
    fs.set_inode_invalidator(std::sync::Arc::new(move |ino| {
        let _ = inodes.inval_inode(INodeNo(ino), 0, 0);
    }));
    let mounted = Mounted {
        session: Some(session.spawn()?),
        mountpoint: mountpoint.to_path_buf(),
    };
    let ahead = fs.read_ahead_bytes();
    if ahead > 0 {
        if let Err(e) = set_read_ahead(mountpoint, ahead) {
            tracing::info!(
                "kernel read-ahead of {} left at its default: {e}",
                mountpoint.display()
            );
        }
    }
    Ok(mounted)
}

/// The kernel reads ahead of a sequential reader by the mount's read_ahead_kb,
/// 128 KiB unless raised (FUSE itself can only lower it): raised to `bytes`, so
/// that requests of up to 1 MiB keep the daemon busy with the next chunks while
/// the reader copies the last ones. The setting lives in sysfs, under the mount's
/// device number, and needs root (otherwise the default stays).
pub fn set_read_ahead(mountpoint: &Path, bytes: u64) -> std::io::Result<()> {
    std::fs::write(
        read_ahead_file(mountpoint)?,
        bytes.div_ceil(1024).to_string(),
    )
}

/// The kernel's read-ahead of the mount at `mountpoint`, in bytes.
pub fn read_ahead(mountpoint: &Path) -> std::io::Result<u64> {
    let path = read_ahead_file(mountpoint)?;
    let kb: u64 = std::fs::read_to_string(&path)?
        .trim()
        .parse()
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
    Ok(kb * 1024)
}

fn read_ahead_file(mountpoint: &Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    // Never called from inside a request: the session thread answers this stat.
    let dev = std::fs::metadata(mountpoint)?.dev();
    Ok(format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    )
    .into())
}

impl Mounted {
    /// Waits until the filesystem is unmounted (by `umount` or [`unmount`]).
    pub fn join(mut self) -> std::io::Result<()> {
        match self.session.take() {
            Some(s) => s.join(),
            None => Ok(()),
        }
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = unmount(&self.mountpoint, true);
            let _ = s.join();
        }
    }
}

/// Unmounts `mountpoint`. With `lazy`, a busy mount is detached and disappears
/// once the last file on it is closed; without, it fails with EBUSY.
pub fn unmount(mountpoint: &Path, lazy: bool) -> std::io::Result<()> {
    let c = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if lazy && err.raw_os_error() == Some(libc::EBUSY) {
        // SAFETY: as above.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
    }
    if err.raw_os_error() == Some(libc::EPERM) {
        let st = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(mountpoint)
            .status();
        if matches!(st, Ok(s) if s.success()) {
            return Ok(());
        }
    }
    Err(err)
}
