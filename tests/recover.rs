//! A volume brought back from its config and its backends alone: a tree written
//! through the mount (cp -a, hard links, symlinks, modes, times), the state dir
//! deleted, `cloudraid recover`, and the mount shows the same tree; again with a
//! backend down during recovery; the snapshots come back too.

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

/// One writer at a time: a second machine (another state dir of the same volume)
/// is refused while the first has it mounted read-write, may mount read-only, and
/// may take over; the first, after a crash, mounts again as the same holder.
#[test]
fn a_second_writer_is_refused_and_can_take_over() {
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
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();
    assert!(run(&["mount", "--config", &cfg, &mp]).status.success());
    std::fs::write(format!("{mp}/f"), b"one").unwrap();
    let _ = run(&["sync", "--config", &cfg]);

    // "Another machine": the same volume with its own state dir, rebuilt by recover.
    let state2 = e.p("state2");
    let cfg2 = e.p("v2.toml");
    std::fs::write(
        &cfg2,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(&state, &state2),
    )
    .unwrap();
    let o = run(&["recover", "--config", &cfg2]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mp2 = e.p("mnt2");
    std::fs::create_dir(&mp2).unwrap();
    let o = run(&["mount", "--config", &cfg2, &mp2]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("mounted read-write by") && err.contains(&state) && err.contains("expires in"),
        "{err}"
    );
    // So is a change without a mount.
    assert_one_line_error(
        &run(&["mkdir", "--config", &cfg2, "/x"]),
        "mounted read-write by",
    );
    // Read-only is allowed.
    let o = run(&["mount", "--config", &cfg2, "-o", "ro", &mp2]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(format!("{mp2}/f")).unwrap(), b"one");
    assert!(run(&["umount", &mp2]).status.success());

    // The first machine crashes; mounting again from its own state dir is fine.
    let status: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["status", "--config", &cfg, "--json"]))).unwrap();
    let pid = status["pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) of the daemon we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    common::wait_dead(pid);
    let o = run(&["umount", &mp]);
    assert!(
        o.status.success(),
        "umount of the dead mount: {}",
        stderr(&o)
    );
    let o = run(&["mount", "--config", &cfg, &mp]);
    assert!(
        o.status.success(),
        "same holder after its crash: {}",
        stderr(&o)
    );

    // A clean unmount releases the lease. The other machine's index is older than
    // what the first wrote since: it is refused until brought up to date.
    std::fs::write(format!("{mp}/g"), b"two").unwrap();
    assert!(run(&["umount", &mp]).status.success());
    assert_one_line_error(
        &run(&["mount", "--config", &cfg2, &mp2]),
        "move this state dir away and run `cloudraid recover`",
    );
    std::fs::remove_dir_all(&state2).unwrap();
    assert!(run(&["recover", "--config", &cfg2]).status.success());
    let o = run(&["mount", "--config", &cfg2, &mp2]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(format!("{mp2}/g")).unwrap(), b"two");
    assert!(run(&["umount", &mp2]).status.success());

    // While the other holds it and is gone (killed, lease still live), --takeover
    // forces it.
    assert!(run(&["mount", "--config", &cfg2, &mp2]).status.success());
    let status: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["status", "--config", &cfg2, "--json"]))).unwrap();
    let pid = status["pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) of the daemon we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    common::wait_dead(pid);
    assert!(run(&["umount", &mp2]).status.success());
    assert_one_line_error(
        &run(&["mount", "--config", &cfg, &mp]),
        "mounted read-write by",
    );
    let o = run(&["mount", "--config", &cfg, "--takeover", &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(format!("{mp}/g")).unwrap(), b"two");
    assert!(run(&["umount", &mp]).status.success());
}

/// Waits (polling, up to two minutes) until `f` gives a value.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < end,
            "gave up waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The snapshot ids in `/.snapshots` of the mount at `mp`.
fn snapshot_ids(mp: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("{mp}/.snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Every snapshot as the mount shows it: id → its tree described, without the
/// inode numbers (the view's are its own, stable only while mounted), but with
/// which of its entries are hard links of one file.
fn describe_snapshots(mp: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    snapshot_ids(mp)
        .into_iter()
        .map(|id| {
            let tree = describe(&Path::new(mp).join(".snapshots").join(&id));
            let mut links: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (path, d) in &tree {
                let ino = d.split(" ino ").nth(1).unwrap().split(' ').next().unwrap();
                links.entry(ino).or_default().push(path);
            }
            let out = tree
                .iter()
                .map(|(path, d)| {
                    let (head, rest) = d.split_once(" ino ").unwrap();
                    let (ino, tail) = rest.split_once(' ').unwrap();
                    (
                        path.clone(),
                        format!("{head} {tail} links {:?}", links[ino]),
                    )
                })
                .collect();
            (id, out)
        })
        .collect()
}

/// Snapshots of three different contents, taken by the mount daemon's schedule
/// and by hand; then the state dir is lost and a backend is gone; `recover` brings
/// every snapshot back, identical, and fsck finds the volume clean.
#[test]
fn snapshots_come_back_with_the_state_dir_and_a_backend_gone() {
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let cfg = common::three_backend_volume(&e, &["--chunk-size", "64KiB"]);
    let state = e.p("state");
    let plain = std::fs::read_to_string(&cfg).unwrap();
    let schedule = |every: &str| {
        std::fs::write(&cfg, format!("{plain}\n[snapshots]\nevery = \"{every}\"\n")).unwrap()
    };
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();

    // The first contents, written through the mount.
    assert!(run(&["mount", "--config", &cfg, &mp]).status.success());
    std::fs::create_dir(format!("{mp}/docs")).unwrap();
    std::fs::write(format!("{mp}/docs/a.txt"), b"first version").unwrap();
    std::fs::write(format!("{mp}/docs/big.bin"), common::bytes(21, 400_000)).unwrap();
    std::fs::hard_link(format!("{mp}/docs/a.txt"), format!("{mp}/a-link")).unwrap();
    std::os::unix::fs::symlink("docs/big.bin", format!("{mp}/sym")).unwrap();
    assert!(run(&["umount", &mp]).status.success());

    // Snapshot 1, taken by the schedule at mount; then the tree changes.
    schedule("1h");
    assert!(run(&["mount", "--config", &cfg, &mp]).status.success());
    wait_for("the first snapshot", || {
        (snapshot_ids(&mp).len() == 1).then_some(())
    });
    std::fs::write(format!("{mp}/docs/a.txt"), b"second version, longer").unwrap();
    std::fs::remove_file(format!("{mp}/docs/big.bin")).unwrap();
    std::fs::write(format!("{mp}/new.bin"), common::bytes(22, 300_000)).unwrap();
    std::fs::set_permissions(format!("{mp}/docs"), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(run(&["umount", &mp]).status.success());

    // More snapshots of the second contents (the last scheduled one is now
    // older than 1s: one is taken at mount, more may follow).
    schedule("1s");
    assert!(run(&["mount", "--config", &cfg, &mp]).status.success());
    wait_for("a second snapshot", || {
        (snapshot_ids(&mp).len() >= 2).then_some(())
    });
    assert!(run(&["umount", &mp]).status.success());

    // A third content, and a snapshot of it taken by hand (through the daemon).
    std::fs::write(&cfg, &plain).unwrap();
    assert!(run(&["mount", "--config", &cfg, &mp]).status.success());
    std::fs::remove_file(format!("{mp}/new.bin")).unwrap();
    std::fs::write(format!("{mp}/c.txt"), b"third").unwrap();
    let o = run(&["snapshot", "create", "--config", &cfg, "--tag", "by-hand"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run(&["umount", &mp]).status.success());
    let listed = stdout(&run(&["snapshot", "list", "--config", &cfg, "--json"]));

    // What each snapshot holds, seen through a mount without a schedule.
    assert!(run(&["mount", "--config", &cfg, "-o", "ro", &mp])
        .status
        .success());
    let before = describe_snapshots(&mp);
    assert!(before.len() >= 3, "{before:?}");
    let trees: std::collections::BTreeSet<_> = before.values().collect();
    assert_eq!(trees.len(), 3, "three different contents: {before:?}");
    let first_version = before
        .values()
        .find(|t| t.contains_key("docs/big.bin"))
        .unwrap();
    assert!(
        first_version["docs/a.txt"].contains("13 bytes")
            && first_version["docs/a.txt"].ends_with(r#"links ["a-link", "docs/a.txt"]"#),
        "{first_version:?}"
    );
    let live = describe(Path::new(&mp));
    assert!(run(&["umount", &mp]).status.success());

    // The machine is lost, and backend b with it.
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::rename(e.base.join("b"), e.base.join("b-gone")).unwrap();
    let o = run(&["recover", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("backend b was unreachable"),
        "{}",
        stdout(&o)
    );
    assert!(run(&["mount", "--config", &cfg, "-o", "ro", &mp])
        .status
        .success());
    assert_eq!(describe_snapshots(&mp), before);
    assert_eq!(describe(Path::new(&mp)), live);
    assert!(run(&["umount", &mp]).status.success());
    // Listed as before: ids, times, tags, sizes.
    let o = run(&["snapshot", "list", "--config", &cfg, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), listed);

    // `get` copies out of a snapshot too (without a mount, b still gone).
    let first = before
        .iter()
        .find(|(_, t)| t.contains_key("docs/big.bin"))
        .map(|(id, _)| id.clone())
        .unwrap();
    let dest = e.base.join("restored");
    let o = run(&[
        "get",
        "--config",
        &cfg,
        &format!("/.snapshots/{first}/docs"),
        dest.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(dest.join("big.bin")).unwrap(),
        common::bytes(21, 400_000)
    );
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"first version");

    // With b back, fsck finds nothing wrong.
    std::fs::rename(e.base.join("b-gone"), e.base.join("b")).unwrap();
    let o = run(&["fsck", "--config", &cfg]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}
