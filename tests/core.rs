//! Core tests: the filesystem core driven directly over in-memory backends.

mod common;

use cloudraid::format::Kind;
use cloudraid::fs::{
    Caller, Errno, Fs, SetAttr, SetTime, RENAME_EXCHANGE, RENAME_NOREPLACE, XATTR_CREATE,
    XATTR_REPLACE,
};
use cloudraid::store::{Backend, Fault};
use common::{bytes, read_all, volume, write_file, ROOT};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const C: Caller = Caller {
    uid: 1000,
    gid: 1000,
};

async fn names(fs: &Fs, dir: u64) -> Vec<String> {
    let mut v: Vec<String> = fs
        .readdir(dir, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .filter(|n| n != "." && n != "..")
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn create_lookup_readdir_and_errors() {
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = &tv.fs;
    let d = fs.mkdir(ROOT, b"docs", 0o755, C).await.unwrap();
    assert_eq!(d.kind, Kind::Dir);
    assert_eq!((d.uid, d.gid, d.perm, d.nlink), (1000, 1000, 0o755, 2));
    assert_eq!(fs.getattr(ROOT).await.unwrap().nlink, 3);
    let f = write_file(fs, d.ino, "a.txt", b"hello").await;
    assert_eq!(fs.lookup(d.ino, b"a.txt").await.unwrap().ino, f);
    assert_eq!(fs.lookup(d.ino, b"a.txt").await.unwrap().size, 5);
    assert_eq!(fs.lookup(d.ino, b"nope").await.unwrap_err(), Errno::ENOENT);
    assert_eq!(fs.lookup(f, b"x").await.unwrap_err(), Errno::ENOTDIR);
    assert_eq!(
        fs.mkdir(ROOT, b"docs", 0o755, C).await.unwrap_err(),
        Errno::EEXIST
    );
    let long = vec![b'x'; 256];
    assert_eq!(
        fs.mkdir(ROOT, &long, 0o755, C).await.unwrap_err(),
        Errno::ENAMETOOLONG
    );
    assert_eq!(
        fs.lookup(ROOT, &long).await.unwrap_err(),
        Errno::ENAMETOOLONG
    );
    assert!(fs.mkdir(ROOT, &vec![b'y'; 255], 0o755, C).await.is_ok());
    assert_eq!(fs.rmdir(ROOT, b"docs").await.unwrap_err(), Errno::ENOTEMPTY);
    assert_eq!(fs.rmdir(d.ino, b"a.txt").await.unwrap_err(), Errno::ENOTDIR);
    assert_eq!(fs.unlink(ROOT, b"docs").await.unwrap_err(), Errno::EISDIR);
    assert_eq!(
        fs.unlink(ROOT, b"missing").await.unwrap_err(),
        Errno::ENOENT
    );
    assert_eq!(
        fs.create(d.ino, b"a.txt", 0o644, libc::O_RDWR | libc::O_EXCL, C)
            .await
            .unwrap_err(),
        Errno::EEXIST
    );
    fs.unlink(d.ino, b"a.txt").await.unwrap();
    fs.rmdir(ROOT, b"docs").await.unwrap();
    assert_eq!(fs.getattr(ROOT).await.unwrap().nlink, 3); // the 255-byte directory remains
    assert_eq!(fs.getattr(f).await.unwrap_err(), Errno::ENOENT);
}

#[tokio::test(flavor = "multi_thread")]
async fn readdir_offsets_are_stable() {
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = &tv.fs;
    for i in 0..50 {
        fs.mkdir(ROOT, format!("d{i:02}").as_bytes(), 0o755, C)
            .await
            .unwrap();
    }
    let first = fs.readdir(ROOT, 0, 20).await.unwrap();
    assert_eq!(first.len(), 20);
    assert_eq!(first[0].name, b".");
    assert_eq!(first[1].name, b"..");
    // Remove an entry already listed and add a new one: the rest is neither lost nor repeated.
    fs.rmdir(ROOT, &first[5].name).await.unwrap();
    fs.mkdir(ROOT, b"zz-new", 0o755, C).await.unwrap();
    let mut seen: Vec<Vec<u8>> = first.iter().map(|e| e.name.clone()).collect();
    let mut off = first.last().unwrap().offset;
    loop {
        let more = fs.readdir(ROOT, off, 7).await.unwrap();
        if more.is_empty() {
            break;
        }
        off = more.last().unwrap().offset;
        seen.extend(more.into_iter().map(|e| e.name));
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no entry listed twice");
    assert_eq!(seen.len(), 2 + 50 + 1);
    assert!(seen.contains(&b"zz-new".to_vec()));
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_variants() {
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = &tv.fs;
    let a = fs.mkdir(ROOT, b"a", 0o755, C).await.unwrap().ino;
    let b = fs.mkdir(ROOT, b"b", 0o755, C).await.unwrap().ino;
    let f1 = write_file(fs, a, "f1", b"one").await;
    let f2 = write_file(fs, b, "f2", b"two").await;

    // Across directories, replacing a target.
    fs.rename(a, b"f1", b, b"f2", 0).await.unwrap();
    assert_eq!(fs.lookup(b, b"f2").await.unwrap().ino, f1);
    assert_eq!(fs.lookup(a, b"f1").await.unwrap_err(), Errno::ENOENT);
    assert_eq!(
        fs.getattr(f2).await.unwrap_err(),
        Errno::ENOENT,
        "replaced file is gone"
    );
    assert_eq!(read_all(fs, f1).await.unwrap(), b"one");

    // NOREPLACE and EXCHANGE.
    let f3 = write_file(fs, a, "f3", b"three").await;
    assert_eq!(
        fs.rename(a, b"f3", b, b"f2", RENAME_NOREPLACE)
            .await
            .unwrap_err(),
        Errno::EEXIST
    );
    fs.rename(a, b"f3", b, b"f2", RENAME_EXCHANGE)
        .await
        .unwrap();
    assert_eq!(fs.lookup(a, b"f3").await.unwrap().ino, f1);
    assert_eq!(fs.lookup(b, b"f2").await.unwrap().ino, f3);
    assert_eq!(
        fs.rename(a, b"f3", b, b"none", RENAME_EXCHANGE)
            .await
            .unwrap_err(),
        Errno::ENOENT
    );

    // Directories: into own subtree, over a file, over a non-empty dir, over an empty dir.
    let sub = fs.mkdir(a, b"sub", 0o755, C).await.unwrap().ino;
    assert_eq!(
        fs.rename(ROOT, b"a", sub, b"x", 0).await.unwrap_err(),
        Errno::EINVAL
    );
    assert_eq!(
        fs.rename(a, b"sub", b, b"f2", 0).await.unwrap_err(),
        Errno::ENOTDIR
    );
    assert_eq!(
        fs.rename(b, b"f2", a, b"sub", 0).await.unwrap_err(),
        Errno::EISDIR
    );
    assert_eq!(
        fs.rename(ROOT, b"b", a, b"f3", 0).await.unwrap_err(),
        Errno::ENOTDIR
    );
    let empty = fs.mkdir(b, b"empty", 0o755, C).await.unwrap().ino;
    fs.rename(a, b"sub", b, b"empty", 0).await.unwrap();
    assert_eq!(fs.lookup(b, b"empty").await.unwrap().ino, sub);
    assert_eq!(fs.getattr(empty).await.unwrap_err(), Errno::ENOENT);
    assert_eq!(
        fs.lookup(sub, b"..").await.unwrap().ino,
        b,
        "moved directory's parent follows"
    );
    assert_eq!(fs.getattr(a).await.unwrap().nlink, 2);
    assert_eq!(fs.getattr(b).await.unwrap().nlink, 3);
    assert_eq!(
        fs.rename(ROOT, b"b", b, b"x", 0).await.unwrap_err(),
        Errno::EINVAL
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn links_symlinks_xattrs_and_setattr() {
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = &tv.fs;
    let f = write_file(fs, ROOT, "orig", b"data").await;
    let l = fs.link(f, ROOT, b"hard").await.unwrap();
    assert_eq!((l.ino, l.nlink), (f, 2));
    fs.unlink(ROOT, b"orig").await.unwrap();
    assert_eq!(fs.getattr(f).await.unwrap().nlink, 1);
    assert_eq!(read_all(fs, f).await.unwrap(), b"data");
    let d = fs.mkdir(ROOT, b"dir", 0o755, C).await.unwrap().ino;
    assert_eq!(
        fs.link(d, ROOT, b"dirlink").await.unwrap_err(),
        Errno::EPERM
    );

    let s = fs.symlink(ROOT, b"sl", b"hard", C).await.unwrap();
    assert_eq!((s.kind, s.size), (Kind::Symlink, 4));
    assert_eq!(fs.readlink(s.ino).await.unwrap(), b"hard");
    assert_eq!(fs.readlink(f).await.unwrap_err(), Errno::EINVAL);

    fs.setxattr(f, b"user.tag", b"v1", 0).await.unwrap();
    assert_eq!(
        fs.setxattr(f, b"user.tag", b"v2", XATTR_CREATE)
            .await
            .unwrap_err(),
        Errno::EEXIST
    );
    assert_eq!(
        fs.setxattr(f, b"user.other", b"v", XATTR_REPLACE)
            .await
            .unwrap_err(),
        Errno::ENODATA
    );
    fs.setxattr(f, b"user.tag", b"v2", XATTR_REPLACE)
        .await
        .unwrap();
    fs.setxattr(f, b"user.b", b"", 0).await.unwrap();
    assert_eq!(fs.getxattr(f, b"user.tag").await.unwrap(), b"v2");
    assert_eq!(fs.listxattr(f).await.unwrap(), b"user.b\0user.tag\0");
    fs.removexattr(f, b"user.tag").await.unwrap();
    assert_eq!(
        fs.getxattr(f, b"user.tag").await.unwrap_err(),
        Errno::ENODATA
    );
    assert_eq!(
        fs.removexattr(f, b"user.tag").await.unwrap_err(),
        Errno::ENODATA
    );

    let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_500_000_000, 123_456_789);
    let a = fs
        .setattr(
            f,
            SetAttr {
                mode: Some(0o4750),
                uid: None,
                gid: None,
                size: None,
                atime: Some(SetTime::At(t)),
                mtime: Some(SetTime::At(t)),
            },
        )
        .await
        .unwrap();
    assert_eq!((a.perm, a.mtime, a.atime), (0o4750, t, t));
    let a = fs
        .setattr(
            f,
            SetAttr {
                uid: Some(7),
                gid: Some(8),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((a.uid, a.gid, a.perm), (7, 8, 0o750), "chown clears setuid");
    assert_eq!(
        fs.setattr(
            d,
            SetAttr {
                size: Some(0),
                ..Default::default()
            }
        )
        .await
        .unwrap_err(),
        Errno::EISDIR
    );
}

/// Random writes, truncates, reopens and reads against a plain byte vector.
#[tokio::test(flavor = "multi_thread")]
async fn random_writes_match_a_model() {
    // Chunk size not a power of two, so writes straddle chunk edges in every way.
    let tv = volume(3, 2, 5, 1000);
    let mut fs = tv.fs.clone();
    let ino = write_file(&fs, ROOT, "f", &bytes(1, 2500)).await;
    let mut model = bytes(1, 2500);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut fh = fs.open(ino, libc::O_RDWR).await.unwrap();
    for step in 0..400 {
        match rng.random_range(0..10) {
            0..=5 => {
                let off = rng.random_range(0..(model.len() as u64 + 3000));
                let len = rng.random_range(1..2500);
                let data = bytes(step, len);
                fs.write(fh, off, &data).await.unwrap();
                let end = off as usize + len;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].copy_from_slice(&data);
            }
            6 => {
                let size = rng.random_range(0..(model.len() as u64 + 2000));
                fs.setattr(
                    ino,
                    SetAttr {
                        size: Some(size),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                model.resize(size as usize, 0);
            }
            7 => fs.flush(fh).await.unwrap(),
            8 => {
                // Close, remount the core, reopen.
                fs.release(fh).await.unwrap();
                if rng.random_bool(0.5) {
                    fs = tv.reopen(false);
                }
                fh = fs.open(ino, libc::O_RDWR).await.unwrap();
            }
            _ => {
                let off = rng.random_range(0..(model.len() as u64 + 10));
                let got = fs.read(fh, off, 3000).await.unwrap();
                let lo = (off as usize).min(model.len());
                let hi = (off as usize + 3000).min(model.len());
                assert_eq!(got, model[lo..hi], "read at {off} after step {step}");
            }
        }
        assert_eq!(
            fs.getattr(ino).await.unwrap().size,
            model.len() as u64,
            "size after step {step}"
        );
    }
    fs.release(fh).await.unwrap();
    let fs = tv.reopen(false);
    assert_eq!(read_all(&fs, ino).await.unwrap(), model);
    // Reference counts in the index agree with the files.
    let counted = fs.count_references().unwrap();
    for (id, n) in &counted {
        assert_eq!(fs.index().chunk(id).unwrap().unwrap().refs, *n);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_chunks_are_stored_once_and_collected_when_unused() {
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = &tv.fs;
    let data = bytes(7, 300_000);
    let a = write_file(fs, ROOT, "a", &data).await;
    let shards_one = tv.shard_objects().await;
    let n = fs.file_chunks(a).unwrap().len();
    assert!(n >= 300_000 / (256 << 10), "{n} chunks");
    assert_eq!(shards_one, n * 3, "3 shards per chunk");
    let b = write_file(fs, ROOT, "b", &data).await;
    assert_eq!(
        tv.shard_objects().await,
        shards_one,
        "the copy uploads nothing"
    );
    assert_eq!(read_all(fs, b).await.unwrap(), data);
    fs.unlink(ROOT, b"a").await.unwrap();
    fs.collect_garbage().await.unwrap();
    assert_eq!(
        tv.shard_objects().await,
        shards_one,
        "still referenced by b"
    );
    assert_eq!(read_all(fs, b).await.unwrap(), data);
    fs.unlink(ROOT, b"b").await.unwrap();
    assert_eq!(fs.collect_garbage().await.unwrap(), n);
    assert_eq!(
        tv.shard_objects().await,
        0,
        "no shard left once no file uses it"
    );
    assert_eq!(fs.getattr(a).await.unwrap_err(), Errno::ENOENT);
}

#[tokio::test(flavor = "multi_thread")]
async fn sparse_files_store_no_zero_chunks() {
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = &tv.fs;
    let (a, fh) = fs
        .create(ROOT, b"sparse", 0o644, libc::O_RDWR, C)
        .await
        .unwrap();
    fs.write(fh, 10 << 20, b"tail").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, (10 << 20) + 4);
    assert_eq!(
        tv.shard_objects().await,
        3,
        "only the chunk holding data is stored"
    );
    let all = read_all(fs, a.ino).await.unwrap();
    assert!(all[..10 << 20].iter().all(|b| *b == 0));
    assert_eq!(&all[10 << 20..], b"tail");
}

/// Runs `f`, failing the test if it hangs: an operation that costs time in
/// proportion to a hole's size would never finish on a 1 PiB file.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(120), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish: its work grows with the hole"))
}

fn set_size(size: u64) -> SetAttr {
    SetAttr {
        size: Some(size),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_petabyte_sparse_file_costs_only_its_data() {
    const PIB: u64 = cloudraid::fs::MAX_FILE_SIZE;
    let tv = volume(2, 1, 3, 64 << 10);
    let mut fs = tv.fs.clone();
    let (a, fh) = fs
        .create(ROOT, b"disk.img", 0o644, libc::O_RDWR, C)
        .await
        .unwrap();
    // Grown to 1 PiB, then written at both ends.
    within("truncate up", fs.setattr(a.ino, set_size(PIB)))
        .await
        .unwrap();
    within("write at the start", fs.write(fh, 0, b"head"))
        .await
        .unwrap();
    within("write at the end", fs.write(fh, PIB - 4, b"tail"))
        .await
        .unwrap();
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, PIB);
    assert_eq!(
        within("read", fs.read(fh, PIB - 8, 100)).await.unwrap(),
        b"\0\0\0\0tail"
    );
    // Past the maximum size: EFBIG at once, nothing changed.
    assert_eq!(
        fs.write(fh, PIB - 1, b"xy").await.unwrap_err(),
        Errno::EFBIG
    );
    assert_eq!(
        fs.setattr(a.ino, set_size(PIB + 1)).await.unwrap_err(),
        Errno::EFBIG
    );
    within("close", fs.release(fh)).await.unwrap();
    let chunks = fs.file_chunks(a.ino).unwrap();
    assert_eq!(chunks.len(), 3, "head, one hole, tail: {chunks:?}");
    assert_eq!(
        fs.getattr(a.ino).await.unwrap().blocks,
        1,
        "st_blocks: 8 data bytes"
    );
    assert_eq!(
        tv.shard_objects().await,
        6,
        "two small chunks stored, no zeros"
    );

    // Read back after a remount: the ends and the middle.
    fs = tv.reopen(false);
    let fh = fs.open(a.ino, libc::O_RDWR).await.unwrap();
    assert_eq!(fs.read(fh, 0, 8).await.unwrap(), b"head\0\0\0\0");
    assert_eq!(fs.read(fh, PIB / 2, 4096).await.unwrap(), vec![0u8; 4096]);
    assert_eq!(fs.read(fh, PIB - 4, 4096).await.unwrap(), b"tail");
    // SEEK_DATA / SEEK_HOLE see the hole.
    assert_eq!(
        fs.seek_data_or_hole(fh, 0, libc::SEEK_HOLE).await.unwrap(),
        4
    );
    assert_eq!(
        fs.seek_data_or_hole(fh, 4, libc::SEEK_DATA).await.unwrap(),
        PIB - 4
    );
    assert_eq!(
        fs.seek_data_or_hole(fh, PIB, libc::SEEK_DATA)
            .await
            .unwrap_err(),
        Errno::ENXIO
    );
    // Written in the middle of the hole, then truncated down into the hole.
    within("write in the hole", fs.write(fh, PIB / 2, b"middle"))
        .await
        .unwrap();
    within("flush", fs.flush(fh)).await.unwrap();
    assert_eq!(
        fs.read(fh, PIB / 2 - 2, 10).await.unwrap(),
        b"\0\0middle\0\0"
    );
    within(
        "truncate down",
        fs.setattr(a.ino, set_size(999_999_999_999_999)),
    )
    .await
    .unwrap();
    fs.release(fh).await.unwrap();
    fs = tv.reopen(false);
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, 999_999_999_999_999);
    let fh = fs.open(a.ino, libc::O_RDONLY).await.unwrap();
    assert_eq!(fs.read(fh, 0, 4).await.unwrap(), b"head");
    assert_eq!(fs.read(fh, PIB / 2, 6).await.unwrap(), b"middle");
    assert_eq!(
        fs.read(fh, 999_999_999_999_990, 100).await.unwrap(),
        vec![0u8; 9]
    );
    fs.release(fh).await.unwrap();
    fs.collect_garbage().await.unwrap();
    assert_eq!(tv.shard_objects().await, 6, "the tail chunk was collected");

    // The conformance suite's case: a new file truncated to 999,999,999,999,999
    // bytes, stat-ed and removed.
    let (b, fh) = fs
        .create(ROOT, b"huge", 0o644, libc::O_RDWR, C)
        .await
        .unwrap();
    fs.release(fh).await.unwrap();
    within(
        "huge truncate",
        fs.setattr(b.ino, set_size(999_999_999_999_999)),
    )
    .await
    .unwrap();
    assert_eq!(fs.getattr(b.ino).await.unwrap().size, 999_999_999_999_999);
    fs.unlink(ROOT, b"huge").await.unwrap();
    // fallocate grows a file with a hole; keep-size changes nothing.
    let (c, fh) = fs
        .create(ROOT, b"vm.img", 0o644, libc::O_RDWR, C)
        .await
        .unwrap();
    within("fallocate", fs.fallocate(fh, 0, 1 << 40, 0))
        .await
        .unwrap();
    fs.fallocate(fh, 0, 1 << 45, libc::FALLOC_FL_KEEP_SIZE)
        .await
        .unwrap();
    assert_eq!(fs.getattr(c.ino).await.unwrap().size, 1 << 40);
    assert_eq!(
        fs.fallocate(
            fh,
            0,
            10,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
        )
        .await
        .unwrap_err(),
        Errno::EOPNOTSUPP
    );
    fs.release(fh).await.unwrap();
    assert_eq!(fs.getattr(c.ino).await.unwrap().size, 1 << 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn unlinked_open_file_stays_readable_until_closed() {
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = &tv.fs;
    let data = bytes(3, 200_000);
    let ino = write_file(fs, ROOT, "tmp", &data).await;
    let fh = fs.open(ino, libc::O_RDONLY).await.unwrap();
    fs.unlink(ROOT, b"tmp").await.unwrap();
    assert_eq!(fs.lookup(ROOT, b"tmp").await.unwrap_err(), Errno::ENOENT);
    assert_eq!(fs.read(fh, 0, 200_000).await.unwrap(), data);
    fs.release(fh).await.unwrap();
    assert_eq!(fs.getattr(ino).await.unwrap_err(), Errno::ENOENT);
    fs.collect_garbage().await.unwrap();
    assert_eq!(tv.shard_objects().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_survive_m_backends_down_or_lying() {
    let tv = volume(2, 2, 4, 64 << 10);
    let fs = &tv.fs;
    let data = bytes(9, 1_000_000);
    let ino = write_file(fs, ROOT, "big", &data).await;
    for (down, corrupt) in [
        (vec![0], vec![]),
        (vec![1, 3], vec![]),
        (vec![2], vec![0]),
        (vec![], vec![1, 2]),
    ] {
        let fs = tv.reopen(true); // a fresh cache each time
        for f in &tv.faults {
            f.set(Fault::None);
        }
        for i in &down {
            tv.faults[*i].set(Fault::Down);
        }
        for i in &corrupt {
            tv.faults[*i].set(Fault::CorruptReads);
        }
        assert_eq!(
            read_all(&fs, ino).await.unwrap(),
            data,
            "down {down:?} corrupt {corrupt:?}"
        );
    }
    // Truncated bodies on one backend and a slow one beside it.
    {
        let fs = tv.reopen(true);
        tv.faults[0].set(Fault::TruncateReads);
        tv.faults[1].set(Fault::Slow(std::time::Duration::from_millis(30)));
        tv.faults[2].set(Fault::None);
        tv.faults[3].set(Fault::None);
        assert_eq!(read_all(&fs, ino).await.unwrap(), data, "truncated + slow");
    }
    // Three of four unusable: a clean error, never wrong bytes.
    let fs = tv.reopen(true);
    tv.faults[0].set(Fault::Down);
    tv.faults[1].set(Fault::CorruptReads);
    tv.faults[2].set(Fault::Down);
    tv.faults[3].set(Fault::None);
    assert_eq!(read_all(&fs, ino).await.unwrap_err(), Errno::EIO);
    // Listing and stat never touch a backend.
    assert_eq!(names(&fs, ROOT).await, vec!["big"]);
    assert_eq!(fs.getattr(ino).await.unwrap().size, data.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_upload_keeps_the_previous_version() {
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = &tv.fs;
    let old = bytes(1, 100_000);
    let ino = write_file(fs, ROOT, "f", &old).await;
    tv.faults[1].set(Fault::RejectWrites);
    let fh = fs.open(ino, libc::O_RDWR | libc::O_TRUNC).await.unwrap();
    fs.write(fh, 0, &bytes(2, 150_000)).await.unwrap();
    // A failed fsync keeps the staged changes (the descriptor stays open)...
    assert_eq!(fs.fsync(fh).await.unwrap_err(), Errno::EIO);
    assert_eq!(
        fs.index().content(ino).unwrap().unwrap().chunks.len(),
        2,
        "index still holds the old chunks"
    );
    // ...and once the backend is back (the daemon's probe marks it up if its
    // failures tripped the circuit breaker), the next flush commits them.
    tv.faults[1].set(Fault::None);
    fs.volume().probe_down_backends().await;
    fs.flush(fh).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(
        read_all(&tv.reopen(true), ino).await.unwrap(),
        bytes(2, 150_000)
    );
    // A failed write never touches the committed file seen by a fresh mount.
    tv.faults[0].set(Fault::Down);
    let fh = fs.open(ino, libc::O_RDWR).await.unwrap();
    fs.write(fh, 0, &bytes(3, 1000)).await.unwrap();
    assert_eq!(fs.fsync(fh).await.unwrap_err(), Errno::EIO);
    assert_eq!(
        read_all(&tv.reopen(true), ino).await.unwrap(),
        bytes(2, 150_000)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_core_refuses_changes() {
    let tv = volume(2, 1, 3, 64 << 10);
    let ino = write_file(&tv.fs, ROOT, "f", b"x").await;
    let ro = tv.reopen(true);
    assert_eq!(
        ro.mkdir(ROOT, b"d", 0o755, C).await.unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(ro.unlink(ROOT, b"f").await.unwrap_err(), Errno::EROFS);
    assert_eq!(
        ro.open(ino, libc::O_WRONLY).await.unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(
        ro.setattr(
            ino,
            SetAttr {
                mode: Some(0o600),
                ..Default::default()
            }
        )
        .await
        .unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(read_all(&ro, ino).await.unwrap(), b"x");
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_writers_and_readers() {
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = tv.fs.clone();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let fs: Arc<Fs> = fs.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10u64 {
                let name = format!("t{t}-{i}");
                let data = bytes(t * 100 + i, (i as usize + 1) * 20_000);
                let ino = write_file(&fs, ROOT, &name, &data).await;
                assert_eq!(read_all(&fs, ino).await.unwrap(), data);
                if i % 3 == 0 {
                    fs.unlink(ROOT, name.as_bytes()).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(names(&fs, ROOT).await.len(), 8 * 6);
    fs.collect_garbage().await.unwrap();
    let counted = fs.count_references().unwrap();
    for (id, n) in &counted {
        assert_eq!(fs.index().chunk(id).unwrap().unwrap().refs, *n);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn collection_covers_more_chunks_than_one_pass_reads() {
    let tv = volume(2, 1, 3, 1000);
    let fs = &tv.fs;
    let many = write_file(fs, ROOT, "many", &bytes(5, 600 * 1000)).await;
    let n = fs.file_chunks(many).unwrap().len();
    assert!(n > 256, "more chunks than one collection pass reads: {n}");
    assert_eq!(tv.shard_objects().await, n * 3);
    fs.unlink(ROOT, b"many").await.unwrap();
    assert_eq!(fs.collect_garbage().await.unwrap(), n);
    assert_eq!(tv.shard_objects().await, 0);
    assert_eq!(fs.collect_garbage().await.unwrap(), 0, "the queue is empty");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_backend_is_skipped_until_a_probe_finds_it_back() {
    let tv = volume(2, 1, 3, 64 << 10);
    let a = write_file(&tv.fs, ROOT, "a", &bytes(1, 1 << 20)).await;
    let b = write_file(&tv.fs, ROOT, "b", &bytes(2, 1 << 20)).await;
    let c = write_file(&tv.fs, ROOT, "c", &bytes(3, 1 << 20)).await;
    let fs = tv.reopen(true);
    tv.faults[0].set(Fault::Down);
    assert_eq!(read_all(&fs, a).await.unwrap(), bytes(1, 1 << 20));
    assert!(
        fs.volume().health[0].is_down(),
        "three failures in a row trip the breaker"
    );
    assert!(!fs.volume().health[1].is_down());
    let ops = tv.faults[0].operations();
    assert_eq!(read_all(&fs, b).await.unwrap(), bytes(2, 1 << 20));
    assert_eq!(
        tv.faults[0].operations(),
        ops,
        "a backend marked down is not asked at all"
    );
    assert!(
        fs.volume().probe_down_backends().await.is_empty(),
        "still down: stays down"
    );
    tv.faults[0].set(Fault::None);
    assert_eq!(
        fs.volume().probe_down_backends().await,
        vec!["b0".to_string()]
    );
    assert!(!fs.volume().health[0].is_down());
    let ops = tv.faults[0].operations();
    assert_eq!(read_all(&fs, c).await.unwrap(), bytes(3, 1 << 20));
    assert!(tv.faults[0].operations() > ops, "back in use once up");
    let snap = fs.volume().health[1].snapshot();
    assert!(snap.p50_ms.is_some() && snap.errors == 0);
}

/// A backend that accepts requests and never answers (a frozen server) does not
/// stall reads: late requests are hedged with parity shards, and the backend is
/// soon marked down and skipped.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_backend_is_hedged_around_and_marked_down() {
    let tv = volume(2, 1, 3, 64 << 10);
    let a = write_file(&tv.fs, ROOT, "a", &bytes(1, 2 << 20)).await;
    let b = write_file(&tv.fs, ROOT, "b", &bytes(2, 2 << 20)).await;
    let fs = tv.reopen(true);
    // Learn every backend's normal latency.
    assert_eq!(read_all(&fs, a).await.unwrap(), bytes(1, 2 << 20));
    tv.faults[0].set(Fault::Hang);
    let t = std::time::Instant::now();
    let got = tokio::time::timeout(std::time::Duration::from_secs(20), read_all(&fs, b))
        .await
        .expect("a hung backend must not stall reads");
    assert_eq!(got.unwrap(), bytes(2, 2 << 20));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        fs.volume().health[0].is_down(),
        "late requests count against the hung backend"
    );
}

/// A backend that freezes before the mount has learnt its latency: reads wait
/// the default hedge delay for it (an overtaken request of a cold connection is
/// no proof), and the periodic check marks it down when it does not answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_backend_frozen_before_its_latency_is_known_is_checked_and_marked_down() {
    let tv = volume(2, 1, 3, 64 << 10);
    let a = write_file(&tv.fs, ROOT, "a", &bytes(1, 1 << 20)).await;
    let fs = tv.reopen(true);
    tv.faults[0].set(Fault::Hang);
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), read_all(&fs, a));
    assert_eq!(read.await.expect("hedged").unwrap(), bytes(1, 1 << 20));
    let h = &fs.volume().health[0];
    assert!(!h.is_down() && h.is_suspect(), "overtaken, not yet down");
    assert!(fs.volume().probe_backends().await.is_empty());
    assert!(h.is_down(), "no answer to the check: marked down");
    assert!(h
        .snapshot()
        .last_error
        .unwrap()
        .contains("no answer to a check"));
    // The check finds a healthy backend's answer and clears it.
    tv.faults[0].set(Fault::None);
    assert_eq!(fs.volume().probe_backends().await.len(), 1);
    assert!(!h.is_down() && !h.is_suspect());
}

#[tokio::test(flavor = "multi_thread")]
async fn scrub_finds_missing_and_corrupt_shards() {
    use cloudraid::format::shard_key;
    use cloudraid::fs::scrub::scrub;
    let tv = volume(2, 2, 4, 64 << 10);
    let data = bytes(6, 300_000);
    let ino = write_file(&tv.fs, ROOT, "f", &data).await;
    let fs = &tv.fs;
    let clean = scrub(fs.volume(), fs.index(), 100.0, &|_, _| {})
        .await
        .unwrap();
    assert!(clean.clean());
    let n = fs.file_chunks(ino).unwrap().len() as u64;
    assert_eq!((clean.chunks_checked, clean.chunks_total), (n, n));
    assert_eq!(clean.backends.iter().map(|b| b.ok).sum::<u64>(), n * 4);

    let chunks = fs.file_chunks(ino).unwrap();
    let cloudraid::format::ChunkRef::Data { id, .. } = chunks[0] else {
        panic!("hole")
    };
    let rec = fs.index().chunk(&id).unwrap().unwrap();
    let (s0, s3) = (rec.placement[0] as usize, rec.placement[3] as usize);
    tv.faults[s0]
        .put(&shard_key(&id, 0), bytes::Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    tv.faults[s3].delete(&shard_key(&id, 3)).await.unwrap();

    let r = scrub(fs.volume(), fs.index(), 100.0, &|_, _| {})
        .await
        .unwrap();
    assert!(!r.clean());
    assert_eq!(r.bad.len(), 2);
    assert_eq!((r.backends[s0].corrupt, r.backends[s3].missing), (1, 1));
    assert!(r.bad.iter().any(|b| b.backend == format!("b{s0}")
        && b.index == 0
        && b.problem.starts_with("corrupt")));
    assert!(r
        .bad
        .iter()
        .any(|b| b.backend == format!("b{s3}") && b.index == 3 && b.problem == "missing"));
    // Reads still return the right bytes from the other shards.
    assert_eq!(read_all(&tv.reopen(true), ino).await.unwrap(), data);
    // Repair rebuilds both from the good shards.
    let fixed = cloudraid::fs::scrub::repair(fs.volume(), fs.index(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!((fixed.chunks_repaired, fixed.shards_rewritten), (1, 2));
    assert!(fixed.failed.is_empty());
    assert!(scrub(fs.volume(), fs.index(), 100.0, &|_, _| {})
        .await
        .unwrap()
        .clean());
    // A sample checks fewer chunks.
    let some = scrub(fs.volume(), fs.index(), 30.0, &|_, _| {})
        .await
        .unwrap();
    assert!(some.chunks_checked < 5);
}

/// Chunks recorded as missing some shards (written during an outage).
fn degraded_chunks(fs: &Fs) -> usize {
    fs.index()
        .store()
        .scan(&[cloudraid::format::keys::DEGRADED], None, usize::MAX)
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_during_an_outage_reach_the_quorum_and_are_completed_later() {
    let tv = volume(2, 2, 4, 64 << 10);
    assert_eq!(
        tv.fs.volume().write_quorum,
        4,
        "the test volume asks for every shard"
    );
    // A volume that accepts k+1 = 3 of 4 shards.
    let fs3 = tv.reopen_with_quorum(3);
    tv.faults[1].set(Fault::RejectWrites);
    let data = bytes(4, 500_000);
    let ino = write_file(&fs3, ROOT, "during-outage", &data).await;
    assert!(
        degraded_chunks(&fs3) > 0,
        "chunks missing a shard are recorded"
    );
    assert_eq!(read_all(&fs3, ino).await.unwrap(), data);
    let (fixed, left) = fs3.repair_degraded().await.unwrap();
    assert_eq!(fixed, 0, "nothing to do while the backend still refuses");
    assert!(left > 0);
    // The backend returns; the probe marks it up, and completion writes the
    // missing shards.
    tv.faults[1].set(Fault::None);
    assert_eq!(
        fs3.volume().probe_down_backends().await,
        vec!["b1".to_string()]
    );
    let (fixed, left) = fs3.repair_degraded().await.unwrap();
    assert!(fixed > 0 && left == 0);
    assert_eq!(degraded_chunks(&fs3), 0);
    let clean = cloudraid::fs::scrub::scrub(fs3.volume(), fs3.index(), 100.0, &|_, _| {})
        .await
        .unwrap();
    assert!(clean.clean(), "{:?}", clean.bad);
    // Two backends refusing: fewer than 3 shards can be stored, the write fails and
    // the file keeps its committed content.
    tv.faults[0].set(Fault::RejectWrites);
    tv.faults[2].set(Fault::RejectWrites);
    let fh = fs3.open(ino, libc::O_RDWR).await.unwrap();
    fs3.write(fh, 0, &bytes(5, 100_000)).await.unwrap();
    assert_eq!(fs3.fsync(fh).await.unwrap_err(), Errno::EIO);
    assert_eq!(read_all(&tv.reopen(true), ino).await.unwrap(), data);
}

/// fsck: clean after ordinary use; each kind of index damage is reported, then
/// fixed by repair, and the files stay intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_finds_and_repairs_index_damage() {
    use cloudraid::format::{encode_record, keys, ChunkRef, DirentRecord, InodeRecord};
    use cloudraid::meta::{Batch, MetaStore};
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = &tv.fs;
    let grace = std::time::Duration::from_secs(3600);
    let d = fs.mkdir(ROOT, b"d", 0o755, C).await.unwrap().ino;
    let a = write_file(fs, d, "a", &bytes(1, 200_000)).await;
    let b = write_file(fs, ROOT, "b", &bytes(2, 100_000)).await;
    let same = write_file(fs, ROOT, "same-as-a", &bytes(1, 200_000)).await;
    fs.link(b, d, b"b-link").await.unwrap();
    fs.rename(ROOT, b"same-as-a", d, b"moved", 0).await.unwrap();
    let r = fs.fsck(false, grace).await.unwrap();
    assert!(r.clean() && r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.inodes, 5);
    let distinct: std::collections::HashSet<_> = [a, b]
        .iter()
        .flat_map(|i| fs.file_chunks(*i).unwrap())
        .collect();
    assert_eq!(
        r.chunks,
        distinct.len() as u64,
        "a and its copy share chunks"
    );
    assert_eq!(r.shards, 3 * distinct.len() as u64);

    // Damage: a wrong reference count, a wrong link count, an entry for no inode,
    // an entry without its cookie, and a file in no directory.
    let idx = fs.index();
    let first = match idx.content(a).unwrap().unwrap().chunks[0] {
        ChunkRef::Data { id, .. } => id,
        ChunkRef::Hole { .. } => panic!("data expected"),
    };
    let mut rec = idx.chunk(&first).unwrap().unwrap();
    assert_eq!(rec.refs, 2);
    rec.refs = 7;
    let mut inode_b: InodeRecord = idx.inode(b).unwrap().unwrap();
    assert_eq!(inode_b.nlink, 2);
    inode_b.nlink = 5;
    let mut batch = Batch::default();
    batch.put(keys::chunk(keys::CHUNK, &first), encode_record(&rec));
    batch.put(keys::ino(keys::INODE, b), encode_record(&inode_b));
    let ghost = DirentRecord {
        ino: 999,
        kind: Kind::File,
        cookie: 77,
    };
    batch.put(
        keys::ino_name(keys::DIRENT, ROOT, b"ghost"),
        encode_record(&ghost),
    );
    batch.put(keys::ino_u64(keys::DIRCOOKIE, ROOT, 77), b"ghost".to_vec());
    let e = idx.dirent(d, b"moved").unwrap().unwrap();
    batch.delete(keys::ino_u64(keys::DIRCOOKIE, d, e.cookie));
    let ea = idx.dirent(d, b"a").unwrap().unwrap();
    batch.delete(keys::ino_name(keys::DIRENT, d, b"a"));
    batch.delete(keys::ino_u64(keys::DIRCOOKIE, d, ea.cookie));
    tv.meta.apply(batch).unwrap();

    let r = fs.fsck(false, grace).await.unwrap();
    assert!(!r.clean());
    let all: Vec<String> = r.problems.iter().map(|p| p.what.clone()).collect();
    let has = |needle: &str| all.iter().any(|w| w.contains(needle));
    assert!(has("counts 7 references, files hold 2"), "{all:?}");
    assert!(
        has(&format!("inode {b} has link count 5, 2 entries")),
        "{all:?}"
    );
    assert!(
        has("\"ghost\" in directory 1 names missing inode 999"),
        "{all:?}"
    );
    assert!(has("\"moved\"") && has("no listing cookie"), "{all:?}");
    // a lost its only entry: unreachable.
    assert!(
        has(&format!(
            "inode {a} (File, 200000 bytes) is in no directory"
        )),
        "{all:?}"
    );
    assert_eq!(all.len(), 5, "{all:?}");
    // Checking changed nothing.
    assert_eq!(fs.fsck(false, grace).await.unwrap().problems.len(), 5);

    let r = fs.fsck(true, grace).await.unwrap();
    assert!(
        r.clean() && r.problems.iter().all(|p| p.fixed),
        "{:?}",
        r.problems
    );
    let r = fs.fsck(false, grace).await.unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    // The unreachable file is in /lost+found, intact; the others read back.
    let lf = fs.lookup(ROOT, b"lost+found").await.unwrap();
    let found = fs.lookup(lf.ino, format!("#{a}").as_bytes()).await.unwrap();
    assert_eq!(read_all(fs, found.ino).await.unwrap(), bytes(1, 200_000));
    assert_eq!(read_all(fs, same).await.unwrap(), bytes(1, 200_000));
    assert_eq!(fs.getattr(b).await.unwrap().nlink, 2);
    assert!(names(fs, d).await.contains(&"moved".to_string()));
    assert_eq!(fs.lookup(ROOT, b"ghost").await.unwrap_err(), Errno::ENOENT);
    assert_eq!(idx.chunk(&first).unwrap().unwrap().refs, 2);
    // Removing both holders frees the chunk: the counts were right.
    fs.unlink(lf.ino, format!("#{a}").as_bytes()).await.unwrap();
    fs.unlink(d, b"moved").await.unwrap();
    assert!(idx.chunk(&first).unwrap().is_none());
    fs.collect_garbage().await.unwrap();
    assert!(fs.fsck(false, grace).await.unwrap().problems.is_empty());
}

/// fsck against the backends: orphaned shards (deleted by repair only once older
/// than the grace period) and missing shards (left to `cloudraid repair`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_finds_orphaned_and_missing_shards() {
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = &tv.fs;
    let f = write_file(fs, ROOT, "f", &bytes(3, 150_000)).await;
    let stray = cloudraid::format::ChunkId::of(b"an upload that never made it to the index");
    let stray_key = cloudraid::format::shard_key(&stray, 1);
    tv.faults[1]
        .put(&stray_key, bytes::Bytes::from_static(b"shard bytes"))
        .await
        .unwrap();
    let hour = std::time::Duration::from_secs(3600);
    // Young: left alone, not a problem.
    let r = fs.fsck(true, hour).await.unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.recent_orphans, 1);
    assert!(tv.faults[1].head(&stray_key).await.unwrap().is_some());
    // Old enough (grace 0): reported, then deleted by repair.
    let r = fs.fsck(false, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(
        r.problems[0].what.contains("does not place there"),
        "{:?}",
        r.problems
    );
    let r = fs.fsck(true, std::time::Duration::ZERO).await.unwrap();
    assert!(r.clean() && r.problems[0].fixed);
    assert!(tv.faults[1].head(&stray_key).await.unwrap().is_none());

    // A shard of f goes missing: fsck reports it and points at repair.
    let id = match fs.file_chunks(f).unwrap()[0] {
        cloudraid::format::ChunkRef::Data { id, .. } => id,
        _ => panic!("data expected"),
    };
    let rec = fs.index().chunk(&id).unwrap().unwrap();
    let slot = rec.placement[0] as usize;
    tv.faults[slot]
        .delete(&cloudraid::format::shard_key(&id, 0))
        .await
        .unwrap();
    let r = fs.fsck(true, hour).await.unwrap();
    assert!(!r.clean());
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(
        r.problems[0].what.contains("lacks 1 shard")
            && r.problems[0].what.contains("cloudraid repair")
    );
    assert_eq!(read_all(fs, f).await.unwrap(), bytes(3, 150_000));
}

/// Every key of a store but the journal and the log's own state.
fn index_contents(meta: &dyn cloudraid::meta::MetaStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    meta.scan(&[], None, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k[0] != b'J' && k[0] != b'L')
        .collect()
}

/// The metadata log: changes made before, during and after a snapshot, deletes
/// included, rebuild into exactly the same index, also with m backends gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_log_rebuilds_the_exact_index() {
    use cloudraid::meta::MemMeta;
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = tv.reopen_journaled();
    let log = fs.metalog().unwrap().clone();
    log.catch_up().await.unwrap();
    let d = fs.mkdir(ROOT, b"d", 0o750, C).await.unwrap().ino;
    for i in 0..20 {
        write_file(&fs, d, &format!("f{i}"), &bytes(i, 1000 * i as usize)).await;
    }
    // Status shows the changes not yet on the backends, until they are pushed.
    let pending = cloudraid::front::status::gather(fs.volume(), fs.index())
        .await
        .unwrap();
    assert!(
        pending.metadata_pending >= 20,
        "{}",
        pending.metadata_pending
    );
    log.push().await.unwrap();
    let pushed = cloudraid::front::status::gather(fs.volume(), fs.index())
        .await
        .unwrap();
    assert_eq!(pushed.metadata_pending, 0);
    // A snapshot while changes go on, then more changes: renames, unlinks, links.
    let writer = {
        let fs = fs.clone();
        tokio::spawn(async move {
            for i in 20..40 {
                write_file(&fs, d, &format!("f{i}"), &bytes(i, 500)).await;
            }
        })
    };
    log.snapshot().await.unwrap();
    writer.await.unwrap();
    for i in 0..10 {
        fs.unlink(d, format!("f{i}").as_bytes()).await.unwrap();
    }
    fs.rename(d, b"f15", ROOT, b"moved", 0).await.unwrap();
    let moved = fs.lookup(ROOT, b"moved").await.unwrap().ino;
    fs.link(moved, d, b"hard").await.unwrap();
    fs.setattr(
        moved,
        cloudraid::fs::SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fs.sync_all().await.unwrap();
    let expected = index_contents(tv.meta.as_ref());

    let fresh = Arc::new(MemMeta::new());
    let report = cloudraid::meta::metalog::recover(fs.volume(), fresh.clone(), &|_, _| {})
        .await
        .unwrap();
    assert!(
        report.snapshot_seq > 0 && report.log_objects > 0,
        "{report:?}"
    );
    assert_eq!(index_contents(fresh.as_ref()), expected);
    assert_eq!(report.inodes, 32, "root, d and 30 files");

    // With m = 1 backend gone, from the others.
    tv.faults[0].set(Fault::Down);
    let fresh = Arc::new(MemMeta::new());
    let report = cloudraid::meta::metalog::recover(fs.volume(), fresh.clone(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(report.unreachable, vec!["b0".to_string()]);
    assert_eq!(index_contents(fresh.as_ref()), expected);
    // A damaged copy is skipped for a good one.
    tv.faults[0].set(Fault::None);
    tv.faults[1].set(Fault::CorruptReads);
    let fresh = Arc::new(MemMeta::new());
    cloudraid::meta::metalog::recover(fs.volume(), fresh.clone(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(index_contents(fresh.as_ref()), expected);
}

/// The write lease: one holder at a time, renewals, expiry, takeover, release,
/// and a majority of backends needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_lease_admits_one_holder_at_a_time() {
    use cloudraid::meta::lease::{acquire, release, Holder, LeaseError, LEASE_TTL};
    let tv = volume(2, 1, 3, 64 << 10);
    let vol = tv.fs.volume();
    let holder = |id: &str| Holder {
        id: id.into(),
        host: format!("host-{id}"),
        state_dir: format!("/var/lib/cloudraid/{id}"),
    };
    let (a, b) = (holder("a"), holder("b"));
    let t = 1_000_000;
    acquire(vol, &a, false, t).await.unwrap();
    // Someone else is refused, with who holds it and until when.
    match acquire(vol, &b, false, t + 10).await {
        Err(LeaseError::Held(msg)) => {
            assert!(
                msg.contains("host-a") && msg.contains("/var/lib/cloudraid/a"),
                "{msg}"
            );
            assert!(
                msg.contains("expires in 50 s") && msg.contains("--takeover"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The holder renews (the same state dir after its own crash does too).
    let r = acquire(vol, &a, false, t + 30).await.unwrap();
    assert_eq!(
        (r.acquired_at, r.expires_at),
        (t, t + 30 + LEASE_TTL.as_secs())
    );
    // An unrenewed lease expires on its own.
    let late = t + 30 + LEASE_TTL.as_secs() + 1;
    acquire(vol, &b, false, late).await.unwrap();
    assert!(matches!(
        acquire(vol, &a, false, late + 1).await,
        Err(LeaseError::Held(_))
    ));
    // Takeover overwrites a live lease; the old holder's renewal then fails.
    acquire(vol, &a, true, late + 2).await.unwrap();
    assert!(matches!(
        acquire(vol, &b, false, late + 3).await,
        Err(LeaseError::Held(_))
    ));
    // Release frees it at once.
    release(vol, &a).await;
    acquire(vol, &b, false, late + 4).await.unwrap();
    release(vol, &b).await;
    // A majority of backends must hold it.
    tv.faults[0].set(Fault::Down);
    tv.faults[1].set(Fault::Down);
    match acquire(vol, &a, false, late + 5).await {
        Err(LeaseError::Unreachable(msg)) => assert!(msg.contains("1 of 3"), "{msg}"),
        other => panic!("{other:?}"),
    }
    tv.faults[1].set(Fault::None);
    acquire(vol, &a, false, late + 6).await.unwrap();
}

/// mknod of every file type: FIFOs, sockets and devices are inodes with their
/// type and device number (no data), listed with their type, renamed, linked
/// and removed like files, and consistent for fsck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mknod_keeps_fifos_sockets_and_devices() {
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = &tv.fs;
    let dev = libc::makedev(8, 1);
    let big = libc::makedev(259, 70_000);
    let cases = [
        ("fifo", libc::S_IFIFO | 0o640, 0, Kind::Fifo, 0),
        ("sock", libc::S_IFSOCK | 0o600, 0, Kind::Socket, 0),
        ("chr", libc::S_IFCHR | 0o620, dev, Kind::CharDevice, dev),
        ("blk", libc::S_IFBLK | 0o660, big, Kind::BlockDevice, big),
        // A device number given for a FIFO or a regular file is not kept.
        ("fifo2", libc::S_IFIFO | 0o644, dev, Kind::Fifo, 0),
        ("plain", libc::S_IFREG | 0o644, dev, Kind::File, 0),
        ("plain2", 0o644, 0, Kind::File, 0),
    ];
    for (name, mode, rdev, kind, want_rdev) in cases {
        let a = fs
            .mknod(ROOT, name.as_bytes(), mode, rdev, C)
            .await
            .unwrap();
        assert_eq!(
            (a.kind, a.rdev, a.size, a.perm, a.nlink, a.uid),
            (kind, want_rdev, 0, (mode & 0o7777) as u16, 1, C.uid),
            "{name}"
        );
        let again = fs.lookup(ROOT, name.as_bytes()).await.unwrap();
        assert_eq!(again, a, "{name} looked up");
    }
    for (mode, errno) in [
        (libc::S_IFDIR | 0o755, Errno::EINVAL),
        (libc::S_IFLNK | 0o777, Errno::EINVAL),
        (0o170000 | 0o644, Errno::EINVAL),
        (libc::S_IFIFO | 0o644, Errno::EEXIST),
    ] {
        assert_eq!(
            fs.mknod(ROOT, b"fifo", mode, 0, C).await.unwrap_err(),
            errno,
            "mode {mode:o}"
        );
    }
    let listed: Vec<(String, Kind)> = fs
        .readdir(ROOT, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (String::from_utf8(e.name).unwrap(), e.kind))
        .filter(|(n, _)| n != "." && n != "..")
        .collect();
    for (name, _, _, kind, _) in cases {
        assert!(
            listed.contains(&(name.to_string(), kind)),
            "{name} in {listed:?}"
        );
    }

    // No data: neither opened nor truncated by the core (the kernel opens them).
    let fifo = fs.lookup(ROOT, b"fifo").await.unwrap().ino;
    let chr = fs.lookup(ROOT, b"chr").await.unwrap().ino;
    assert_eq!(
        fs.open(fifo, libc::O_RDONLY).await.unwrap_err(),
        Errno::EINVAL
    );
    let trunc = SetAttr {
        size: Some(0),
        ..Default::default()
    };
    assert_eq!(fs.setattr(chr, trunc).await.unwrap_err(), Errno::EINVAL);
    let a = fs
        .setattr(
            chr,
            SetAttr {
                mode: Some(0o600),
                uid: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (a.kind, a.rdev, a.perm, a.uid),
        (Kind::CharDevice, dev, 0o600, 5)
    );

    // Renamed and linked: the type and device number go along.
    let d = fs.mkdir(ROOT, b"d", 0o755, C).await.unwrap().ino;
    fs.rename(ROOT, b"chr", d, b"tty", 0).await.unwrap();
    let l = fs.link(chr, ROOT, b"tty-link").await.unwrap();
    assert_eq!((l.kind, l.rdev, l.nlink), (Kind::CharDevice, dev, 2));
    let r = fs
        .fsck(false, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    fs.unlink(d, b"tty").await.unwrap();
    fs.unlink(ROOT, b"tty-link").await.unwrap();
    assert_eq!(fs.getattr(chr).await.unwrap_err(), Errno::ENOENT);
    fs.unlink(ROOT, b"sock").await.unwrap();
    assert_eq!(names(fs, d).await, Vec::<String>::new());
    let r = fs
        .fsck(false, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

/// Sticky directories (mode 1777, like /tmp): an entry may be removed or
/// renamed away only by its owner, the directory's owner or root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_directories_protect_other_users_entries() {
    let tv = volume(2, 1, 3, 64 << 10);
    let fs = &tv.fs;
    let owner = Caller { uid: 500, gid: 500 };
    let alice = Caller {
        uid: 1001,
        gid: 100,
    };
    let bob = Caller {
        uid: 1002,
        gid: 100,
    };
    let tmp = fs.mkdir(ROOT, b"tmp", 0o1777, owner).await.unwrap();
    assert_eq!(tmp.perm, 0o1777);
    let tmp = tmp.ino;
    let open = fs.mkdir(ROOT, b"open", 0o777, owner).await.unwrap().ino;
    for dir in [tmp, open] {
        fs.mknod(dir, b"a-file", libc::S_IFREG | 0o644, 0, alice)
            .await
            .unwrap();
        fs.mknod(dir, b"a-fifo", libc::S_IFIFO | 0o644, 0, alice)
            .await
            .unwrap();
        fs.mkdir(dir, b"a-dir", 0o755, alice).await.unwrap();
        fs.mknod(dir, b"b-file", libc::S_IFREG | 0o644, 0, bob)
            .await
            .unwrap();
    }
    // Bob may not remove, rename away or replace Alice's entries in the sticky one...
    for name in [&b"a-file"[..], b"a-fifo"] {
        assert_eq!(
            fs.unlink_as(tmp, name, bob).await.unwrap_err(),
            Errno::EPERM
        );
        assert_eq!(
            fs.rename_as(tmp, name, tmp, b"mine", 0, bob)
                .await
                .unwrap_err(),
            Errno::EPERM
        );
        assert_eq!(
            fs.rename_as(tmp, name, ROOT, b"mine", 0, bob)
                .await
                .unwrap_err(),
            Errno::EPERM
        );
        assert_eq!(
            fs.rename_as(tmp, b"b-file", tmp, name, 0, bob)
                .await
                .unwrap_err(),
            Errno::EPERM,
            "replacing {name:?}"
        );
        assert_eq!(
            fs.rename_as(tmp, b"b-file", tmp, name, RENAME_EXCHANGE, bob)
                .await
                .unwrap_err(),
            Errno::EPERM
        );
    }
    assert_eq!(
        fs.rmdir_as(tmp, b"a-dir", bob).await.unwrap_err(),
        Errno::EPERM
    );
    assert_eq!(
        names(fs, tmp).await,
        vec!["a-dir", "a-fifo", "a-file", "b-file"]
    );
    // ...but may in the directory without the sticky bit (the kernel checks
    // write permission there), and may move his own entries.
    fs.unlink_as(open, b"a-file", bob).await.unwrap();
    fs.rename_as(open, b"a-fifo", open, b"bobs", 0, bob)
        .await
        .unwrap();
    fs.rmdir_as(open, b"a-dir", bob).await.unwrap();
    fs.rename_as(tmp, b"b-file", tmp, b"b-moved", 0, bob)
        .await
        .unwrap();
    // Alice, the directory's owner and root may.
    fs.rename_as(tmp, b"a-file", tmp, b"a-renamed", 0, alice)
        .await
        .unwrap();
    fs.unlink_as(tmp, b"a-renamed", alice).await.unwrap();
    fs.rmdir_as(tmp, b"a-dir", owner).await.unwrap();
    fs.unlink_as(tmp, b"a-fifo", Caller::ROOT).await.unwrap();
    // The directory's owner may replace an entry of Bob's.
    fs.mknod(tmp, b"o-file", libc::S_IFREG | 0o644, 0, owner)
        .await
        .unwrap();
    fs.rename_as(tmp, b"o-file", tmp, b"b-moved", 0, owner)
        .await
        .unwrap();
    assert_eq!(names(fs, tmp).await, vec!["b-moved"]);
    assert_eq!(fs.lookup(tmp, b"b-moved").await.unwrap().uid, owner.uid);
}

/// Puts a volume marker on every backend, so status probes find them reachable.
async fn mark_backends(tv: &common::TestVolume) {
    for f in &tv.faults {
        f.put(
            cloudraid::format::MARKER_KEY,
            bytes::Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    }
}

/// With the default write quorum (every shard but one), a 2+1 volume goes on
/// writing while any one backend is down; the missing shards are written once
/// it returns. With two down, writes are refused: status says why and names
/// the backends, and a new file stays empty everywhere.
#[tokio::test(flavor = "multi_thread")]
async fn default_quorum_writes_through_one_backend_down_and_reports_blocked_writes() {
    let tv = volume(2, 1, 3, 64 << 10);
    mark_backends(&tv).await;
    let quorum = cloudraid::config::default_write_quorum(2, 1);
    assert_eq!(quorum, 2);
    let fs = tv.reopen_with_quorum(quorum);
    for down in 0..3 {
        tv.faults[down].set(Fault::Down);
        let data = bytes(10 + down as u64, 300_000);
        let name = format!("while-{down}-is-down");
        let ino = write_file(&fs, ROOT, &name, &data).await;
        assert!(degraded_chunks(&fs) > 0);
        let st = cloudraid::front::status::gather(fs.volume(), fs.index())
            .await
            .unwrap();
        assert!(!st.writes.blocked, "{:?}", st.writes);
        assert_eq!((st.writes.answering, st.writes.quorum), (2, 2));
        tv.faults[down].set(Fault::None);
        fs.volume().probe_down_backends().await;
        let (_, left) = fs.repair_degraded().await.unwrap();
        assert_eq!(left, 0);
        assert_eq!(
            degraded_chunks(&fs),
            0,
            "missing shards written once it is back"
        );
        assert_eq!(read_all(&tv.reopen(true), ino).await.unwrap(), data);
    }
    assert!(
        cloudraid::fs::scrub::scrub(fs.volume(), fs.index(), 100.0, &|_, _| {})
            .await
            .unwrap()
            .clean()
    );

    // Two of three down: fewer than 2 shards can be stored.
    tv.faults[0].set(Fault::Down);
    tv.faults[2].set(Fault::RejectWrites);
    let (a, fh) = fs
        .create(ROOT, b"new", 0o644, libc::O_RDWR, C)
        .await
        .unwrap();
    fs.write(fh, 0, &bytes(20, 8 << 20)).await.unwrap();
    assert_eq!(
        fs.getattr(a.ino).await.unwrap().size,
        8 << 20,
        "the writer sees its writes"
    );
    // A failed close with no other open of the file drops the changes at once.
    assert_eq!(fs.flush(fh).await.unwrap_err(), Errno::EIO);
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, 0);
    fs.release(fh).await.unwrap();
    // The file is its previous version (new: empty) for stat, ls and a remount.
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, 0);
    assert_eq!(read_all(&fs, a.ino).await.unwrap(), b"");
    let listed = cloudraid::front::ops::list(&fs, "/new").await.unwrap();
    assert_eq!((listed[0].size, listed[0].chunks), (0, 0));
    assert_eq!(tv.reopen(true).getattr(a.ino).await.unwrap().size, 0);
    let st = cloudraid::front::status::gather(fs.volume(), fs.index())
        .await
        .unwrap();
    assert!(st.writes.blocked, "{:?} {:?}", st.writes, st.backends);
    assert_eq!(
        (st.writes.answering, st.writes.backends, st.writes.quorum),
        (1, 3, 2)
    );
    let failure = st.writes.last_failure.clone().unwrap();
    let failed: Vec<&str> = failure.failed.iter().map(|(b, _)| b.as_str()).collect();
    assert!(
        failed.contains(&"b0") && failed.contains(&"b2"),
        "{failed:?}"
    );
    assert!(failure.stored < failure.needed);
    let text = cloudraid::front::status::render(&st);
    assert!(
        text.contains("writes blocked: 1 of 3 backends answer, 2 needed"),
        "{text}"
    );
    // Back again: writes work and the report clears.
    tv.faults[0].set(Fault::None);
    tv.faults[2].set(Fault::None);
    fs.volume().probe_down_backends().await;
    write_file(&fs, ROOT, "after", b"back").await;
    let st = cloudraid::front::status::gather(fs.volume(), fs.index())
        .await
        .unwrap();
    assert!(!st.writes.blocked && st.writes.last_failure.is_none());
}

/// A read that runs past its backend's usual latency is hedged with a parity
/// shard; the late backend gets a slow answer counted, not an error, and is
/// not marked down for one late answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_hedged_read_counts_as_slow_not_as_an_error() {
    let tv = volume(2, 1, 3, 64 << 10);
    // Small files of one chunk each; every write teaches each backend's latency.
    let mut files = Vec::new();
    for i in 0..12 {
        let data = bytes(100 + i, 20_000);
        files.push((
            write_file(&tv.fs, ROOT, &format!("f{i}"), &data).await,
            data,
        ));
    }
    // The writes taught every backend its latency.
    let fs = &tv.fs;
    // The backend holding the first data shard of the next file's chunk turns slow.
    let (ino, data) = &files[10];
    let id = match fs.file_chunks(*ino).unwrap()[0] {
        cloudraid::format::ChunkRef::Data { id, .. } => id,
        _ => unreachable!(),
    };
    let rec = fs.index().chunk(&id).unwrap().unwrap();
    let slot = rec.placement[0] as usize;
    assert!(fs.volume().health[slot].knows_latency());
    tv.faults[slot].set(Fault::Slow(std::time::Duration::from_millis(1500)));
    let t = std::time::Instant::now();
    assert_eq!(&read_all(fs, *ino).await.unwrap(), data);
    assert!(
        t.elapsed() < std::time::Duration::from_millis(1200),
        "hedged: {:?}",
        t.elapsed()
    );
    let h = fs.volume().health[slot].snapshot();
    assert_eq!((h.slow, h.errors, h.down), (1, 0, false), "{h:?}");
    mark_backends(&tv).await;
    tv.faults[slot].set(Fault::None);
    let st = cloudraid::front::status::gather(fs.volume(), fs.index())
        .await
        .unwrap();
    let text = cloudraid::front::status::render(&st);
    let row = text
        .lines()
        .find(|l| l.starts_with(&format!("b{slot} ")))
        .unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    // BACKEND STATE SHARDS BYTES(2 words) P50 P99 SLOW ERRORS URL
    assert!(text.contains("SLOW") && text.contains("ERRORS"), "{text}");
    let (slow, errors) = (cols[cols.len() - 3], cols[cols.len() - 2]);
    assert_eq!((slow, errors), ("1", "0"), "{row}");
}
