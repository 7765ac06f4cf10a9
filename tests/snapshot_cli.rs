//! Snapshots from the command line, as a user runs them: create (the id as the
//! last word), list (table and JSON), diff (two snapshots, and one against the
//! live tree), delete, restore to a folder and in place, forget with its dry run
//! and prune, protection; without a mount and through the mount daemon.

mod common;

use common::{assert_one_line_error, bin, can_mount, ok, run, stderr, stdout, Env};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Runs the binary without a controlling terminal (nobody can type a passphrase).
fn run_detached(args: &[&str]) -> std::process::Output {
    let mut c = bin();
    c.args(args).stdin(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    c.output().unwrap()
}

/// `snapshot create`, returning the id printed as the last word of the last line.
fn create(cfg: &str, extra: &[&str]) -> String {
    let mut args = vec!["snapshot", "create", "--config", cfg];
    args.extend_from_slice(extra);
    let out = ok(&args);
    let id = out
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 8, "{out}");
    assert!(id.bytes().all(|c| c.is_ascii_hexdigit()), "{out}");
    id
}

fn list_ids(cfg: &str) -> Vec<String> {
    let out = ok(&["snapshot", "list", "--config", cfg, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// The shard objects on the backends a, b and c of `e`.
fn shard_set(e: &Env) -> std::collections::BTreeSet<std::path::PathBuf> {
    fn walk(p: &Path, out: &mut std::collections::BTreeSet<std::path::PathBuf>) {
        for d in std::fs::read_dir(p).into_iter().flatten().flatten() {
            if d.file_type().unwrap().is_dir() {
                walk(&d.path(), out);
            } else {
                out.insert(d.path());
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    for b in ["a", "b", "c"] {
        walk(&e.base.join(b).join("chunks"), &mut out);
    }
    out
}

fn shard_count(e: &Env) -> usize {
    shard_set(e).len()
}

/// A local tree: files with their own modes and times, a nested directory, a symlink.
fn make_tree(root: &Path, seed: u64) {
    std::fs::create_dir_all(root.join("docs/deep")).unwrap();
    for (i, (name, len)) in [
        ("docs/a.txt", 1000),
        ("docs/deep/big.bin", 700_000),
        ("top.txt", 10),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(root.join(name), common::bytes(seed + i as u64, *len)).unwrap();
    }
    std::os::unix::fs::symlink("deep/big.bin", root.join("docs/link")).unwrap();
    std::fs::set_permissions(
        root.join("docs/a.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    std::fs::File::options()
        .write(true)
        .open(root.join("docs/deep/big.bin"))
        .unwrap()
        .set_modified(old)
        .unwrap();
}

#[test]
fn create_list_diff_and_delete_without_a_mount() {
    let e = Env::new();
    let cfg = common::three_backend_volume(&e, &[]);
    let src = e.base.join("src");
    make_tree(&src, 1);
    std::fs::write(src.join("old.txt"), b"going away").unwrap();
    ok(&["put", "--config", &cfg, src.to_str().unwrap(), "/"]);
    // put copies the directory itself: the volume holds /src/...
    let s1 = create(&cfg, &["--tag", "first", "--tag", "daily"]);

    // Change the tree: one file changed, one removed, a directory and a file added.
    std::fs::write(src.join("docs/a.txt"), b"new content").unwrap();
    ok(&[
        "put",
        "--config",
        &cfg,
        src.join("docs/a.txt").to_str().unwrap(),
        "/src/docs/a.txt",
    ]);
    ok(&["rm", "--config", &cfg, "/src/old.txt"]);
    ok(&["mkdir", "--config", &cfg, "/src/newdir"]);
    ok(&[
        "put",
        "--config",
        &cfg,
        src.join("top.txt").to_str().unwrap(),
        "/src/newdir/copy.txt",
    ]);
    let s2 = create(&cfg, &[]);
    assert_ne!(s1, s2);

    // The table: one row per snapshot, oldest first, with tags and counts.
    let table = ok(&["snapshot", "list", "--config", &cfg]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "TIME", "TAGS", "FILES", "SIZE", "ADDED", "PATHS"],
        "{table}"
    );
    assert!(lines[1].starts_with(&s1), "{table}");
    assert!(lines[1].contains("first,daily"), "{table}");
    assert!(lines[2].starts_with(&s2), "{table}");
    let row1: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row1[4], "4", "files of the first snapshot: {table}");

    // JSON: times local (with the offset) and UTC, the same instant, just now.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["snapshot", "list", "--config", &cfg, "--json"])).unwrap();
    let arr = json.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["id"], s1.as_str());
    assert_eq!(arr[0]["tags"], serde_json::json!(["first", "daily"]));
    assert_eq!(arr[0]["files"], 4);
    assert_eq!(arr[0]["dirs"], 3);
    assert_eq!(arr[0]["others"], 1);
    assert_eq!(arr[0]["bytes"], 1000 + 700_000 + 10 + 10);
    assert_eq!(
        arr[0]["added_bytes"], arr[0]["bytes"],
        "all new to the first"
    );
    assert_eq!(arr[1]["added_bytes"], 11, "only the changed file is new");
    let local = chrono::DateTime::parse_from_rfc3339(arr[0]["time"].as_str().unwrap()).unwrap();
    let utc_text = arr[0]["time_utc"].as_str().unwrap();
    assert!(utc_text.ends_with('Z'), "{utc_text}");
    let utc = chrono::DateTime::parse_from_rfc3339(utc_text).unwrap();
    assert_eq!(local, utc);
    let age = chrono::Utc::now().signed_duration_since(utc);
    assert!(age.num_seconds().abs() < 600, "{age}");

    // Diff of the two snapshots: restic's letters, directories with a slash.
    let d = ok(&["snapshot", "diff", "--config", &cfg, &s1, &s2]);
    let changes: Vec<&str> = d
        .lines()
        .filter(|l| l.len() > 5 && &l[1..5] == "    ")
        .collect();
    assert_eq!(
        changes,
        [
            "M    /src/docs/a.txt",
            "+    /src/newdir/",
            "+    /src/newdir/copy.txt",
            "-    /src/old.txt",
        ],
        "{d}"
    );
    assert!(d.contains("files:    1 new, 1 removed, 1 changed"), "{d}");
    assert!(d.contains("dirs:     1 new, 0 removed"), "{d}");
    // Against the live tree; a prefix names a snapshot too.
    ok(&["rm", "--config", &cfg, "-r", "/src/docs/deep"]);
    let d = ok(&["snapshot", "diff", "--config", &cfg, &s2[..5], "live"]);
    assert!(d.contains("-    /src/docs/deep/\n"), "{d}");
    assert!(d.contains("-    /src/docs/deep/big.bin\n"), "{d}");
    assert!(d.contains("removed:  683.6 KiB"), "{d}");
    let d = ok(&["snapshot", "diff", "--config", &cfg, &s2, &s2]);
    assert!(d.contains("no differences"), "{d}");
    assert_one_line_error(
        &run(&["snapshot", "diff", "--config", &cfg, "live", &s2]),
        "second side",
    );

    // Delete: an unknown id among them, and nothing is deleted.
    assert_one_line_error(
        &run(&["snapshot", "delete", "--config", &cfg, &s1, "0badc0de"]),
        "no snapshot 0badc0de",
    );
    assert_eq!(list_ids(&cfg), [s1.clone(), s2.clone()]);
    let out = ok(&["snapshot", "delete", "--config", &cfg, &s1]);
    assert!(
        out.contains(&format!("deleted 1 snapshot(s): {s1}")),
        "{out}"
    );
    assert_eq!(list_ids(&cfg), [s2.as_str()]);
    assert_one_line_error(
        &run(&["snapshot", "diff", "--config", &cfg, &s1, "live"]),
        &format!("no snapshot {s1}"),
    );
    ok(&["snapshot", "delete", "--config", &cfg, "latest"]);
    let out = ok(&["snapshot", "list", "--config", &cfg]);
    assert!(
        out.starts_with("no snapshot yet: cloudraid snapshot create"),
        "{out}"
    );
    let fsck = ok(&["fsck", "--config", &cfg]);
    assert!(!fsck.is_empty());
}

#[test]
fn restore_to_a_folder_and_in_place_without_a_mount() {
    let e = Env::new();
    let cfg = common::three_backend_volume(&e, &[]);
    let src = e.base.join("src");
    make_tree(&src, 7);
    ok(&["put", "--config", &cfg, src.to_str().unwrap(), "/"]);
    let id = create(&cfg, &[]);
    // The live tree changes after the snapshot.
    ok(&["rm", "--config", &cfg, "-r", "/src/docs"]);

    // To a folder: the snapshot's tree as it was.
    let out = e.base.join("out");
    std::fs::create_dir(&out).unwrap();
    let said = ok(&[
        "restore",
        "--config",
        &cfg,
        &id,
        "/src",
        out.to_str().unwrap(),
    ]);
    assert!(said.contains(&format!("from snapshot {id}")), "{said}");
    common::assert_same_tree(&src, &out.join("src"));
    // Again: every existing file is refused, nothing written.
    std::fs::write(out.join("src/top.txt"), b"local edit").unwrap();
    assert_one_line_error(
        &run(&[
            "restore",
            "--config",
            &cfg,
            &id,
            "/src",
            out.to_str().unwrap(),
        ]),
        "already exist: nothing was written (--overwrite replaces them",
    );
    assert_eq!(
        std::fs::read(out.join("src/top.txt")).unwrap(),
        b"local edit"
    );
    ok(&[
        "restore",
        "--config",
        &cfg,
        "latest",
        "/src",
        out.to_str().unwrap(),
        "--overwrite",
    ]);
    common::assert_same_tree(&src, &out.join("src"));
    assert_one_line_error(
        &run(&[
            "restore",
            "--config",
            &cfg,
            &id,
            "/nothing",
            out.to_str().unwrap(),
        ]),
        &format!("/nothing: no such file or directory in snapshot {id}"),
    );
    assert_one_line_error(
        &run(&["restore", "--config", &cfg, &id, "/src"]),
        "local DEST (or --in-place",
    );

    // In place: the removed directory comes back, and no chunk is uploaded.
    let before = shard_count(&e);
    let said = ok(&["restore", "--config", &cfg, &id, "/src/docs", "--in-place"]);
    assert!(said.contains("nothing uploaded"), "{said}");
    assert_eq!(shard_count(&e), before, "restore in place uploaded shards");
    let back = e.base.join("back");
    ok(&["get", "--config", &cfg, "/src", back.to_str().unwrap()]);
    common::assert_same_tree(&src, &back);
    // An existing live path is refused without --overwrite.
    assert_one_line_error(
        &run(&[
            "restore",
            "--config",
            &cfg,
            &id,
            "/src/top.txt",
            "--in-place",
        ]),
        "/src/top.txt exists in the live tree",
    );
    ok(&[
        "restore",
        "--config",
        &cfg,
        &id,
        "/src/top.txt",
        "--in-place",
        "--overwrite",
    ]);
}

#[test]
fn forget_dry_run_changes_nothing_and_prune_deletes_shards() {
    let e = Env::new();
    let cfg = common::three_backend_volume(&e, &[]);
    let f = e.base.join("f.bin");
    let mut ids = Vec::new();
    for i in 0..3 {
        std::fs::write(&f, common::bytes(100 + i, 300_000)).unwrap();
        ok(&["put", "--config", &cfg, f.to_str().unwrap(), "/f.bin"]);
        ids.push(create(&cfg, &["--tag", "t"]));
    }
    assert_one_line_error(
        &run(&["forget", "--config", &cfg, "--prune"]),
        "forget needs at least one --keep-* rule",
    );
    let before = shard_count(&e);
    let out = ok(&["forget", "--config", &cfg, "--keep-last", "1", "--dry-run"]);
    assert!(out.contains(&format!("would remove  {}", ids[0])), "{out}");
    assert!(out.contains(&format!("would remove  {}", ids[1])), "{out}");
    assert!(out.contains(&format!("keep          {}", ids[2])), "{out}");
    // The two older versions of the file, held by nothing else.
    assert!(out.contains("would free 585.9 KiB"), "{out}");
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    assert_eq!(list_ids(&cfg), ids);
    assert_eq!(shard_count(&e), before);

    // --tag: only the snapshots with that tag are considered (none here).
    let out = ok(&[
        "forget",
        "--config",
        &cfg,
        "--keep-last",
        "1",
        "--tag",
        "other",
    ]);
    assert!(out.contains("no snapshot to consider"), "{out}");
    assert_eq!(list_ids(&cfg), ids);

    let out = ok(&[
        "forget",
        "--config",
        &cfg,
        "--keep-last",
        "1",
        "--prune",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["removed"], 2);
    assert!(r["pruned_chunks"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(list_ids(&cfg), [ids[2].clone()]);
    assert!(shard_count(&e) < before, "prune deleted no shard");
    let fsck = run(&["fsck", "--config", &cfg]);
    assert!(fsck.status.success(), "{}", stdout(&fsck));
}

#[test]
fn protected_snapshots_need_the_key_given_again() {
    let e = Env::new();
    let key = e.p("v.key");
    let cfg = common::three_backend_volume(&e, &["--key-file", &key]);
    let f = e.base.join("f.txt");
    std::fs::write(&f, b"data").unwrap();
    ok(&["put", "--config", &cfg, f.to_str().unwrap(), "/f.txt"]);
    let s1 = create(&cfg, &[]);
    let s2 = create(&cfg, &[]);
    let out = ok(&["snapshot", "protect", "--config", &cfg]);
    assert!(out.contains("now protected"), "{out}");
    assert!(ok(&["snapshot", "list", "--config", &cfg]).contains("protected"));

    // The config's key file opens the volume, but is not the proof.
    assert_one_line_error(
        &run_detached(&["snapshot", "delete", "--config", &cfg, &s1]),
        "the snapshots of this volume are protected: deleting snapshots needs",
    );
    assert_one_line_error(
        &run_detached(&["forget", "--config", &cfg, "--keep-last", "1"]),
        "protected",
    );
    assert_one_line_error(
        &run_detached(&["snapshot", "unprotect", "--config", &cfg]),
        "protected",
    );
    assert_eq!(list_ids(&cfg), [s1.clone(), s2.clone()]);
    // A dry run deletes nothing: no proof needed.
    ok(&["forget", "--config", &cfg, "--keep-last", "1", "--dry-run"]);
    // Another volume's key file is no proof.
    let other = e.p("other.key");
    std::fs::write(&other, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = run_detached(&[
        "snapshot",
        "delete",
        "--config",
        &cfg,
        "--key-file",
        &other,
        &s1,
    ]);
    assert!(!o.status.success());
    assert_eq!(list_ids(&cfg), [s1.clone(), s2.clone()]);

    // The key file named on the command line is.
    ok(&[
        "snapshot",
        "delete",
        "--config",
        &cfg,
        "--key-file",
        &key,
        &s1,
    ]);
    assert_eq!(list_ids(&cfg), [s2.as_str()]);
    ok(&[
        "snapshot",
        "unprotect",
        "--config",
        &cfg,
        "--key-file",
        &key,
    ]);
    let o = run_detached(&["snapshot", "delete", "--config", &cfg, &s2]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(list_ids(&cfg).is_empty());

    // A volume without encryption has nothing to protect with.
    let plain = Env::new();
    let pcfg = common::three_backend_volume(&plain, &["--no-encryption"]);
    assert_one_line_error(
        &run(&["snapshot", "protect", "--config", &pcfg]),
        "not encrypted",
    );
}

/// Runs `args` on a pseudo-terminal (util-linux `script`), typing `input`.
fn on_terminal(args: &[&str], input: &str) -> Option<(bool, String)> {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping the terminal part: util-linux `script` is missing");
        return None;
    }
    let cmd = std::iter::once(env!("CARGO_BIN_EXE_cloudraid"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("CLOUDRAID_PASSPHRASE", common::PASSPHRASE)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Typed once the prompt is up (a line typed earlier would be echoed).
    std::thread::sleep(Duration::from_millis(1500));
    stdin.write_all(input.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    drop(stdin);
    Some((o.status.success(), format!("{}{}", stdout(&o), stderr(&o))))
}

#[test]
fn a_passphrase_typed_on_the_terminal_is_the_proof() {
    let e = Env::new();
    // The passphrase comes from CLOUDRAID_PASSPHRASE to open the volume.
    let cfg = common::three_backend_volume(&e, &[]);
    let s1 = create(&cfg, &[]);
    ok(&["snapshot", "protect", "--config", &cfg]);
    let Some((done, out)) = on_terminal(
        &["snapshot", "delete", "--config", &cfg, &s1],
        "not the passphrase\n",
    ) else {
        return;
    };
    assert!(!done, "{out}");
    assert!(out.contains("type its passphrase"), "{out}");
    assert!(out.contains("wrong passphrase"), "{out}");
    assert_eq!(list_ids(&cfg), [s1.as_str()]);
    let (done, out) = on_terminal(
        &["snapshot", "delete", "--config", &cfg, &s1],
        &format!("{}\n", common::PASSPHRASE),
    )
    .unwrap();
    assert!(done, "{out}");
    assert!(
        out.contains(&format!("deleted 1 snapshot(s): {s1}")),
        "{out}"
    );
    assert!(list_ids(&cfg).is_empty());
}

#[test]
fn through_the_mount_daemon_while_another_process_writes() {
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let key = e.p("v.key");
    let (cfg, mp) = common::mounted_volume(&e, &["--key-file", &key]);
    let m = Path::new(&mp);
    std::fs::create_dir(m.join("docs")).unwrap();
    let a = common::bytes(5, 200_000);
    std::fs::write(m.join("docs/a.bin"), &a).unwrap();
    std::fs::hard_link(m.join("docs/a.bin"), m.join("docs/hard.bin")).unwrap();
    std::os::unix::fs::symlink("a.bin", m.join("docs/link")).unwrap();
    std::fs::set_permissions(m.join("docs/a.bin"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_400_000_000);
    std::fs::File::options()
        .write(true)
        .open(m.join("docs/a.bin"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::fs::create_dir(m.join("busy")).unwrap();

    // Another process keeps writing whole files while the snapshot is taken (a
    // process of its own: a fork of this one would close, so commit, its files).
    let stop = e.base.join("stop");
    let mut writer = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            r#"i=0; while [ ! -e "$1" ]; do head -c 300000 /dev/urandom > "$2/f$((i % 20))"; i=$((i+1)); done; echo $i"#,
        )
        .arg("sh")
        .arg(&stop)
        .arg(m.join("busy"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let id = create(&cfg, &[]);
    std::fs::write(&stop, b"").unwrap();
    let out = writer.stdout.take().unwrap();
    assert!(writer.wait().unwrap().success());
    let written: u64 = std::io::read_to_string(out)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(written > 0);

    // The snapshot is in the mount; each file in it is one committed version.
    let snap = m.join(".snapshots").join(&id);
    let mut names: Vec<String> = std::fs::read_dir(&snap)
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["busy", "docs"]);
    for f in std::fs::read_dir(snap.join("busy")).unwrap() {
        let data = std::fs::read(f.unwrap().path()).unwrap();
        assert!(
            data.is_empty() || data.len() == 300_000,
            "a file half-written in the snapshot: {} bytes",
            data.len()
        );
    }
    assert_eq!(std::fs::read(snap.join("docs/a.bin")).unwrap(), a);
    let ro = std::fs::write(snap.join("docs/new"), b"x").unwrap_err();
    assert_eq!(ro.raw_os_error(), Some(libc::EROFS));

    // To a folder through the daemon: modes, times, symlink, hard links kept.
    let out = e.base.join("out");
    ok(&[
        "restore",
        "--config",
        &cfg,
        &id,
        "/docs",
        out.to_str().unwrap(),
    ]);
    let ma = std::fs::metadata(out.join("a.bin")).unwrap();
    let mh = std::fs::metadata(out.join("hard.bin")).unwrap();
    assert_eq!((ma.ino(), ma.nlink()), (mh.ino(), 2), "hard link not kept");
    assert_eq!(ma.mode() & 0o7777, 0o600);
    assert_eq!(ma.mtime(), 1_400_000_000);
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), a);
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        Path::new("a.bin")
    );

    // get keeps hard links of the live tree too.
    let live = e.base.join("live");
    ok(&["get", "--config", &cfg, "/docs", live.to_str().unwrap()]);
    let (la, lh) = (
        std::fs::metadata(live.join("a.bin")).unwrap(),
        std::fs::metadata(live.join("hard.bin")).unwrap(),
    );
    assert_eq!(
        (la.ino(), la.nlink()),
        (lh.ino(), 2),
        "get: hard link not kept"
    );

    // In place through the daemon: back in the mount at once, nothing uploaded.
    std::fs::remove_dir_all(m.join("docs")).unwrap();
    ok(&["sync", "--config", &cfg]);
    let before = shard_set(&e);
    ok(&["restore", "--config", &cfg, &id, "/docs", "--in-place"]);
    assert_eq!(std::fs::read(m.join("docs/a.bin")).unwrap(), a);
    let la = std::fs::metadata(m.join("docs/a.bin")).unwrap();
    let lh = std::fs::metadata(m.join("docs/hard.bin")).unwrap();
    assert_eq!(la.ino(), lh.ino(), "hard link not restored in place");
    ok(&["sync", "--config", &cfg]);
    // (The collector may meanwhile delete versions of the busy files.)
    let new: Vec<_> = shard_set(&e).difference(&before).cloned().collect();
    assert!(new.is_empty(), "restore in place uploaded {new:?}");

    // Protected: the daemon itself refuses a request without proof.
    ok(&["snapshot", "protect", "--config", &cfg]);
    let sock = e.base.join("state/control.sock");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    writeln!(s, r#"{{"op":"snapshot_delete","ids":["{id}"]}}"#).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
    let resp: serde_json::Value = serde_json::from_str(answer.trim()).unwrap();
    assert_eq!(resp["ok"], false, "{answer}");
    assert_eq!(resp["needs_proof"], true, "{answer}");
    assert_eq!(list_ids(&cfg), [id.as_str()]);
    ok(&[
        "snapshot",
        "delete",
        "--config",
        &cfg,
        "--key-file",
        &key,
        &id,
    ]);
    assert!(list_ids(&cfg).is_empty());
    let o = run(&["umount", &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
}
