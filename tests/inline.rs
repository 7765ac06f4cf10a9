//! Inline chunks: chunks of at most `inline_max` bytes kept sealed in their index
//! record instead of as shards. Driven through the filesystem core (as
//! tests/core.rs), plus one real mount.

mod common;

use cloudraid::format::{keys, ChunkId, ChunkRecord, ChunkRef};
use cloudraid::fs::snapshot::NewSnapshot;
use cloudraid::fs::{Caller, Errno, Fs};
use cloudraid::meta::{Batch, MemMeta, MetaStore};
use cloudraid::store::{Backend, Fault};
use common::{bytes, read_all, volume_inline, write_file, TestVolume, ROOT};
use std::sync::Arc;
use std::time::Duration;

const C: Caller = Caller {
    uid: 1000,
    gid: 1000,
};

/// 4+2 over six backends, chunks around 64 KiB, chunks up to 8 KiB inline.
fn vol() -> TestVolume {
    volume_inline(4, 2, 6, 64 << 10, 8 << 10)
}

/// The data chunks of a file, in order.
fn data_chunks(fs: &Fs, ino: u64) -> Vec<ChunkId> {
    fs.file_chunks(ino)
        .unwrap()
        .into_iter()
        .filter_map(|c| match c {
            ChunkRef::Data { id, .. } => Some(id),
            ChunkRef::Hole { .. } => None,
        })
        .collect()
}

fn record(fs: &Fs, id: &ChunkId) -> Option<ChunkRecord> {
    fs.index().chunk(id).unwrap()
}

fn queued_for_collection(tv: &TestVolume) -> usize {
    tv.meta.scan(&[keys::GC], None, usize::MAX).unwrap().len()
}

fn ops(tv: &TestVolume) -> u64 {
    tv.faults.iter().map(|f| f.operations()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_file_round_trips_and_leaves_no_shard_on_any_backend() {
    let tv = vol();
    let fs = &tv.fs;
    let data = bytes(1, 4096);
    let before = ops(&tv);
    let ino = write_file(fs, ROOT, "small.bin", &data).await;
    assert_eq!(ops(&tv), before, "closing it asked no backend anything");
    assert_eq!(tv.shard_objects().await, 0);
    let ids = data_chunks(fs, ino);
    assert_eq!(ids.len(), 1);
    let rec = record(fs, &ids[0]).unwrap();
    assert!(rec.is_inline());
    assert_eq!(
        (rec.refs, rec.len, rec.k, rec.placement.len()),
        (1, 4096, 0, 0)
    );
    let sealed = rec.inline.as_ref().unwrap();
    assert_eq!(sealed.len(), rec.sealed_len as usize);
    // Encrypted in the index too: the plaintext is nowhere in the sealed bytes.
    assert!(!sealed.windows(64).any(|w| w == &data[..64]));

    assert_eq!(read_all(fs, ino).await.unwrap(), data);
    // A fresh core (a remount) reads it from the index alone.
    let again = tv.reopen(true);
    let before = ops(&tv);
    assert_eq!(read_all(&again, ino).await.unwrap(), data);
    assert_eq!(ops(&tv), before, "reading it asked no backend anything");

    // What status and ls say about it.
    let st = cloudraid::front::status::gather(fs.volume(), fs.index())
        .await
        .unwrap();
    assert_eq!((st.chunks, st.inline_chunks), (1, 1));
    assert_eq!(st.inline_bytes, rec.sealed_len as u64);
    assert_eq!(st.stored_bytes, 0, "no shard stored");
    let ls = cloudraid::front::ops::list(fs, "/small.bin").await.unwrap();
    assert_eq!(ls[0].redundancy, cloudraid::front::ops::Redundancy::Inline);
    assert!(cloudraid::front::ops::render_list(&ls).contains("inline (in the index)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_tiny_files_share_one_record_until_the_last_goes() {
    let tv = vol();
    let fs = &tv.fs;
    let data = bytes(2, 3000);
    let a = write_file(fs, ROOT, "a", &data).await;
    let b = write_file(fs, ROOT, "b", &data).await;
    let id = data_chunks(fs, a)[0];
    assert_eq!(data_chunks(fs, b), vec![id], "same content, same chunk");
    assert_eq!(record(fs, &id).unwrap().refs, 2);
    let all = fs.index().all::<ChunkRecord>(keys::CHUNK).unwrap();
    assert_eq!(all.len(), 1, "one record for both");

    fs.unlink(ROOT, b"a").await.unwrap();
    assert_eq!(record(fs, &id).unwrap().refs, 1);
    assert_eq!(read_all(fs, b).await.unwrap(), data);

    fs.unlink(ROOT, b"b").await.unwrap();
    assert_eq!(record(fs, &id), None, "the last reference took the record");
    assert_eq!(
        queued_for_collection(&tv),
        0,
        "nothing on the backends to collect"
    );
    assert_eq!(fs.collect_garbage().await.unwrap(), 0);
    // The same content written again is stored again.
    let c = write_file(fs, ROOT, "c", &data).await;
    assert_eq!(read_all(fs, c).await.unwrap(), data);
    assert_eq!(record(fs, &id).unwrap().refs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_files_are_read_and_written_with_every_backend_gone() {
    let tv = vol();
    let data = bytes(3, 5000);
    let ino = write_file(&tv.fs, ROOT, "f", &data).await;
    for f in &tv.faults {
        f.set(Fault::Down);
    }
    let fs = tv.reopen(false);
    assert_eq!(read_all(&fs, ino).await.unwrap(), data);
    // Closing a tiny file needs no backend either (its bytes are in the index).
    let more = bytes(4, 2000);
    let m = write_file(&fs, ROOT, "g", &more).await;
    assert_eq!(read_all(&fs, m).await.unwrap(), more);
    // A file with a chunk too big to be inline needs its write quorum.
    let (_, fh) = fs
        .create(ROOT, b"big", 0o644, libc::O_RDWR, C)
        .await
        .unwrap();
    fs.write(fh, 0, &bytes(5, 100_000)).await.unwrap();
    assert_eq!(fs.flush(fh).await.unwrap_err(), Errno::EIO);
    let _ = fs.release(fh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_bytes_come_back_with_recover() {
    let tv = vol();
    let fs = tv.reopen_journaled();
    let log = fs.metalog().unwrap().clone();
    log.catch_up().await.unwrap();
    let d = fs.mkdir(ROOT, b"d", 0o755, C).await.unwrap().ino;
    let mut files = Vec::new();
    for i in 0..30u64 {
        let data = bytes(100 + i, 100 + 200 * i as usize);
        files.push((format!("f{i}"), data.clone()));
        write_file(&fs, d, &format!("f{i}"), &data).await;
    }
    fs.sync_all().await.unwrap();
    assert_eq!(tv.shard_objects().await, 0);

    // The machine is lost: the index comes back from the metadata log alone,
    // with one backend down.
    tv.faults[2].set(Fault::Down);
    let fresh = Arc::new(MemMeta::new());
    cloudraid::meta::metalog::recover(fs.volume(), fresh.clone(), &|_, _| {})
        .await
        .unwrap();
    tv.faults[2].set(Fault::None);
    let back = tv.reopen_over(fresh.clone());
    let d = back.lookup(ROOT, b"d").await.unwrap().ino;
    for (name, data) in &files {
        let ino = back.lookup(d, name.as_bytes()).await.unwrap().ino;
        assert_eq!(&read_all(&back, ino).await.unwrap(), data, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_keeps_an_inline_file_after_the_live_one_is_deleted() {
    let tv = vol();
    let fs = &tv.fs;
    let data = bytes(6, 7000);
    let ino = write_file(fs, ROOT, "note.txt", &data).await;
    let id = data_chunks(fs, ino)[0];
    let s = fs
        .create_snapshot(NewSnapshot {
            tags: Vec::new(),
            paths: Vec::new(),
            origin: "test".into(),
        })
        .await
        .unwrap();
    fs.unlink(ROOT, b"note.txt").await.unwrap();
    assert_eq!(fs.collect_garbage().await.unwrap(), 0);
    let rec = record(fs, &id).expect("the snapshot holds it");
    assert_eq!(rec.refs, 0);
    assert!(rec.is_inline());
    let mut ino = ROOT;
    for c in [".snapshots", s.id.as_str(), "note.txt"] {
        ino = fs.lookup(ino, c.as_bytes()).await.unwrap().ino;
    }
    assert_eq!(read_all(fs, ino).await.unwrap(), data);

    fs.delete_snapshots(&[u32::from_str_radix(&s.id, 16).unwrap()])
        .await
        .unwrap();
    fs.collect_garbage().await.unwrap();
    assert_eq!(record(fs, &id), None, "nothing holds it any more");
    assert_eq!(queued_for_collection(&tv), 0);
    assert!(fs.fsck(false, Duration::ZERO).await.unwrap().clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_opens_inline_chunks_and_names_the_files_of_a_damaged_one() {
    use cloudraid::fs::scrub::{repair, scrub};
    let tv = vol();
    let fs = &tv.fs;
    let d = fs.mkdir(ROOT, b"docs", 0o755, C).await.unwrap().ino;
    let data = bytes(7, 6000);
    let a = write_file(fs, d, "a.txt", &data).await;
    write_file(fs, ROOT, "b.txt", &data).await;
    write_file(fs, ROOT, "other", &bytes(8, 100)).await;
    let good = scrub(fs.volume(), fs.index(), 100.0, &|_, _| {})
        .await
        .unwrap();
    assert!(good.clean(), "{good:?}");
    assert_eq!(
        (good.inline_ok, good.chunks_checked, good.chunks_total),
        (2, 2, 2)
    );
    assert!(cloudraid::fs::scrub::render(&good)
        .contains("inline chunks (kept in the index): 2 intact, 0 damaged"));

    // One byte of the sealed bytes flipped in the index.
    let id = data_chunks(fs, a)[0];
    let key = keys::chunk(keys::CHUNK, &id);
    let mut rec = record(fs, &id).unwrap();
    let sealed = rec.inline.as_mut().unwrap();
    let mid = sealed.len() / 2;
    sealed[mid] ^= 0x01;
    let mut b = Batch::default();
    b.put(key, cloudraid::format::encode_record(&rec));
    tv.meta.apply(b).unwrap();

    assert_eq!(read_all(fs, a).await.unwrap_err(), Errno::EIO);
    let bad = scrub(fs.volume(), fs.index(), 100.0, &|_, _| {})
        .await
        .unwrap();
    assert!(!bad.clean());
    assert_eq!(bad.inline_ok, 1);
    assert_eq!(bad.damaged_inline.len(), 1);
    let dmg = &bad.damaged_inline[0];
    assert_eq!(dmg.chunk, id.hex());
    assert_eq!(
        dmg.files,
        vec!["/b.txt".to_string(), "/docs/a.txt".to_string()]
    );
    let text = cloudraid::fs::scrub::render(&bad);
    assert!(text.contains("/b.txt, /docs/a.txt"), "{text}");
    let line = bad.error_line(4);
    assert!(
        line.contains("1 damaged inline chunk(s), held by 2 file(s)")
            && line.contains("`cloudraid repair` cannot rebuild it")
            && line.contains("`cloudraid recover`"),
        "{line}"
    );
    assert!(!line.contains("shard(s)"), "no shard is missing: {line}");
    assert!(!line.contains('\n'));

    // Repair cannot rebuild it, and says so.
    let r = repair(fs.volume(), fs.index(), &|_, _| {}).await.unwrap();
    assert_eq!(r.chunks_repaired, 0);
    assert_eq!(r.failed.len(), 1);
    assert!(
        r.failed[0].contains("no shards to rebuild it from"),
        "{:?}",
        r.failed
    );
    assert!(r.error_line().contains("`cloudraid recover`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_file_whose_last_chunk_is_tiny_mixes_shards_and_inline() {
    let tv = vol();
    let fs = &tv.fs;
    // A cut point depends on the bytes from the chunk's start to just past it:
    // the first bytes of a longer stream, ending fewer bytes than the smallest
    // chunk after one of its cuts, end in a chunk of exactly those few bytes.
    let long = bytes(9, 600_000);
    let probe = write_file(fs, ROOT, "probe", &long).await;
    let lens: Vec<u64> = fs
        .file_chunks(probe)
        .unwrap()
        .iter()
        .map(|c| c.len())
        .collect();
    assert!(lens.len() >= 3, "{lens:?}");
    fs.unlink(ROOT, b"probe").await.unwrap();
    fs.collect_garbage().await.unwrap();
    let head = (lens[0] + lens[1]) as usize;
    let data = long[..head + 700].to_vec();
    let ino = write_file(fs, ROOT, "f", &data).await;
    let chunks = fs.file_chunks(ino).unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
        vec![lens[0], lens[1], 700]
    );
    let ids = data_chunks(fs, ino);
    let inline: Vec<bool> = ids
        .iter()
        .map(|id| record(fs, id).unwrap().is_inline())
        .collect();
    assert_eq!(inline, vec![false, false, true]);
    assert_eq!(
        tv.shard_objects().await,
        2 * 6,
        "two sharded chunks, 4+2 each"
    );
    assert_eq!(read_all(fs, ino).await.unwrap(), data);
    // With m backends gone, the sharded chunks rebuild and the tail is in the index.
    tv.faults[0].set(Fault::Down);
    tv.faults[3].set(Fault::Down);
    assert_eq!(read_all(&tv.reopen(true), ino).await.unwrap(), data);
    tv.faults[0].set(Fault::None);
    tv.faults[3].set(Fault::None);
    let ls = cloudraid::front::ops::list(fs, "/f").await.unwrap();
    assert_eq!(ls[0].redundancy, cloudraid::front::ops::Redundancy::Full);
    assert!(fs.fsck(false, Duration::ZERO).await.unwrap().clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_max_zero_stores_shards_as_before() {
    let tv = volume_inline(4, 2, 6, 64 << 10, 0);
    let data = bytes(11, 4096);
    let ino = write_file(&tv.fs, ROOT, "f", &data).await;
    assert_eq!(tv.shard_objects().await, 6);
    let rec = record(&tv.fs, &data_chunks(&tv.fs, ino)[0]).unwrap();
    assert!(!rec.is_inline());
    assert_eq!((rec.k, rec.m, rec.placement.len()), (4, 2, 6));
    assert_eq!(read_all(&tv.fs, ino).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_expects_no_shard_for_an_inline_chunk_and_deletes_one_found() {
    let tv = vol();
    let fs = &tv.fs;
    let ino = write_file(fs, ROOT, "f", &bytes(12, 1000)).await;
    let clean = fs.fsck(false, Duration::ZERO).await.unwrap();
    assert!(clean.clean(), "{clean:?}");
    assert_eq!((clean.chunks, clean.shards), (1, 0));
    // A shard object under the inline chunk's id (an upload of the same content
    // cut short) is an orphan.
    let id = data_chunks(fs, ino)[0];
    let key = cloudraid::format::shard_key(&id, 0);
    tv.faults[1]
        .put(&key, bytes::Bytes::from_static(b"left over"))
        .await
        .unwrap();
    let found = fs.fsck(false, Duration::ZERO).await.unwrap();
    assert!(!found.clean());
    assert!(
        found.problems.iter().any(|p| p
            .what
            .contains("which is kept inline in the index and has no shards")),
        "{found:?}"
    );
    let fixed = fs.fsck(true, Duration::ZERO).await.unwrap();
    assert!(fixed.clean(), "{fixed:?}");
    assert_eq!(tv.faults[1].head(&key).await.unwrap(), None);
    assert!(fs.fsck(false, Duration::ZERO).await.unwrap().clean());
}

/// A few hundred tiny files copied into a real mount, read back after a remount;
/// no shard object was written for any of them.
#[test]
fn tiny_files_through_a_mount_survive_a_remount_without_shards() {
    use cloudraid::config::Size;
    use cloudraid::front::fuse;
    use cloudraid::front::mountopts::MountOpts;
    use cloudraid::front::setup;
    if !common::can_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let mp = base.join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt
        .block_on(setup::init(setup::InitRequest {
            config_path: base.join("vol.toml"),
            name: Some("inline".into()),
            backends: (0..6)
                .map(|i| (format!("b{i}"), format!("file://{}/b{i}", base.display())))
                .collect(),
            data_shards: Some(4),
            parity_shards: Some(2),
            write_quorum: None,
            chunk_size: Size(1 << 20),
            cache_size: Size(32 << 20),
            state_dir: Some(base.join("state")),
            force: false,
            allow_shared_backends: false,
            env_file: None,
            new_key: setup::NewKey::KeyFile(base.join("vol.key")),
            kdf_cost: Default::default(),
            compression: "zstd".into(),
        }))
        .unwrap();
    let config = report.config;
    assert_eq!(config.volume.inline_max, Size(8 << 10), "the default");
    let mount = || {
        let _g = rt.enter();
        let (fs, _) = rt
            .block_on(setup::open_fs(&config, &setup::KeySource::default(), false))
            .unwrap();
        fuse::mount(fs, &mp, "inline-test", &MountOpts::default()).unwrap()
    };
    // The source: 300 files of 1 byte to 8 KiB in three folders.
    let src = base.join("src");
    let mut files = Vec::new();
    for i in 0..300u64 {
        let rel = format!("d{}/f{i}", i % 3);
        let data = bytes(1000 + i, 1 + (i as usize * 8191 / 299));
        std::fs::create_dir_all(src.join(format!("d{}", i % 3))).unwrap();
        std::fs::write(src.join(&rel), &data).unwrap();
        files.push((rel, data));
    }
    let m = mount();
    let o = std::process::Command::new("cp")
        .arg("-r")
        .arg(src.join("."))
        .arg(&mp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop(m);
    let shards: usize = (0..6)
        .map(|i| {
            let d = base.join(format!("b{i}/chunks"));
            if d.exists() {
                walkdir(&d)
            } else {
                0
            }
        })
        .sum();
    assert_eq!(shards, 0, "no shard object for any tiny file");
    let _m = mount();
    for (rel, data) in &files {
        assert_eq!(&std::fs::read(mp.join(rel)).unwrap(), data, "{rel}");
    }
}

fn walkdir(d: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(d).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += walkdir(&e.path());
        } else {
            n += 1;
        }
    }
    n
}
