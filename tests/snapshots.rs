//! Snapshots driven through the filesystem core (no mount): create, browse the
//! read-only view, restore in place, delete and collect, fsck.

mod common;

use cloudraid::format::Kind;
use cloudraid::fs::snapshot::NewSnapshot;
use cloudraid::fs::{Caller, Errno, Fs};
use common::{bytes, read_all, volume, ROOT};
use std::time::Duration;

const C: Caller = Caller {
    uid: 1000,
    gid: 1000,
};

async fn write_file(fs: &Fs, parent: u64, name: &str, data: &[u8]) -> u64 {
    let ino = match fs.lookup(parent, name.as_bytes()).await {
        Ok(a) => a.ino,
        Err(_) => {
            let (a, fh) = fs
                .create(parent, name.as_bytes(), 0o644, libc::O_RDWR, C)
                .await
                .unwrap();
            fs.release(fh).await.unwrap();
            a.ino
        }
    };
    let fh = fs.open(ino, libc::O_RDWR | libc::O_TRUNC).await.unwrap();
    let mut off = 0;
    for piece in data.chunks(100_000) {
        fs.write(fh, off, piece).await.unwrap();
        off += piece.len() as u64;
    }
    fs.release(fh).await.unwrap();
    ino
}

/// The inode at `path` (from the root), through lookups as the kernel does.
async fn walk(fs: &Fs, path: &str) -> Result<u64, Errno> {
    let mut ino = ROOT;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = fs.lookup(ino, c.as_bytes()).await?.ino;
    }
    Ok(ino)
}

async fn names(fs: &Fs, dir: u64) -> Vec<String> {
    let mut v: Vec<String> = fs
        .readdir(dir, 0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .filter(|n| n != "." && n != "..")
        .collect();
    v.sort();
    v
}

fn snap(tags: &[&str]) -> NewSnapshot {
    NewSnapshot {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        paths: Vec::new(),
        origin: "test".into(),
    }
}

fn id_of(s: &str) -> u32 {
    u32::from_str_radix(s, 16).unwrap()
}

#[tokio::test]
async fn a_snapshot_keeps_the_tree_as_it_was_and_is_read_only() {
    let v = volume(2, 1, 3, 16 * 1024);
    let fs = &v.fs;
    let docs = fs.mkdir(ROOT, b"docs", 0o750, C).await.unwrap().ino;
    let a = bytes(1, 300_000);
    let b = bytes(2, 5_000);
    write_file(fs, docs, "a.bin", &a).await;
    write_file(fs, ROOT, "b.txt", &b).await;
    fs.symlink(ROOT, b"link", b"docs/a.bin", C).await.unwrap();
    fs.setxattr(docs, b"user.color", b"blue", 0).await.unwrap();

    let s1 = fs.create_snapshot(snap(&["first"])).await.unwrap();
    assert_eq!((s1.files, s1.dirs, s1.others, s1.bytes), (2, 1, 1, 305_000));
    assert_eq!(
        s1.added_bytes, 305_000,
        "everything is new to the first snapshot"
    );

    // Change everything in the live tree.
    write_file(fs, docs, "a.bin", &bytes(3, 1000)).await;
    fs.unlink(ROOT, b"b.txt").await.unwrap();
    fs.rename(ROOT, b"link", ROOT, b"link2", 0).await.unwrap();
    let collected = fs.collect_garbage().await.unwrap();
    assert_eq!(collected, 0, "the snapshot still holds every old chunk");

    // `.snapshots` is not listed in the root, but can be entered.
    assert!(!names(fs, ROOT).await.contains(&".snapshots".to_string()));
    let sd = walk(fs, ".snapshots").await.unwrap();
    assert_eq!(names(fs, sd).await, vec![s1.id.clone()]);
    let root1 = walk(fs, &format!(".snapshots/{}", s1.id)).await.unwrap();
    assert_eq!(names(fs, root1).await, vec!["b.txt", "docs", "link"]);
    let a_ino = walk(fs, &format!(".snapshots/{}/docs/a.bin", s1.id))
        .await
        .unwrap();
    assert_eq!(read_all(fs, a_ino).await.unwrap(), a);
    let b_ino = walk(fs, &format!(".snapshots/{}/b.txt", s1.id))
        .await
        .unwrap();
    assert_eq!(read_all(fs, b_ino).await.unwrap(), b);
    let l = walk(fs, &format!(".snapshots/{}/link", s1.id))
        .await
        .unwrap();
    assert_eq!(fs.readlink(l).await.unwrap(), b"docs/a.bin");
    let d = walk(fs, &format!(".snapshots/{}/docs", s1.id))
        .await
        .unwrap();
    let da = fs.getattr(d).await.unwrap();
    assert_eq!((da.kind, da.perm, da.uid), (Kind::Dir, 0o750, 1000));
    assert_eq!(fs.getxattr(d, b"user.color").await.unwrap(), b"blue");
    assert_eq!(fs.getattr(a_ino).await.unwrap().size, 300_000);
    // Stable numbers: the same entry looked up twice is the same inode.
    assert_eq!(
        walk(fs, &format!(".snapshots/{}/docs/a.bin", s1.id))
            .await
            .unwrap(),
        a_ino
    );

    // Read-only: every change fails with EROFS.
    assert_eq!(
        fs.open(a_ino, libc::O_RDWR).await.unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(
        fs.create(d, b"new", 0o644, libc::O_RDWR, C)
            .await
            .unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(
        fs.mkdir(sd, b"x", 0o755, C).await.unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(fs.unlink(d, b"a.bin").await.unwrap_err(), Errno::EROFS);
    assert_eq!(fs.rmdir(root1, b"docs").await.unwrap_err(), Errno::EROFS);
    assert_eq!(
        fs.rmdir(ROOT, b".snapshots").await.unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(
        fs.rename(root1, b"b.txt", ROOT, b"b.txt", 0)
            .await
            .unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(
        fs.link(a_ino, ROOT, b"hard").await.unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(
        fs.setxattr(d, b"user.x", b"1", 0).await.unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(
        fs.mkdir(ROOT, b".snapshots", 0o755, C).await.unwrap_err(),
        Errno::EEXIST
    );

    // fsck knows about the snapshot: nothing missing, nothing orphaned.
    let r = fs.fsck(false, Duration::ZERO).await.unwrap();
    assert!(r.clean(), "{}", cloudraid::fs::fsck::render(&r));

    // Deleting the snapshot frees what only it held.
    let before = v.shard_objects().await;
    fs.delete_snapshots(&[id_of(&s1.id)]).await.unwrap();
    assert!(fs.collect_garbage().await.unwrap() > 0);
    assert!(v.shard_objects().await < before);
    assert_eq!(
        walk(fs, &format!(".snapshots/{}", s1.id)).await,
        Err(Errno::ENOENT)
    );
    let r = fs.fsck(false, Duration::ZERO).await.unwrap();
    assert!(r.clean(), "{}", cloudraid::fs::fsck::render(&r));
    assert_eq!(
        read_all(fs, walk(fs, "docs/a.bin").await.unwrap())
            .await
            .unwrap(),
        bytes(3, 1000)
    );
}

#[tokio::test]
async fn a_second_snapshot_stores_only_the_changed_directories() {
    let v = volume(2, 1, 3, 16 * 1024);
    let fs = &v.fs;
    for d in 0..20 {
        let dir = fs
            .mkdir(ROOT, format!("d{d}").as_bytes(), 0o755, C)
            .await
            .unwrap()
            .ino;
        for f in 0..10 {
            write_file(fs, dir, &format!("f{f}"), &bytes(d * 100 + f, 2000)).await;
        }
    }
    let s1 = fs.create_snapshot(snap(&[])).await.unwrap();
    assert_eq!(s1.new_trees, 21);
    let again = fs.create_snapshot(snap(&[])).await.unwrap();
    assert_eq!(
        (again.new_trees, again.added_bytes),
        (0, 0),
        "nothing changed"
    );
    let d3 = walk(fs, "d3").await.unwrap();
    write_file(fs, d3, "f1", &bytes(999, 3000)).await;
    let s2 = fs.create_snapshot(snap(&[])).await.unwrap();
    assert_eq!(s2.new_trees, 2, "d3 and the root");
    assert_eq!(s2.added_bytes, 3000);
    assert_eq!(s2.files, 200);
    // Both views read their own version.
    let old = walk(fs, &format!(".snapshots/{}/d3/f1", s1.id))
        .await
        .unwrap();
    let new = walk(fs, &format!(".snapshots/{}/d3/f1", s2.id))
        .await
        .unwrap();
    assert_eq!(read_all(fs, old).await.unwrap(), bytes(301, 2000));
    assert_eq!(read_all(fs, new).await.unwrap(), bytes(999, 3000));
    assert_eq!(fs.list_snapshots().unwrap().len(), 3);
    // Deleting the middle and the first keeps the last intact.
    fs.delete_snapshots(&[id_of(&s1.id), id_of(&again.id)])
        .await
        .unwrap();
    fs.collect_garbage().await.unwrap();
    assert_eq!(read_all(fs, new).await.unwrap(), bytes(999, 3000));
    let r = fs.fsck(false, Duration::ZERO).await.unwrap();
    assert!(r.clean(), "{}", cloudraid::fs::fsck::render(&r));
}

#[tokio::test]
async fn restore_in_place_brings_files_back_without_uploading() {
    let v = volume(2, 1, 3, 16 * 1024);
    let fs = &v.fs;
    let docs = fs.mkdir(ROOT, b"docs", 0o700, C).await.unwrap().ino;
    let sub = fs.mkdir(docs, b"sub", 0o755, C).await.unwrap().ino;
    let x = write_file(fs, sub, "x", &bytes(7, 100_000)).await;
    fs.link(x, docs, b"x-link").await.unwrap();
    write_file(fs, docs, "y", &bytes(8, 10)).await;
    let s = fs.create_snapshot(snap(&[])).await.unwrap();
    // Lose it all.
    fs.unlink(sub, b"x").await.unwrap();
    fs.rmdir(docs, b"sub").await.unwrap();
    fs.unlink(docs, b"x-link").await.unwrap();
    fs.unlink(docs, b"y").await.unwrap();
    fs.rmdir(ROOT, b"docs").await.unwrap();
    fs.collect_garbage().await.unwrap();

    let uploads = v.shard_objects().await;
    let id = id_of(&s.id);
    let r = fs
        .restore_in_place(id, &["/docs".into()], false, &|_, _| {})
        .await
        .unwrap();
    assert_eq!((r.files, r.dirs, r.errors.len()), (3, 2, 0), "{r:?}");
    assert_eq!(v.shard_objects().await, uploads, "nothing was uploaded");
    let x = walk(fs, "docs/sub/x").await.unwrap();
    assert_eq!(read_all(fs, x).await.unwrap(), bytes(7, 100_000));
    assert_eq!(walk(fs, "docs/x-link").await.unwrap(), x, "hard link kept");
    assert_eq!(fs.getattr(x).await.unwrap().nlink, 2);
    assert_eq!(
        fs.getattr(walk(fs, "docs").await.unwrap())
            .await
            .unwrap()
            .perm,
        0o700
    );

    // Again: refused, the path exists; with overwrite, a changed file comes back.
    let e = fs
        .restore_in_place(id, &["/docs".into()], false, &|_, _| {})
        .await
        .unwrap_err();
    assert!(e.0.contains("exists in the live tree"), "{e}");
    write_file(fs, walk(fs, "docs").await.unwrap(), "y", b"changed").await;
    fs.restore_in_place(id, &["docs/y".into()], true, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(
        read_all(fs, walk(fs, "docs/y").await.unwrap())
            .await
            .unwrap(),
        bytes(8, 10)
    );
    // Once the snapshot is gone the live files still hold their chunks.
    fs.delete_snapshots(&[id]).await.unwrap();
    fs.collect_garbage().await.unwrap();
    assert_eq!(read_all(fs, x).await.unwrap(), bytes(7, 100_000));
    let r = fs.fsck(false, Duration::ZERO).await.unwrap();
    assert!(r.clean(), "{}", cloudraid::fs::fsck::render(&r));
}

#[tokio::test]
async fn snapshots_of_paths_and_bad_names() {
    let v = volume(2, 1, 3, 16 * 1024);
    let fs = &v.fs;
    let a = fs.mkdir(ROOT, b"a", 0o755, C).await.unwrap().ino;
    fs.mkdir(ROOT, b"b", 0o755, C).await.unwrap();
    write_file(fs, a, "in", b"1").await;
    let s = fs
        .create_snapshot(NewSnapshot {
            paths: vec!["/a/in".into()],
            ..snap(&[])
        })
        .await
        .unwrap();
    assert_eq!((s.files, s.dirs), (1, 1));
    assert_eq!(s.paths, vec!["/a/in"]);
    let e = fs
        .create_snapshot(NewSnapshot {
            paths: vec!["/nope".into()],
            ..snap(&[])
        })
        .await
        .unwrap_err();
    assert!(e.0.contains("/nope: no such file"), "{e}");
    assert!(fs
        .find_snapshot("zz")
        .unwrap_err()
        .0
        .contains("not a snapshot id"));
    assert!(fs
        .find_snapshot("0000abcd")
        .unwrap_err()
        .0
        .contains("no snapshot 0000abcd"));
    assert_eq!(fs.find_snapshot(&s.id[..4]).unwrap().0, id_of(&s.id));
    assert_eq!(fs.find_snapshot("latest").unwrap().0, id_of(&s.id));
}

#[tokio::test]
async fn a_deep_tree_is_snapshotted_whole() {
    let v = volume(2, 1, 3, 16 * 1024);
    let fs = &v.fs;
    let mut ino = ROOT;
    for _ in 0..2000 {
        ino = fs.mkdir(ino, b"d", 0o755, C).await.unwrap().ino;
    }
    write_file(fs, ino, "leaf", b"deep").await;
    let s = fs.create_snapshot(snap(&[])).await.unwrap();
    assert_eq!((s.dirs, s.files, s.new_trees), (2000, 1, 2001));
    let path = format!(".snapshots/{}/{}leaf", s.id, "d/".repeat(2000));
    let leaf = walk(fs, &path).await.unwrap();
    assert_eq!(read_all(fs, leaf).await.unwrap(), b"deep");
}

#[tokio::test]
async fn forget_keeps_by_rule_and_a_dry_run_changes_nothing() {
    use cloudraid::backup::forget::{forget, ForgetRequest};
    use cloudraid::backup::retention::KeepPolicy;
    let v = volume(2, 1, 3, 16 * 1024);
    let fs = &v.fs;
    let mut ids = Vec::new();
    for i in 0..3 {
        write_file(fs, ROOT, "f", &bytes(i, 50_000)).await;
        ids.push(fs.create_snapshot(snap(&[])).await.unwrap().id);
    }
    write_file(fs, ROOT, "f", b"now").await;
    let none = forget(fs, &ForgetRequest::default()).await.unwrap_err();
    assert!(none.0.contains("at least one --keep-* rule"), "{none}");
    let req = ForgetRequest {
        policy: KeepPolicy {
            last: 1,
            ..KeepPolicy::default()
        },
        dry_run: true,
        ..ForgetRequest::default()
    };
    let dry = forget(fs, &req).await.unwrap();
    assert_eq!((dry.kept, dry.removed), (1, 2));
    assert_eq!(dry.freed.bytes, 100_000, "the two older versions of f");
    assert_eq!(
        fs.list_snapshots().unwrap().len(),
        3,
        "a dry run changes nothing"
    );
    let shards = v.shard_objects().await;
    let done = forget(
        fs,
        &ForgetRequest {
            dry_run: false,
            prune: true,
            ..req
        },
    )
    .await
    .unwrap();
    assert_eq!(done.freed, dry.freed);
    assert_eq!(done.pruned_chunks, dry.freed.chunks);
    assert!(v.shard_objects().await < shards);
    let left: Vec<String> = fs
        .list_snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, vec![ids[2].clone()]);
    let f = walk(fs, &format!(".snapshots/{}/f", ids[2])).await.unwrap();
    assert_eq!(read_all(fs, f).await.unwrap(), bytes(2, 50_000));
    let r = fs.fsck(false, Duration::ZERO).await.unwrap();
    assert!(r.clean(), "{}", cloudraid::fs::fsck::render(&r));
}

#[tokio::test]
async fn a_damaged_snapshot_is_named_and_the_others_still_read() {
    use cloudraid::meta::{Batch, MetaStore};
    let v = volume(2, 1, 3, 16 * 1024);
    let fs = &v.fs;
    let d = fs.mkdir(ROOT, b"d", 0o755, C).await.unwrap().ino;
    write_file(fs, d, "f", b"one").await;
    let a = fs.create_snapshot(snap(&[])).await.unwrap();
    write_file(fs, d, "f", b"two").await;
    let b = fs.create_snapshot(snap(&[])).await.unwrap();
    // Damage the root tree of `a` (a byte flipped in the index).
    let (aid, arec) = fs.find_snapshot(&a.id).unwrap();
    let root = arec.root.tree.unwrap();
    let key = cloudraid::format::keys::tree(cloudraid::format::keys::TREE, &root);
    let mut bytes_ = v.meta.get(&key).unwrap().unwrap();
    let last = bytes_.len() - 1;
    bytes_[last] ^= 0xff;
    let mut batch = Batch::default();
    batch.put(key, bytes_);
    v.meta.apply(batch).unwrap();

    let e = fs.snapshot_entry(aid, &arec, &[b"d".to_vec()]).unwrap_err();
    assert!(
        e.0.contains(&format!("snapshot {} is damaged", a.id)) && e.0.contains("other snapshots"),
        "{e}"
    );
    assert_eq!(
        walk(fs, &format!(".snapshots/{}/d", a.id)).await,
        Err(Errno::EIO)
    );
    let f = walk(fs, &format!(".snapshots/{}/d/f", b.id)).await.unwrap();
    assert_eq!(read_all(fs, f).await.unwrap(), b"two");
    let r = fs.fsck(false, Duration::ZERO).await.unwrap();
    assert!(!r.clean());
    assert!(
        r.problems
            .iter()
            .any(|p| p.what.contains("does not match its hash")),
        "{}",
        cloudraid::fs::fsck::render(&r)
    );
}

/// A store that fails every batch once armed: the machine stopping between two
/// batches, as far as the index can tell.
struct Cut {
    inner: std::sync::Arc<cloudraid::meta::MemMeta>,
    after: std::sync::atomic::AtomicI64,
}

impl cloudraid::meta::MetaStore for Cut {
    fn get(&self, key: &[u8]) -> cloudraid::meta::MetaResult<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> cloudraid::meta::MetaResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(prefix, after, limit)
    }
    fn apply(&self, batch: cloudraid::meta::Batch) -> cloudraid::meta::MetaResult<()> {
        use std::sync::atomic::Ordering;
        if self.after.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(cloudraid::meta::MetaError::Io("machine stopped".into()));
        }
        self.inner.apply(batch)
    }
    fn flush(&self) -> cloudraid::meta::MetaResult<()> {
        self.inner.flush()
    }
}

#[tokio::test]
async fn a_crash_while_taking_or_deleting_a_snapshot_loses_and_leaks_nothing() {
    use cloudraid::meta::MetaStore;
    let v = volume(2, 1, 3, 16 * 1024);
    for d in 0..5 {
        let dir =
            v.fs.mkdir(ROOT, format!("d{d}").as_bytes(), 0o755, C)
                .await
                .unwrap()
                .ino;
        for f in 0..5 {
            write_file(&v.fs, dir, &format!("f{f}"), &bytes(d * 10 + f, 20_000)).await;
        }
    }
    let shards = v.shard_objects().await;
    // Stopped after the trees were written, before the snapshot record.
    let cut = std::sync::Arc::new(Cut {
        inner: v.meta.clone(),
        after: std::sync::atomic::AtomicI64::new(1),
    });
    let fs = v.reopen_over(cut.clone() as std::sync::Arc<dyn MetaStore>);
    assert!(fs.create_snapshot(snap(&[])).await.is_err());
    drop(fs);
    // Started again: the unnamed trees are swept, nothing is held, nothing leaks.
    let fs = v.reopen(false);
    assert!(fs.list_snapshots().unwrap().is_empty());
    assert_eq!(
        fs.sweep_trees().await.unwrap(),
        6,
        "five directories and the root"
    );
    let r = fs.fsck(false, Duration::ZERO).await.unwrap();
    assert!(r.clean(), "{}", cloudraid::fs::fsck::render(&r));
    // Every file deleted: with no snapshot left, every shard goes.
    let s = fs.create_snapshot(snap(&[])).await.unwrap();
    for d in 0..5 {
        let dir = walk(&fs, &format!("d{d}")).await.unwrap();
        for f in 0..5 {
            fs.unlink(dir, format!("f{f}").as_bytes()).await.unwrap();
        }
    }
    fs.collect_garbage().await.unwrap();
    assert_eq!(
        v.shard_objects().await,
        shards,
        "the snapshot holds them all"
    );
    // Stopped in the middle of the deletion's sweep (after two trees).
    let cut = std::sync::Arc::new(Cut {
        inner: v.meta.clone(),
        after: std::sync::atomic::AtomicI64::new(3),
    });
    let fs2 = v.reopen_over(cut as std::sync::Arc<dyn MetaStore>);
    assert!(fs2.delete_snapshots(&[id_of(&s.id)]).await.is_err());
    drop(fs2);
    let fs = v.reopen(false);
    assert!(fs.list_snapshots().unwrap().is_empty());
    fs.sweep_trees().await.unwrap();
    fs.collect_garbage().await.unwrap();
    assert_eq!(v.shard_objects().await, 0, "nothing leaked");
    let r = fs.fsck(false, Duration::ZERO).await.unwrap();
    assert!(r.clean(), "{}", cloudraid::fs::fsck::render(&r));
}
