//! The one place where failures become POSIX error numbers.

use crate::data::volume::VolumeError;
use crate::meta::index::IndexError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

pub type FsResult<T> = Result<T, Errno>;

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EXDEV: Errno = Errno(libc::EXDEV);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EFBIG: Errno = Errno(libc::EFBIG);
    pub const EROFS: Errno = Errno(libc::EROFS);
    pub const EMLINK: Errno = Errno(libc::EMLINK);
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    pub const ENODATA: Errno = Errno(libc::ENODATA);
    pub const E2BIG: Errno = Errno(libc::E2BIG);
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const ENXIO: Errno = Errno(libc::ENXIO);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    /// A chunk is in an archive class and being thawed: try again later.
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl From<IndexError> for Errno {
    fn from(e: IndexError) -> Self {
        tracing::error!("{e}");
        match e {
            // The change was not made: the local disk has no room for it.
            IndexError::Meta(crate::meta::MetaError::Full(_)) => Errno::ENOSPC,
            _ => Errno::EIO,
        }
    }
}

impl From<VolumeError> for Errno {
    fn from(e: VolumeError) -> Self {
        if let VolumeError::NeedsThaw { .. } = e {
            // The reader logs one line naming the file (`Fs::thaw_for_read`).
            tracing::debug!("{e}");
            return Errno::EAGAIN;
        }
        tracing::error!("{e}");
        Errno::EIO
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        tracing::error!("local I/O: {e}");
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}
