//! `du`: what a tree holds, and what its distinct chunks take on the backends.

use super::{children, display, fs_err, resolve, DuReport};
use crate::format::{ChunkId, ChunkRef, Kind};
use crate::fs::{Errno, Fs};
use std::collections::HashSet;

/// `du`: what the tree under `path` holds, and what its distinct chunks take
/// on the backends.
pub async fn du(fs: &Fs, path: &str) -> Result<DuReport, String> {
    let a = resolve(fs, path).await?;
    let mut r = DuReport {
        path: display(path),
        ..Default::default()
    };
    let mut seen: HashSet<ChunkId> = HashSet::new();
    if a.ino == crate::meta::index::ROOT_INO {
        let f = fs.snapshot_only_usage().map_err(|e| e.0)?;
        r.snapshot_only_chunks = f.chunks;
        r.snapshot_only_bytes = f.bytes;
        r.snapshot_only_stored_bytes = f.stored_bytes;
    }
    let mut stack = vec![a];
    let err = |e| fs_err(path, e);
    while let Some(a) = stack.pop() {
        match a.kind {
            Kind::Dir => {
                r.dirs += 1;
                for (_, ino, _) in children(fs, a.ino).await.map_err(err)? {
                    match fs.getattr(ino).await {
                        Ok(c) => stack.push(c),
                        Err(Errno::ENOENT) => {}
                        Err(e) => return Err(err(e)),
                    }
                }
            }
            Kind::Symlink => r.symlinks += 1,
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => r.specials += 1,
            Kind::File => {
                r.files += 1;
                r.bytes += a.size;
                for c in fs.file_chunks(a.ino).map_err(err)? {
                    if let ChunkRef::Data { id, .. } = c {
                        if seen.insert(id) {
                            if let Some(rec) = fs.index().chunk(&id).map_err(|e| err(e.into()))? {
                                r.chunks += 1;
                                r.chunk_bytes += rec.len as u64;
                                r.stored_bytes +=
                                    rec.shard_size as u64 * (rec.k as u64 + rec.m as u64);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(r)
}

pub fn render_du(r: &DuReport) -> String {
    use crate::config::human;
    let specials = match r.specials {
        0 => String::new(),
        n => format!(", {n} special files (FIFOs, sockets, devices)"),
    };
    let mut out = format!(
        "{}: {} in {} files, {} directories, {} symlinks{specials}\nstored as {} distinct chunks ({}) taking {} on the backends\n",
        r.path,
        human(r.bytes),
        r.files,
        r.dirs,
        r.symlinks,
        r.chunks,
        human(r.chunk_bytes),
        human(r.stored_bytes)
    );
    if r.snapshot_only_chunks > 0 {
        out.push_str(&format!(
            "snapshots alone hold {} more chunks ({}) taking {} on the backends (cloudraid forget frees them)\n",
            r.snapshot_only_chunks,
            human(r.snapshot_only_bytes),
            human(r.snapshot_only_stored_bytes)
        ));
    }
    out
}
