//! The read-only view of the snapshots: `/.snapshots/ID/...` in the live tree.
//!
//! Inode numbers of the view start at 2^62, above any live inode. A directory
//! of the view gets a slot when first met (slots are never reused while the
//! volume is open, so its number is stable); the other entries are numbered by
//! their directory's slot and their position in its tree: `2^62 + slot·2^24 +
//! position + 1`. Memory therefore grows with the directories browsed, not the
//! files. Entries of one snapshot that are hard links of one file share the
//! number of the first one met. Everything is answered from the index (trees,
//! no backend); file contents are read like live files, through the chunk cache.

use super::snapshot::inode_of;
use super::{Attr, DirEntry, Errno, Fs, FsResult};
use crate::format::{
    snapshot_id_hex, InodeRecord, Kind, SnapshotRecord, TreeEntry, TreeId, TreeRecord,
};
use crate::meta::index::ROOT_INO;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// The name of the snapshots directory in the root.
pub const SNAPDIR: &[u8] = b".snapshots";
/// The first inode number of the view: the snapshots directory itself.
pub const VIEW_BASE: u64 = 1 << 62;
const POS_BITS: u32 = 24;
const POS_MASK: u64 = (1 << POS_BITS) - 1;

pub fn is_view(ino: u64) -> bool {
    ino >= VIEW_BASE
}

/// A directory of the view.
#[derive(Clone)]
struct DirNode {
    snap: u32,
    /// Its own entry (the snapshot's root entry, named by the id, for a snapshot).
    entry: Arc<TreeEntry>,
    parent: u64,
}

pub(super) struct SnapView {
    inner: Mutex<Inner>,
    trees: Mutex<lru::LruCache<TreeId, Arc<TreeRecord>>>,
}

#[derive(Default)]
struct Inner {
    /// Slot 0 is the snapshots directory; others are allocated from 1.
    dirs: HashMap<u64, DirNode>,
    /// (parent slot, position or snapshot id) → slot.
    by_place: HashMap<(u64, u64), u64>,
    /// (snapshot, link) → the inode number of the first entry met of that file.
    links: HashMap<(u32, u64), u64>,
    next: u64,
}

impl Default for SnapView {
    fn default() -> Self {
        SnapView {
            inner: Mutex::new(Inner {
                next: 1,
                ..Inner::default()
            }),
            trees: Mutex::new(lru::LruCache::new(NonZeroUsize::new(64).expect("non-zero"))),
        }
    }
}

fn slot_ino(slot: u64) -> u64 {
    VIEW_BASE + (slot << POS_BITS)
}

/// What a view inode number stands for.
enum Node {
    SnapDir,
    Dir(DirNode),
    /// Entry `pos` of directory `dir`'s tree (a non-directory).
    Entry {
        dir: DirNode,
        pos: usize,
    },
}

impl Fs {
    fn view_node(&self, ino: u64) -> FsResult<Node> {
        if ino == VIEW_BASE {
            return Ok(Node::SnapDir);
        }
        let rel = ino.checked_sub(VIEW_BASE).ok_or(Errno::ENOENT)?;
        let (slot, pos) = (rel >> POS_BITS, rel & POS_MASK);
        let dir = self
            .view
            .inner
            .lock()
            .unwrap()
            .dirs
            .get(&slot)
            .cloned()
            .ok_or(Errno::ENOENT)?;
        if self.idx.snapshot(dir.snap)?.is_none() {
            // Deleted meanwhile.
            return Err(Errno::ENOENT);
        }
        Ok(if pos == 0 {
            Node::Dir(dir)
        } else {
            Node::Entry {
                dir,
                pos: pos as usize - 1,
            }
        })
    }

    /// The tree of a view directory (cached).
    fn view_tree(&self, dir: &DirNode) -> FsResult<Arc<TreeRecord>> {
        let id = dir.entry.tree.ok_or(Errno::ENOTDIR)?;
        if let Some(t) = self.view.trees.lock().unwrap().get(&id) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.snapshot_tree(dir.snap, &id).map_err(|e| {
            tracing::error!("{e}");
            Errno::EIO
        })?);
        self.view.trees.lock().unwrap().put(id, t.clone());
        Ok(t)
    }

    /// The inode number of entry `pos` of view directory `parent` (slot
    /// `parent_slot`), allocating a slot for a directory.
    fn view_child(&self, parent_slot: u64, dir: &DirNode, pos: usize, e: &TreeEntry) -> u64 {
        let mut g = self.view.inner.lock().unwrap();
        if e.kind == Kind::Dir {
            if let Some(s) = g.by_place.get(&(parent_slot, pos as u64)) {
                return slot_ino(*s);
            }
            let s = g.next;
            g.next += 1;
            g.by_place.insert((parent_slot, pos as u64), s);
            g.dirs.insert(
                s,
                DirNode {
                    snap: dir.snap,
                    entry: Arc::new(e.clone()),
                    parent: slot_ino(parent_slot),
                },
            );
            return slot_ino(s);
        }
        let ino = slot_ino(parent_slot) + pos as u64 + 1;
        if e.link != 0 {
            return *g.links.entry((dir.snap, e.link)).or_insert(ino);
        }
        ino
    }

    /// The directory of snapshot `id` (its root), allocating its slot.
    fn view_snapshot_root(&self, id: u32, rec: &SnapshotRecord) -> u64 {
        let mut g = self.view.inner.lock().unwrap();
        if let Some(s) = g.by_place.get(&(0, id as u64)) {
            return slot_ino(*s);
        }
        let s = g.next;
        g.next += 1;
        g.by_place.insert((0, id as u64), s);
        let mut entry = rec.root.clone();
        entry.name = snapshot_id_hex(id).into_bytes();
        g.dirs.insert(
            s,
            DirNode {
                snap: id,
                entry: Arc::new(entry),
                parent: VIEW_BASE,
            },
        );
        slot_ino(s)
    }

    /// The inode record a view inode stands for.
    pub(super) fn view_inode(&self, ino: u64) -> FsResult<InodeRecord> {
        Ok(match self.view_node(ino)? {
            Node::SnapDir => {
                let root = self.inode(ROOT_INO)?;
                let snaps = self.idx.snapshots()?;
                let t = snaps.last().map_or(root.crtime, |(_, r)| r.time);
                InodeRecord {
                    kind: Kind::Dir,
                    perm: 0o555,
                    uid: root.uid,
                    gid: root.gid,
                    nlink: 2 + snaps.len() as u32,
                    size: 0,
                    atime: t,
                    mtime: t,
                    ctime: t,
                    crtime: root.crtime,
                    parent: ROOT_INO,
                    next_cookie: 0,
                    target: Vec::new(),
                }
            }
            Node::Dir(d) => {
                let mut r = inode_of(&d.entry);
                r.parent = d.parent;
                r
            }
            Node::Entry { dir, pos } => {
                let t = self.view_tree(&dir)?;
                inode_of(t.entries.get(pos).ok_or(Errno::ENOENT)?)
            }
        })
    }

    /// The tree entry of a view file (for opening it).
    pub(super) fn view_entry(&self, ino: u64) -> FsResult<TreeEntry> {
        match self.view_node(ino)? {
            Node::SnapDir => Err(Errno::EISDIR),
            Node::Dir(d) => Ok((*d.entry).clone()),
            Node::Entry { dir, pos } => Ok(self
                .view_tree(&dir)?
                .entries
                .get(pos)
                .cloned()
                .ok_or(Errno::ENOENT)?),
        }
    }

    pub(super) fn view_attr(&self, ino: u64) -> FsResult<Attr> {
        let r = self.view_inode(ino)?;
        Ok(self.attr_of(ino, &r))
    }

    /// Looks `name` up in view directory `parent` (or `.snapshots` in the root).
    pub(super) fn view_lookup(&self, parent: u64, name: &[u8]) -> FsResult<Attr> {
        if parent == ROOT_INO {
            return self.view_attr(VIEW_BASE);
        }
        match self.view_node(parent)? {
            Node::SnapDir => {
                let ino = match name {
                    b"." => VIEW_BASE,
                    b".." => ROOT_INO,
                    _ => {
                        let id = std::str::from_utf8(name)
                            .ok()
                            .filter(|s| s.len() == 8)
                            .and_then(|s| u32::from_str_radix(s, 16).ok())
                            .filter(|id| snapshot_id_hex(*id).as_bytes() == name)
                            .ok_or(Errno::ENOENT)?;
                        let rec = self.idx.snapshot(id)?.ok_or(Errno::ENOENT)?;
                        self.view_snapshot_root(id, &rec)
                    }
                };
                if ino == ROOT_INO {
                    return self.getattr_live(ROOT_INO);
                }
                self.view_attr(ino)
            }
            Node::Dir(d) => {
                let slot = (parent - VIEW_BASE) >> POS_BITS;
                match name {
                    b"." => return self.view_attr(parent),
                    b".." => {
                        return if d.parent == VIEW_BASE {
                            self.view_attr(VIEW_BASE)
                        } else {
                            self.view_attr(d.parent)
                        }
                    }
                    _ => {}
                }
                let t = self.view_tree(&d)?;
                let pos = t
                    .entries
                    .binary_search_by(|e| e.name.as_slice().cmp(name))
                    .map_err(|_| Errno::ENOENT)?;
                let ino = self.view_child(slot, &d, pos, &t.entries[pos]);
                let mut a = self.attr_of(ino, &inode_of(&t.entries[pos]));
                a.ino = ino;
                Ok(a)
            }
            Node::Entry { .. } => Err(Errno::ENOTDIR),
        }
    }

    /// Entries of a view directory after `offset`.
    pub(super) fn view_readdir(
        &self,
        ino: u64,
        offset: u64,
        limit: usize,
    ) -> FsResult<Vec<DirEntry>> {
        let node = self.view_node(ino)?;
        let parent = match &node {
            Node::SnapDir => ROOT_INO,
            Node::Dir(d) => d.parent,
            Node::Entry { .. } => return Err(Errno::ENOTDIR),
        };
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
                ino: parent,
                offset: 2,
                kind: Kind::Dir,
                name: b"..".to_vec(),
            });
        }
        match node {
            Node::SnapDir => {
                // Offsets are the ids (+3): stable while snapshots come and go.
                let mut snaps = self.idx.snapshots()?;
                snaps.sort_by_key(|(id, _)| *id);
                for (id, rec) in snaps {
                    if out.len() >= limit {
                        break;
                    }
                    let off = id as u64 + 3;
                    if off <= offset {
                        continue;
                    }
                    out.push(DirEntry {
                        ino: self.view_snapshot_root(id, &rec),
                        offset: off,
                        kind: Kind::Dir,
                        name: snapshot_id_hex(id).into_bytes(),
                    });
                }
            }
            Node::Dir(d) => {
                let slot = (ino - VIEW_BASE) >> POS_BITS;
                let t = self.view_tree(&d)?;
                let first = offset.saturating_sub(2) as usize;
                for (pos, e) in t.entries.iter().enumerate().skip(first) {
                    if out.len() >= limit {
                        break;
                    }
                    out.push(DirEntry {
                        ino: self.view_child(slot, &d, pos, e),
                        offset: pos as u64 + 3,
                        kind: e.kind,
                        name: e.name.clone(),
                    });
                }
            }
            Node::Entry { .. } => unreachable!("checked above"),
        }
        out.truncate(limit);
        Ok(out)
    }

    /// The xattrs of a view inode.
    pub(super) fn view_xattrs(&self, ino: u64) -> FsResult<Vec<(Vec<u8>, Vec<u8>)>> {
        match self.view_node(ino)? {
            Node::SnapDir => Ok(Vec::new()),
            _ => Ok(self.view_entry(ino)?.xattrs),
        }
    }

    /// The path of a snapshot's directory in the mount.
    pub fn snapshot_dir_name(id: u32) -> String {
        format!("/.snapshots/{}", snapshot_id_hex(id))
    }
}
