//! Write-behind: a file written sequentially is cut, sealed and stored while it
//! is written, not staged on the local disk; anything else falls back to
//! staging without losing a byte, and a failure still keeps the previous version.

mod common;

use cloudraid::fs::{Caller, Errno, Fs, SetAttr};
use cloudraid::store::Fault;
use common::{bytes, read_all, volume, ROOT};
use std::sync::Arc;

const C: Caller = Caller {
    uid: 1000,
    gid: 1000,
};

/// Chunks around 64 KiB (at most 256 KiB).
const CHUNK: u32 = 64 * 1024;

async fn write_seq(fs: &Fs, fh: u64, from: u64, data: &[u8], step: usize) -> Result<(), Errno> {
    let mut off = from;
    for piece in data.chunks(step) {
        fs.write(fh, off, piece).await?;
        off += piece.len() as u64;
    }
    Ok(())
}

/// Bytes in the staging folder now.
fn staged_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

async fn new_file(fs: &Fs, name: &str) -> (u64, u64) {
    let (a, fh) = fs
        .create(ROOT, name.as_bytes(), 0o644, libc::O_RDWR, C)
        .await
        .unwrap();
    (a.ino, fh)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_write_is_stored_while_written_and_cut_like_a_staged_one() {
    let v = volume(2, 1, 3, CHUNK);
    let data = bytes(1, 4 << 20);
    let (ino, fh) = new_file(&v.fs, "seq").await;
    write_seq(&v.fs, fh, 0, &data, 65536).await.unwrap();
    // Nothing of it went to the local disk, and its chunks are on the backends
    // before the close.
    assert_eq!(staged_bytes(v.staging.path()), 0);
    assert!(v.shard_objects().await > 0, "no chunk stored while writing");
    v.fs.release(fh).await.unwrap();
    assert_eq!(read_all(&v.fs, ino).await.unwrap(), data);

    // The same bytes written out of order are staged and cut at close: the
    // same chunks, so the second file stores nothing new.
    let shards = v.shard_objects().await;
    let (ino2, fh) = new_file(&v.fs, "staged").await;
    let half = data.len() / 2;
    v.fs.write(fh, half as u64, &data[half..]).await.unwrap();
    v.fs.write(fh, 0, &data[..half]).await.unwrap();
    assert!(staged_bytes(v.staging.path()) >= data.len() as u64);
    v.fs.release(fh).await.unwrap();
    assert_eq!(read_all(&v.fs, ino2).await.unwrap(), data);
    assert_eq!(v.fs.file_chunks(ino), v.fs.file_chunks(ino2));
    assert_eq!(v.shard_objects().await, shards);
    assert!(v.fs.file_chunks(ino).unwrap().len() > 8);

    // What a remount sees.
    let fs = v.reopen(false);
    assert_eq!(read_all(&fs, ino).await.unwrap(), data);
    assert_eq!(staged_bytes(v.staging.path()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_writes_elsewhere_fsync_and_truncate_during_a_stream() {
    let v = volume(2, 1, 3, CHUNK);
    let mut model = bytes(2, 2 << 20);
    let (ino, fh) = new_file(&v.fs, "mixed").await;
    write_seq(&v.fs, fh, 0, &model, 100_000).await.unwrap();

    // A read of what was just written (part stored, part still in the cutter).
    let got =
        v.fs.read(fh, model.len() as u64 - 300_000, 200_000)
            .await
            .unwrap();
    assert_eq!(got, model[model.len() - 300_000..model.len() - 100_000]);

    // The header rewritten, then more appended.
    v.fs.write(fh, 100, b"HEADER").await.unwrap();
    model[100..106].copy_from_slice(b"HEADER");
    let more = bytes(3, 1 << 20);
    write_seq(&v.fs, fh, model.len() as u64, &more, 65536)
        .await
        .unwrap();
    model.extend_from_slice(&more);

    // fsync in the middle, then appending goes on.
    v.fs.fsync(fh).await.unwrap();
    assert_eq!(read_all(&v.fs, ino).await.unwrap(), model);
    let tail = bytes(4, 700_000);
    write_seq(&v.fs, fh, model.len() as u64, &tail, 131072)
        .await
        .unwrap();
    model.extend_from_slice(&tail);
    v.fs.release(fh).await.unwrap();
    assert_eq!(read_all(&v.fs, ino).await.unwrap(), model);

    // Truncated while streaming, then written on from the new end.
    let fh = v.fs.open(ino, libc::O_RDWR | libc::O_TRUNC).await.unwrap();
    let first = bytes(5, 1 << 20);
    write_seq(&v.fs, fh, 0, &first, 65536).await.unwrap();
    v.fs.setattr(
        ino,
        SetAttr {
            size: Some(300_000),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let rest = bytes(6, 500_000);
    write_seq(&v.fs, fh, 300_000, &rest, 65536).await.unwrap();
    v.fs.release(fh).await.unwrap();
    let mut want = first[..300_000].to_vec();
    want.extend_from_slice(&rest);
    assert_eq!(read_all(&v.fs, ino).await.unwrap(), want);
    assert_eq!(v.fs.getattr(ino).await.unwrap().size, want.len() as u64);

    let fs = v.reopen(false);
    assert_eq!(read_all(&fs, ino).await.unwrap(), want);
    let r = fs
        .fsck(false, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(r.clean(), "{:?}", r.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_files_than_stream_slots_at_once() {
    let v = volume(2, 1, 3, CHUNK);
    // upload_concurrency is 3 in the tests: three files stream, the rest stage.
    let files: Vec<(u64, u64, Vec<u8>)> = {
        let mut out = Vec::new();
        for i in 0..10u64 {
            let (ino, fh) = new_file(&v.fs, &format!("f{i}")).await;
            out.push((ino, fh, bytes(100 + i, 600_000 + i as usize * 1000)));
        }
        out
    };
    let fs: Arc<Fs> = v.fs.clone();
    let mut off = 0usize;
    while files.iter().any(|(_, _, d)| off < d.len()) {
        for (_, fh, d) in &files {
            if off < d.len() {
                let end = (off + 50_000).min(d.len());
                fs.write(*fh, off as u64, &d[off..end]).await.unwrap();
            }
        }
        off += 50_000;
    }
    for (_, fh, _) in &files {
        fs.release(*fh).await.unwrap();
    }
    for (ino, _, d) in &files {
        assert_eq!(&read_all(&fs, *ino).await.unwrap(), d);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_that_cannot_be_stored_keeps_the_previous_version() {
    let v = volume(2, 1, 3, CHUNK);
    let old = bytes(7, 300_000);
    let (ino, fh) = new_file(&v.fs, "f").await;
    write_seq(&v.fs, fh, 0, &old, 65536).await.unwrap();
    v.fs.release(fh).await.unwrap();

    // Every shard must be stored (quorum 3 of 3); one backend refuses writes
    // half-way through the new version.
    let fh =
        v.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .unwrap();
    let new = bytes(8, 3 << 20);
    write_seq(&v.fs, fh, 0, &new[..1 << 20], 65536)
        .await
        .unwrap();
    v.faults[1].set(Fault::RejectWrites);
    // The writes go on (the chunks that cannot be stored are staged)...
    write_seq(&v.fs, fh, 1 << 20, &new[1 << 20..], 65536)
        .await
        .unwrap();
    // ...the commit cannot store them: fsync fails and the index keeps the old version...
    assert_eq!(v.fs.fsync(fh).await, Err(Errno::EIO));
    assert_eq!(read_all(&v.reopen(true), ino).await.unwrap(), old);
    // ...and once the backend is back, the next flush stores every byte.
    v.faults[1].set(Fault::None);
    v.fs.volume().probe_down_backends().await;
    v.fs.flush(fh).await.unwrap();
    v.fs.release(fh).await.unwrap();
    assert_eq!(read_all(&v.reopen(true), ino).await.unwrap(), new);

    // With no other open of the file, a failed close drops the new version at once.
    let fh =
        v.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .unwrap();
    let newer = bytes(11, 2 << 20);
    write_seq(&v.fs, fh, 0, &newer[..1 << 20], 65536)
        .await
        .unwrap();
    v.faults[1].set(Fault::RejectWrites);
    write_seq(&v.fs, fh, 1 << 20, &newer[1 << 20..], 65536)
        .await
        .unwrap();
    assert_eq!(v.fs.flush(fh).await, Err(Errno::EIO));
    let _ = v.fs.release(fh).await;
    v.faults[1].set(Fault::None);
    // The circuit breaker may have marked it down: the daemon's probe finds it back.
    v.fs.volume().probe_down_backends().await;
    assert_eq!(read_all(&v.fs, ino).await.unwrap(), new);
    assert_eq!(v.fs.getattr(ino).await.unwrap().size, new.len() as u64);

    // Once the backend is back, the same file is written normally.
    let fh =
        v.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .unwrap();
    write_seq(&v.fs, fh, 0, &new, 65536).await.unwrap();
    v.fs.release(fh).await.unwrap();
    assert_eq!(read_all(&v.fs, ino).await.unwrap(), new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_fails_when_stored_shards_cannot_be_made_durable() {
    let v = volume(2, 1, 3, CHUNK);
    let old = bytes(9, 200_000);
    let (ino, fh) = new_file(&v.fs, "f").await;
    write_seq(&v.fs, fh, 0, &old, 65536).await.unwrap();
    v.fs.release(fh).await.unwrap();

    v.faults[2].set(Fault::RejectSync);
    let fh =
        v.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .unwrap();
    let new = bytes(10, 1 << 20);
    write_seq(&v.fs, fh, 0, &new, 65536).await.unwrap();
    assert_eq!(v.fs.flush(fh).await, Err(Errno::EIO));
    let _ = v.fs.release(fh).await;
    assert_eq!(read_all(&v.fs, ino).await.unwrap(), old);

    v.faults[2].set(Fault::None);
    let fh =
        v.fs.open(ino, libc::O_WRONLY | libc::O_TRUNC)
            .await
            .unwrap();
    write_seq(&v.fs, fh, 0, &new, 65536).await.unwrap();
    v.fs.release(fh).await.unwrap();
    assert_eq!(read_all(&v.fs, ino).await.unwrap(), new);
}
