//! A volume brought back from its config and its backends alone: a tree written
//! through the mount (cp -a, hard links, symlinks, modes, times), the state dir
//! deleted, `cloudraid recover`, and the mount shows the same tree; again with a
//! backend down during recovery.

mod common;

use common::{assert_one_line_error, can_mount, run, stderr, stdout, Env};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// Everything a user would compare, per path: kind, mode, size, mtime (ns),
/// link count, inode, symlink target or content.
fn describe(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, String>) {
        let mut kids: Vec<_> = std::fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        kids.sort();
        for k in kids {
            let r = rel.join(&k);
            let p = root.join(&r);
            let md = std::fs::symlink_metadata(&p).unwrap();
            let body = if md.is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if md.is_file() {
                let data = std::fs::read(&p).unwrap();
                format!("{} bytes, crc {:08x}", data.len(), crc32fast::hash(&data))
            } else {
                String::new()
            };
            let mtime = if md.is_symlink() {
                0
            } else {
                md.mtime() * 1_000_000_000 + md.mtime_nsec()
            };
            out.insert(
                r.display().to_string(),
                format!(
                    "mode {:o} nlink {} ino {} mtime {mtime} {body}",
                    md.mode(),
                    md.nlink(),
                    md.ino()
                ),
            );
            if md.is_dir() {
                walk(root, &r, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn sh(cmd: &str) {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(o.status.success(), "{cmd}: {}", stderr(&o));
}

#[test]
fn the_volume_comes_back_from_the_backends_alone() {
    if !can_mount() {
        return;
    }
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
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // A source tree with the usual variety.
    let src = e.base.join("src");
    std::fs::create_dir_all(src.join("docs/deep")).unwrap();
    std::fs::create_dir_all(src.join("private")).unwrap();
    for (i, (name, len)) in [
        ("docs/a.txt", 10usize),
        ("docs/deep/big.bin", 1_300_000),
        ("private/key", 64),
        ("empty", 0),
        ("docs/mid.bin", 300_000),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(src.join(name), common::bytes(i as u64, *len)).unwrap();
    }
    std::fs::hard_link(src.join("docs/mid.bin"), src.join("mid-hardlink")).unwrap();
    std::os::unix::fs::symlink("docs/deep/big.bin", src.join("link")).unwrap();
    std::fs::set_permissions(src.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(
        src.join("private/key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(
        src.join("docs/deep/big.bin"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    sh(&format!(
        "touch -h -d '2019-05-04 03:02:01.123456789' {}/docs/a.txt",
        src.display()
    ));

    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();
    assert!(run(&["mount", "--config", &cfg, &mp]).status.success());
    sh(&format!("cp -a {}/. {mp}/", src.display()));
    // Changes after the copy: a rename, an unlink, a chmod, a new hard link.
    std::fs::rename(format!("{mp}/docs/a.txt"), format!("{mp}/docs/renamed.txt")).unwrap();
    std::fs::remove_file(format!("{mp}/empty")).unwrap();
    std::fs::set_permissions(
        format!("{mp}/docs/mid.bin"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::hard_link(format!("{mp}/private/key"), format!("{mp}/key-link")).unwrap();
    // cp -a kept modes and times, and the hard link as a hard link.
    let copied = describe(Path::new(&mp));
    let key = &copied["private/key"];
    assert!(key.starts_with("mode 100600 nlink 2"), "{key}");
    assert!(
        copied["docs/deep/big.bin"].starts_with("mode 100755"),
        "{copied:?}"
    );
    assert!(
        copied["docs/renamed.txt"].contains("mtime 1556938921123456789"),
        "{copied:?}"
    );
    assert!(
        copied["mid-hardlink"].starts_with("mode 100640 nlink 2"),
        "{copied:?}"
    );
    let before = copied;
    assert!(run(&["umount", &mp]).status.success());

    // The machine is lost: no state dir. Recovery needs only config and backends.
    std::fs::remove_dir_all(&state).unwrap();
    let o = run(&["recover", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // root, docs, deep, private, renamed.txt, big.bin, key, mid.bin, link.
    assert!(out.contains("recovered 9 inodes"), "{out}");
    assert!(out.contains("downloaded"), "{out}");
    assert!(run(&["mount", "--config", &cfg, &mp]).status.success());
    assert_eq!(describe(Path::new(&mp)), before);
    // The recovered volume keeps working.
    std::fs::write(format!("{mp}/after-recovery"), b"new").unwrap();
    assert!(run(&["umount", &mp]).status.success());
    let o = run(&["fsck", "--config", &cfg]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));

    // Recovering over an existing index is refused.
    assert_one_line_error(
        &run(&["recover", "--config", &cfg]),
        "already holds an index",
    );

    // Again, with backend b gone during recovery (m = 1).
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::rename(e.base.join("b"), e.base.join("b-gone")).unwrap();
    let o = run(&["recover", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("backend b was unreachable"),
        "{}",
        stdout(&o)
    );
    assert!(run(&["mount", "--config", &cfg, &mp]).status.success());
    let mut expected = before.clone();
    let now = describe(Path::new(&mp));
    expected.insert("after-recovery".into(), now["after-recovery"].clone());
    assert_eq!(now, expected);
    assert_eq!(
        std::fs::read(format!("{mp}/after-recovery")).unwrap(),
        b"new"
    );
    assert!(run(&["umount", &mp]).status.success());

    // With no backend at all: a clear error, and no half-built index left.
    std::fs::remove_dir_all(&state).unwrap();
    for x in ["a", "c"] {
        std::fs::rename(e.base.join(x), e.base.join(format!("{x}-gone"))).unwrap();
    }
    assert_one_line_error(&run(&["recover", "--config", &cfg]), "no backend answers");
    assert!(!Path::new(&state).join("index").exists());
}
