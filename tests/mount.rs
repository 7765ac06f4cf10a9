//! Real-mount tests: a volume over local folders mounted in a temp dir through
//! FUSE, used with std::fs like any program would. Needs root and /dev/fuse (CI
//! has both); run by hand without them, each test says so and skips.

mod common;

use cloudraid::config::{Config, Size};
use cloudraid::front::fuse::{self, Mounted};
use cloudraid::front::mountopts::MountOpts;
use cloudraid::front::setup;
use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Mount tests run one at a time (see ../shared/notes/fuse-here.md on EBUSY).
static SERIAL: Mutex<()> = Mutex::new(());

fn can_mount() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root && Path::new("/dev/fuse").exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("real-mount tests need root and /dev/fuse, and CI must provide both");
    }
    eprintln!("skipping: real-mount tests need root and /dev/fuse");
    false
}

struct Vol {
    _dir: tempfile::TempDir,
    base: PathBuf,
    config: Config,
    rt: tokio::runtime::Runtime,
    mounted: Option<Mounted>,
    mp: PathBuf,
}

impl Vol {
    fn new(k: usize, m: usize, n: usize, chunk: u64) -> Vol {
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
                name: Some("test".into()),
                backends: (0..n)
                    .map(|i| (format!("b{i}"), format!("file://{}/b{i}", base.display())))
                    .collect(),
                data_shards: Some(k),
                parity_shards: Some(m),
                write_quorum: None,
                chunk_size: Size(chunk),
                cache_size: Size(32 << 20),
                state_dir: Some(base.join("state")),
                force: false,
                allow_shared_backends: false,
                env_file: None,
                // Encrypted; unlocked by the key file the config names.
                new_key: setup::NewKey::KeyFile(base.join("vol.key")),
                kdf_cost: Default::default(),
                compression: "zstd".into(),
            }))
            .unwrap();
        let mut v = Vol {
            _dir: dir,
            base,
            config: report.config,
            rt,
            mounted: None,
            mp,
        };
        v.mount(false);
        v
    }

    fn mount(&mut self, read_only: bool) {
        self.mount_with(MountOpts {
            read_only,
            ..Default::default()
        });
    }

    fn mount_with(&mut self, opts: MountOpts) {
        let _g = self.rt.enter();
        let (fs, _) = self
            .rt
            .block_on(setup::open_fs(
                &self.config,
                &setup::KeySource::default(),
                opts.read_only,
            ))
            .unwrap();
        self.mounted = Some(fuse::mount(fs, &self.mp, "test-volume", &opts).unwrap());
    }

    fn unmount(&mut self) {
        drop(self.mounted.take());
    }

    fn remount(&mut self, read_only: bool) {
        self.unmount();
        self.mount(read_only);
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mp.join(rel)
    }
}

impl Drop for Vol {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn drop_page_cache() {
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

#[test]
fn large_file_round_trip_and_cold_read_after_remount() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let mut v = Vol::new(2, 1, 3, 4 << 20);
    let data = common::bytes(11, 64 << 20);
    std::fs::write(v.p("big.bin"), &data).unwrap();
    assert_eq!(
        std::fs::metadata(v.p("big.bin")).unwrap().len(),
        data.len() as u64
    );
    assert!(std::fs::read(v.p("big.bin")).unwrap() == data);
    v.remount(false);
    drop_page_cache();
    let mut back = Vec::new();
    std::fs::File::open(v.p("big.bin"))
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == data, "cold read after remount differs");
    // Stored on the backends: 3 shards per chunk, chunks of 1 to 16 MiB
    // (content-defined around 4 MiB).
    let shards: usize = (0..3)
        .map(|i| walk(&v.base.join(format!("b{i}/chunks"))).len())
        .sum();
    assert_eq!(shards % 3, 0);
    assert!((4..=64).contains(&(shards / 3)), "{} chunks", shards / 3);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn random_offset_writes_and_truncates_match_a_model() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    use rand::{Rng, SeedableRng};
    let mut v = Vol::new(3, 2, 5, 64 << 10);
    let path = v.p("model.bin");
    let mut model: Vec<u8> = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for round in 0..4 {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        for step in 0..150 {
            match rng.random_range(0..8) {
                0..=4 => {
                    let off = rng.random_range(0..model.len() as u64 + 300_000);
                    let data = common::bytes(round * 1000 + step, rng.random_range(1..200_000));
                    f.write_all_at(&data, off).unwrap();
                    let end = off as usize + data.len();
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                }
                5 => {
                    let size = rng.random_range(0..model.len() as u64 + 100_000);
                    f.set_len(size).unwrap();
                    model.resize(size as usize, 0);
                }
                6 => f.sync_all().unwrap(),
                _ => {
                    let off = rng.random_range(0..model.len() as u64 + 10);
                    let mut buf = vec![0u8; 100_000];
                    let n = f.read_at(&mut buf, off).unwrap();
                    let lo = (off as usize).min(model.len());
                    let hi = (off as usize + 100_000).min(model.len());
                    assert_eq!(&buf[..n], &model[lo..hi], "round {round} step {step}");
                }
            }
        }
        drop(f);
        assert!(
            std::fs::read(&path).unwrap() == model,
            "after close, round {round}"
        );
        v.remount(false);
        assert!(
            std::fs::read(&path).unwrap() == model,
            "after remount, round {round}"
        );
    }
    // Appends.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"appended").unwrap();
    drop(f);
    model.extend_from_slice(b"appended");
    v.remount(false);
    assert!(std::fs::read(&path).unwrap() == model);
}

#[test]
fn many_small_files_in_a_tree() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let mut v = Vol::new(2, 1, 3, 1 << 20);
    let mut expected = Vec::new();
    for d in 0..10 {
        std::fs::create_dir_all(v.p(&format!("tree/d{d}/sub"))).unwrap();
        for f in 0..40 {
            let rel = format!(
                "tree/d{d}/{}file-{f}.txt",
                if f % 2 == 0 { "sub/" } else { "" }
            );
            let data = common::bytes((d * 100 + f) as u64, (f * 97) % 5000);
            std::fs::write(v.p(&rel), &data).unwrap();
            expected.push((rel, data));
        }
    }
    v.remount(false);
    for (rel, data) in &expected {
        assert_eq!(&std::fs::read(v.p(rel)).unwrap(), data, "{rel}");
    }
    // Sizes seen through a listing (attributes come with READDIRPLUS) match the files.
    for e in std::fs::read_dir(v.p("tree/d4/sub")).unwrap() {
        let e = e.unwrap();
        let rel = format!("tree/d4/sub/{}", e.file_name().to_string_lossy());
        let want = expected.iter().find(|(r, _)| *r == rel).unwrap().1.len() as u64;
        assert_eq!(e.metadata().unwrap().len(), want, "{rel}");
    }
    let mut listed: Vec<String> = std::fs::read_dir(v.p("tree/d3"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed.len(), 21);
    assert_eq!(listed[0], "file-1.txt");
    assert!(listed.contains(&"sub".to_string()));
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn errno_of<T>(r: std::io::Result<T>) -> i32 {
    r.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
}

#[test]
fn rename_link_symlink_xattr_modes_and_times_persist() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let mut v = Vol::new(2, 1, 3, 1 << 20);
    std::fs::create_dir(v.p("a")).unwrap();
    std::fs::create_dir(v.p("b")).unwrap();
    std::fs::write(v.p("a/one"), b"one").unwrap();
    std::fs::write(v.p("b/two"), b"two").unwrap();
    std::fs::rename(v.p("a/one"), v.p("b/two")).unwrap(); // across dirs, replacing
    assert_eq!(std::fs::read(v.p("b/two")).unwrap(), b"one");
    std::fs::write(v.p("a/three"), b"three").unwrap();
    // RENAME_NOREPLACE and RENAME_EXCHANGE through renameat2(2).
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cpath(&v.p("a/three")).as_ptr(),
            libc::AT_FDCWD,
            cpath(&v.p("b/two")).as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    assert_eq!(
        (r, std::io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::EEXIST))
    );
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cpath(&v.p("a/three")).as_ptr(),
            libc::AT_FDCWD,
            cpath(&v.p("b/two")).as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(r, 0);
    assert_eq!(std::fs::read(v.p("a/three")).unwrap(), b"one");
    assert_eq!(std::fs::read(v.p("b/two")).unwrap(), b"three");
    std::fs::rename(v.p("a"), v.p("b/a-moved")).unwrap();

    std::fs::hard_link(v.p("b/two"), v.p("b/two-link")).unwrap();
    std::os::unix::fs::symlink("two", v.p("b/two-sym")).unwrap();
    std::fs::set_permissions(v.p("b/two"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(v.p("b/two"), Some(1234), Some(5678)).unwrap();
    let name = CString::new("user.origin").unwrap();
    let r = unsafe {
        libc::setxattr(
            cpath(&v.p("b/two")).as_ptr(),
            name.as_ptr(),
            b"cloud".as_ptr().cast(),
            5,
            0,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    let times = [
        libc::timespec {
            tv_sec: 1_600_000_000,
            tv_nsec: 5,
        },
        libc::timespec {
            tv_sec: 1_600_000_001,
            tv_nsec: 123_456_789,
        },
    ];
    assert_eq!(
        unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                cpath(&v.p("b/two")).as_ptr(),
                times.as_ptr(),
                0,
            )
        },
        0
    );

    let before = std::fs::metadata(v.p("b/two")).unwrap();
    v.remount(false);
    let after = std::fs::metadata(v.p("b/two")).unwrap();
    assert_eq!(after.mode() & 0o7777, 0o640);
    assert_eq!((after.uid(), after.gid()), (1234, 5678));
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (1_600_000_001, 123_456_789)
    );
    assert_eq!((after.atime(), after.atime_nsec()), (1_600_000_000, 5));
    assert_eq!(
        (after.ino(), after.nlink(), after.size()),
        (before.ino(), 2, 5)
    );
    assert_eq!(
        std::fs::metadata(v.p("b/two-link")).unwrap().ino(),
        after.ino()
    );
    assert_eq!(
        std::fs::read_link(v.p("b/two-sym")).unwrap(),
        Path::new("two")
    );
    assert_eq!(std::fs::read(v.p("b/two-sym")).unwrap(), b"three");
    assert_eq!(std::fs::read(v.p("b/a-moved/three")).unwrap(), b"one");
    let mut buf = [0u8; 64];
    let n = unsafe {
        libc::getxattr(
            cpath(&v.p("b/two")).as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            64,
        )
    };
    assert_eq!(&buf[..n as usize], b"cloud");
    let n = unsafe { libc::listxattr(cpath(&v.p("b/two")).as_ptr(), buf.as_mut_ptr().cast(), 64) };
    assert_eq!(&buf[..n as usize], b"user.origin\0");
    assert_eq!(std::fs::metadata(v.p("b")).unwrap().nlink(), 3);
}

#[test]
fn errors_have_the_right_errno() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let mut v = Vol::new(2, 1, 3, 1 << 20);
    std::fs::create_dir(v.p("d")).unwrap();
    std::fs::write(v.p("d/f"), b"x").unwrap();
    assert_eq!(errno_of(std::fs::remove_dir(v.p("d"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(std::fs::create_dir(v.p("d"))), libc::EEXIST);
    assert_eq!(errno_of(std::fs::read(v.p("missing"))), libc::ENOENT);
    assert_eq!(
        errno_of(std::fs::write(v.p(&"n".repeat(256)), b"x")),
        libc::ENAMETOOLONG
    );
    assert_eq!(errno_of(std::fs::remove_dir(v.p("d/f"))), libc::ENOTDIR);
    assert_eq!(errno_of(std::fs::remove_file(v.p("d"))), libc::EISDIR);
    assert_eq!(errno_of(std::fs::read_dir(v.p("d/f"))), libc::ENOTDIR);
    let mut f = std::fs::File::open(v.p("d/f")).unwrap();
    assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), 1);
    let st = nix_statfs(&v.mp);
    assert!(st.0 > 0 && st.1 > 0, "statfs reports capacity: {st:?}");
    drop(f);
    v.remount(true);
    assert_eq!(errno_of(std::fs::write(v.p("d/g"), b"x")), libc::EROFS);
    assert_eq!(
        errno_of(std::fs::OpenOptions::new().write(true).open(v.p("d/f"))),
        libc::EROFS
    );
    assert_eq!(std::fs::read(v.p("d/f")).unwrap(), b"x");
}

fn nix_statfs(p: &Path) -> (u64, u64) {
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(cpath(p).as_ptr(), &mut st) }, 0);
    (st.f_blocks as u64, st.f_bavail as u64)
}

fn mknod(p: &Path, mode: u32, dev: u64) -> std::io::Result<()> {
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mknod(cpath(p).as_ptr(), mode, dev as libc::dev_t) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs `cmd` to completion, killing it after `secs` seconds (a FIFO nobody
/// opens at the other end would block it forever).
fn finish_within(mut child: std::process::Child, secs: u64) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{child:?} did not finish within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn fifos_sockets_and_devices_are_kept() {
    use std::os::unix::fs::FileTypeExt;
    use std::process::{Command, Stdio};
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let mut v = Vol::new(2, 1, 3, 1 << 20);
    let (null, disk) = (libc::makedev(1, 3), libc::makedev(259, 70_000));
    mknod(&v.p("fifo"), libc::S_IFIFO | 0o640, 0).unwrap();
    mknod(&v.p("sock"), libc::S_IFSOCK | 0o600, 0).unwrap();
    mknod(&v.p("null"), libc::S_IFCHR | 0o666, null).unwrap();
    mknod(&v.p("disk"), libc::S_IFBLK | 0o604, disk).unwrap();
    // A socket bound by a program (the usual way one is made).
    drop(std::os::unix::net::UnixListener::bind(v.p("bound")).unwrap());
    assert_eq!(
        errno_of(mknod(&v.p("fifo"), libc::S_IFIFO | 0o640, 0)),
        libc::EEXIST
    );
    let check = |v: &Vol| {
        let md = |n: &str| std::fs::symlink_metadata(v.p(n)).unwrap();
        assert!(md("fifo").file_type().is_fifo());
        assert!(md("sock").file_type().is_socket());
        assert!(md("bound").file_type().is_socket());
        assert!(md("null").file_type().is_char_device());
        assert!(md("disk").file_type().is_block_device());
        assert_eq!((md("null").rdev(), md("disk").rdev()), (null, disk));
        assert_eq!((md("fifo").rdev(), md("fifo").size()), (0, 0));
        assert_eq!(md("fifo").mode() & 0o7777, 0o640);
        assert_eq!(md("disk").mode() & 0o7777, 0o604);
        let mut kinds: Vec<(String, char)> = std::fs::read_dir(&v.mp)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let t = e.file_type().unwrap();
                let k = if t.is_fifo() {
                    'p'
                } else if t.is_socket() {
                    's'
                } else if t.is_char_device() {
                    'c'
                } else if t.is_block_device() {
                    'b'
                } else {
                    '?'
                };
                (e.file_name().into_string().unwrap(), k)
            })
            .collect();
        kinds.sort();
        let want = [
            ("bound", 's'),
            ("disk", 'b'),
            ("fifo", 'p'),
            ("null", 'c'),
            ("sock", 's'),
        ];
        assert_eq!(
            kinds,
            want.map(|(n, k)| (n.to_string(), k)).to_vec(),
            "readdir types"
        );
    };
    check(&v);
    v.remount(false);
    check(&v);

    // A FIFO on the mount carries data from a writer process to a reader process.
    let fifo = v.p("fifo");
    let reader = Command::new("cat")
        .arg(&fifo)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let writer = Command::new("sh")
        .arg("-c")
        .arg("printf 'through the pipe' > \"$0\"")
        .arg(&fifo)
        .spawn()
        .unwrap();
    assert!(finish_within(writer, 20).status.success());
    let out = finish_within(reader, 20);
    assert_eq!(out.stdout, b"through the pipe");
    // The mount is nodev: devices on it do not open.
    assert_eq!(errno_of(std::fs::File::open(v.p("null"))), libc::EACCES);
    // Renamed, linked and removed like files.
    std::fs::rename(v.p("disk"), v.p("disk2")).unwrap();
    std::fs::hard_link(v.p("disk2"), v.p("disk3")).unwrap();
    assert_eq!(
        std::fs::symlink_metadata(v.p("disk3")).unwrap().rdev(),
        disk
    );
    assert_eq!(std::fs::symlink_metadata(v.p("disk3")).unwrap().nlink(), 2);
    for n in ["disk2", "disk3", "sock", "bound", "null"] {
        std::fs::remove_file(v.p(n)).unwrap();
    }
    assert_eq!(std::fs::read_dir(&v.mp).unwrap().count(), 1);
}

#[test]
fn sticky_directory_keeps_other_users_entries_with_allow_other() {
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let mut v = Vol::new(2, 1, 3, 1 << 20);
    v.unmount();
    v.mount_with(MountOpts {
        allow_other: true,
        ..Default::default()
    });
    // Other users must reach the mountpoint (the temp dir is 0700).
    std::fs::set_permissions(&v.base, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&v.mp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tmp = v.p("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert_eq!(std::fs::metadata(&tmp).unwrap().mode() & 0o7777, 0o1777);
    std::fs::create_dir(v.p("open")).unwrap();
    std::fs::set_permissions(v.p("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let as_user = |uid: u32, cmd: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(&tmp)
            .uid(uid)
            .gid(uid)
            .output()
            .unwrap()
    };
    let ok = |uid: u32, cmd: &str| {
        let o = as_user(uid, cmd);
        assert!(
            o.status.success(),
            "uid {uid}: {cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let refused = |uid: u32, cmd: &str| {
        let o = as_user(uid, cmd);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("not permitted"),
            "uid {uid}: {cmd} must fail with EPERM: {err}"
        );
    };
    ok(1001, "echo alice > a-file && mkfifo a-fifo && mkdir a-dir");
    ok(1002, "echo bob > b-file");
    let owner = |n: &str| std::fs::symlink_metadata(tmp.join(n)).unwrap().uid();
    assert_eq!((owner("a-file"), owner("b-file")), (1001, 1002));
    // Another user may neither remove, rename away nor replace them.
    refused(1002, "rm -f a-file");
    refused(1002, "rm -f a-fifo");
    refused(1002, "rmdir a-dir");
    refused(1002, "mv a-file mine");
    refused(1002, "mv a-file ../open/");
    refused(1002, "mv -f b-file a-file");
    assert_eq!(std::fs::read(tmp.join("a-file")).unwrap(), b"alice\n");
    assert!(tmp.join("b-file").exists());
    // The owner may; so may the directory's owner and root.
    ok(1001, "mv a-file a-renamed && rm a-fifo");
    ok(1002, "mv b-file b-renamed");
    std::os::unix::fs::chown(&tmp, Some(1003), Some(1003)).unwrap();
    ok(1003, "rmdir a-dir && mv a-renamed c-owned");
    std::fs::remove_file(tmp.join("b-renamed")).unwrap();
    std::fs::remove_file(tmp.join("c-owned")).unwrap();
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

/// Runs a command the way a user would, failing the test if it fails or hangs
/// (work in proportion to a hole's size would never end on these files).
fn run(args: &[&str]) {
    let mut child = std::process::Command::new(args[0])
        .args(&args[1..])
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{args:?}: {st}");
            return;
        }
        if start.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{args:?} did not finish: its work grows with the holes");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn seek(f: &std::fs::File, off: u64, whence: i32) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    // SAFETY: lseek on an open descriptor.
    let r = unsafe { libc::lseek(f.as_raw_fd(), off as libc::off_t, whence) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as u64)
    }
}

#[test]
fn huge_sparse_files_cost_only_their_data() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    const PIB: u64 = 1 << 50;
    let mut v = Vol::new(2, 1, 3, 1 << 20);
    let img = v.p("disk.img");
    let img_s = img.to_str().unwrap().to_string();
    // A 1 PiB file created with truncate(1), written at both ends.
    run(&["truncate", "-s", "1P", &img_s]);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"tail", PIB - 4).unwrap();
    f.sync_all().unwrap();
    assert_eq!(f.metadata().unwrap().len(), PIB);
    let mut buf = [0u8; 8];
    f.read_exact_at(&mut buf, PIB - 8).unwrap();
    assert_eq!(&buf, b"\0\0\0\0tail");
    assert_eq!(seek(&f, 0, libc::SEEK_HOLE).unwrap(), 4);
    assert_eq!(seek(&f, 4, libc::SEEK_DATA).unwrap(), PIB - 4);
    // One byte past the maximum: EFBIG at once.
    assert_eq!(errno_of(f.write_all_at(b"xy", PIB - 1)), libc::EFBIG);
    assert_eq!(errno_of(f.set_len(PIB + 1)), libc::EFBIG);
    // Truncated down into the hole, then remounted.
    f.set_len(999_999_999_999_999).unwrap();
    drop(f);
    v.remount(false);
    drop_page_cache();
    let f = std::fs::File::open(&img).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 999_999_999_999_999);
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"head\0\0\0\0");
    let mut end = [1u8; 9];
    f.read_exact_at(&mut end, 999_999_999_999_990).unwrap();
    assert_eq!(end, [0u8; 9]);
    drop(f);

    // The conformance suite's case, through the kernel: truncate(2) of a new
    // file to 999,999,999,999,999 bytes, stat, unlink.
    let huge = v.p("huge");
    std::fs::write(&huge, b"").unwrap();
    run(&["truncate", "-s", "999999999999999", huge.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&huge).unwrap().len(), 999_999_999_999_999);
    std::fs::remove_file(&huge).unwrap();
    // fallocate(1) of a VM image: the size, no data stored.
    run(&["fallocate", "-l", "1T", v.p("vm.img").to_str().unwrap()]);
    assert_eq!(std::fs::metadata(v.p("vm.img")).unwrap().len(), 1 << 40);

    // A sparse local file of 1 TiB copied in and back out with cp: only the
    // data crosses, and the copy out is sparse again.
    let local = v.base.join("local.img");
    {
        let l = std::fs::File::create(&local).unwrap();
        l.set_len(1 << 40).unwrap();
        l.write_all_at(&common::bytes(3, 100_000), 0).unwrap();
        l.write_all_at(&common::bytes(4, 100_000), (1 << 40) - 100_000)
            .unwrap();
    }
    run(&[
        "cp",
        "--sparse=always",
        local.to_str().unwrap(),
        v.p("copy.img").to_str().unwrap(),
    ]);
    let stored = std::fs::metadata(v.p("copy.img")).unwrap();
    assert_eq!(stored.len(), 1 << 40);
    assert!(
        stored.blocks() * 512 < 8 << 20,
        "st_blocks counts only the data ({} blocks), so cp and du see the holes",
        stored.blocks()
    );
    let back = v.base.join("back.img");
    run(&[
        "cp",
        "--sparse=always",
        v.p("copy.img").to_str().unwrap(),
        back.to_str().unwrap(),
    ]);
    let b = std::fs::File::open(&back).unwrap();
    assert_eq!(b.metadata().unwrap().len(), 1 << 40);
    assert!(
        b.metadata().unwrap().blocks() * 512 < 8 << 20,
        "the copy out is sparse"
    );
    let mut head = vec![0u8; 100_000];
    b.read_exact_at(&mut head, 0).unwrap();
    assert!(head == common::bytes(3, 100_000));
    b.read_exact_at(&mut head, (1 << 40) - 100_000).unwrap();
    assert!(head == common::bytes(4, 100_000));
}

/// Bytes in the state dir's staging folder now.
fn staged(v: &Vol) -> u64 {
    walk(&v.base.join("state/staging"))
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[test]
fn sequential_writes_are_stored_while_written_and_many_writers_at_once_stay_correct() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let mut v = Vol::new(2, 1, 3, 256 << 10);
    // One sequential writer: its bytes never touch the staging folder, and its
    // chunks are on the backends before it closes.
    let data = common::bytes(40, 24 << 20);
    let mut f = std::fs::File::create(v.p("seq.bin")).unwrap();
    for piece in data.chunks(1 << 20) {
        f.write_all(piece).unwrap();
    }
    assert_eq!(staged(&v), 0, "a sequential write was staged");
    assert!(!walk(&v.base.join("b0/chunks")).is_empty());
    // A rewritten header (as zip and some archivers do) after the stream.
    f.seek(SeekFrom::Start(10)).unwrap();
    f.write_all(b"HEADER").unwrap();
    // From there on the file is staged: the rest of the stream and the header.
    assert!(v.base.join("state/staging").is_dir());
    assert!(staged(&v) > 0);
    f.sync_all().unwrap();
    drop(f);
    let mut want = data.clone();
    want[10..16].copy_from_slice(b"HEADER");

    // 24 writers at once, more than stream at once: the rest are staged.
    let files: Vec<(PathBuf, Vec<u8>)> = (0..24)
        .map(|i| (v.p(&format!("w{i}.bin")), common::bytes(100 + i, 2 << 20)))
        .collect();
    std::thread::scope(|s| {
        for (p, d) in &files {
            s.spawn(move || {
                let mut f = std::fs::File::create(p).unwrap();
                for piece in d.chunks(128 << 10) {
                    f.write_all(piece).unwrap();
                }
            });
        }
    });
    v.remount(false);
    drop_page_cache();
    assert!(std::fs::read(v.p("seq.bin")).unwrap() == want);
    for (p, d) in &files {
        assert!(&std::fs::read(p).unwrap() == d, "{} differs", p.display());
    }
    assert_eq!(staged(&v), 0);
}
