//! Shared helpers for the test binaries.
#![allow(dead_code)]

use cloudraid::erasure::Layout;
use cloudraid::format::VolumeId;
use cloudraid::fs::{Caller, Fs, FsOptions};
use cloudraid::index::Index;
use cloudraid::meta::{MemMeta, MetaStore};
use cloudraid::store::{open_backend, Backend, FaultyBackend};
use cloudraid::volume::{Slot, Volume};
use std::sync::Arc;

/// A filesystem core over `n` in-memory backends, each behind a fault switch.
pub struct TestVolume {
    pub fs: Arc<Fs>,
    pub faults: Vec<Arc<FaultyBackend>>,
    pub meta: Arc<MemMeta>,
    pub id: VolumeId,
    pub layout: Layout,
    pub chunk_size: u32,
    pub staging: tempfile::TempDir,
}

pub fn volume(k: usize, m: usize, n: usize, chunk_size: u32) -> TestVolume {
    let faults: Vec<Arc<FaultyBackend>> = (0..n)
        .map(|_| {
            let inner: Arc<dyn Backend> = Arc::new(
                open_backend("memory://", &Default::default(), &Default::default()).unwrap(),
            );
            Arc::new(FaultyBackend::new(inner))
        })
        .collect();
    let meta = Arc::new(MemMeta::new());
    let id = VolumeId::random();
    let layout = Layout::new(k, m).unwrap();
    let staging = tempfile::tempdir().unwrap();
    let idx = Index::new(meta.clone() as Arc<dyn MetaStore>);
    Fs::format(&idx, id, Caller::default()).unwrap();
    let fs = build(
        &faults,
        &meta,
        id,
        layout,
        chunk_size,
        staging.path(),
        false,
        layout.total(),
    );
    TestVolume {
        fs,
        faults,
        meta,
        id,
        layout,
        chunk_size,
        staging,
    }
}

fn build(
    faults: &[Arc<FaultyBackend>],
    meta: &Arc<MemMeta>,
    id: VolumeId,
    layout: Layout,
    chunk_size: u32,
    staging: &std::path::Path,
    read_only: bool,
    quorum: usize,
) -> Arc<Fs> {
    let slots = faults
        .iter()
        .enumerate()
        .map(|(i, f)| Slot {
            name: format!("b{i}"),
            backend: f.clone() as Arc<dyn Backend>,
        })
        .collect();
    let vol = Volume::new(id, "test".into(), slots, layout, 64 << 20).with_write_quorum(quorum);
    let idx = Index::new(meta.clone() as Arc<dyn MetaStore>);
    let opts = FsOptions {
        read_only,
        staging_dir: staging.to_path_buf(),
        chunk_size,
        upload_concurrency: 3,
        readahead_chunks: 2,
        show_uid: None,
        show_gid: None,
    };
    Fs::load(Arc::new(vol), idx, opts).unwrap()
}

impl TestVolume {
    /// A fresh core whose writes succeed once `quorum` shards are stored.
    pub fn reopen_with_quorum(&self, quorum: usize) -> Arc<Fs> {
        build(
            &self.faults,
            &self.meta,
            self.id,
            self.layout,
            self.chunk_size,
            self.staging.path(),
            false,
            quorum,
        )
    }

    /// A fresh core over the same index and backends (what a remount sees).
    pub fn reopen(&self, read_only: bool) -> Arc<Fs> {
        build(
            &self.faults,
            &self.meta,
            self.id,
            self.layout,
            self.chunk_size,
            self.staging.path(),
            read_only,
            self.layout.total(),
        )
    }

    /// Number of shard objects stored across all backends.
    pub async fn shard_objects(&self) -> usize {
        let mut n = 0;
        for f in &self.faults {
            n += f.list("chunks").await.unwrap().len();
        }
        n
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

pub const ROOT: u64 = 1;

/// The cloudraid binary, as a user runs it.
pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cloudraid"));
    c.env_remove("CLOUDRAID_READY_PIPE");
    c
}

pub fn run(args: &[&str]) -> std::process::Output {
    bin().args(args).output().unwrap()
}

/// Unmounts every cloudraid mount below `dir` (a test's temp dir), so a test that
/// fails half-way leaves no daemon behind.
pub fn unmount_below(dir: &std::path::Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() > 2 && f[2] == "fuse.cloudraid" && std::path::Path::new(f[1]).starts_with(dir) {
            let _ = run(&["umount", f[1]]);
        }
    }
}
