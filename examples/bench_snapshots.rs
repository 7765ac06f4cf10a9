//! The library side of `scripts/bench-snapshots.sh`: snapshot operations on a
//! real volume (sled index in its state dir, `file://` backends), each timed
//! in-process, one per run so that the script can mount the volume in between.
//!
//! ```text
//! bench_snapshots CONFIG WORK snapshot TAG       take a snapshot; time it and the metadata push
//! bench_snapshots CONFIG WORK change N DIR       give N files of /DIR new content
//! bench_snapshots CONFIG WORK unlink DIR         unlink every file of /DIR, then rmdir it
//! bench_snapshots CONFIG WORK forget-prune N     forget --keep-last N --prune, timed
//! bench_snapshots CONFIG WORK delete-all          delete every snapshot, timed
//! ```
//!
//! WORK is the folder holding the backend folders: the metadata objects a step
//! uploads are counted and summed there (every `WORK/*/meta/` file that is new
//! after the step), over all backends.

use cloudraid::backup::forget::{forget, ForgetRequest};
use cloudraid::backup::retention::KeepPolicy;
use cloudraid::config::Config;
use cloudraid::front::setup;
use cloudraid::fs::snapshot::NewSnapshot;
use cloudraid::fs::Fs;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

const ROOT: u64 = 1;

/// Every file below `WORK/*/meta/` with its size.
fn meta_objects(work: &Path) -> HashMap<PathBuf, u64> {
    let mut out = HashMap::new();
    let mut todo: Vec<PathBuf> = std::fs::read_dir(work)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("meta"))
        .filter(|p| p.is_dir())
        .collect();
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            } else {
                out.insert(e.path(), m.len());
            }
        }
    }
    out
}

/// Objects in `after` not in `before`: (count, bytes).
fn new_objects(before: &HashMap<PathBuf, u64>, after: &HashMap<PathBuf, u64>) -> (usize, u64) {
    let new: Vec<u64> = after
        .iter()
        .filter(|(p, _)| !before.contains_key(*p))
        .map(|(_, n)| *n)
        .collect();
    (new.len(), new.iter().sum())
}

async fn dir_ino(fs: &Fs, dir: &str) -> u64 {
    let mut ino = ROOT;
    for c in dir.split('/').filter(|c| !c.is_empty()) {
        ino = fs.lookup(ino, c.as_bytes()).await.expect("path exists").ino;
    }
    ino
}

async fn names(fs: &Fs, dir: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let page = fs.readdir(dir, off, 4096).await.unwrap();
        let Some(last) = page.last() else { break };
        off = last.offset;
        out.extend(
            page.into_iter()
                .filter(|e| e.name != b"." && e.name != b"..")
                .map(|e| e.name),
        );
    }
    out
}

fn secs(t: Instant) -> String {
    format!("{:.3}", t.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: bench_snapshots CONFIG WORK (snapshot TAG | change N DIR | unlink DIR | forget-prune N | delete-all)");
        std::process::exit(2);
    }
    let work = PathBuf::from(&args[2]);
    let config = Config::load(Path::new(&args[1])).unwrap();
    let t = Instant::now();
    let (fs, _) = setup::open_fs(&config, &setup::KeySource::default(), false)
        .await
        .unwrap();
    println!("open: {} s", secs(t));
    // Anything the open itself journalled goes out before the step is measured.
    fs.push_metadata().await.unwrap();
    let before = meta_objects(&work);
    match args[3].as_str() {
        "snapshot" => {
            let t = Instant::now();
            let s = fs
                .create_snapshot(NewSnapshot {
                    tags: vec![args[4].clone()],
                    paths: Vec::new(),
                    origin: "bench".into(),
                })
                .await
                .unwrap();
            let create = secs(t);
            let t2 = Instant::now();
            fs.index().flush().unwrap();
            let flush = secs(t2);
            let t3 = Instant::now();
            fs.push_metadata().await.unwrap();
            let push = secs(t3);
            let (n, bytes) = new_objects(&before, &meta_objects(&work));
            let hwm = std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
                .unwrap_or_default();
            println!(
                "snapshot {}: peak RSS {hwm} kB; {} files, {} dirs, {} bytes; create {create} s, index flush {flush} s, metadata push {push} s; \
                 new trees {} ({} bytes), added {} bytes; metadata objects uploaded: {n} ({bytes} bytes, all backends)",
                s.id, s.files, s.dirs, s.bytes, s.new_trees, s.new_tree_bytes, s.added_bytes
            );
        }
        "change" => {
            let n: usize = args[4].parse().unwrap();
            let dir = dir_ino(&fs, &args[5]).await;
            let t = Instant::now();
            for (i, name) in names(&fs, dir).await.into_iter().take(n).enumerate() {
                let ino = fs.lookup(dir, &name).await.unwrap().ino;
                let fh = fs.open(ino, libc::O_RDWR | libc::O_TRUNC).await.unwrap();
                let data = format!("changed {i} at {:?}", std::time::SystemTime::now());
                fs.write(fh, 0, data.as_bytes()).await.unwrap();
                fs.release(fh).await.unwrap();
            }
            fs.index().flush().unwrap();
            fs.push_metadata().await.unwrap();
            println!("changed {n} files in {}: {} s", args[5], secs(t));
        }
        "unlink" => {
            let dir = dir_ino(&fs, &args[4]).await;
            let t = Instant::now();
            let all = names(&fs, dir).await;
            for name in &all {
                fs.unlink(dir, name).await.unwrap();
            }
            let (parent, last) = args[4].rsplit_once('/').unwrap_or(("", &args[4]));
            fs.rmdir(dir_ino(&fs, parent).await, last.as_bytes())
                .await
                .unwrap();
            fs.index().flush().unwrap();
            fs.push_metadata().await.unwrap();
            println!("unlinked {} files of {}: {} s", all.len(), args[4], secs(t));
        }
        "forget-prune" => {
            let last: u32 = args[4].parse().unwrap();
            let stored = || -> u64 {
                std::fs::read_dir(&work)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path().join("chunks"))
                    .filter(|c| c.is_dir())
                    .map(|c| walk_count(&c))
                    .sum()
            };
            let shards_before = stored();
            let t = Instant::now();
            let r = forget(
                &fs,
                &ForgetRequest {
                    policy: KeepPolicy {
                        last,
                        ..KeepPolicy::default()
                    },
                    only_tags: Vec::new(),
                    dry_run: false,
                    prune: true,
                },
            )
            .await
            .unwrap();
            let took = secs(t);
            fs.index().flush().unwrap();
            fs.push_metadata().await.unwrap();
            println!(
                "forget --keep-last {last} --prune: {took} s; removed {} snapshot(s), freed {} bytes ({} stored), {} chunks pruned; shard objects {} -> {}",
                r.removed,
                r.freed.bytes,
                r.freed.stored_bytes,
                r.pruned_chunks,
                shards_before,
                stored()
            );
        }
        "delete-all" => {
            let ids: Vec<u32> = fs
                .list_snapshots()
                .unwrap()
                .iter()
                .map(|s| u32::from_str_radix(&s.id, 16).unwrap())
                .collect();
            let t = Instant::now();
            fs.delete_snapshots(&ids).await.unwrap();
            fs.index().flush().unwrap();
            fs.push_metadata().await.unwrap();
            println!("deleted {} snapshots: {} s", ids.len(), secs(t));
        }
        other => panic!("unknown step {other}"),
    }
}

fn walk_count(d: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(d).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            n += walk_count(&e.path());
        } else {
            n += 1;
        }
    }
    n
}
