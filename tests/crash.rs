//! Crash harness: the mount daemon is killed with SIGKILL at a random moment while
//! a tree is being copied in, many times over (CRASH_CYCLES, 20 by default;
//! CRASH_SEED to replay a run). After each kill the volume is mounted again and:
//! every file fsynced before the kill reads back exactly; no file reads back wrong
//! bytes (one not yet stored may be missing or empty, never corrupt); what a
//! remount once showed is still there later; fsck is clean.

mod common;

use common::{can_mount, run, stderr, stdout, Env};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn content(seed: u64, len: usize) -> Vec<u8> {
    common::bytes(seed, len)
}

fn daemon_pid(cfg: &str) -> i32 {
    let o = run(&["status", "--config", cfg, "--json"]);
    assert!(
        o.status.success(),
        "status right after mount: {}",
        stderr(&o)
    );
    let s: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    s["pid"].as_i64().expect("mounted: status names the daemon") as i32
}

/// What the writer did, for the checks: file → (seed, len, fsynced).
type Written = Arc<Mutex<HashMap<PathBuf, (u64, usize, bool)>>>;

/// Copies files into `dir` until an operation fails (the daemon is gone).
fn writer(dir: PathBuf, cycle: u64, seed: u64, written: Written) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0.. {
        let sub = dir.join(format!("c{cycle}-d{}", i / 8));
        if std::fs::create_dir_all(&sub).is_err() {
            return;
        }
        let path = sub.join(format!("f{i}"));
        let len = match rng.random_range(0..10) {
            0 => 0,
            1..=6 => rng.random_range(1..40_000),
            _ => rng.random_range(40_000..700_000),
        };
        let fsync = rng.random_range(0..3) == 0;
        let fseed = cycle * 1_000_000 + i;
        let data = content(fseed, len);
        let Ok(mut f) = std::fs::File::create(&path) else {
            return;
        };
        // Written in pieces, as cp does.
        for piece in data.chunks(128 << 10) {
            if f.write_all(piece).is_err() {
                return;
            }
        }
        if fsync {
            if f.sync_all().is_err() {
                return;
            }
            written
                .lock()
                .unwrap()
                .insert(path.clone(), (fseed, len, true));
        }
        drop(f);
        written
            .lock()
            .unwrap()
            .entry(path)
            .or_insert((fseed, len, false));
    }
}

#[test]
fn sigkill_during_a_copy_loses_nothing_fsynced_and_corrupts_nothing() {
    if !can_mount() {
        return;
    }
    let cycles: u64 = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("crash harness: {cycles} cycles, CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
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
            "256KiB",
            "--cache-size",
            "4MiB",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();
    // Files seen intact after a remount must stay so: path → (seed, len).
    let mut settled: HashMap<PathBuf, (u64, usize)> = HashMap::new();
    let mut fsynced_total = 0;
    for cycle in 0..cycles {
        let o = run(&["mount", "--config", &cfg, &mp]);
        assert!(o.status.success(), "cycle {cycle}: mount: {}", stderr(&o));
        let pid = daemon_pid(&cfg);
        let written: Written = Arc::default();
        let w = {
            let (dir, written) = (PathBuf::from(&mp), written.clone());
            let s = rng.random();
            std::thread::spawn(move || writer(dir, cycle, s, written))
        };
        std::thread::sleep(Duration::from_millis(rng.random_range(50..1500)));
        // SAFETY: kill(2) with a pid we read from the daemon itself.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        w.join().unwrap();
        // Clear the dead mount, wait for the process to be gone, mount again.
        let o = run(&["umount", &mp]);
        assert!(
            o.status.success(),
            "cycle {cycle}: umount of the dead mount: {}",
            stderr(&o)
        );
        common::wait_dead(pid);
        let o = run(&["mount", "--config", &cfg, &mp]);
        assert!(o.status.success(), "cycle {cycle}: remount: {}", stderr(&o));

        let written = written.lock().unwrap().clone();
        for (path, (fseed, len, fsynced)) in &written {
            match std::fs::read(path) {
                Ok(got) if got.len() == *len && got == content(*fseed, *len) => {
                    settled.insert(path.clone(), (*fseed, *len));
                }
                Ok(got) if got.is_empty() && !fsynced => {}
                Ok(got) => panic!(
                    "cycle {cycle}: {path:?} reads back {} wrong bytes (expected {len}){}",
                    got.len(),
                    if *fsynced { ", and it was fsynced" } else { "" }
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !fsynced => {}
                Err(e) => panic!("cycle {cycle}: {path:?}: {e} (fsynced: {fsynced})"),
            }
        }
        fsynced_total += written.values().filter(|w| w.2).count();
        for (path, (fseed, len)) in &settled {
            let got = std::fs::read(path)
                .unwrap_or_else(|e| panic!("cycle {cycle}: {path:?} was there before: {e}"));
            assert!(
                got == content(*fseed, *len),
                "cycle {cycle}: {path:?} changed after it settled"
            );
        }
        let o = run(&["fsck", "--config", &cfg]);
        assert!(
            o.status.success(),
            "cycle {cycle}: fsck: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let o = run(&["umount", &mp]);
        assert!(o.status.success(), "cycle {cycle}: umount: {}", stderr(&o));
    }
    eprintln!(
        "crash harness: {cycles} kills, {} files intact, {fsynced_total} fsynced before a kill",
        settled.len()
    );
    assert!(
        fsynced_total > 0,
        "no fsync happened before any kill: the harness tested nothing"
    );
    // A last check unmounted, where fsck also sees what the daemon would collect.
    let o = run(&["fsck", "--config", &cfg]);
    assert!(
        o.status.success(),
        "final fsck: {}{}",
        stdout(&o),
        stderr(&o)
    );
}
