//! `cloudraid fsck`: the index checked against itself and against the backends,
//! and, with repair, put right.
//!
//! Against itself: every directory entry names an inode of its kind and has its
//! readdir cookie; every inode but the root is reachable and has the right link
//! count; every chunk a file uses has a record, and every record counts exactly
//! the references the files hold. Against the backends (one listing each, no shard
//! is read): every shard of every chunk is where its placement says, and nothing
//! else is stored under `chunks/`. Inline chunks (kept sealed in their record)
//! have no shards: none is expected, and one found under their id is an orphan.
//!
//! Repair rewrites what the index alone can fix (entries, cookies, link counts,
//! reference counts; an unreachable inode is linked into `/lost+found`, never
//! dropped), and deletes orphaned shards older than the grace period (a younger one
//! may belong to an upload in progress). Missing shards are for `cloudraid repair`.

use super::{Errno, Fs, FsResult};
use crate::format::{
    decode_record, encode_record, keys, parse_shard_key, ChunkId, ChunkRecord, ChunkRef,
    ContentRecord, DirentRecord, InodeRecord, Kind, ShardName, TreeId, TreeRecord, TreeRefs,
};
use crate::meta::index::{BatchExt, ROOT_INO};
use crate::meta::Batch;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FsckReport {
    pub inodes: u64,
    pub chunks: u64,
    pub shards: u64,
    /// What is wrong, one line each, and whether this run fixed it.
    pub problems: Vec<Problem>,
    /// Shards stored for no chunk of the index, younger than the grace period:
    /// left alone (they may belong to an upload in progress).
    pub recent_orphans: u64,
    /// Backends that could not be listed: their shards were not checked.
    pub unlisted: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub fixed: bool,
    /// What repair does (or did) about it; none: repair cannot fix it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl FsckReport {
    /// No problem is left (fixed ones do not count).
    pub fn clean(&self) -> bool {
        self.problems.iter().all(|p| p.fixed)
    }

    fn found(&mut self, what: String) {
        self.problems.push(Problem {
            what,
            fixed: false,
            fix: None,
        });
    }

    /// A problem the index batch being built fixes (if it is applied).
    fn fixable(&mut self, what: String, fix: &str) {
        self.problems.push(Problem {
            what,
            fixed: false,
            fix: Some(fix.to_string()),
        });
    }
}

pub fn render(r: &FsckReport) -> String {
    let mut out = format!(
        "checked {} inodes, {} chunks, {} shards\n",
        r.inodes, r.chunks, r.shards
    );
    for p in &r.problems {
        out.push_str(&match (&p.fix, p.fixed) {
            (Some(f), true) => format!("fixed: {} ({f})\n", p.what),
            (Some(f), false) => format!("PROBLEM: {} (fsck --repair: {f})\n", p.what),
            (None, true) => format!("fixed: {}\n", p.what),
            (None, false) => format!("PROBLEM: {}\n", p.what),
        });
    }
    if r.recent_orphans > 0 {
        out.push_str(&format!(
            "{} recent shard(s) belong to no chunk yet (uploads in progress?); left alone\n",
            r.recent_orphans
        ));
    }
    for b in &r.unlisted {
        out.push_str(&format!(
            "backend {b} could not be listed: its shards were not checked\n"
        ));
    }
    let left = r.problems.iter().filter(|p| !p.fixed).count();
    let fixed = r.problems.len() - left;
    out.push_str(&match (left, fixed) {
        (0, 0) => "clean\n".to_string(),
        (0, f) => format!("clean after {f} fix(es)\n"),
        (l, _) => format!("{l} problem(s) left\n"),
    });
    out
}

/// The whole index, read at once under the namespace lock.
struct IndexImage {
    inodes: HashMap<u64, InodeRecord>,
    dirents: Vec<(u64, Vec<u8>, DirentRecord)>,
    cookies: Vec<(u64, u64, Vec<u8>)>,
    contents: HashMap<u64, ContentRecord>,
    /// Chunk records; an inline chunk's sealed bytes are not held here (`inline`
    /// is `Some` and empty): a record written back is read again whole.
    chunks: HashMap<ChunkId, ChunkRecord>,
    /// Inline chunk records whose sealed bytes are not as long as they say.
    short_inline: Vec<(ChunkId, usize, u32)>,
    queued: HashSet<ChunkId>,
    orphans: HashSet<u64>,
    /// Snapshot trees: the ids stored, and those that do not decode.
    trees: HashSet<TreeId>,
    damaged_trees: Vec<(TreeId, String)>,
    /// References the snapshots and trees hold: on trees, on chunks.
    tree_names: HashMap<TreeId, u64>,
    tree_chunk_refs: HashMap<ChunkId, u64>,
    /// The counts recorded (`U`, `K`) and the trees queued for deletion (`V`).
    tree_refs: HashMap<TreeId, u64>,
    chunk_tree_refs: HashMap<ChunkId, u64>,
    tree_gc: HashSet<TreeId>,
    /// Snapshot id and root tree.
    roots: Vec<(u32, Option<TreeId>)>,
}

fn be(k: &[u8]) -> u64 {
    u64::from_be_bytes(k[..8].try_into().expect("8-byte key part"))
}

impl Fs {
    fn image(&self) -> FsResult<IndexImage> {
        let raw = |prefix: u8| -> FsResult<Vec<(Vec<u8>, Vec<u8>)>> {
            let mut out = Vec::new();
            let mut after: Option<Vec<u8>> = None;
            loop {
                let rows = self
                    .idx
                    .store()
                    .scan(&[prefix], after.as_deref(), 4096)
                    .map_err(|e| {
                        tracing::error!("{e}");
                        Errno::EIO
                    })?;
                let Some((last, _)) = rows.last() else {
                    return Ok(out);
                };
                after = Some(last.clone());
                out.extend(rows);
            }
        };
        let damaged = |e| {
            tracing::error!("damaged index record: {e}");
            Errno::EIO
        };
        let mut s = IndexImage {
            inodes: HashMap::new(),
            dirents: Vec::new(),
            cookies: Vec::new(),
            contents: HashMap::new(),
            chunks: HashMap::new(),
            short_inline: Vec::new(),
            queued: HashSet::new(),
            orphans: HashSet::new(),
            trees: HashSet::new(),
            damaged_trees: Vec::new(),
            tree_names: HashMap::new(),
            tree_chunk_refs: HashMap::new(),
            tree_refs: HashMap::new(),
            chunk_tree_refs: HashMap::new(),
            tree_gc: HashSet::new(),
            roots: Vec::new(),
        };
        let tree_id = |k: &[u8]| TreeId(k[1..33].try_into().expect("32-byte tree id"));
        for (k, v) in raw(keys::TREE)? {
            let id = tree_id(&k);
            s.trees.insert(id);
            let t: TreeRecord = match decode_record(&v) {
                Ok(t) if TreeId::of(&v) == id => t,
                Ok(_) => {
                    s.damaged_trees.push((id, "does not match its hash".into()));
                    continue;
                }
                Err(e) => {
                    s.damaged_trees.push((id, e));
                    continue;
                }
            };
            for e in &t.entries {
                if let Some(sub) = e.tree {
                    *s.tree_names.entry(sub).or_default() += 1;
                }
                for c in e.content.iter().flat_map(|c| c.chunks.iter()) {
                    if let ChunkRef::Data { id, .. } = c {
                        *s.tree_chunk_refs.entry(*id).or_default() += 1;
                    }
                }
            }
        }
        for (id, r) in self.idx.snapshots()? {
            if let Some(t) = r.root.tree {
                *s.tree_names.entry(t).or_default() += 1;
            }
            s.roots.push((id, r.root.tree));
        }
        for (k, v) in raw(keys::TREE_REFS)? {
            let r: TreeRefs = decode_record(&v).map_err(damaged)?;
            s.tree_refs.insert(tree_id(&k), r.refs);
        }
        for (k, v) in raw(keys::CHUNK_TREE_REFS)? {
            let r: TreeRefs = decode_record(&v).map_err(damaged)?;
            s.chunk_tree_refs.insert(
                ChunkId(k[1..33].try_into().expect("32-byte chunk id")),
                r.refs,
            );
        }
        for (k, _) in raw(keys::TREE_GC)? {
            s.tree_gc.insert(tree_id(&k));
        }
        for (k, v) in raw(keys::INODE)? {
            s.inodes
                .insert(be(&k[1..]), decode_record(&v).map_err(damaged)?);
        }
        for (k, v) in raw(keys::DIRENT)? {
            s.dirents.push((
                be(&k[1..]),
                k[9..].to_vec(),
                decode_record(&v).map_err(damaged)?,
            ));
        }
        for (k, v) in raw(keys::DIRCOOKIE)? {
            s.cookies.push((be(&k[1..]), be(&k[9..]), v));
        }
        for (k, v) in raw(keys::CONTENT)? {
            s.contents
                .insert(be(&k[1..]), decode_record(&v).map_err(damaged)?);
        }
        self.idx
            .each::<ChunkRecord>(keys::CHUNK, |k, mut rec| {
                let id = ChunkId(k[..32].try_into().expect("32-byte chunk id"));
                if let Some(b) = rec.inline.take() {
                    if b.len() != rec.sealed_len as usize {
                        s.short_inline.push((id, b.len(), rec.sealed_len));
                    }
                    rec.inline = Some(Vec::new());
                }
                s.chunks.insert(id, rec);
            })
            .map_err(|e| {
                tracing::error!("damaged index record: {e}");
                Errno::EIO
            })?;
        for (k, _) in raw(keys::GC)? {
            s.queued
                .insert(ChunkId(k[1..33].try_into().expect("32-byte chunk id")));
        }
        for (k, _) in raw(keys::ORPHAN)? {
            s.orphans.insert(be(&k[1..]));
        }
        Ok(s)
    }

    /// Checks the index and the backends; with `repair`, fixes what can be fixed.
    pub async fn fsck(&self, repair: bool, grace: Duration) -> FsResult<FsckReport> {
        if repair {
            self.writable()?;
        }
        let mut report = FsckReport::default();
        let chunks = {
            let _g = self.meta.lock().await;
            let snap = self.image()?;
            report.inodes = snap.inodes.len() as u64;
            let mut b = Batch::default();
            self.check_tree(&snap, &mut report, &mut b)?;
            self.check_refs(&snap, &mut report, &mut b)?;
            self.check_snapshots(&snap, &mut report, &mut b);
            if repair && !b.is_empty() {
                self.idx.apply(b)?;
                self.idx.flush()?;
                self.gc_wake.notify_one();
                for p in report.problems.iter_mut() {
                    p.fixed = p.fixed || p.fix.is_some();
                }
            }
            // What the backends are checked against: the records after any fix,
            // and the chunks queued for collection (their shards are not orphans).
            let after = self.image()?;
            (after.chunks, after.queued)
        };
        report.chunks = chunks.0.len() as u64;
        self.check_shards(&chunks.0, &chunks.1, repair, grace, &mut report)
            .await;
        Ok(report)
    }

    /// Entries, cookies, reachability and link counts. Fixable problems are
    /// written with a leading `~` and their fix added to `b`.
    fn check_tree(&self, s: &IndexImage, r: &mut FsckReport, b: &mut Batch) -> FsResult<()> {
        let mut links: HashMap<u64, u32> = HashMap::new();
        let mut subdirs: HashMap<u64, u32> = HashMap::new();
        let cookie_of: HashMap<(u64, u64), &Vec<u8>> =
            s.cookies.iter().map(|(p, c, n)| ((*p, *c), n)).collect();
        let mut live_cookies = HashSet::new();
        for (parent, name, e) in &s.dirents {
            let shown = String::from_utf8_lossy(name);
            let Some(inode) = s.inodes.get(&e.ino) else {
                r.fixable(
                    format!(
                        "entry {shown:?} in directory {parent} names missing inode {}",
                        e.ino
                    ),
                    "removed",
                );
                b.del_dirent(*parent, name, e.cookie);
                live_cookies.insert((*parent, e.cookie)); // goes with the entry
                continue;
            };
            if inode.kind != e.kind {
                r.fixable(
                    format!(
                        "entry {shown:?} in directory {parent} says {:?}, inode {} is {:?}",
                        e.kind, e.ino, inode.kind
                    ),
                    "corrected",
                );
                b.put_dirent(
                    *parent,
                    name,
                    &DirentRecord {
                        kind: inode.kind,
                        ..*e
                    },
                );
            }
            if cookie_of.get(&(*parent, e.cookie)) != Some(&name) {
                r.fixable(
                    format!("entry {shown:?} in directory {parent} has no listing cookie"),
                    "added",
                );
                b.put(
                    keys::ino_u64(keys::DIRCOOKIE, *parent, e.cookie),
                    name.clone(),
                );
            }
            live_cookies.insert((*parent, e.cookie));
            *links.entry(e.ino).or_default() += 1;
            if inode.kind == Kind::Dir {
                *subdirs.entry(*parent).or_default() += 1;
            }
        }
        for (parent, cookie, name) in &s.cookies {
            if !live_cookies.contains(&(*parent, *cookie)) {
                r.fixable(
                    format!(
                        "listing cookie {cookie} in directory {parent} ({:?}) has no entry",
                        String::from_utf8_lossy(name)
                    ),
                    "removed",
                );
                b.delete(keys::ino_u64(keys::DIRCOOKIE, *parent, *cookie));
            }
        }
        let mut lost = Vec::new();
        for (ino, inode) in &s.inodes {
            let n = links.get(ino).copied().unwrap_or(0);
            if *ino != ROOT_INO && n == 0 {
                if s.orphans.contains(ino) && inode.nlink == 0 {
                    continue; // unlinked while open: purged at the next mount
                }
                lost.push(*ino);
                continue;
            }
            let want = if inode.kind == Kind::Dir {
                2 + subdirs.get(ino).copied().unwrap_or(0)
            } else {
                n
            };
            if inode.nlink != want {
                r.fixable(
                    format!(
                        "inode {ino} has link count {}, {want} entries point at it",
                        inode.nlink
                    ),
                    "corrected",
                );
                b.put_inode(
                    *ino,
                    &InodeRecord {
                        nlink: want,
                        ..inode.clone()
                    },
                );
            }
        }
        for ino in s.orphans.iter().filter(|i| !s.inodes.contains_key(i)) {
            r.fixable(
                format!("unlinked-file marker for missing inode {ino}"),
                "removed",
            );
            b.delete(keys::ino(keys::ORPHAN, *ino));
        }
        if !lost.is_empty() {
            self.link_lost(s, &lost, r, b)?;
        }
        Ok(())
    }

    /// Links unreachable inodes into `/lost+found` as `#INO`.
    fn link_lost(
        &self,
        s: &IndexImage,
        lost: &[u64],
        r: &mut FsckReport,
        b: &mut Batch,
    ) -> FsResult<()> {
        let now = super::now_nanos();
        let mut root = s.inodes.get(&ROOT_INO).cloned().ok_or(Errno::EIO)?;
        let (lf, mut lf_rec) = match self.idx.dirent(ROOT_INO, b"lost+found")? {
            Some(e) if e.kind == Kind::Dir => (e.ino, self.inode(e.ino)?),
            Some(_) => {
                for ino in lost {
                    r.found(format!(
                        "inode {ino} is in no directory, and /lost+found is not a directory to put it in"
                    ));
                }
                return Ok(());
            }
            None => {
                let ino = self.alloc_ino(b);
                let rec = InodeRecord {
                    kind: Kind::Dir,
                    perm: 0o700,
                    uid: 0,
                    gid: 0,
                    nlink: 2,
                    size: 0,
                    atime: now,
                    mtime: now,
                    ctime: now,
                    crtime: now,
                    parent: ROOT_INO,
                    next_cookie: 3,
                    target: Vec::new(),
                };
                let cookie = root.next_cookie;
                root.next_cookie += 1;
                root.nlink += 1;
                b.put_dirent(
                    ROOT_INO,
                    b"lost+found",
                    &DirentRecord {
                        ino,
                        kind: Kind::Dir,
                        cookie,
                    },
                );
                (ino, rec)
            }
        };
        for ino in lost {
            let mut inode = s.inodes[ino].clone();
            let name = format!("#{ino}");
            let cookie = lf_rec.next_cookie;
            lf_rec.next_cookie += 1;
            b.put_dirent(
                lf,
                name.as_bytes(),
                &DirentRecord {
                    ino: *ino,
                    kind: inode.kind,
                    cookie,
                },
            );
            if inode.kind == Kind::Dir {
                inode.parent = lf;
                lf_rec.nlink += 1;
            } else {
                inode.nlink = 1;
            }
            b.put_inode(*ino, &inode);
            b.delete(keys::ino(keys::ORPHAN, *ino));
            r.fixable(
                format!(
                    "inode {ino} ({:?}, {} bytes) is in no directory",
                    inode.kind, inode.size
                ),
                &format!("linked as /lost+found/{name}"),
            );
        }
        lf_rec.mtime = now;
        b.put_inode(lf, &lf_rec);
        b.put_inode(ROOT_INO, &root);
        Ok(())
    }

    /// Every chunk used has a record; every record counts its references.
    fn check_refs(&self, s: &IndexImage, r: &mut FsckReport, b: &mut Batch) -> FsResult<()> {
        let mut counts: HashMap<ChunkId, u64> = HashMap::new();
        for (ino, c) in &s.contents {
            if !s.inodes.contains_key(ino) {
                r.fixable(
                    format!("content of missing inode {ino} ({} chunks)", c.chunks.len()),
                    "removed",
                );
                b.delete(keys::ino(keys::CONTENT, *ino));
                continue;
            }
            for cr in &c.chunks {
                if let ChunkRef::Data { id, .. } = cr {
                    *counts.entry(*id).or_default() += 1;
                }
            }
        }
        let mut unreferenced = Vec::new();
        for (id, n) in &counts {
            match s.chunks.get(id) {
                Some(rec) if rec.refs == *n => {}
                Some(rec) => {
                    r.fixable(
                        format!("chunk {id} counts {} references, files hold {n}", rec.refs),
                        "corrected",
                    );
                    let whole = self.idx.chunk(id)?.ok_or(Errno::EIO)?;
                    b.put_chunk(id, &ChunkRecord { refs: *n, ..whole });
                }
                None => {
                    let holders: Vec<String> = s
                        .contents
                        .iter()
                        .filter(|(_, c)| {
                            c.chunks
                                .iter()
                                .any(|x| matches!(x, ChunkRef::Data { id: i, .. } if i == id))
                        })
                        .map(|(ino, _)| ino.to_string())
                        .collect();
                    r.found(format!(
                        "chunk {id} is used by inode(s) {} but has no record: those files cannot be read there",
                        holders.join(", ")
                    ));
                }
            }
        }
        for (id, rec) in &s.chunks {
            if !counts.contains_key(id) && s.tree_chunk_refs.contains_key(id) {
                if rec.refs != 0 {
                    r.fixable(
                        format!(
                            "chunk {id} counts {} references, files hold none (snapshots do)",
                            rec.refs
                        ),
                        "corrected",
                    );
                    let whole = self.idx.chunk(id)?.ok_or(Errno::EIO)?;
                    b.put_chunk(id, &ChunkRecord { refs: 0, ..whole });
                }
                continue;
            }
            if !counts.contains_key(id) {
                r.fixable(
                    format!(
                        "chunk {id} counts {} references, no file and no snapshot holds it",
                        rec.refs
                    ),
                    "queued for collection",
                );
                unreferenced.push(*id);
            }
        }
        {
            // Chunks with no reference at all: queued for collection like any
            // other; an inline one has nothing to collect and just goes.
            for id in unreferenced {
                let rec = s.chunks[&id].clone();
                b.delete(keys::chunk(keys::CHUNK, &id));
                b.delete(keys::chunk(keys::DEGRADED, &id));
                if !rec.is_inline() {
                    b.put(
                        keys::chunk(keys::GC, &id),
                        encode_record(&ChunkRecord { refs: 0, ..rec }),
                    );
                }
            }
        }
        for (id, have, says) in &s.short_inline {
            r.found(format!(
                "inline chunk {id} holds {have} sealed bytes, its record says {says}: reading it fails (`cloudraid scrub` names the files holding it)"
            ));
        }
        Ok(())
    }

    /// Snapshots: every tree they name is stored and readable, and the reference
    /// counts on trees (`U`) and chunks (`K`) are those the trees hold.
    fn check_snapshots(&self, s: &IndexImage, r: &mut FsckReport, b: &mut Batch) {
        for (id, why) in &s.damaged_trees {
            r.found(format!(
                "snapshot tree {id} {why}: the snapshots holding it cannot list that directory"
            ));
        }
        for (snap, root) in &s.roots {
            match root {
                Some(t) if s.trees.contains(t) => {}
                _ => r.found(format!(
                    "snapshot {} has no root tree in the index: it cannot be listed (cloudraid snapshot delete removes it)",
                    crate::format::snapshot_id_hex(*snap)
                )),
            }
        }
        for (t, n) in &s.tree_names {
            if !s.trees.contains(t) {
                r.found(format!(
                    "snapshot tree {t} is named {n} time(s) but missing: that directory of the snapshots holding it cannot be listed"
                ));
            }
        }
        for t in &s.trees {
            let want = s.tree_names.get(t).copied().unwrap_or(0);
            let have = s.tree_refs.get(t).copied().unwrap_or(0);
            if want != have {
                r.fixable(
                    format!("snapshot tree {t} counts {have} references, {want} held"),
                    "corrected",
                );
                if want == 0 {
                    b.delete(keys::tree(keys::TREE_REFS, t));
                } else {
                    b.put(
                        keys::tree(keys::TREE_REFS, t),
                        encode_record(&TreeRefs { refs: want }),
                    );
                }
            }
            if want == 0 && !s.tree_gc.contains(t) {
                r.fixable(
                    format!("snapshot tree {t} is named by nothing"),
                    "queued for deletion",
                );
                b.put(keys::tree(keys::TREE_GC, t), Vec::new());
            }
            if want > 0 && s.tree_gc.contains(t) {
                r.fixable(
                    format!("snapshot tree {t} is in use but queued for deletion"),
                    "taken off the queue",
                );
                b.delete(keys::tree(keys::TREE_GC, t));
            }
        }
        let mut ids: HashSet<&ChunkId> = s.tree_chunk_refs.keys().collect();
        ids.extend(s.chunk_tree_refs.keys());
        for id in ids {
            let want = s.tree_chunk_refs.get(id).copied().unwrap_or(0);
            let have = s.chunk_tree_refs.get(id).copied().unwrap_or(0);
            if want > 0 && !s.chunks.contains_key(id) {
                r.found(format!(
                    "chunk {id} is used by snapshots but has no record: their copies of those files cannot be read"
                ));
                continue;
            }
            if want != have {
                r.fixable(
                    format!("chunk {id} counts {have} snapshot references, trees hold {want}"),
                    "corrected",
                );
                if want == 0 {
                    b.delete(keys::chunk(keys::CHUNK_TREE_REFS, id));
                } else {
                    b.put(
                        keys::chunk(keys::CHUNK_TREE_REFS, id),
                        encode_record(&TreeRefs { refs: want }),
                    );
                }
            }
        }
    }

    /// Lists every backend's `chunks/` and compares with the records.
    async fn check_shards(
        &self,
        chunks: &HashMap<ChunkId, ChunkRecord>,
        queued: &HashSet<ChunkId>,
        repair: bool,
        grace: Duration,
        r: &mut FsckReport,
    ) {
        let vol = self.volume();
        let listings =
            futures::future::join_all(vol.slots.iter().map(|s| s.backend.list("chunks/"))).await;
        let mut present: HashMap<(ChunkId, usize), HashSet<u16>> = HashMap::new();
        let mut listed = HashSet::new();
        let now = SystemTime::now();
        for (slot, listing) in listings.into_iter().enumerate() {
            let name = &vol.slots[slot].name;
            let objects = match listing {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!("fsck: cannot list backend {name}: {e}");
                    r.unlisted.push(name.clone());
                    continue;
                }
            };
            listed.insert(slot as u16);
            for o in objects {
                r.shards += 1;
                let Some(ShardName { id, layout, index }) = parse_shard_key(&o.key) else {
                    r.found(format!(
                        "backend {name} holds {:?}, which is not a shard: left alone",
                        o.key
                    ));
                    continue;
                };
                // A chunk queued for collection may have shards anywhere (they
                // are being deleted); an inline chunk has none (one found is left
                // from a cut-short upload of the same content).
                let placed = queued.contains(&id)
                    || chunks.get(&id).is_some_and(|c| {
                        !c.is_inline()
                            && c.key_layout() == layout
                            && c.placement.get(index) == Some(&(slot as u16))
                    });
                if placed {
                    present.entry((id, index)).or_default().insert(slot as u16);
                    continue;
                }
                let age = o
                    .modified
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or(Duration::ZERO);
                if age < grace {
                    r.recent_orphans += 1;
                    continue;
                }
                let what = if chunks.get(&id).is_some_and(|c| c.is_inline()) {
                    format!(
                        "backend {name} holds shard {index} of chunk {id}, which is kept inline in the index and has no shards ({} bytes, {}s old)",
                        o.size,
                        age.as_secs()
                    )
                } else {
                    format!(
                        "backend {name} holds shard {} of chunk {id}, which the index does not place there ({} bytes, {}s old)",
                        index,
                        o.size,
                        age.as_secs()
                    )
                };
                if repair {
                    match vol.slots[slot].backend.delete(&o.key).await {
                        Ok(()) => r.problems.push(Problem {
                            what,
                            fixed: true,
                            fix: Some("deleted".into()),
                        }),
                        Err(e) => r.found(format!("{what}: cannot delete it: {e}")),
                    }
                } else {
                    r.fixable(what, "deleted");
                }
            }
        }
        for (id, rec) in chunks.iter().filter(|(_, c)| !c.is_inline()) {
            let mut missing = Vec::new();
            let mut unknown = 0;
            for (i, slot) in rec.placement.iter().enumerate() {
                if !listed.contains(slot) {
                    unknown += 1;
                } else if !present.get(&(*id, i)).is_some_and(|s| s.contains(slot)) {
                    missing.push(vol.slots[*slot as usize].name.clone());
                }
            }
            if missing.is_empty() {
                continue;
            }
            let have = rec.placement.len() - missing.len() - unknown;
            if have + unknown < rec.k as usize {
                r.found(format!(
                    "chunk {id} has {have} of {} shards (needs {}): missing on {}; unreadable unless those backends still hold them elsewhere",
                    rec.placement.len(),
                    rec.k,
                    missing.join(", ")
                ));
            } else {
                r.found(format!(
                    "chunk {id} lacks {} shard(s), on {}: `cloudraid repair` rebuilds them",
                    missing.len(),
                    missing.join(", ")
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shard_keys_parse_back() {
        let id = crate::format::ChunkId::of(b"x");
        let k = crate::format::shard_key(&id, 5);
        assert_eq!(
            crate::format::parse_shard_key(&k),
            Some(crate::format::ShardName {
                id,
                layout: None,
                index: 5
            })
        );
        assert_eq!(crate::format::parse_shard_key("chunks/zz/nothing"), None);
        assert_eq!(crate::format::parse_shard_key("cloudraid.volume"), None);
    }
}
