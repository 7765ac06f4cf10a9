//! Garbage collection with snapshots is never wrong: random sequences of file
//! changes (writes, overwrites of whole files or parts, copies that share chunks,
//! appends, truncates, deletes, renames, hard links, mkdir/rmdir) mixed with
//! snapshot create/delete, forget, prune and restore in place, run against a
//! model. The live tree and every remaining snapshot (read through
//! `/.snapshots/ID/...`) must read back as the model says, fsck must find nothing
//! missing, orphaned or miscounted, the backends must hold exactly the shards of
//! the chunks the index records, and once every snapshot and file is gone and
//! pruned, no shard may be left.
//!
//! `PROPTEST_CASES=N` runs more cases than the default.

mod common;

use cloudraid::backup::forget::{forget, ForgetRequest};
use cloudraid::backup::retention::KeepPolicy;
use cloudraid::format::{decode_record, keys, ChunkRecord, Kind, TreeRefs};
use cloudraid::fs::snapshot::NewSnapshot;
use cloudraid::fs::{Caller, Fs, SetAttr};
use common::{volume, TestVolume, ROOT};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

const C: Caller = Caller {
    uid: 1000,
    gid: 1000,
};

/// Few names, so that paths collide (replace, EEXIST, ENOTEMPTY) often.
const NAMES: [&str; 4] = ["a", "b", "c", "d"];
/// Bytes of each block of the content pool.
const BLOCK: usize = 24 * 1024;
const POOL: u8 = 5;

fn name(n: u8) -> String {
    NAMES[n as usize % NAMES.len()].to_string()
}

// ------------------------------------------------------------------ content

/// File content: slices of a small pool of random blocks, so that different
/// files share content-defined chunks.
#[derive(Clone, Debug)]
struct Content(Vec<(u8, u16, u16)>);

impl Content {
    fn bytes(&self, pool: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(seed, start, len) in &self.0 {
            let b = &pool[(seed % POOL) as usize];
            let start = start as usize % BLOCK;
            let end = (start + len as usize).min(BLOCK);
            out.extend_from_slice(&b[start..end]);
        }
        out
    }
}

fn content() -> impl Strategy<Value = Content> {
    proptest::collection::vec((0..POOL, 0u16..BLOCK as u16, 0u16..BLOCK as u16), 0..4)
        .prop_map(Content)
}

// ------------------------------------------------------------------ model

type Path = Vec<String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum E {
    Dir,
    /// A file: the node its names share (hard links).
    File(u64),
}

/// A tree: every entry by path (the root, `[]`, is implicit), file contents by node.
#[derive(Clone, Debug, Default)]
struct Tree {
    entries: BTreeMap<Path, E>,
    data: HashMap<u64, Vec<u8>>,
}

fn show(p: &[String]) -> String {
    format!("/{}", p.join("/"))
}

fn under(p: &[String], top: &[String]) -> bool {
    p.len() >= top.len() && p[..top.len()] == *top
}

impl Tree {
    fn get(&self, p: &[String]) -> Option<E> {
        if p.is_empty() {
            return Some(E::Dir);
        }
        self.entries.get(p).copied()
    }
    fn children(&self, p: &[String]) -> Vec<(String, E)> {
        self.entries
            .iter()
            .filter(|(k, _)| k.len() == p.len() + 1 && under(k, p))
            .map(|(k, e)| (k[p.len()].clone(), *e))
            .collect()
    }
    fn dirs(&self) -> Vec<Path> {
        let mut v = vec![Vec::new()];
        v.extend(
            self.entries
                .iter()
                .filter(|(_, e)| **e == E::Dir)
                .map(|(k, _)| k.clone()),
        );
        v
    }
    fn files(&self) -> Vec<Path> {
        self.entries
            .iter()
            .filter(|(_, e)| **e != E::Dir)
            .map(|(k, _)| k.clone())
            .collect()
    }
    fn paths(&self) -> Vec<Path> {
        self.entries.keys().cloned().collect()
    }
    /// Drops the contents no name uses any more.
    fn tidy(&mut self) {
        let used: HashSet<u64> = self
            .entries
            .values()
            .filter_map(|e| match e {
                E::File(n) => Some(*n),
                E::Dir => None,
            })
            .collect();
        self.data.retain(|n, _| used.contains(n));
    }
    /// Removes `p` and everything below it.
    fn remove(&mut self, p: &[String]) {
        self.entries.retain(|k, _| !under(k, p));
        self.tidy();
    }
    /// What a snapshot of `paths` (empty: everything) holds: the entries at or
    /// below them, and their parent directories.
    fn restrict(&self, paths: &[Path]) -> Tree {
        let mut t = self.clone();
        if !paths.is_empty() {
            t.entries.retain(|k, _| {
                paths
                    .iter()
                    .any(|p| under(k, p) || (k.len() < p.len() && under(p, k)))
            });
            t.tidy();
        }
        t
    }
}

#[derive(Clone, Debug)]
struct Snap {
    id: u32,
    time: i64,
    tags: Vec<String>,
    /// The paths as the snapshot record shows them (its retention group).
    group: Vec<String>,
    tree: Tree,
}

struct Model {
    live: Tree,
    snaps: Vec<Snap>,
    next_node: u64,
    pool: Vec<Vec<u8>>,
}

impl Model {
    fn node(&mut self) -> u64 {
        self.next_node += 1;
        self.next_node
    }
}

// ------------------------------------------------------------------ operations

#[derive(Clone, Debug)]
enum Op {
    /// Write a whole file in a directory (new, or replacing the content of an existing one).
    Write {
        dir: usize,
        name: u8,
        data: Content,
    },
    /// Write over part of an existing file (extending it if needed).
    Overwrite {
        file: usize,
        at: u32,
        data: Content,
    },
    /// Give a file the exact content of another (every chunk shared).
    Copy {
        from: usize,
        to: usize,
    },
    Append {
        file: usize,
        data: Content,
    },
    Truncate {
        file: usize,
        to: u32,
    },
    Delete {
        file: usize,
    },
    Rename {
        from: usize,
        dir: usize,
        name: u8,
    },
    Mkdir {
        dir: usize,
        name: u8,
    },
    Rmdir {
        dir: usize,
    },
    Link {
        file: usize,
        dir: usize,
        name: u8,
    },
    Snapshot {
        path: Option<usize>,
        tag: Option<u8>,
    },
    SnapDelete {
        which: usize,
    },
    Forget {
        last: u32,
        keep_tag: Option<u8>,
        only_tag: Option<u8>,
        prune: bool,
    },
    Prune,
    Restore {
        which: usize,
        path: usize,
        overwrite: bool,
    },
    /// Compare everything with the model now.
    Check,
}

fn op() -> impl Strategy<Value = Op> {
    let sel = || any::<usize>();
    prop_oneof![
        10 => (sel(), any::<u8>(), content()).prop_map(|(dir, name, data)| Op::Write { dir, name, data }),
        3 => (sel(), any::<u32>(), content()).prop_map(|(file, at, data)| Op::Overwrite { file, at, data }),
        2 => (sel(), sel()).prop_map(|(from, to)| Op::Copy { from, to }),
        2 => (sel(), content()).prop_map(|(file, data)| Op::Append { file, data }),
        2 => (sel(), any::<u32>()).prop_map(|(file, to)| Op::Truncate { file, to }),
        2 => sel().prop_map(|file| Op::Delete { file }),
        3 => (sel(), sel(), any::<u8>()).prop_map(|(from, dir, name)| Op::Rename { from, dir, name }),
        3 => (sel(), any::<u8>()).prop_map(|(dir, name)| Op::Mkdir { dir, name }),
        1 => sel().prop_map(|dir| Op::Rmdir { dir }),
        2 => (sel(), sel(), any::<u8>()).prop_map(|(file, dir, name)| Op::Link { file, dir, name }),
        4 => (proptest::option::weighted(0.3, sel()), proptest::option::of(0u8..2))
            .prop_map(|(path, tag)| Op::Snapshot { path, tag }),
        2 => sel().prop_map(|which| Op::SnapDelete { which }),
        2 => (1u32..4, proptest::option::of(0u8..2), proptest::option::weighted(0.3, 0u8..2), any::<bool>())
            .prop_map(|(last, keep_tag, only_tag, prune)| Op::Forget { last, keep_tag, only_tag, prune }),
        2 => Just(Op::Prune),
        2 => (sel(), sel(), proptest::bool::weighted(0.8))
            .prop_map(|(which, path, overwrite)| Op::Restore { which, path, overwrite }),
        1 => Just(Op::Check),
    ]
}

fn pick<T: Clone>(v: &[T], sel: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[sel % v.len()].clone())
}

// ------------------------------------------------------------------ filesystem helpers

type R<T> = Result<T, TestCaseError>;

fn fail(why: String) -> TestCaseError {
    TestCaseError::fail(why)
}

/// The inode at `path`, through lookups as the kernel does.
async fn ino_at(fs: &Fs, from: u64, path: &[String]) -> R<u64> {
    let mut ino = from;
    for c in path {
        ino = fs
            .lookup(ino, c.as_bytes())
            .await
            .map_err(|e| fail(format!("lookup {}: {e:?}", show(path))))?
            .ino;
    }
    Ok(ino)
}

async fn parent_and_name(fs: &Fs, p: &[String]) -> R<(u64, String)> {
    let (name, parent) = p.split_last().expect("not the root");
    Ok((ino_at(fs, ROOT, parent).await?, name.clone()))
}

async fn write_at(fs: &Fs, ino: u64, flags: i32, off: u64, data: &[u8]) -> R<()> {
    let fh = fs
        .open(ino, libc::O_RDWR | flags)
        .await
        .map_err(|e| fail(format!("open {ino}: {e:?}")))?;
    let mut o = off;
    for piece in data.chunks(50_000) {
        fs.write(fh, o, piece)
            .await
            .map_err(|e| fail(format!("write {ino}: {e:?}")))?;
        o += piece.len() as u64;
    }
    fs.release(fh)
        .await
        .map_err(|e| fail(format!("release {ino}: {e:?}")))
}

async fn read_all(fs: &Fs, ino: u64) -> R<Vec<u8>> {
    let fh = fs
        .open(ino, libc::O_RDONLY)
        .await
        .map_err(|e| fail(format!("open {ino} to read: {e:?}")))?;
    let mut out = Vec::new();
    loop {
        let d = fs
            .read(fh, out.len() as u64, 65536)
            .await
            .map_err(|e| fail(format!("read {ino}: {e:?}")))?;
        if d.is_empty() {
            break;
        }
        out.extend_from_slice(&d);
    }
    fs.release(fh).await.map_err(|e| fail(format!("{e:?}")))?;
    Ok(out)
}

/// The tree below `root` (a live or view directory) equals `t`: names listed,
/// kinds, sizes, bytes read, and one inode number per file node (hard links).
async fn check_tree(fs: &Fs, root: u64, t: &Tree, what: &str) -> R<()> {
    let mut inos: HashMap<u64, u64> = HashMap::new();
    let mut stack: Vec<(Path, u64)> = vec![(Vec::new(), root)];
    while let Some((p, dir)) = stack.pop() {
        let mut listed: Vec<String> = fs
            .readdir(dir, 0, 100_000)
            .await
            .map_err(|e| fail(format!("{what}: readdir {}: {e:?}", show(&p))))?
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .filter(|n| n != "." && n != "..")
            .collect();
        listed.sort();
        let want = t.children(&p);
        let want_names: Vec<String> = want.iter().map(|(n, _)| n.clone()).collect();
        prop_assert_eq!(&listed, &want_names, "{}: names in {}", what, show(&p));
        for (n, e) in want {
            let mut cp = p.clone();
            cp.push(n.clone());
            let a = fs
                .lookup(dir, n.as_bytes())
                .await
                .map_err(|x| fail(format!("{what}: lookup {}: {x:?}", show(&cp))))?;
            match e {
                E::Dir => {
                    prop_assert_eq!(a.kind, Kind::Dir, "{}: {}", what, show(&cp));
                    stack.push((cp, a.ino));
                }
                E::File(node) => {
                    prop_assert_eq!(a.kind, Kind::File, "{}: {}", what, show(&cp));
                    let data = &t.data[&node];
                    prop_assert_eq!(a.size, data.len() as u64, "{}: size of {}", what, show(&cp));
                    let seen = *inos.entry(node).or_insert(a.ino);
                    prop_assert_eq!(seen, a.ino, "{}: hard links of {}", what, show(&cp));
                    let got = read_all(fs, a.ino).await?;
                    prop_assert!(
                        got == *data,
                        "{}: bytes of {} differ ({} read, {} expected)",
                        what,
                        show(&cp),
                        got.len(),
                        data.len()
                    );
                }
            }
        }
    }
    let distinct: HashSet<u64> = inos.values().copied().collect();
    prop_assert_eq!(
        distinct.len(),
        inos.len(),
        "{}: two files share an inode",
        what
    );
    Ok(())
}

/// The live tree and every snapshot equal the model.
async fn check_all(fs: &Fs, m: &Model) -> R<()> {
    check_tree(fs, ROOT, &m.live, "live tree").await?;
    let sd = ino_at(fs, ROOT, &[".snapshots".into()]).await?;
    let mut listed: Vec<String> = fs
        .readdir(sd, 0, 100_000)
        .await
        .map_err(|e| fail(format!("readdir .snapshots: {e:?}")))?
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .filter(|n| n != "." && n != "..")
        .collect();
    listed.sort();
    let mut want: Vec<String> = m.snaps.iter().map(|s| format!("{:08x}", s.id)).collect();
    want.sort();
    prop_assert_eq!(listed, want, ".snapshots lists the snapshots left");
    for s in &m.snaps {
        let hex = format!("{:08x}", s.id);
        let root = ino_at(fs, sd, std::slice::from_ref(&hex)).await?;
        check_tree(fs, root, &s.tree, &format!("snapshot {hex}")).await?;
    }
    Ok(())
}

async fn fsck_clean(fs: &Fs, when: &str) -> R<()> {
    let r = fs
        .fsck(false, Duration::ZERO)
        .await
        .map_err(|e| fail(format!("fsck: {e:?}")))?;
    prop_assert!(
        r.clean(),
        "fsck {}:\n{}",
        when,
        cloudraid::fs::fsck::render(&r)
    );
    Ok(())
}

fn records(v: &TestVolume, prefix: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
    v.fs.index()
        .store()
        .scan(&[prefix], None, usize::MAX)
        .unwrap()
}

/// The backends hold exactly the shards of the chunks the index records, and
/// every recorded chunk is used by a file or a snapshot.
async fn check_no_leak(v: &TestVolume) -> R<()> {
    prop_assert_eq!(
        records(v, keys::GC).len(),
        0,
        "collection queue empty after prune"
    );
    let mut shards = 0;
    for (k, val) in records(v, keys::CHUNK) {
        let rec: ChunkRecord = decode_record(&val).unwrap();
        shards += rec.placement.len();
        let held: u64 =
            v.fs.index()
                .store()
                .get(&[&[keys::CHUNK_TREE_REFS][..], &k[1..]].concat())
                .unwrap()
                .map(|b| decode_record::<TreeRefs>(&b).unwrap().refs)
                .unwrap_or(0);
        prop_assert!(rec.refs + held > 0, "a chunk record nothing uses");
    }
    prop_assert_eq!(
        v.shard_objects().await,
        shards,
        "shards stored = shards recorded"
    );
    Ok(())
}

// ------------------------------------------------------------------ one step

async fn step(v: &TestVolume, m: &mut Model, op: &Op) -> R<()> {
    let fs = &*v.fs;
    match op {
        Op::Write { dir, name: n, data } => {
            let dir = pick(&m.live.dirs(), *dir).expect("the root at least");
            let mut p = dir.clone();
            p.push(name(*n));
            let bytes = data.bytes(&m.pool);
            match m.live.get(&p) {
                Some(E::Dir) => return Ok(()),
                Some(E::File(node)) => {
                    let ino = ino_at(fs, ROOT, &p).await?;
                    write_at(fs, ino, libc::O_TRUNC, 0, &bytes).await?;
                    m.live.data.insert(node, bytes);
                }
                None => {
                    let parent = ino_at(fs, ROOT, &dir).await?;
                    let (a, fh) = fs
                        .create(parent, name(*n).as_bytes(), 0o644, libc::O_RDWR, C)
                        .await
                        .map_err(|e| fail(format!("create {}: {e:?}", show(&p))))?;
                    fs.release(fh).await.map_err(|e| fail(format!("{e:?}")))?;
                    write_at(fs, a.ino, 0, 0, &bytes).await?;
                    let node = m.node();
                    m.live.entries.insert(p, E::File(node));
                    m.live.data.insert(node, bytes);
                }
            }
        }
        Op::Overwrite { file, at, data } => {
            let Some(p) = pick(&m.live.files(), *file) else {
                return Ok(());
            };
            let Some(E::File(node)) = m.live.get(&p) else {
                unreachable!()
            };
            let bytes = data.bytes(&m.pool);
            let cur = m.live.data.get_mut(&node).unwrap();
            let off = *at as usize % (cur.len() + 1);
            if cur.len() < off + bytes.len() {
                cur.resize(off + bytes.len(), 0);
            }
            cur[off..off + bytes.len()].copy_from_slice(&bytes);
            write_at(fs, ino_at(fs, ROOT, &p).await?, 0, off as u64, &bytes).await?;
        }
        Op::Copy { from, to } => {
            let files = m.live.files();
            let (Some(a), Some(b)) = (pick(&files, *from), pick(&files, *to)) else {
                return Ok(());
            };
            let (Some(E::File(na)), Some(E::File(nb))) = (m.live.get(&a), m.live.get(&b)) else {
                unreachable!()
            };
            let bytes = m.live.data[&na].clone();
            write_at(fs, ino_at(fs, ROOT, &b).await?, libc::O_TRUNC, 0, &bytes).await?;
            m.live.data.insert(nb, bytes);
        }
        Op::Append { file, data } => {
            let Some(p) = pick(&m.live.files(), *file) else {
                return Ok(());
            };
            let Some(E::File(node)) = m.live.get(&p) else {
                unreachable!()
            };
            let bytes = data.bytes(&m.pool);
            let cur = m.live.data.get_mut(&node).unwrap();
            let off = cur.len() as u64;
            cur.extend_from_slice(&bytes);
            write_at(fs, ino_at(fs, ROOT, &p).await?, libc::O_APPEND, off, &bytes).await?;
        }
        Op::Truncate { file, to } => {
            let Some(p) = pick(&m.live.files(), *file) else {
                return Ok(());
            };
            let Some(E::File(node)) = m.live.get(&p) else {
                unreachable!()
            };
            let cur = m.live.data.get_mut(&node).unwrap();
            // Shorter or longer (a hole at the end).
            let len = *to as usize % (cur.len() + 30_000);
            cur.resize(len, 0);
            let ino = ino_at(fs, ROOT, &p).await?;
            fs.setattr(
                ino,
                SetAttr {
                    size: Some(len as u64),
                    ..SetAttr::default()
                },
            )
            .await
            .map_err(|e| fail(format!("truncate {}: {e:?}", show(&p))))?;
        }
        Op::Delete { file } => {
            let Some(p) = pick(&m.live.files(), *file) else {
                return Ok(());
            };
            let (parent, n) = parent_and_name(fs, &p).await?;
            fs.unlink(parent, n.as_bytes())
                .await
                .map_err(|e| fail(format!("unlink {}: {e:?}", show(&p))))?;
            m.live.remove(&p);
        }
        Op::Rename { from, dir, name: n } => {
            let Some(src) = pick(&m.live.paths(), *from) else {
                return Ok(());
            };
            let dir = pick(&m.live.dirs(), *dir).unwrap();
            let mut dst = dir.clone();
            dst.push(name(*n));
            let s = m.live.get(&src).unwrap();
            // What rename(2) does, by the model.
            let ok = if dst == src {
                Some(false)
            } else if s == E::Dir && under(&dst, &src) {
                None
            } else {
                match (s, m.live.get(&dst)) {
                    (_, None) => Some(true),
                    (E::File(a), Some(E::File(b))) => Some(a != b),
                    (E::Dir, Some(E::Dir)) if m.live.children(&dst).is_empty() => Some(true),
                    _ => None,
                }
            };
            let (sp, sn) = parent_and_name(fs, &src).await?;
            let dp = ino_at(fs, ROOT, &dir).await?;
            let r = fs
                .rename(sp, sn.as_bytes(), dp, name(*n).as_bytes(), 0)
                .await;
            prop_assert_eq!(
                r.is_ok(),
                ok.is_some(),
                "rename {} to {}: {:?}",
                show(&src),
                show(&dst),
                r
            );
            if ok == Some(true) {
                let moved: Vec<(Path, E)> = m
                    .live
                    .entries
                    .iter()
                    .filter(|(k, _)| under(k, &src))
                    .map(|(k, e)| {
                        let mut np = dst.clone();
                        np.extend_from_slice(&k[src.len()..]);
                        (np, *e)
                    })
                    .collect();
                m.live
                    .entries
                    .retain(|k, _| !under(k, &src) && !under(k, &dst));
                m.live.entries.extend(moved);
                m.live.tidy();
            }
        }
        Op::Mkdir { dir, name: n } => {
            let dir = pick(&m.live.dirs(), *dir).unwrap();
            let mut p = dir.clone();
            p.push(name(*n));
            let parent = ino_at(fs, ROOT, &dir).await?;
            let r = fs.mkdir(parent, name(*n).as_bytes(), 0o755, C).await;
            prop_assert_eq!(r.is_ok(), m.live.get(&p).is_none(), "mkdir {}", show(&p));
            m.live.entries.entry(p).or_insert(E::Dir);
        }
        Op::Rmdir { dir } => {
            let dirs = m.live.dirs();
            let Some(p) = pick(&dirs[1..], *dir) else {
                return Ok(());
            };
            let (parent, n) = parent_and_name(fs, &p).await?;
            let r = fs.rmdir(parent, n.as_bytes()).await;
            let empty = m.live.children(&p).is_empty();
            prop_assert_eq!(r.is_ok(), empty, "rmdir {}: {:?}", show(&p), r);
            if empty {
                m.live.remove(&p);
            }
        }
        Op::Link { file, dir, name: n } => {
            let Some(src) = pick(&m.live.files(), *file) else {
                return Ok(());
            };
            let dir = pick(&m.live.dirs(), *dir).unwrap();
            let mut p = dir.clone();
            p.push(name(*n));
            let ino = ino_at(fs, ROOT, &src).await?;
            let parent = ino_at(fs, ROOT, &dir).await?;
            let r = fs.link(ino, parent, name(*n).as_bytes()).await;
            let free = m.live.get(&p).is_none();
            prop_assert_eq!(r.is_ok(), free, "link {} to {}", show(&src), show(&p));
            if free {
                let e = m.live.get(&src).unwrap();
                m.live.entries.insert(p, e);
            }
        }
        Op::Snapshot { path, tag } => {
            let paths: Vec<Path> = match path {
                Some(sel) => pick(&m.live.paths(), *sel).into_iter().collect(),
                None => Vec::new(),
            };
            let tags: Vec<String> = tag.iter().map(|t| format!("t{t}")).collect();
            let info = fs
                .create_snapshot(NewSnapshot {
                    tags: tags.clone(),
                    paths: paths.iter().map(|p| show(p)).collect(),
                    origin: "props".into(),
                })
                .await
                .map_err(|e| fail(format!("snapshot: {e}")))?;
            let tree = m.live.restrict(&paths);
            let files: Vec<&E> = tree.entries.values().filter(|e| **e != E::Dir).collect();
            let bytes: u64 = files
                .iter()
                .map(|e| match e {
                    E::File(n) => tree.data[n].len() as u64,
                    E::Dir => 0,
                })
                .sum();
            prop_assert_eq!(
                (info.files, info.dirs, info.bytes),
                (
                    files.len() as u64,
                    (tree.entries.len() - files.len()) as u64,
                    bytes
                ),
                "what snapshot {} says it holds",
                info.id
            );
            m.snaps.push(Snap {
                id: u32::from_str_radix(&info.id, 16).unwrap(),
                time: info.time_ns,
                tags,
                group: info.paths.clone(),
                tree,
            });
        }
        Op::SnapDelete { which } => {
            let Some(s) = pick(&m.snaps, *which) else {
                return Ok(());
            };
            fs.delete_snapshots(&[s.id])
                .await
                .map_err(|e| fail(format!("delete snapshot: {e}")))?;
            m.snaps.retain(|x| x.id != s.id);
        }
        Op::Forget {
            last,
            keep_tag,
            only_tag,
            prune,
        } => {
            let policy = KeepPolicy {
                last: *last,
                tags: keep_tag.iter().map(|t| format!("t{t}")).collect(),
                ..KeepPolicy::default()
            };
            let only: Vec<String> = only_tag.iter().map(|t| format!("t{t}")).collect();
            // restic's rules: per group of paths, the `last` newest and the tagged stay.
            let considered: Vec<&Snap> = m
                .snaps
                .iter()
                .filter(|s| only.is_empty() || s.tags.iter().any(|t| only.contains(t)))
                .collect();
            let mut groups: BTreeMap<Vec<String>, Vec<&Snap>> = BTreeMap::new();
            for s in &considered {
                groups.entry(s.group.clone()).or_default().push(s);
            }
            let mut doomed = HashSet::new();
            for g in groups.values_mut() {
                g.sort_by(|a, b| b.time.cmp(&a.time).then(a.id.cmp(&b.id)));
                for (i, s) in g.iter().enumerate() {
                    let tagged = s.tags.iter().any(|t| policy.tags.contains(t));
                    if i >= *last as usize && !tagged {
                        doomed.insert(s.id);
                    }
                }
            }
            let r = forget(
                fs,
                &ForgetRequest {
                    policy,
                    only_tags: only,
                    dry_run: false,
                    prune: *prune,
                },
            )
            .await
            .map_err(|e| fail(format!("forget: {e}")))?;
            let removed: HashSet<u32> = r
                .snapshots
                .iter()
                .filter(|f| !f.keep)
                .map(|f| u32::from_str_radix(&f.id, 16).unwrap())
                .collect();
            prop_assert_eq!(&removed, &doomed, "snapshots forget removed");
            m.snaps.retain(|s| !doomed.contains(&s.id));
            if *prune {
                check_no_leak(v).await?;
            }
        }
        Op::Prune => {
            fs.collect_garbage()
                .await
                .map_err(|e| fail(format!("prune: {e:?}")))?;
            check_no_leak(v).await?;
        }
        Op::Restore {
            which,
            path,
            overwrite,
        } => {
            let Some(s) = pick(&m.snaps, *which) else {
                return Ok(());
            };
            let mut choices = vec![Vec::new()];
            choices.extend(s.tree.paths());
            let p = pick(&choices, *path).unwrap();
            let want = restore_model(m, &s, &p, *overwrite);
            let r = fs
                .restore_in_place(s.id, &[show(&p)], *overwrite, &|_, _| {})
                .await;
            match (r, want) {
                (Ok(rep), Some((live, errors))) => {
                    prop_assert_eq!(
                        rep.errors.len(),
                        errors,
                        "restore {} of {:08x}: {:?}",
                        show(&p),
                        s.id,
                        rep.errors
                    );
                    m.live = live;
                }
                (Err(_), None) => {}
                (r, w) => {
                    return Err(fail(format!(
                    "restore {} of {:08x} (overwrite {overwrite}): got {r:?}, model expected {}",
                    show(&p),
                    s.id,
                    if w.is_some() { "success" } else { "refusal" }
                )))
                }
            }
        }
        Op::Check => {
            check_all(fs, m).await?;
            fsck_clean(fs, "between steps").await?;
        }
    }
    Ok(())
}

/// The live tree after `restore --in-place` of `p` from `s`, and how many
/// entries it reports it could not restore; None when it refuses.
fn restore_model(m: &mut Model, s: &Snap, p: &[String], overwrite: bool) -> Option<(Tree, usize)> {
    let mut live = m.live.clone();
    if !p.is_empty() && !overwrite && live.get(p).is_some() {
        return None;
    }
    // Parent directories: made where missing; a file in the way refuses.
    for i in 1..p.len() {
        match live.get(&p[..i]) {
            Some(E::Dir) => {}
            Some(E::File(_)) => return None,
            None => {
                live.entries.insert(p[..i].to_vec(), E::Dir);
            }
        }
    }
    let mut todo: Vec<Path> = if p.is_empty() {
        s.tree
            .children(&[])
            .into_iter()
            .map(|(n, _)| vec![n])
            .collect()
    } else {
        vec![p.to_vec()]
    };
    let mut errors = 0;
    // Files restored in this run, by their node in the snapshot: linked again.
    let mut nodes: HashMap<u64, u64> = HashMap::new();
    while let Some(q) = todo.pop() {
        let e = s.tree.get(&q).unwrap();
        match (live.get(&q), e) {
            (Some(E::Dir), E::Dir) => {}
            (Some(_), _) if !overwrite => {
                errors += 1;
                continue;
            }
            (Some(E::Dir), _) => {
                errors += 1;
                continue;
            }
            (Some(E::File(_)), _) | (None, _) => {
                live.entries.remove(&q);
                let new = match e {
                    E::Dir => E::Dir,
                    E::File(n) => {
                        let node = match nodes.get(&n) {
                            Some(x) => *x,
                            None => {
                                m.next_node += 1;
                                let x = m.next_node;
                                nodes.insert(n, x);
                                live.data.insert(x, s.tree.data[&n].clone());
                                x
                            }
                        };
                        E::File(node)
                    }
                };
                live.entries.insert(q.clone(), new);
            }
        }
        if e == E::Dir {
            for (n, _) in s.tree.children(&q) {
                let mut c = q.clone();
                c.push(n);
                todo.push(c);
            }
        }
    }
    live.tidy();
    Some((live, errors))
}

// ------------------------------------------------------------------ the property

async fn run(ops: Vec<Op>) -> R<()> {
    let v = volume(2, 1, 3, 4096);
    let mut m = Model {
        live: Tree::default(),
        snaps: Vec::new(),
        next_node: 0,
        pool: (0..POOL)
            .map(|s| common::bytes(s as u64 + 1, BLOCK))
            .collect(),
    };
    for (i, op) in ops.iter().enumerate() {
        step(&v, &mut m, op)
            .await
            .map_err(|e| fail(format!("step {i} {op:?}: {e}")))?;
    }
    // After a prune: everything reads back, through this core and through a
    // fresh one (empty chunk cache: every chunk comes from the backends).
    v.fs.collect_garbage().await.unwrap();
    check_all(&v.fs, &m).await?;
    check_all(&v.reopen(true), &m).await?;
    fsck_clean(&v.fs, "after the sequence and a prune").await?;
    check_no_leak(&v).await?;

    // Every snapshot and every file gone, pruned: not a shard left.
    let ids: Vec<u32> = m.snaps.iter().map(|s| s.id).collect();
    if !ids.is_empty() {
        v.fs.delete_snapshots(&ids).await.unwrap();
    }
    let mut paths = m.live.paths();
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in paths {
        let (parent, n) = parent_and_name(&v.fs, &p).await?;
        match m.live.get(&p).unwrap() {
            E::Dir => v.fs.rmdir(parent, n.as_bytes()).await,
            E::File(_) => v.fs.unlink(parent, n.as_bytes()).await,
        }
        .map_err(|e| fail(format!("removing {}: {e:?}", show(&p))))?;
    }
    v.fs.collect_garbage().await.unwrap();
    prop_assert_eq!(
        v.shard_objects().await,
        0,
        "shards left once nothing is referenced"
    );
    for (prefix, what) in [
        (keys::CHUNK, "chunk records"),
        (keys::CHUNK_TREE_REFS, "snapshot references of chunks"),
        (keys::TREE, "trees"),
        (keys::TREE_REFS, "tree references"),
        (keys::TREE_GC, "trees to sweep"),
        (keys::GC, "chunks to collect"),
        (keys::SNAPSHOT, "snapshots"),
    ] {
        prop_assert_eq!(records(&v, prefix).len(), 0, "{} left", what);
    }
    fsck_clean(&v.fs, "once everything is gone").await?;
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2000,
        .. ProptestConfig::default()
    })]

    #[test]
    fn gc_with_snapshots_is_never_wrong(ops in proptest::collection::vec(op(), 20..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}

/// `forget --prune` reclaims what files let go of even when the policy removes
/// no snapshot (it used to return before pruning).
#[tokio::test]
async fn forget_prunes_even_when_no_snapshot_goes() {
    let v = volume(2, 1, 3, 4096);
    let fs = &v.fs;
    let s = fs.create_snapshot(NewSnapshot::default()).await.unwrap();
    let (_, fh) = fs
        .create(ROOT, b"scratch", 0o644, libc::O_RDWR, C)
        .await
        .unwrap();
    fs.write(fh, 0, &common::bytes(9, 100_000)).await.unwrap();
    fs.release(fh).await.unwrap();
    assert!(v.shard_objects().await > 0);
    fs.unlink(ROOT, b"scratch").await.unwrap();
    let r = forget(
        fs,
        &ForgetRequest {
            policy: KeepPolicy {
                last: 1,
                ..KeepPolicy::default()
            },
            only_tags: Vec::new(),
            dry_run: false,
            prune: true,
        },
    )
    .await
    .unwrap();
    assert_eq!((r.kept, r.removed), (1, 0));
    assert!(r.pruned_chunks > 0, "{r:?}");
    assert_eq!(
        v.shard_objects().await,
        0,
        "the deleted file's shards are gone"
    );
    assert_eq!(fs.list_snapshots().unwrap()[0].id, s.id);
}

/// A snapshot whose walk applies its index batches in several steps (more chunk
/// references than one batch gathers) counts every reference and reads back.
#[tokio::test]
async fn a_snapshot_written_in_several_batches_is_whole() {
    let v = volume(2, 1, 3, 4096);
    let fs = &v.fs;
    let mut dirs = Vec::new();
    for d in 0..3 {
        let dir = fs
            .mkdir(ROOT, format!("d{d}").as_bytes(), 0o755, C)
            .await
            .unwrap()
            .ino;
        for f in 0..3500 {
            let (_, fh) = fs
                .create(dir, format!("f{f}").as_bytes(), 0o644, libc::O_RDWR, C)
                .await
                .unwrap();
            fs.write(fh, 0, format!("{d}/{f}").as_bytes())
                .await
                .unwrap();
            fs.release(fh).await.unwrap();
        }
        dirs.push(dir);
    }
    let s = fs.create_snapshot(NewSnapshot::default()).await.unwrap();
    assert_eq!((s.files, s.dirs, s.new_trees), (10_500, 3, 4));
    // The live files go; the snapshot alone holds their chunks.
    for (d, dir) in dirs.iter().enumerate() {
        for f in 0..3500 {
            fs.unlink(*dir, format!("f{f}").as_bytes()).await.unwrap();
        }
        fs.rmdir(ROOT, format!("d{d}").as_bytes()).await.unwrap();
    }
    fs.collect_garbage().await.unwrap();
    fsck_clean(fs, "with the snapshot alone holding the chunks")
        .await
        .unwrap();
    // Read through a fresh core: every chunk comes from the backends.
    let fresh = v.reopen(true);
    let sd = ino_at(&fresh, ROOT, &[".snapshots".into(), s.id.clone()])
        .await
        .unwrap();
    for (d, f) in [(0, 0), (1, 1777), (2, 3499)] {
        let ino = ino_at(&fresh, sd, &[format!("d{d}"), format!("f{f}")])
            .await
            .unwrap();
        assert_eq!(
            read_all(&fresh, ino).await.unwrap(),
            format!("{d}/{f}").into_bytes()
        );
    }
    fs.delete_snapshots(&[u32::from_str_radix(&s.id, 16).unwrap()])
        .await
        .unwrap();
    fs.collect_garbage().await.unwrap();
    assert_eq!(v.shard_objects().await, 0);
    fsck_clean(fs, "once the snapshot is gone").await.unwrap();
}
