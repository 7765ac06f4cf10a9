//! One suite for every MetaStore implementation: in-memory and sled.

use cloudraid::meta::{Batch, MemMeta, MetaStore, SledMeta};

fn suite(s: &dyn MetaStore) {
    assert_eq!(s.get(b"a").unwrap(), None);
    let mut b = Batch::default();
    b.put(b"p/1".to_vec(), b"one".to_vec());
    b.put(b"p/2".to_vec(), b"two".to_vec());
    b.put(b"p/3".to_vec(), b"three".to_vec());
    b.put(b"q/1".to_vec(), b"other".to_vec());
    b.put(b"o".to_vec(), b"before".to_vec());
    s.apply(b).unwrap();
    assert_eq!(s.get(b"p/2").unwrap().as_deref(), Some(&b"two"[..]));

    // Prefix scans stay inside the prefix, in key order, honour `after` and `limit`.
    let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| {
        v.into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(s.scan(b"p/", None, 10).unwrap()),
        ["p/1", "p/2", "p/3"]
    );
    assert_eq!(
        keys(s.scan(b"p/", Some(b"p/1"), 10).unwrap()),
        ["p/2", "p/3"]
    );
    assert_eq!(keys(s.scan(b"p/", None, 2).unwrap()), ["p/1", "p/2"]);
    assert_eq!(
        keys(s.scan(b"p/", Some(b"p/3"), 10).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(keys(s.scan(b"z", None, 10).unwrap()), Vec::<String>::new());

    // A batch applies in order: a later op on the same key wins; deletes of missing keys are fine.
    let mut b = Batch::default();
    b.put(b"p/1".to_vec(), b"x".to_vec());
    b.delete(b"p/1".to_vec());
    b.delete(b"never".to_vec());
    b.put(b"p/2".to_vec(), b"first".to_vec());
    b.put(b"p/2".to_vec(), b"second".to_vec());
    s.apply(b).unwrap();
    assert_eq!(s.get(b"p/1").unwrap(), None);
    assert_eq!(s.get(b"p/2").unwrap().as_deref(), Some(&b"second"[..]));
    s.flush().unwrap();

    // Binary keys with 0xff bytes sort after everything else under their prefix.
    let mut b = Batch::default();
    b.put(vec![b'p', b'/', 0xff], b"hi".to_vec());
    s.apply(b).unwrap();
    assert_eq!(
        s.scan(b"p/", None, 10).unwrap().last().unwrap().0,
        vec![b'p', b'/', 0xff]
    );
}

#[test]
fn memory_store() {
    suite(&MemMeta::new());
}

#[test]
fn sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledMeta::open(&dir.path().join("db")).unwrap();
    suite(&s);
}

#[test]
fn sled_keeps_flushed_batches_across_reopen_and_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let s = SledMeta::open(&path).unwrap();
        let mut b = Batch::default();
        b.put(b"k".to_vec(), b"v".to_vec());
        s.apply(b).unwrap();
        s.flush().unwrap();
        let second = SledMeta::open(&path);
        assert!(
            second.is_err(),
            "a second open of the same index must be refused"
        );
    }
    let s = SledMeta::open(&path).unwrap();
    assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// Root (to mount a tmpfs) or skip; under CI, a failure.
fn can_mount_tmpfs() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("this test mounts a tmpfs: it needs root, and CI must provide it");
    }
    eprintln!("skipping: this test mounts a tmpfs and needs root");
    false
}

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs failed");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes a file of (pseudo-random) bytes at `path` until the disk is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block: Vec<u8> = (0..65536u32).map(|i| (i * 7 + 3) as u8).collect();
    loop {
        if let Err(e) = f.write_all(&block) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            break;
        }
    }
    // What fits of a smaller block too, so the disk is really full.
    while f.write_all(&block[..512]).is_ok() {}
}

/// The index on a disk that fills up: a change either fails with "local disk
/// full" (and is not made) or succeeds and survives closing and reopening the
/// index, whether space is freed before closing or only after; once space is
/// freed, changes work again without reopening.
#[test]
fn sled_on_a_full_disk_keeps_every_acknowledged_change() {
    use cloudraid::meta::MetaError;
    if !can_mount_tmpfs() {
        return;
    }
    let iterations: u64 = std::env::var("DISKFULL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let (mut refused_total, mut ok_total) = (0, 0);
    for it in 0..iterations {
        let dir = tempfile::tempdir().unwrap();
        let _fs = Tmpfs::mount(dir.path(), "16m");
        let path = dir.path().join("index");
        let filler = dir.path().join("filler");
        let mut acked: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut refused: Vec<Vec<u8>> = Vec::new();
        let value = |i: u64| vec![(i % 251) as u8; 1200];
        {
            let s = SledMeta::open(&path).unwrap();
            // Fill the disk after a different number of changes each time.
            let fill_at = 50 + it * 37 % 400;
            for i in 0..fill_at + 600 {
                if i == fill_at {
                    fill(&filler);
                }
                let key = format!("k/{it}/{i:06}").into_bytes();
                let mut b = Batch::default();
                b.put(key.clone(), value(i));
                match s.apply(b) {
                    Ok(()) => acked.push((key, value(i))),
                    Err(MetaError::Full(msg)) => {
                        assert!(msg.contains("local disk full"), "{msg}");
                        refused.push(key);
                    }
                    Err(e) => panic!("iteration {it}: change {i}: {e}"),
                }
                if i % 50 == 0 {
                    let _ = s.flush();
                }
            }
            assert!(!refused.is_empty(), "iteration {it}: the disk never filled");
            let disk = s.local_disk().unwrap();
            assert!(
                disk.problem.is_some(),
                "iteration {it}: a full disk is reported"
            );
            // Every acknowledged change reads back now.
            for (k, v) in &acked {
                assert_eq!(s.get(k).unwrap().as_ref(), Some(v), "iteration {it}");
            }
            if it % 2 == 0 {
                // Space comes back: changes work again, without reopening.
                std::fs::remove_file(&filler).unwrap();
                let key = format!("k/{it}/after").into_bytes();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                loop {
                    let mut b = Batch::default();
                    b.put(key.clone(), b"after".to_vec());
                    match s.apply(b) {
                        Ok(()) => break,
                        Err(e) if std::time::Instant::now() < deadline => {
                            let _ = e;
                            std::thread::sleep(std::time::Duration::from_millis(50))
                        }
                        Err(e) => panic!("iteration {it}: still refused after freeing space: {e}"),
                    }
                }
                acked.push((key, b"after".to_vec()));
                s.flush().unwrap();
                assert_eq!(s.local_disk().unwrap().problem, None);
            }
            // Odd iterations close the index while the disk is still full.
        }
        let _ = std::fs::remove_file(&filler);
        let s = SledMeta::open(&path).unwrap();
        for (k, v) in &acked {
            assert_eq!(
                s.get(k).unwrap().as_ref(),
                Some(v),
                "iteration {it}: an acknowledged change was lost"
            );
        }
        for k in &refused {
            assert_eq!(
                s.get(k).unwrap(),
                None,
                "iteration {it}: a refused change was made"
            );
        }
        ok_total += acked.len();
        refused_total += refused.len();
        drop(s);
    }
    eprintln!(
        "{iterations} iterations: {ok_total} changes acknowledged and kept, {refused_total} refused"
    );
}
