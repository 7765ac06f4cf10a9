//! Storing a stream of bytes as one file of the volume: written under a
//! temporary name as the blocks arrive (a sequential write is cut and stored as
//! it comes, so nothing is kept whole in memory or on the local disk), then
//! renamed over what the name held. Database dumps of backup jobs and uploads
//! through the REST API go this way.

use super::{fs_err, temp_name};
use crate::fs::{Caller, Errno, Fs};
use bytes::Bytes;
use futures::{Stream, StreamExt};

/// Why a stream was not stored; the name keeps what it held.
#[derive(Debug)]
pub enum StreamError {
    /// The volume refused (the errno, and the message naming `shown`).
    Volume(Errno, String),
    /// The stream itself failed (its message).
    Source(String),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Volume(_, m) | StreamError::Source(m) => f.write_str(m),
        }
    }
}

/// Stores the blocks of `blocks` as `name` in directory `dir` (`shown` is its
/// path for messages), replacing what the name held once every block is
/// written and the file is closed. The stream ends with `Ok` blocks only when
/// it succeeded: an `Err` item stops it and nothing changes. Returns the bytes
/// written and the bytes of its chunks no other file held when it was closed
/// (what the stream uploaded after deduplication: measured before it replaces
/// the old version, which may share chunks with it).
pub async fn store_stream<S>(
    fs: &Fs,
    dir: u64,
    name: &[u8],
    shown: &str,
    mode: u32,
    owner: Caller,
    mut blocks: S,
) -> Result<(u64, u64), StreamError>
where
    S: Stream<Item = Result<Bytes, String>> + Unpin,
{
    let verr = |e: Errno| StreamError::Volume(e, fs_err(shown, e));
    let tmp = temp_name(name, "upload");
    let (attr, fh) = fs
        .create(
            dir,
            &tmp,
            mode,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            owner,
        )
        .await
        .map_err(verr)?;
    let mut off = 0u64;
    let mut written: Result<(), StreamError> = Ok(());
    while let Some(block) = blocks.next().await {
        match block {
            Ok(b) => {
                let mut done = 0;
                while done < b.len() {
                    match fs.write(fh, off, &b[done..]).await {
                        Ok(n) => {
                            done += n as usize;
                            off += n as u64;
                        }
                        Err(e) => {
                            written = Err(verr(e));
                            break;
                        }
                    }
                }
            }
            Err(e) => written = Err(StreamError::Source(e)),
        }
        if written.is_err() {
            break;
        }
    }
    drop(blocks);
    let released = fs.release(fh).await.map_err(verr);
    let written = written.and(released);
    let fresh = if written.is_ok() {
        fresh_bytes(fs, attr.ino)
    } else {
        0
    };
    let placed = match written {
        Ok(()) => fs
            .rename_as(dir, &tmp, dir, name, 0, owner)
            .await
            .map_err(verr),
        Err(e) => Err(e),
    };
    if let Err(e) = placed {
        let _ = fs.unlink(dir, &tmp).await;
        return Err(e);
    }
    Ok((off, fresh))
}

/// Plaintext bytes of the chunks of `ino` that no other file references.
fn fresh_bytes(fs: &Fs, ino: u64) -> u64 {
    let Ok(Some(c)) = fs.index().content(ino) else {
        return 0;
    };
    c.chunks
        .iter()
        .filter_map(|r| match r {
            crate::format::ChunkRef::Data { id, len } => Some((id, *len as u64)),
            _ => None,
        })
        .filter(|(id, _)| matches!(fs.index().chunk(id), Ok(Some(rec)) if rec.refs <= 1))
        .map(|(_, len)| len)
        .sum()
}

/// Removes what interrupted `store_stream`s left in directory `dir`.
pub async fn remove_leftovers(fs: &Fs, dir: u64) {
    if let Ok(kids) = super::children(fs, dir).await {
        for (n, _, kind) in kids {
            if kind == crate::format::Kind::File && is_leftover(&n) {
                let _ = fs.unlink(dir, &n).await;
            }
        }
    }
}

/// Whether `name` is a temporary name of `store_stream`.
pub fn is_leftover(name: &[u8]) -> bool {
    name.windows(18).any(|w| w == b".cloudraid-upload.")
}
