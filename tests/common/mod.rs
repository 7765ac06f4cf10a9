//! Shared helpers for the test binaries.
#![allow(dead_code)]

pub mod receiver;

/// A TCP port free on 127.0.0.1 now (for a server a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

use cloudraid::data::erasure::Layout;
use cloudraid::data::volume::{Slot, Volume};
use cloudraid::format::VolumeId;
use cloudraid::fs::{Caller, Fs, FsOptions};
use cloudraid::meta::index::Index;
use cloudraid::meta::{MemMeta, MetaStore};
use cloudraid::store::{open_backend, Backend, FaultyBackend};
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
    /// Chunks up to this many bytes are kept inline in the index (0: none).
    pub inline_max: usize,
}

pub fn volume(k: usize, m: usize, n: usize, chunk_size: u32) -> TestVolume {
    volume_inline(k, m, n, chunk_size, 0)
}

/// As [`volume`], with chunks of at most `inline_max` bytes kept in the index.
pub fn volume_inline(
    k: usize,
    m: usize,
    n: usize,
    chunk_size: u32,
    inline_max: usize,
) -> TestVolume {
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
        inline_max,
    );
    TestVolume {
        fs,
        faults,
        meta,
        id,
        layout,
        chunk_size,
        staging,
        inline_max,
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    faults: &[Arc<FaultyBackend>],
    meta: &Arc<MemMeta>,
    id: VolumeId,
    layout: Layout,
    chunk_size: u32,
    staging: &std::path::Path,
    read_only: bool,
    quorum: usize,
    inline_max: usize,
) -> Arc<Fs> {
    build_with(
        faults,
        Index::new(meta.clone() as Arc<dyn MetaStore>),
        id,
        layout,
        chunk_size,
        staging,
        read_only,
        quorum,
        inline_max,
    )
}

#[allow(clippy::too_many_arguments)]
fn build_with(
    faults: &[Arc<FaultyBackend>],
    idx: Index,
    id: VolumeId,
    layout: Layout,
    chunk_size: u32,
    staging: &std::path::Path,
    read_only: bool,
    quorum: usize,
    inline_max: usize,
) -> Arc<Fs> {
    let slots = faults
        .iter()
        .enumerate()
        .map(|(i, f)| Slot {
            name: format!("b{i}"),
            backend: f.clone() as Arc<dyn Backend>,
        })
        .collect();
    // Encrypted and compressed, as volumes are by default; the same master key
    // each time the volume is opened.
    let master = cloudraid::data::keys::Secret32::from_bytes(
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(id.0)).into(),
    );
    let sealer = cloudraid::data::seal::ChunkSealer::encrypted(
        id,
        Some(cloudraid::data::keys::Keys::derive(&master, id)),
        cloudraid::data::seal::Compression::Zstd(3),
    );
    let vol = Volume::new(id, "test".into(), slots, layout, 64 << 20, sealer)
        .with_write_quorum(quorum)
        .with_inline_max(inline_max);
    let opts = FsOptions {
        read_only,
        staging_dir: staging.to_path_buf(),
        chunking: cloudraid::data::chunker::Chunking::around(chunk_size),
        upload_concurrency: 3,
        readahead_chunks: 2,
        show_uid: None,
        show_gid: None,
        writer: "test".into(),
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
            self.inline_max,
        )
    }

    /// A core over the same index and backends whose changes are journalled for
    /// the metadata log (as a real volume's are).
    pub fn reopen_journaled(&self) -> Arc<Fs> {
        build_with(
            &self.faults,
            Index::journaled(self.meta.clone() as Arc<dyn MetaStore>).unwrap(),
            self.id,
            self.layout,
            self.chunk_size,
            self.staging.path(),
            false,
            self.layout.total(),
            self.inline_max,
        )
    }

    /// A fresh core over the same index and backends (what a remount sees).
    /// The filesystem again, over another store (e.g. one that fails on purpose
    /// wrapped around `self.meta`).
    pub fn reopen_over(&self, store: Arc<dyn MetaStore>) -> Arc<Fs> {
        build_with(
            &self.faults,
            Index::new(store),
            self.id,
            self.layout,
            self.chunk_size,
            self.staging.path(),
            false,
            self.layout.total(),
            self.inline_max,
        )
    }

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
            self.inline_max,
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
/// `[[policy]]` rules compiled for a volume of layout k+m over backends
/// `b0..` whose URLs `url(i)` gives (their provider decides the classes the
/// rules may name), as `Config` reads them.
#[allow(dead_code)]
pub fn policy_set(
    k: usize,
    m: usize,
    backends: usize,
    url: impl Fn(usize) -> String,
    rules: &str,
) -> cloudraid::policy::rules::PolicySet {
    let mut text = format!(
        "[volume]\nname = \"v\"\nid = \"6f0b3c2e-3f4a-4d55-9a4e-0f7d4c1b2a10\"\ndata_shards = {k}\nparity_shards = {m}\nchunk_size = \"64KiB\"\ncache_size = \"64MiB\"\nstate_dir = \"/var/lib/v\"\n"
    );
    for i in 0..backends {
        text += &format!("[[backend]]\nname = \"b{i}\"\nurl = \"{}\"\n", url(i));
    }
    text += rules;
    let cfg: cloudraid::config::Config = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    cloudraid::policy::rules::PolicySet::compile(&cfg).unwrap()
}

pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

pub const ROOT: u64 = 1;

/// The cloudraid binary, as a user runs it.
/// The passphrase every test volume is created with (CLOUDRAID_PASSPHRASE).
pub const PASSPHRASE: &str = "correct horse battery staple";

/// The binary, with the test volumes' passphrase in its environment.
pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cloudraid"));
    c.env_remove("CLOUDRAID_READY_PIPE")
        .env("CLOUDRAID_PASSPHRASE", PASSPHRASE);
    c
}

/// Argon2id at a test's cost (the default, 64 MiB × 3 passes, is for real
/// passphrases; every test command derives the key again).
pub const CHEAP_KDF: [&str; 4] = ["--kdf-memory", "1MiB", "--kdf-passes", "1"];

pub fn run(args: &[&str]) -> std::process::Output {
    bin().args(args).output().unwrap()
}

/// Runs a command that must succeed; its stdout.
pub fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
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

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failure is exit 1 and exactly one line on stderr that says what is wrong.
pub fn assert_one_line_error(o: &std::process::Output, needle: &str) {
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        stdout(o)
    );
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected, got:\n{err}");
    assert!(lines[0].starts_with("cloudraid: error: "), "{err}");
    assert!(
        lines[0].contains(needle),
        "error {:?} should mention {needle:?}",
        lines[0]
    );
}

pub fn can_mount() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if root && std::path::Path::new("/dev/fuse").exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("mount tests need root and /dev/fuse, and CI must provide both");
    }
    eprintln!("skipping: mount tests need root and /dev/fuse");
    false
}

/// A temp dir for one test; anything still mounted below it is unmounted when dropped.
pub struct Env {
    _dir: tempfile::TempDir,
    pub base: std::path::PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        unmount_below(&self.base);
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        Env { _dir: dir, base }
    }
    pub fn p(&self, rel: &str) -> String {
        self.base.join(rel).display().to_string()
    }
    pub fn backend(&self, name: &str) -> String {
        format!("{name}=file://{}", self.p(name))
    }
    pub fn init(&self, cfg: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["init", "--config", cfg];
        args.extend_from_slice(&CHEAP_KDF);
        args.extend_from_slice(extra);
        run(&args)
    }
}

pub fn mounted_type(mp: &str) -> Option<(String, String)> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f[1] == mp).then(|| (f[0].to_string(), f[2].to_string()))
    })
}

/// A volume over folders a, b and c of `e` (state in `e/state`, config
/// `e/v.toml`, more init options in `extra`). Returns the config's path.
pub fn three_backend_volume(e: &Env, extra: &[&str]) -> String {
    let cfg = e.p("v.toml");
    let (a, b, c, state) = (e.backend("a"), e.backend("b"), e.backend("c"), e.p("state"));
    let mut args = vec![
        "--backend",
        &a,
        "--backend",
        &b,
        "--backend",
        &c,
        "--state-dir",
        &state,
    ];
    args.extend_from_slice(extra);
    let o = e.init(&cfg, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    cfg
}

/// A volume over folders a, b and c of `e`, mounted at `e/mnt`. Returns (config, mountpoint).
pub fn mounted_volume(e: &Env, extra: &[&str]) -> (String, String) {
    let cfg = three_backend_volume(e, extra);
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();
    let o = run(&["mount", "--config", &cfg, &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    (cfg, mp)
}

/// Waits until process `pid` has exited: gone, or a zombie (its files closed).
pub fn wait_dead(pid: i32) {
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat)
                if !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => return,
        }
    }
}

/// Runs `cloudraid put --config CFG SRC DEST` for each (SRC, DEST) at the same
/// time (through the mount daemon when mounted) and checks that all succeed.
pub fn puts_at_once(cfg: &str, jobs: &[(&std::path::Path, &str)]) {
    let running: Vec<_> = jobs
        .iter()
        .map(|(src, dest)| {
            bin()
                .args(["put", "--config", cfg, src.to_str().unwrap(), dest])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in running {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

/// Every entry under `a` is under `b` with the same kind, bytes, mode and
/// modification time (directories: mode only), and nothing else is under `b`.
pub fn assert_same_tree(a: &std::path::Path, b: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    fn walk(root: &Path, rel: &Path, out: &mut Vec<std::path::PathBuf>) {
        let mut kids: Vec<_> = std::fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        kids.sort();
        for k in kids {
            let r = rel.join(k);
            out.push(r.clone());
            if std::fs::symlink_metadata(root.join(&r)).unwrap().is_dir() {
                walk(root, &r, out);
            }
        }
    }
    let (mut left, mut right) = (Vec::new(), Vec::new());
    walk(a, std::path::Path::new(""), &mut left);
    walk(b, std::path::Path::new(""), &mut right);
    assert_eq!(left, right, "the trees hold different names");
    for rel in left {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa).unwrap(),
            std::fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{rel:?}");
        if ma.is_symlink() {
            assert_eq!(
                std::fs::read_link(&pa).unwrap(),
                std::fs::read_link(&pb).unwrap()
            );
            continue;
        }
        assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "mode of {rel:?}");
        assert_eq!(ma.rdev(), mb.rdev(), "device number of {rel:?}");
        if !ma.is_file() && !ma.is_dir() {
            assert_eq!(ma.mtime(), mb.mtime(), "mtime of {rel:?}");
        }
        if ma.is_file() {
            assert!(
                std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap(),
                "bytes of {rel:?}"
            );
            assert_eq!(ma.mtime(), mb.mtime(), "mtime of {rel:?}");
        }
    }
}

/// The caller tests create files as.
pub const USER: cloudraid::fs::Caller = cloudraid::fs::Caller {
    uid: 1000,
    gid: 1000,
};

/// Creates `name` in `parent` holding `data` (written 100,000 bytes at a time)
/// and closes it.
pub async fn write_file(fs: &Fs, parent: u64, name: &str, data: &[u8]) -> u64 {
    let (a, fh) = fs
        .create(parent, name.as_bytes(), 0o644, libc::O_RDWR, USER)
        .await
        .unwrap();
    let mut off = 0;
    for piece in data.chunks(100_000) {
        fs.write(fh, off, piece).await.unwrap();
        off += piece.len() as u64;
    }
    fs.release(fh).await.unwrap();
    a.ino
}

/// The whole content of `ino`, read through an open handle as a reader would.
pub async fn read_all(fs: &Fs, ino: u64) -> Result<Vec<u8>, cloudraid::fs::Errno> {
    let fh = fs.open(ino, libc::O_RDONLY).await?;
    let mut out = Vec::new();
    loop {
        let d = match fs.read(fh, out.len() as u64, 131072).await {
            Ok(d) => d,
            Err(e) => {
                fs.release(fh).await.unwrap();
                return Err(e);
            }
        };
        if d.is_empty() {
            break;
        }
        out.extend_from_slice(&d);
    }
    fs.release(fh).await.unwrap();
    Ok(out)
}
