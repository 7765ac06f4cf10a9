//! The mount helper as mount(8) runs it, with custom fstab files (never
//! /etc/fstab): `mount -T FILE DIR`, `mount -T FILE -a` skipping `noauto`,
//! `--fake`, option filtering, bad configs; the systemd examples; readiness to
//! systemd; waiting for backends at startup.

mod common;

use common::{can_mount, run, stderr, stdout, Env};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

const HELPERS: [&str; 2] = ["/sbin/mount.cloudraid", "/sbin/mount.fuse.cloudraid"];

/// Installs the helper into /sbin with `cloudraid install-helper` (the documented
/// way) for the test's duration; puts back whatever was there before.
struct Helper {
    before: Vec<(PathBuf, Option<PathBuf>)>,
}

impl Helper {
    fn install() -> Helper {
        let before = HELPERS
            .iter()
            .map(|h| (PathBuf::from(h), std::fs::read_link(h).ok()))
            .collect();
        let o = run(&["install-helper"]);
        assert!(o.status.success(), "{}", stderr(&o));
        for h in HELPERS {
            assert_eq!(
                std::fs::canonicalize(h).unwrap(),
                std::fs::canonicalize(env!("CARGO_BIN_EXE_cloudraid")).unwrap()
            );
        }
        Helper { before }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        for (link, target) in &self.before {
            let _ = std::fs::remove_file(link);
            if let Some(t) = target {
                let _ = std::os::unix::fs::symlink(t, link);
            }
        }
    }
}

fn mount_cmd(args: &[&str]) -> Output {
    Command::new("mount").args(args).output().unwrap()
}

fn umount_cmd(dir: &str) -> Output {
    Command::new("umount").arg(dir).output().unwrap()
}

/// (source, type, options) of the mount at `dir`.
fn mount_entry(dir: &str) -> Option<(String, String, String)> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f[1] == dir).then(|| (f[0].to_string(), f[2].to_string(), f[3].to_string()))
    })
}

/// A volume over folders a, b, c of `e`; returns its config path. It is unlocked
/// by a key file the config names, as a volume mounted at boot must be (mount(8)
/// hands the helper no passphrase).
fn volume(e: &Env) -> String {
    let cfg = e.p("backup.toml");
    let (a, b, c, state) = (e.backend("a"), e.backend("b"), e.backend("c"), e.p("state"));
    let key = e.p("backup.key");
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
            "--key-file",
            &key,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    cfg
}

fn mkdirs(e: &Env, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|n| {
            let p = e.p(n);
            std::fs::create_dir_all(&p).unwrap();
            p
        })
        .collect()
}

#[test]
fn fstab_lines_mount_with_mount_8() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let _h = Helper::install();
    let e = Env::new();
    let cfg = volume(&e);
    let dirs = mkdirs(&e, &["auto", "manual", "typed"]);
    let (auto, manual, typed) = (&dirs[0], &dirs[1], &dirs[2]);
    let fstab = e.p("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# a custom fstab: /etc/fstab is never touched\n\
             {cfg} {auto} cloudraid defaults,_netdev,nofail,x-systemd.automount,noatime,cache_size=64MiB 0 0\n\
             {cfg} {manual} cloudraid noauto,ro,user 0 0\n\
             {cfg} {typed} fuse.cloudraid noauto,nosuid,nodev 0 0\n"
        ),
    )
    .unwrap();

    // mount -a mounts the auto line and skips the noauto ones.
    let o = mount_cmd(&["-T", &fstab, "-a"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (source, fstype, opts) = mount_entry(auto).expect("the auto line is mounted");
    assert_eq!(
        (source.as_str(), fstype.as_str()),
        (cfg.as_str(), "fuse.cloudraid")
    );
    assert!(
        opts.starts_with("rw,") && opts.contains("noatime"),
        "{opts}"
    );
    for dropped in ["_netdev", "nofail", "x-systemd", "cache_size", "defaults"] {
        assert!(
            !opts.contains(dropped),
            "{dropped} reached the kernel: {opts}"
        );
    }
    assert!(mount_entry(manual).is_none() && mount_entry(typed).is_none());
    std::fs::write(Path::new(auto).join("hello"), b"from fstab").unwrap();

    // --fake mounts nothing; -v says what would be done.
    let o = mount_cmd(&["-T", &fstab, "--fake", "-v", manual]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("fake mount"), "{}", stdout(&o));
    assert!(mount_entry(manual).is_none(), "--fake mounted something");

    // umount(8) ends the mount (and its daemon, once the data is stored).
    assert!(umount_cmd(auto).status.success(), "umount");
    assert!(mount_entry(auto).is_none());

    // A noauto line mounts by its mountpoint; ro reaches the kernel.
    let o = mount_cmd(&["-T", &fstab, manual]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, _, opts) = mount_entry(manual).unwrap();
    assert!(opts.starts_with("ro,"), "{opts}");
    assert!(!opts.split(',').any(|o| o == "user"), "{opts}");
    assert_eq!(
        std::fs::read(Path::new(manual).join("hello")).unwrap(),
        b"from fstab"
    );
    assert!(std::fs::write(Path::new(manual).join("x"), b"").is_err());
    assert!(umount_cmd(manual).status.success());

    // The auto line again, by its mountpoint.
    let o = mount_cmd(&["-T", &fstab, auto]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(Path::new(auto).join("hello")).unwrap(),
        b"from fstab"
    );
    assert!(umount_cmd(auto).status.success());

    // The fuse.cloudraid type goes through mount.fuse.cloudraid.
    let o = mount_cmd(&["-T", &fstab, typed]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (source, fstype, opts) = mount_entry(typed).unwrap();
    assert_eq!(
        (source.as_str(), fstype.as_str()),
        (cfg.as_str(), "fuse.cloudraid")
    );
    assert!(opts.contains("nosuid") && opts.contains("nodev"), "{opts}");
    assert_eq!(
        std::fs::read(Path::new(typed).join("hello")).unwrap(),
        b"from fstab"
    );
    assert!(umount_cmd(typed).status.success());
}

#[test]
fn mount_t_cloudraid_options_and_errors() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let _h = Helper::install();
    let e = Env::new();
    let cfg = volume(&e);
    let dir = &mkdirs(&e, &["mnt"])[0];

    // A wrong config path: mount fails (32) with the helper's clear message.
    let o = mount_cmd(&["-t", "cloudraid", &e.p("missing.toml"), dir]);
    assert_eq!(o.status.code(), Some(32));
    let err = stderr(&o);
    assert!(
        err.contains("cannot read config") && err.contains("missing.toml"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(mount_entry(dir).is_none());

    // An unknown option is refused, unless sloppy (-s).
    let o = mount_cmd(&["-t", "cloudraid", "-o", "compress=yes", &cfg, dir]);
    // mount(8) passes on the helper's status: 1 for a wrong invocation.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown mount option \"compress=yes\""),
        "{}",
        stderr(&o)
    );
    assert!(mount_entry(dir).is_none());
    let o = mount_cmd(&[
        "-s",
        "-t",
        "cloudraid",
        "-o",
        "compress=yes,uid=4321,gid=99",
        &cfg,
        dir,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ignoring unknown option"),
        "{}",
        stderr(&o)
    );
    // uid= and gid= show every file as theirs.
    std::fs::write(Path::new(dir).join("f"), b"x").unwrap();
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(Path::new(dir).join("f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (4321, 99));
    // Mounting again on a live mount is refused.
    let o = mount_cmd(&["-t", "cloudraid", &cfg, dir]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already mounted"), "{}", stderr(&o));
    assert!(umount_cmd(dir).status.success());
}

#[test]
fn startup_waits_for_backends_then_fails_clearly() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let _h = Helper::install();
    let e = Env::new();
    let cfg = volume(&e);
    let dir = &mkdirs(&e, &["mnt"])[0];
    // Two of three folders gone: fewer than k = 2 answer.
    for b in ["a", "b"] {
        std::fs::rename(e.base.join(b), e.base.join(format!("{b}-off"))).unwrap();
    }
    let t = Instant::now();
    let o = mount_cmd(&["-t", "cloudraid", "-o", "startup_timeout=2s", &cfg, dir]);
    let waited = t.elapsed();
    assert_eq!(o.status.code(), Some(32), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("only 1 of 3 backends answer") && err.contains("startup_timeout"),
        "{err}"
    );
    assert!(waited >= Duration::from_secs(2), "gave up after {waited:?}");
    assert!(mount_entry(dir).is_none());

    // The backends come back while the mount waits: it goes live.
    let base = e.base.clone();
    let back = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        for b in ["a", "b"] {
            std::fs::rename(base.join(format!("{b}-off")), base.join(b)).unwrap();
        }
    });
    let o = mount_cmd(&["-t", "cloudraid", "-o", "startup_timeout=1min", &cfg, dir]);
    back.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(mount_entry(dir).is_some());
    let log = std::fs::read_to_string(e.base.join("state/mount.log")).unwrap();
    assert!(log.contains("retrying"), "{log}");
    assert!(umount_cmd(dir).status.success());
}

#[test]
fn systemd_hears_ready_and_stopping_from_a_foreground_mount() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let cfg = volume(&e);
    let dir = &mkdirs(&e, &["mnt"])[0];
    let sock_path = e.base.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = common::bin()
        .args(["mount", "--foreground", "--config", &cfg, dir])
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("READY=1 within 30 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(msg.contains("STATUS=mounted at"), "{msg}");
    // Ready means live: the mount answers now.
    assert!(mount_entry(dir).is_some());
    std::fs::write(Path::new(dir).join("f"), b"x").unwrap();
    let o = run(&["umount", dir]);
    assert!(o.status.success(), "{}", stderr(&o));
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    assert!(child.wait().unwrap().success());
}

#[test]
fn documented_systemd_units_are_valid() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let generator = Path::new("/lib/systemd/system-generators/systemd-fstab-generator");
    if !generator.exists()
        || Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_err()
    {
        if std::env::var_os("CI").is_some() {
            panic!("CI must provide systemd's fstab generator and systemd-analyze");
        }
        eprintln!("skipping: systemd tools not installed");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("mount-helper");
    let e = Env::new();

    // The fstab example: systemd turns it into a mount unit of type cloudraid,
    // after the network, and an automount for the x-systemd.automount line.
    let out = e.base.join("generated");
    std::fs::create_dir(&out).unwrap();
    let o = Command::new(generator)
        .args([&out, &out, &out])
        .env("SYSTEMD_FSTAB", repo.join("fstab.example"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let backup = std::fs::read_to_string(out.join("mnt-backup.mount")).unwrap();
    assert!(
        backup.contains("What=/etc/cloudraid/backup.toml"),
        "{backup}"
    );
    assert!(backup.contains("Type=cloudraid"), "{backup}");
    assert!(
        backup.contains("Options=defaults,_netdev,nofail,startup_timeout=1min"),
        "{backup}"
    );
    // _netdev puts it among remote filesystems (after the network); nofail does
    // not make the boot depend on it.
    assert!(
        out.join("remote-fs.target.wants/mnt-backup.mount").exists()
            || std::fs::read_dir(&out).unwrap().any(|e| {
                let p = e.unwrap().path();
                p.is_dir()
                    && p.join("mnt-backup.mount").exists()
                    && p.to_string_lossy().contains("remote-fs")
            }),
        "mnt-backup.mount is not wanted by remote-fs.target"
    );
    assert!(!out
        .join("remote-fs.target.requires/mnt-backup.mount")
        .exists());
    let archive = std::fs::read_to_string(out.join("mnt-archive.automount")).unwrap();
    assert!(
        archive.contains("Where=/mnt/archive") && archive.contains("TimeoutIdleSec=10min"),
        "{archive}"
    );
    let archive_mount = std::fs::read_to_string(out.join("mnt-archive.mount")).unwrap();
    assert!(
        archive_mount.contains("Type=fuse.cloudraid"),
        "{archive_mount}"
    );

    // The templated service verifies cleanly (its binary path pointed at this build).
    let unit = std::fs::read_to_string(repo.join("cloudraid@.service")).unwrap();
    assert!(unit.contains("Type=notify"));
    let unit = unit.replace("/usr/local/bin/cloudraid", env!("CARGO_BIN_EXE_cloudraid"));
    let path = e.base.join("cloudraid@backup.service");
    std::fs::write(&path, unit).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let complaints: Vec<String> = stderr(&o)
        .lines()
        .filter(|l| l.contains("cloudraid@"))
        .map(String::from)
        .collect();
    assert!(complaints.is_empty(), "{complaints:?}");
}
