//! Real-mount tests of what the kernel caches and asks: extended attributes (and
//! the kinds the volume does not keep), `ls -l` of a large directory right after a
//! mount, changes made through the control socket seen at once, and the kernel's
//! read-ahead. They run the `cloudraid` binary as a user does. Need root and
//! /dev/fuse; without them each test says so and skips.

mod common;

use common::{can_mount, mounted_volume, ok, run, Env};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

/// Mount tests run one at a time (see ../shared/notes/fuse-here.md on EBUSY).
static SERIAL: Mutex<()> = Mutex::new(());

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) -> Result<(), i32> {
    let n = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = unsafe {
        libc::setxattr(
            cpath(p).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

fn get_xattr(p: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 1024];
    // SAFETY: as above.
    let r = unsafe {
        libc::getxattr(
            cpath(p).as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        return Err(last_errno());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn list_xattrs(p: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: as above.
    let r = unsafe { libc::listxattr(cpath(p).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf.truncate(r as usize);
    buf.split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8(n.to_vec()).unwrap())
        .collect()
}

fn remove_xattr(p: &Path, name: &str) -> Result<(), i32> {
    let n = CString::new(name).unwrap();
    // SAFETY: as above.
    let r = unsafe { libc::removexattr(cpath(p).as_ptr(), n.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

#[test]
fn xattrs_acls_and_labels_through_the_mount() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let (cfg, mp) = mounted_volume(&e, &[]);
    let f = Path::new(&mp).join("f");
    std::fs::write(&f, b"data").unwrap();

    // User attributes: set, read back, listed, replaced, removed.
    set_xattr(&f, "user.origin", b"cloud").unwrap();
    set_xattr(&f, "user.second", b"2").unwrap();
    assert_eq!(get_xattr(&f, "user.origin").unwrap(), b"cloud");
    assert_eq!(list_xattrs(&f), ["user.origin", "user.second"]);
    set_xattr(&f, "user.origin", b"replaced").unwrap();
    assert_eq!(get_xattr(&f, "user.origin").unwrap(), b"replaced");
    remove_xattr(&f, "user.second").unwrap();
    assert_eq!(list_xattrs(&f), ["user.origin"]);
    assert_eq!(get_xattr(&f, "user.second"), Err(libc::ENODATA));
    assert_eq!(remove_xattr(&f, "user.second"), Err(libc::ENODATA));
    // Other security attributes are kept: file capabilities of a backed-up binary
    // (cap_net_raw+ep, as setcap stores it: revision 2, effective, permitted bit 13).
    let caps: Vec<u8> = [0x0200_0001u32, 1 << 13, 0, 0, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    set_xattr(&f, "security.capability", &caps).unwrap();
    assert_eq!(get_xattr(&f, "security.capability").unwrap(), caps);

    // POSIX ACLs and SELinux labels are not kept: "not supported", as a filesystem
    // without them answers, for reading as for writing; the mode stays the rule.
    // A valid ACL (as setfacl writes it: version 2, then user::rw- group::r--
    // other::r--), since the kernel checks its form first.
    let acl: Vec<u8> = [2u32]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .chain(
            [(0x01u16, 6u16), (0x04, 4), (0x20, 4)]
                .iter()
                .flat_map(|(tag, perm)| {
                    [tag.to_le_bytes(), perm.to_le_bytes()]
                        .concat()
                        .into_iter()
                        .chain(u32::MAX.to_le_bytes())
                }),
        )
        .collect();
    let dir = Path::new(&mp);
    for (p, name, value) in [
        (f.as_path(), "system.posix_acl_access", &acl[..]),
        (dir, "system.posix_acl_access", &acl[..]),
        (dir, "system.posix_acl_default", &acl[..]),
        (
            f.as_path(),
            "security.selinux",
            b"system_u:object_r:user_home_t:s0",
        ),
    ] {
        assert_eq!(get_xattr(p, name), Err(libc::EOPNOTSUPP), "{name}");
        assert_eq!(set_xattr(p, name, value), Err(libc::EOPNOTSUPP), "{name}");
        assert_eq!(remove_xattr(p, name), Err(libc::EOPNOTSUPP), "{name}");
    }
    assert_eq!(list_xattrs(&f), ["security.capability", "user.origin"]);
    // `ls -l` shows no ACL mark, and the user attribute is still there after it.
    let ls = std::process::Command::new("ls")
        .args(["-l", &mp])
        .output()
        .unwrap();
    let line = String::from_utf8(ls.stdout).unwrap();
    assert!(line.contains("-rw-r--r-- 1 "), "{line}");
    assert_eq!(get_xattr(&f, "user.origin").unwrap(), b"replaced");

    // Stored: after a remount they read back the same.
    assert!(run(&["umount", &mp]).status.success());
    ok(&["mount", "--config", &cfg, &mp]);
    assert_eq!(get_xattr(&f, "user.origin").unwrap(), b"replaced");
    assert_eq!(get_xattr(&f, "security.capability").unwrap(), caps);
    assert_eq!(list_xattrs(&f), ["security.capability", "user.origin"]);
    assert_eq!(get_xattr(&f, "security.selinux"), Err(libc::EOPNOTSUPP));
    assert!(run(&["umount", &mp]).status.success());
}

#[test]
fn ls_l_of_a_large_directory_right_after_a_mount() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let (cfg, mp) = mounted_volume(&e, &[]);
    // More entries than one READDIRPLUS answer holds, names of several lengths.
    let dir = Path::new(&mp).join("many");
    std::fs::create_dir(&dir).unwrap();
    let n = 700;
    let name = |i: usize| format!("file-{i}-{}", "x".repeat(i % 40));
    for i in 0..n {
        std::fs::write(dir.join(name(i)), vec![b'a'; i]).unwrap();
    }
    std::fs::create_dir(dir.join("sub")).unwrap();
    assert!(run(&["umount", &mp]).status.success());
    ok(&["mount", "--config", &cfg, &mp]);

    let out = std::process::Command::new("ls")
        .args(["-l", "--time-style=+", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // "total N", then one line per entry, sorted by name, each with its size.
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), n + 1, "{text}");
    let mut want: Vec<(String, u64)> = (0..n).map(|i| (name(i), i as u64)).collect();
    want.sort();
    let files: Vec<(String, u64)> = lines
        .iter()
        .filter(|l| l.starts_with('-'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[f.len() - 1].to_string(), f[4].parse().unwrap())
        })
        .collect();
    let mut files = files;
    files.sort();
    assert_eq!(files, want);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("drwx") && l.ends_with(" sub")),
        "{text}"
    );
    // Every entry the listing gave the kernel is still right to stat and to read.
    let md = std::fs::metadata(dir.join(name(n - 1))).unwrap();
    assert_eq!(md.len(), (n - 1) as u64);
    assert_eq!(
        std::fs::read(dir.join(name(7))).unwrap(),
        vec![b'a'; 7],
        "read after listing"
    );
    // A name removed after the listing is gone at once.
    std::fs::remove_file(dir.join(name(3))).unwrap();
    assert!(!dir.join(name(3)).exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), n);
    assert!(run(&["umount", &mp]).status.success());
}

#[test]
fn changes_through_the_control_socket_are_seen_at_once() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let (cfg, mp) = mounted_volume(&e, &[]);
    let d = Path::new(&mp).join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("old"), b"old contents").unwrap();
    // The kernel has the directory, its listing and the file cached.
    let before = std::fs::metadata(&d).unwrap();
    assert_eq!(before.nlink(), 2);
    assert_eq!(std::fs::read(d.join("old")).unwrap(), b"old contents");
    assert!(!d.join("new").exists());

    // A directory made through the daemon: the parent's link count and listing.
    ok(&["mkdir", "--config", &cfg, "/d/sub"]);
    assert_eq!(std::fs::metadata(&d).unwrap().nlink(), 3);
    assert!(d.join("sub").is_dir());

    // A file put over the cached one and a new one: new sizes and bytes at once.
    let local = e.base.join("local");
    std::fs::create_dir(&local).unwrap();
    std::fs::write(local.join("old"), b"replaced, longer contents").unwrap();
    std::fs::write(local.join("new"), b"new").unwrap();
    ok(&[
        "put",
        "--config",
        &cfg,
        local.join("old").to_str().unwrap(),
        "/d/old",
    ]);
    ok(&[
        "put",
        "--config",
        &cfg,
        local.join("new").to_str().unwrap(),
        "/d/new",
    ]);
    assert_eq!(std::fs::metadata(d.join("old")).unwrap().len(), 25);
    assert_eq!(
        std::fs::read(d.join("old")).unwrap(),
        b"replaced, longer contents"
    );
    assert_eq!(std::fs::metadata(d.join("new")).unwrap().len(), 3);
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["new", "old", "sub"]);

    // Removed through the daemon: gone from stat and from the listing at once.
    ok(&["rm", "--config", &cfg, "/d/new"]);
    ok(&["rm", "--config", &cfg, "-r", "/d/sub"]);
    assert!(!d.join("new").exists());
    assert!(!d.join("sub").exists());
    assert_eq!(std::fs::metadata(&d).unwrap().nlink(), 2);
    let names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["old"]);
    assert!(run(&["umount", &mp]).status.success());
}

/// The kernel's read-ahead of the mount, read from sysfs under its device number.
fn read_ahead_kb(mp: &str) -> u64 {
    let dev = std::fs::metadata(mp).unwrap().dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    std::fs::read_to_string(&path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn kernel_read_ahead_follows_readahead_chunks() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    // Chunks of 256 KiB on average; init writes readahead_chunks = 16 (16 MiB
    // worth, at most 16 chunks).
    let (cfg, mp) = mounted_volume(&e, &["--chunk-size", "256KiB"]);
    assert!(std::fs::read_to_string(&cfg)
        .unwrap()
        .contains("readahead_chunks = 16"));
    assert_eq!(read_ahead_kb(&mp), 16 * 256);
    // A file of many chunks reads back whole, sequentially and from the middle.
    let data = common::bytes(5, 6 << 20);
    let f = Path::new(&mp).join("big");
    std::fs::write(&f, &data).unwrap();
    assert!(run(&["umount", &mp]).status.success());
    ok(&["mount", "--config", &cfg, &mp, "-o", "readahead=8"]);
    assert_eq!(read_ahead_kb(&mp), 8 * 256);
    assert!(
        std::fs::read(&f).unwrap() == data,
        "sequential read differs"
    );
    {
        use std::os::unix::fs::FileExt;
        let h = std::fs::File::open(&f).unwrap();
        let mut buf = vec![0u8; 300_000];
        h.read_exact_at(&mut buf, 1_000_001).unwrap();
        assert!(
            buf == data[1_000_001..1_300_001],
            "read from the middle differs"
        );
    }
    assert!(run(&["umount", &mp]).status.success());
    // readahead=0: no read-ahead asked for, the kernel keeps its default.
    ok(&["mount", "--config", &cfg, &mp, "-o", "readahead=0"]);
    assert_eq!(read_ahead_kb(&mp), 128);
    assert!(
        std::fs::read(&f).unwrap() == data,
        "read without read-ahead differs"
    );
    assert!(run(&["umount", &mp]).status.success());
}
