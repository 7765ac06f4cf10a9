//! Restoring from a snapshot into the live tree (`restore --in-place`): files,
//! directories, symlinks and special files come back at their old paths with
//! their modes, owners, times and extended attributes, and files get their old
//! chunk lists again — the chunks are referenced, nothing is uploaded. Hard links
//! among the restored entries are links again.

use super::snapshot::{inode_of, path_components, show_path, SnapError, SnapResult};
use super::{Fs, RefDelta};
use crate::format::{snapshot_id_hex, InodeRecord, Kind, TreeEntry};
use crate::meta::index::{BatchExt, ROOT_INO};
use crate::meta::Batch;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What `restore --in-place` did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    /// Logical bytes of the files restored.
    pub bytes: u64,
    /// Entries that could not be restored, one line each.
    pub errors: Vec<String>,
}

impl Fs {
    /// Brings `paths` of snapshot `snap` back into the live tree at their old
    /// paths. Without `overwrite`, a path that exists in the live tree is refused
    /// before anything changes; with it, directories are merged and other entries
    /// replaced. Missing parent directories are made as the snapshot had them.
    pub async fn restore_in_place(
        &self,
        snap: u32,
        paths: &[String],
        overwrite: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> SnapResult<RestoreReport> {
        self.writable()?;
        let rec = self.idx.snapshot(snap)?.ok_or_else(|| {
            SnapError(format!(
                "no snapshot {} in this volume: see cloudraid snapshot list",
                snapshot_id_hex(snap)
            ))
        })?;
        if paths.is_empty() {
            return Err(SnapError(
                "nothing to restore: give one or more paths (/ for everything)".into(),
            ));
        }
        // Check every path first, so that a refusal changes nothing.
        let mut plan = Vec::new();
        let mut total = 0;
        for p in paths {
            let comps = path_components(p)?;
            let entry = self.snapshot_entry(snap, &rec, &comps)?;
            if !overwrite && !comps.is_empty() && self.live_path(&comps)?.is_some() {
                return Err(SnapError(format!(
                    "{} exists in the live tree: restore refuses to replace it (--overwrite replaces it and merges directories)",
                    show_path(&comps)
                )));
            }
            total += self.entry_bytes(snap, &entry)?;
            plan.push((comps, entry));
        }
        let mut report = RestoreReport::default();
        let mut links: HashMap<u64, u64> = HashMap::new();
        let mut done = 0;
        for (comps, entry) in plan {
            // The parent directories, as the snapshot had them where they are gone.
            let mut parent = ROOT_INO;
            for i in 0..comps.len().saturating_sub(1) {
                let here = &comps[..=i];
                parent = match self.idx.dirent(parent, &comps[i])? {
                    Some(d) if d.kind == Kind::Dir => d.ino,
                    Some(_) => {
                        return Err(SnapError(format!(
                            "{} is not a directory in the live tree: cannot restore below it",
                            show_path(here)
                        )))
                    }
                    None => {
                        let e = self.snapshot_entry(snap, &rec, here)?;
                        report.dirs += 1;
                        self.restore_node(parent, &e, &mut links).await?
                    }
                };
            }
            let mut stack: Vec<(u64, Vec<Vec<u8>>, TreeEntry)> = Vec::new();
            if comps.is_empty() {
                // The whole snapshot: its root's entries into the live root.
                for e in self
                    .snapshot_tree(snap, &entry.tree.expect("root is a directory"))?
                    .entries
                {
                    stack.push((ROOT_INO, vec![e.name.clone()], e));
                }
            } else {
                stack.push((parent, comps.clone(), entry));
            }
            // Directories get their times last: restoring their entries changes them.
            let mut dirs_done = Vec::new();
            while let Some((parent, path, e)) = stack.pop() {
                match self.restore_one(parent, &e, overwrite, &mut links).await {
                    Ok(ino) => {
                        match e.kind {
                            Kind::Dir => {
                                report.dirs += 1;
                                dirs_done.push((ino, e.clone()));
                                if let Some(t) = e.tree {
                                    let t = self.snapshot_tree(snap, &t)?;
                                    for c in t.entries.into_iter().rev() {
                                        let mut p = path.clone();
                                        p.push(c.name.clone());
                                        stack.push((ino, p, c));
                                    }
                                }
                            }
                            Kind::File => {
                                report.files += 1;
                                report.bytes += e.size;
                                done += e.size;
                                progress(done, total);
                            }
                            _ => report.others += 1,
                        }
                        self.forget_name(parent, &e.name).await;
                    }
                    Err(why) => report.errors.push(format!("{}: {why}", show_path(&path))),
                }
            }
            for (ino, e) in dirs_done.into_iter().rev() {
                self.restore_attrs(ino, &e).await?;
            }
        }
        Ok(report)
    }

    /// The live inode at `comps`, if any.
    fn live_path(&self, comps: &[Vec<u8>]) -> SnapResult<Option<u64>> {
        let mut ino = ROOT_INO;
        for c in comps {
            match self.idx.dirent(ino, c)? {
                Some(d) => ino = d.ino,
                None => return Ok(None),
            }
        }
        Ok(Some(ino))
    }

    /// Logical bytes of the files below (and at) `e`.
    fn entry_bytes(&self, snap: u32, e: &TreeEntry) -> SnapResult<u64> {
        let mut total = 0;
        let mut stack = vec![e.clone()];
        while let Some(e) = stack.pop() {
            match (e.kind, e.tree) {
                (Kind::File, _) => total += e.size,
                (Kind::Dir, Some(t)) => stack.extend(self.snapshot_tree(snap, &t)?.entries),
                _ => {}
            }
        }
        Ok(total)
    }

    /// Restores one entry into live directory `parent` (a directory's own
    /// entries are the caller's to walk): returns its live inode.
    async fn restore_one(
        &self,
        parent: u64,
        e: &TreeEntry,
        overwrite: bool,
        links: &mut HashMap<u64, u64>,
    ) -> Result<u64, String> {
        let existing = self
            .idx
            .dirent(parent, &e.name)
            .map_err(|x| x.to_string())?;
        match existing {
            Some(d) if d.kind == Kind::Dir && e.kind == Kind::Dir => Ok(d.ino),
            Some(_) if !overwrite => {
                Err("exists in the live tree (--overwrite replaces it)".into())
            }
            Some(d) if d.kind == Kind::Dir => {
                Err("is a directory in the live tree, not in the snapshot: remove it first".into())
            }
            Some(_) => {
                self.unlink(parent, &e.name)
                    .await
                    .map_err(|x| x.to_string())?;
                self.restore_node(parent, e, links)
                    .await
                    .map_err(|x| x.to_string())
            }
            None => self
                .restore_node(parent, e, links)
                .await
                .map_err(|x| x.to_string()),
        }
    }

    /// Makes entry `e` in live directory `parent` (which has no entry of that
    /// name): a new inode with the entry's attributes, xattrs and content (its
    /// chunks referenced again), or a new link to a file restored before.
    async fn restore_node(
        &self,
        parent: u64,
        e: &TreeEntry,
        links: &mut HashMap<u64, u64>,
    ) -> SnapResult<u64> {
        self.writable()?;
        let _g = self.meta.lock().await;
        let mut p = self.dir(parent)?;
        if self.idx.dirent(parent, &e.name)?.is_some() {
            return Err(SnapError(format!(
                "{}: appeared in the live tree meanwhile",
                String::from_utf8_lossy(&e.name)
            )));
        }
        let mut b = Batch::default();
        if e.link != 0 {
            if let Some(&ino) = links.get(&e.link) {
                if let Some(mut r) = self.idx.inode(ino)? {
                    self.link_into(&mut b, parent, &mut p, &e.name, ino, e.kind);
                    r.nlink += 1;
                    b.put_inode(parent, &p);
                    b.put_inode(ino, &r);
                    self.idx.apply(b)?;
                    return Ok(ino);
                }
            }
        }
        let ino = self.alloc_ino(&mut b);
        let mut r: InodeRecord = inode_of(e);
        r.parent = parent;
        r.nlink = if e.kind == Kind::Dir { 2 } else { 1 };
        r.next_cookie = 3;
        r.ctime = super::now_nanos();
        if e.kind == Kind::File {
            let c = e.content.clone().unwrap_or_default();
            let mut refs = RefDelta::default();
            refs.add_content(&c);
            self.apply_refs(&mut b, refs)?;
            b.put_content(ino, &c);
        }
        for (name, value) in &e.xattrs {
            b.put(
                crate::format::keys::ino_name(crate::format::keys::XATTR, ino, name),
                value.clone(),
            );
        }
        self.link_into(&mut b, parent, &mut p, &e.name, ino, e.kind);
        b.put_inode(parent, &p);
        b.put_inode(ino, &r);
        self.idx.apply(b)?;
        if e.link != 0 {
            links.insert(e.link, ino);
        }
        Ok(ino)
    }

    /// Gives existing live directory `ino` the snapshot's mode, owner and times.
    async fn restore_attrs(&self, ino: u64, e: &TreeEntry) -> SnapResult<()> {
        let _g = self.meta.lock().await;
        let mut r = self.inode(ino)?;
        r.perm = e.perm;
        r.uid = e.uid;
        r.gid = e.gid;
        r.atime = e.atime;
        r.mtime = e.mtime;
        r.ctime = super::now_nanos();
        let mut b = Batch::default();
        b.put_inode(ino, &r);
        self.idx.apply(b)?;
        Ok(())
    }
}
