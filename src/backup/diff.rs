//! `snapshot diff`: what changed between two snapshots, or between a snapshot
//! and the live tree, as `restic diff` shows it.
//!
//! Both trees are walked side by side, each directory's entries in name order
//! (snapshot trees are stored sorted; live directories are read from the
//! index's name-ordered entries). Two directories of two snapshots with the same
//! tree id are identical and are not entered, so an unchanged subtree costs
//! nothing. Only one directory per level of each side is in memory at a time
//! (the live side without its files' chunk lists, read when a file is compared).
//!
//! What is reported, per path (directories with a trailing `/`):
//! - `+` added, `-` removed (a directory added or removed is listed with
//!   everything in it);
//! - `T` the type changed (file, directory, symlink, FIFO, socket, device);
//! - `M` the content changed: a file's chunks (or size), a symlink's target, a
//!   device's number;
//! - `U` only metadata changed: mode, owner, group, modification time (files,
//!   symlinks, special files; a directory's times follow its entries, which are
//!   reported themselves) or extended attributes.
//!
//! Bytes added and removed are counted by chunk: a file that appears or goes
//! counts all its chunks, a changed file only the chunks it gained or lost
//! (holes count nothing).

use crate::format::{
    decode_record, keys, snapshot_id_hex, ChunkId, ChunkRef, Kind, Nanos, SnapshotRecord, TreeId,
};
use crate::fs::snapshot::{SnapError, SnapResult};
use crate::fs::Fs;
use crate::meta::index::{IndexError, ROOT_INO};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One changed path.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Change {
    /// `+`, `-`, `M`, `T` or `U`.
    pub what: char,
    /// The path in the volume, quoted as `ls` quotes names; directories end in `/`.
    pub path: String,
}

/// What `snapshot diff A B` found.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiffReport {
    /// The two sides: snapshot ids (8 hex digits) or `live`.
    pub a: String,
    pub b: String,
    pub changes: Vec<Change>,
    pub files_added: u64,
    pub files_removed: u64,
    /// Files whose content changed (`M`), or whose type changed to or from a file.
    pub files_changed: u64,
    pub dirs_added: u64,
    pub dirs_removed: u64,
    /// Symlinks, FIFOs, sockets and devices.
    pub others_added: u64,
    pub others_removed: u64,
    /// Entries whose metadata only changed (`U`).
    pub metadata_changed: u64,
    /// Chunk bytes B has that A did not have (per path), and the reverse.
    pub bytes_added: u64,
    pub bytes_removed: u64,
}

/// One side of the comparison.
#[derive(Clone, Copy)]
pub enum Side {
    /// A snapshot (its id).
    Snapshot(u32),
    /// The live tree as last committed.
    Live,
}

/// Where a directory's entries come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DirRef {
    Tree(u32, TreeId),
    Live(u64),
}

/// An entry as compared.
struct Node {
    name: Vec<u8>,
    kind: Kind,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: Nanos,
    size: u64,
    target: Vec<u8>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A snapshot file's chunks (live files' are read when compared).
    chunks: Option<Vec<ChunkRef>>,
    /// A live entry's inode.
    ino: u64,
    dir: Option<DirRef>,
}

/// A directory being compared: its entries on each side and how far the merge got.
struct Frame {
    path: Vec<u8>,
    a: Vec<Node>,
    b: Vec<Node>,
    ia: usize,
    ib: usize,
}

/// Compares `a` with `b` (`b` is the newer side: `+` is what `b` has and `a` has not).
pub fn diff(fs: &Fs, a: Side, b: Side) -> SnapResult<DiffReport> {
    let name = |s: Side| match s {
        Side::Snapshot(id) => snapshot_id_hex(id),
        Side::Live => "live".to_string(),
    };
    let mut report = DiffReport {
        a: name(a),
        b: name(b),
        ..DiffReport::default()
    };
    let ra = root(fs, a)?;
    let rb = root(fs, b)?;
    if ra.is_some() && ra == rb {
        return Ok(report);
    }
    let mut stack = vec![Frame {
        path: Vec::new(),
        a: list(fs, ra)?,
        b: list(fs, rb)?,
        ia: 0,
        ib: 0,
    }];
    while let Some(top) = stack.last_mut() {
        let next_a = top.a.get(top.ia);
        let next_b = top.b.get(top.ib);
        let (na, nb) = match (next_a, next_b) {
            (None, None) => {
                stack.pop();
                continue;
            }
            (Some(x), Some(y)) if x.name == y.name => {
                top.ia += 1;
                top.ib += 1;
                (Some(top.ia - 1), Some(top.ib - 1))
            }
            (Some(x), Some(y)) if x.name < y.name => {
                top.ia += 1;
                (Some(top.ia - 1), None)
            }
            (Some(_), None) => {
                top.ia += 1;
                (Some(top.ia - 1), None)
            }
            _ => {
                top.ib += 1;
                (None, Some(top.ib - 1))
            }
        };
        let na = na.map(|i| &top.a[i]);
        let nb = nb.map(|i| &top.b[i]);
        let mut path = top.path.clone();
        path.push(b'/');
        path.extend_from_slice(&na.or(nb).expect("one side").name);
        // The directories to enter next (either may be absent: all added or removed).
        let mut enter: Option<(Option<DirRef>, Option<DirRef>)> = None;
        match (na, nb) {
            (Some(x), None) => {
                removed(&mut report, fs, &path, x)?;
                enter = x.dir.map(|d| (Some(d), None));
            }
            (None, Some(y)) => {
                added(&mut report, fs, &path, y)?;
                enter = y.dir.map(|d| (None, Some(d)));
            }
            (Some(x), Some(y)) if x.kind != y.kind => {
                report.changes.push(change('T', &path, y.kind == Kind::Dir));
                if x.kind == Kind::File || y.kind == Kind::File {
                    report.files_changed += 1;
                }
                let (ga, _) = chunk_bytes(fs, x, None)?;
                let (gb, _) = chunk_bytes(fs, y, None)?;
                report.bytes_removed += ga;
                report.bytes_added += gb;
                if x.dir.is_some() || y.dir.is_some() {
                    enter = Some((x.dir, y.dir));
                }
            }
            (Some(x), Some(y)) => {
                if x.kind == Kind::Dir {
                    if !same_meta(x, y, false) {
                        report.changes.push(change('U', &path, true));
                        report.metadata_changed += 1;
                    }
                    if x.dir != y.dir || matches!(x.dir, Some(DirRef::Live(_))) {
                        enter = Some((x.dir, y.dir));
                    }
                } else {
                    let (lost, gained) = if x.kind == Kind::File {
                        let (gb, lost) = chunk_bytes(fs, y, Some(x))?;
                        (lost, gb)
                    } else {
                        (0, 0)
                    };
                    let content_changed = if x.kind == Kind::File {
                        x.size != y.size || file_chunks(fs, x)? != file_chunks(fs, y)?
                    } else {
                        x.target != y.target
                    };
                    if content_changed {
                        report.changes.push(change('M', &path, false));
                        if x.kind == Kind::File {
                            report.files_changed += 1;
                        }
                        report.bytes_added += gained;
                        report.bytes_removed += lost;
                    } else if !same_meta(x, y, true) {
                        report.changes.push(change('U', &path, false));
                        report.metadata_changed += 1;
                    }
                }
            }
            (None, None) => unreachable!("one side has the entry"),
        }
        if let Some((da, db)) = enter {
            let frame = Frame {
                path,
                a: list(fs, da)?,
                b: list(fs, db)?,
                ia: 0,
                ib: 0,
            };
            stack.push(frame);
        }
    }
    Ok(report)
}

/// The root directory of a side.
fn root(fs: &Fs, s: Side) -> SnapResult<Option<DirRef>> {
    Ok(match s {
        Side::Live => Some(DirRef::Live(ROOT_INO)),
        Side::Snapshot(id) => {
            let rec: SnapshotRecord = fs.index().snapshot(id)?.ok_or_else(|| {
                SnapError(format!(
                    "no snapshot {} in this volume: see cloudraid snapshot list",
                    snapshot_id_hex(id)
                ))
            })?;
            rec.root.tree.map(|t| DirRef::Tree(id, t))
        }
    })
}

/// The entries of a directory, sorted by name (none for an absent side).
fn list(fs: &Fs, d: Option<DirRef>) -> SnapResult<Vec<Node>> {
    match d {
        None => Ok(Vec::new()),
        Some(DirRef::Tree(snap, id)) => Ok(fs
            .snapshot_tree(snap, &id)?
            .entries
            .into_iter()
            .map(|e| Node {
                dir: e.tree.map(|t| DirRef::Tree(snap, t)),
                chunks: Some(e.content.map(|c| c.chunks).unwrap_or_default()),
                name: e.name,
                kind: e.kind,
                perm: e.perm,
                uid: e.uid,
                gid: e.gid,
                mtime: e.mtime,
                size: e.size,
                target: e.target,
                xattrs: e.xattrs,
                ino: 0,
            })
            .collect()),
        Some(DirRef::Live(dir)) => {
            let idx = fs.index();
            let prefix = keys::ino(keys::DIRENT, dir);
            let mut out = Vec::new();
            let mut after: Option<Vec<u8>> = None;
            loop {
                let rows = idx
                    .store()
                    .scan(&prefix, after.as_deref(), 1024)
                    .map_err(IndexError::from)?;
                let Some((last, _)) = rows.last() else {
                    return Ok(out);
                };
                after = Some(last.clone());
                for (k, v) in rows {
                    let d: crate::format::DirentRecord =
                        decode_record(&v).map_err(IndexError::Damaged)?;
                    let Some(r) = idx.inode(d.ino)? else {
                        continue;
                    };
                    let mut xattrs = Vec::new();
                    for n in idx.xattr_names(d.ino)? {
                        if let Some(v) = idx.xattr(d.ino, &n)? {
                            xattrs.push((n, v));
                        }
                    }
                    out.push(Node {
                        name: k[prefix.len()..].to_vec(),
                        kind: r.kind,
                        perm: r.perm,
                        uid: r.uid,
                        gid: r.gid,
                        mtime: r.mtime,
                        size: r.size,
                        target: r.target,
                        xattrs,
                        chunks: None,
                        ino: d.ino,
                        dir: (r.kind == Kind::Dir).then_some(DirRef::Live(d.ino)),
                    });
                }
            }
        }
    }
}

fn file_chunks(fs: &Fs, n: &Node) -> SnapResult<Vec<ChunkRef>> {
    if n.kind != Kind::File {
        return Ok(Vec::new());
    }
    Ok(match &n.chunks {
        Some(c) => c.clone(),
        None => fs
            .index()
            .content(n.ino)?
            .map(|c| c.chunks)
            .unwrap_or_default(),
    })
}

/// Chunk bytes of file `n` not in `old` (all of them without `old`), and the
/// bytes of `old` not in `n`.
fn chunk_bytes(fs: &Fs, n: &Node, old: Option<&Node>) -> SnapResult<(u64, u64)> {
    let data = |chunks: Vec<ChunkRef>| -> HashMap<ChunkId, u64> {
        chunks
            .into_iter()
            .filter_map(|c| match c {
                ChunkRef::Data { id, len } => Some((id, len as u64)),
                ChunkRef::Hole { .. } => None,
            })
            .collect()
    };
    let new = data(file_chunks(fs, n)?);
    let old = match old {
        Some(o) => data(file_chunks(fs, o)?),
        None => HashMap::new(),
    };
    let gained = new
        .iter()
        .filter(|(id, _)| !old.contains_key(*id))
        .map(|(_, l)| l)
        .sum();
    let lost = old
        .iter()
        .filter(|(id, _)| !new.contains_key(*id))
        .map(|(_, l)| l)
        .sum();
    Ok((gained, lost))
}

fn same_meta(x: &Node, y: &Node, times: bool) -> bool {
    x.perm == y.perm
        && x.uid == y.uid
        && x.gid == y.gid
        && x.xattrs == y.xattrs
        && (!times || x.mtime == y.mtime)
}

fn change(what: char, path: &[u8], dir: bool) -> Change {
    let mut p = path.to_vec();
    if dir {
        p.push(b'/');
    }
    Change {
        what,
        path: crate::front::ops::shell_escape(&p),
    }
}

fn added(r: &mut DiffReport, fs: &Fs, path: &[u8], n: &Node) -> SnapResult<()> {
    r.changes.push(change('+', path, n.kind == Kind::Dir));
    match n.kind {
        Kind::File => {
            r.files_added += 1;
            r.bytes_added += chunk_bytes(fs, n, None)?.0;
        }
        Kind::Dir => r.dirs_added += 1,
        _ => r.others_added += 1,
    }
    Ok(())
}

fn removed(r: &mut DiffReport, fs: &Fs, path: &[u8], n: &Node) -> SnapResult<()> {
    r.changes.push(change('-', path, n.kind == Kind::Dir));
    match n.kind {
        Kind::File => {
            r.files_removed += 1;
            r.bytes_removed += chunk_bytes(fs, n, None)?.0;
        }
        Kind::Dir => r.dirs_removed += 1,
        _ => r.others_removed += 1,
    }
    Ok(())
}

/// The report as `snapshot diff` prints it: one line per change, then totals.
pub fn render(r: &DiffReport) -> String {
    use crate::config::human;
    let mut out = format!("comparing snapshot {} with {}\n", r.a, r.b);
    for c in &r.changes {
        out.push_str(&format!("{}    {}\n", c.what, c.path));
    }
    if r.changes.is_empty() {
        out.push_str("no differences\n");
    }
    out.push_str(&format!(
        "\nfiles:    {} new, {} removed, {} changed\ndirs:     {} new, {} removed\nothers:   {} new, {} removed\nmetadata: {} changed\nadded:    {}\nremoved:  {}\n",
        r.files_added,
        r.files_removed,
        r.files_changed,
        r.dirs_added,
        r.dirs_removed,
        r.others_added,
        r.others_removed,
        r.metadata_changed,
        human(r.bytes_added),
        human(r.bytes_removed),
    ));
    out
}
