//! Concurrency inside one mount: parallel writers and readers on different files
//! and on the same ones (create, write, read, rename over, unlink), for
//! STRESS_SECS seconds (8 by default). Every read returns one whole version of a
//! file, never a mix; nothing deadlocks; fsck is clean afterwards and a remount
//! shows the last versions.

mod common;

use common::{can_mount, run, stderr, stdout, Env};
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A self-describing version: seed and length, then the seed's bytes.
fn version(seed: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + len);
    v.extend_from_slice(&seed.to_le_bytes());
    v.extend_from_slice(&(len as u64).to_le_bytes());
    v.extend_from_slice(&common::bytes(seed, len));
    v
}

/// Checks that `data` is one whole version; returns its seed.
fn check(path: &Path, data: &[u8]) -> u64 {
    assert!(
        data.len() >= 16,
        "{path:?}: {} bytes, no header",
        data.len()
    );
    let seed = u64::from_le_bytes(data[..8].try_into().unwrap());
    let len = u64::from_le_bytes(data[8..16].try_into().unwrap()) as usize;
    assert_eq!(data.len(), 16 + len, "{path:?}: torn length");
    assert!(
        data[16..] == common::bytes(seed, len)[..],
        "{path:?}: torn or wrong bytes (seed {seed})"
    );
    seed
}

fn write_file(path: &Path, data: &[u8], fsync: bool) {
    let mut f = std::fs::File::create(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    for piece in data.chunks(100_000) {
        f.write_all(piece).unwrap();
    }
    if fsync {
        f.sync_all().unwrap();
    }
}

/// Reads a file through one descriptor; `None` if it is gone.
fn read_file(path: &Path) -> Option<Vec<u8>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("{path:?}: {e}"),
    };
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    Some(v)
}

fn size(rng: &mut impl Rng) -> usize {
    match rng.random_range(0..4) {
        0 => rng.random_range(0..4_000),
        1 | 2 => rng.random_range(4_000..200_000),
        _ => rng.random_range(200_000..900_000),
    }
}

#[test]
fn parallel_readers_and_writers_see_whole_versions_and_fsck_stays_clean() {
    if !can_mount() {
        return;
    }
    let secs: u64 = std::env::var("STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let e = Env::new();
    let cfg = e.p("v.toml");
    let (a, b, c, state) = (e.backend("a"), e.backend("b"), e.backend("c"), e.p("state"));
    let o = e.init(
        &cfg,
        &[
            "--backend",
            &a,
            "--backend",
            &b,
            "--backend",
            &c,
            "--state-dir",
            &state,
            "--chunk-size",
            "128KiB",
            "--cache-size",
            "2MiB",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mp = PathBuf::from(e.p("mnt"));
    std::fs::create_dir(&mp).unwrap();
    let o = run(&["mount", "--config", &cfg, mp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    const SHARED: usize = 4;
    for k in 0..SHARED {
        write_file(
            &mp.join(format!("shared-{k}")),
            &version(k as u64, 1000),
            false,
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    // Private writers: each in its own directory, a cycle of create, read back,
    // rename, overwrite in place, unlink. Returns the final versions it leaves.
    for t in 0..3u64 {
        let (mp, stop, ops) = (mp.clone(), stop.clone(), ops.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(t);
            let dir = mp.join(format!("w{t}"));
            std::fs::create_dir(&dir).unwrap();
            let mut kept = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let seed = t << 32 | n;
                let data = version(seed, size(&mut rng));
                let p = dir.join(format!("new-{n}"));
                write_file(&p, &data, n.is_multiple_of(5));
                assert_eq!(check(&p, &read_file(&p).unwrap()), seed);
                let q = dir.join(format!("kept-{}", n % 6));
                std::fs::rename(&p, &q).unwrap();
                if n.is_multiple_of(4) {
                    // Overwrite in place (O_TRUNC), then read back.
                    let seed2 = seed | 1 << 31;
                    write_file(&q, &version(seed2, size(&mut rng)), false);
                    assert_eq!(check(&q, &read_file(&q).unwrap()), seed2);
                }
                if n.is_multiple_of(7) {
                    let _ = std::fs::remove_file(dir.join(format!("kept-{}", (n + 3) % 6)));
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
            for k in 0..6 {
                let q = dir.join(format!("kept-{k}"));
                if let Some(d) = read_file(&q) {
                    kept.push((q, check(&dir, &d)));
                }
            }
            kept
        }));
    }
    // Shared writers: new versions renamed over the same names.
    for t in 0..2u64 {
        let (mp, stop, ops) = (mp.clone(), stop.clone(), ops.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(100 + t);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let seed = (100 + t) << 32 | n;
                let tmp = mp.join(format!("tmp-{t}-{n}"));
                write_file(&tmp, &version(seed, size(&mut rng)), false);
                let k = rng.random_range(0..SHARED);
                std::fs::rename(&tmp, mp.join(format!("shared-{k}"))).unwrap();
                ops.fetch_add(1, Ordering::Relaxed);
            }
            Vec::new()
        }));
    }
    // Readers: the shared files (renamed over while read) and the writers' files
    // (renamed and unlinked while read), listings included.
    for t in 0..3u64 {
        let (mp, stop, ops) = (mp.clone(), stop.clone(), ops.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(200 + t);
            while !stop.load(Ordering::Relaxed) {
                let k = rng.random_range(0..SHARED);
                let p = mp.join(format!("shared-{k}"));
                check(&p, &read_file(&p).expect("a shared file is always there"));
                let dir = mp.join(format!("w{}", rng.random_range(0..3)));
                if let Ok(rd) = std::fs::read_dir(&dir) {
                    for entry in rd.flatten().take(3) {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        // kept-N files are whole versions; new-N may be mid-write.
                        if name.starts_with("kept-") {
                            if let Some(d) = read_file(&entry.path()) {
                                // An in-place overwrite may be read mid-way: only
                                // whole versions are checked.
                                if d.len() >= 16
                                    && d.len()
                                        == 16
                                            + u64::from_le_bytes(d[8..16].try_into().unwrap())
                                                as usize
                                {
                                    check(&entry.path(), &d);
                                }
                            }
                        }
                    }
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
            Vec::new()
        }));
    }
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    // No deadlock: every thread finishes within a minute of being told to stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    while threads.iter().any(|t| !t.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "threads still running a minute after stop: deadlock?"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut kept = Vec::new();
    for t in threads {
        kept.extend(t.join().expect("a worker failed (see its panic above)"));
    }
    let done = ops.load(Ordering::Relaxed);
    eprintln!(
        "stress: {done} operations in {secs} s, {} private files kept",
        kept.len()
    );
    assert!(done > 50, "too little happened to test anything: {done}");
    let shared: Vec<u64> = (0..SHARED)
        .map(|k| {
            let p = mp.join(format!("shared-{k}"));
            check(&p, &read_file(&p).unwrap())
        })
        .collect();

    let o = run(&["umount", mp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["fsck", "--config", &cfg]);
    assert!(o.status.success(), "fsck: {}{}", stdout(&o), stderr(&o));
    // A remount shows the last versions.
    let o = run(&["mount", "--config", &cfg, mp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (k, seed) in shared.iter().enumerate() {
        let p = mp.join(format!("shared-{k}"));
        assert_eq!(check(&p, &read_file(&p).unwrap()), *seed);
    }
    for (p, seed) in &kept {
        assert_eq!(check(p, &read_file(p).unwrap()), *seed);
    }
    assert!(run(&["umount", mp.to_str().unwrap()]).status.success());
}
