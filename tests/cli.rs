//! The binary as a user runs it: init, mount (detached), status, umount, outages,
//! a killed daemon, and the one-line errors for bad input.

mod common;

use common::{
    assert_one_line_error, bin, can_mount, mounted_type, mounted_volume, run, stderr, stdout, Env,
};

use std::path::Path;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn init_refuses_bad_input_with_one_line() {
    let e = Env::new();
    let cfg = e.p("v.toml");
    let (a, b, c) = (e.backend("a"), e.backend("b"), e.backend("c"));
    let o = e.init(
        &cfg,
        &["--backend", &a, "--backend", &b, "--data-shards", "0"],
    );
    assert_one_line_error(&o, "at least 1");
    let o = e.init(
        &cfg,
        &[
            "--backend",
            &a,
            "--backend",
            &b,
            "--data-shards",
            "2",
            "--parity-shards",
            "1",
        ],
    );
    assert_one_line_error(&o, "--allow-shared-backends");
    let o = e.init(&cfg, &["--backend", "x=ftp://host/path"]);
    assert_one_line_error(&o, "unknown scheme");
    let o = e.init(&cfg, &["--backend", &a, "--chunk-size", "4 parsecs"]);
    assert!(
        !o.status.success() && stderr(&o).contains("unknown unit"),
        "{}",
        stderr(&o)
    );
    assert!(!Path::new(&cfg).exists(), "nothing written after a refusal");

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
            &e.p("s1"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("2+1 shards over 3 backends"),
        "{}",
        stdout(&o)
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains("data_shards = 2")
            && text.contains("parity_shards = 1")
            && text.contains("chunk_size = \"1MiB\"")
    );
    let mode = std::fs::metadata(e.p("s1"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o700);
    let marker = std::fs::read_to_string(e.base.join("a/cloudraid.volume")).unwrap();
    assert!(marker.contains("\"cloudraid-volume\""));

    let o = e.init(&cfg, &["--backend", &a, "--backend", &b, "--backend", &c]);
    assert_one_line_error(&o, "--force");
    // Another volume over the same folders is refused, and the first one's marker stays.
    let o = e.init(
        &e.p("w.toml"),
        &[
            "--backend",
            &a,
            "--backend",
            &e.backend("d"),
            "--state-dir",
            &e.p("s2"),
        ],
    );
    assert_one_line_error(&o, "already holds volume");
    assert_eq!(
        std::fs::read_to_string(e.base.join("a/cloudraid.volume")).unwrap(),
        marker
    );
    // Shared backends are allowed when asked for, with a warning about fault tolerance.
    let o = e.init(
        &e.p("x.toml"),
        &[
            "--backend",
            &e.backend("x1"),
            "--backend",
            &e.backend("x2"),
            "--data-shards",
            "2",
            "--parity-shards",
            "2",
            "--allow-shared-backends",
            "--state-dir",
            &e.p("s3"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("survives the loss of 1 backend(s), not 2"),
        "{}",
        stdout(&o)
    );
    // A broken config gets one line, naming the file.
    std::fs::write(e.p("broken.toml"), "[volume\nname=").unwrap();
    assert_one_line_error(
        &run(&["status", "--config", &e.p("broken.toml")]),
        "broken.toml",
    );
    assert_one_line_error(
        &run(&["status", "--config", &e.p("absent.toml")]),
        "cannot read config",
    );
}

/// Every file and folder below `dir`, for "nothing was left behind" checks.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                out.push(e.path().display().to_string());
                walk(&e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

#[test]
fn init_refuses_the_same_folder_twice_and_a_failed_init_leaves_nothing() {
    let e = Env::new();
    let cfg = e.p("v.toml");
    std::fs::create_dir(e.p("a")).unwrap();
    std::fs::create_dir(e.p("other")).unwrap();
    std::os::unix::fs::symlink(e.p("a"), e.p("link")).unwrap();
    let a = e.backend("a");
    let before = tree(&e.base);
    for twin in [
        format!("b=file://{}/", e.p("a")),
        format!("b=file://{}/../a", e.p("a")),
        format!("b=file://{}/./", e.p("a")),
        format!("b=file://{}", e.p("link")),
    ] {
        let o = e.init(
            &cfg,
            &[
                "--backend",
                &a,
                "--backend",
                &twin,
                "--backend",
                &e.backend("c"),
                "--state-dir",
                &e.p("s"),
            ],
        );
        assert_one_line_error(&o, "are the same place");
        assert!(
            stderr(&o).contains("backends a (") && stderr(&o).contains(" and b ("),
            "{}",
            stderr(&o)
        );
        assert_eq!(tree(&e.base), before, "nothing written for {twin}");
    }
    // One folder inside another is refused the same way.
    let o = e.init(
        &cfg,
        &[
            "--backend",
            &a,
            "--backend",
            &format!("b=file://{}/inner", e.p("a")),
            "--backend",
            &e.backend("c"),
        ],
    );
    assert_one_line_error(&o, "one inside the other");
    assert_eq!(tree(&e.base), before);

    // A failure after markers and index were written (the config cannot be
    // saved: its folder is a file) takes everything back...
    std::fs::write(e.p("file"), b"x").unwrap();
    let args = [
        "--backend",
        &a,
        "--backend",
        &e.backend("b"),
        "--backend",
        &e.backend("c"),
        "--state-dir",
        &e.p("s"),
        "--key-file",
        &e.p("keys/v.key"),
    ];
    std::fs::create_dir(e.p("keys")).unwrap();
    let before = tree(&e.base);
    let o = e.init(&e.p("file/v.toml"), &args);
    assert_one_line_error(&o, "file/v.toml");
    assert_eq!(tree(&e.base), before, "a failed init leaves nothing behind");
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    // ...so the same init, retried with a config path that works, succeeds.
    let o = e.init(&cfg, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(Path::new(&e.p("a/cloudraid.volume")).exists());
    assert!(Path::new(&e.p("s/index")).exists());
}

/// Runs the binary with stdout a pipe whose reading end is already closed, as
/// `cloudraid ... | head` meets it once head has exited.
fn run_into_closed_pipe(args: &[&str]) -> std::process::Output {
    run_into_closed_pipe_with(bin(), args)
}

fn run_into_closed_pipe_with(
    mut cmd: std::process::Command,
    args: &[&str],
) -> std::process::Output {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    let write_end = unsafe { std::process::Stdio::from_raw_fd(fds[1]) };
    cmd.args(args)
        .stdout(write_end)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn every_command_ends_quietly_on_a_closed_pipe_like_coreutils() {
    use std::os::unix::process::ExitStatusExt;
    let e = Env::new();
    let cfg = common::three_backend_volume(&e, &[]);
    let o = run(&["mkdir", "--config", &cfg, "-p", "/d1", "/d2", "/d3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let commands: [&[&str]; 9] = [
        &["ls", "--config", &cfg, "/"],
        &["ls", "--config", &cfg, "--json", "/"],
        &["du", "--config", &cfg],
        &["status", "--config", &cfg],
        &["fsck", "--config", &cfg],
        &["scrub", "--config", &cfg],
        &["completions", "bash"],
        &["man"],
        &["--help"],
    ];
    for args in commands {
        let o = run_into_closed_pipe(args);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        // As `seq 1000000 | head -1` leaves seq: killed by SIGPIPE (141 in a shell), or done.
        assert!(
            o.status.signal() == Some(libc::SIGPIPE) || o.status.success(),
            "{args:?}: {:?} {err}",
            o.status
        );
    }
    // The demo too, before it mounts (it prints what it creates first).
    let mut demo = bin();
    demo.env("XDG_DATA_HOME", e.p("data"));
    let o = run_into_closed_pipe_with(demo, &["demo", &e.p("demo-mnt")]);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{}", stderr(&o));
    // With a reader, the same commands print in full.
    assert!(stdout(&run(&["ls", "--config", &cfg, "/"])).contains("d3/"));
}

#[test]
fn a_summary_is_printed_only_for_what_was_done() {
    let e = Env::new();
    let cfg = common::three_backend_volume(&e, &[]);
    std::fs::write(e.p("f"), b"data").unwrap();
    assert!(run(&["put", "--config", &cfg, &e.p("f"), "/f"])
        .status
        .success());
    assert!(run(&["mkdir", "--config", &cfg, "/d"]).status.success());
    let cases: [(&[&str], &str); 5] = [
        (&["put", "--config", &cfg, &e.p("absent"), "/x"], "absent"),
        (
            &["get", "--config", &cfg, "/absent", &e.p("out")],
            "/absent",
        ),
        (&["rm", "--config", &cfg, "/d"], "-r"),
        (&["rm", "--config", &cfg, "/absent"], "/absent"),
        (&["mkdir", "--config", &cfg, "/d"], "already exists"),
    ];
    for (args, needle) in cases {
        let o = run(args);
        assert_one_line_error(&o, needle);
        assert_eq!(stdout(&o), "", "{args:?}: nothing done, nothing summarised");
    }
    // Several failures and nothing done: each listed, and the last line says so.
    let o = run(&["rm", "--config", &cfg, "/absent", "/d"]);
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o)
            .trim_end()
            .ends_with("2 removals failed (listed above); nothing was done"),
        "{}",
        stderr(&o)
    );
    // Part done: the summary says what was, the error what was not.
    let o = run(&["rm", "--config", &cfg, "/f", "/absent"]);
    assert_eq!(stdout(&o), "removed 1 file(s) and 0 director(ies)\n");
    assert_one_line_error(&o, "/absent");
    let o = run(&["mkdir", "--config", &cfg, "/new", "/d"]);
    assert_eq!(stdout(&o), "created 1 director(ies)\n");
    assert_one_line_error(&o, "/d: already exists");
    assert!(stdout(&run(&["ls", "--config", &cfg, "/"])).contains("new/"));
}

#[test]
fn unclear_inputs_get_one_clear_line() {
    let e = Env::new();
    let cfg = common::three_backend_volume(&e, &[]);
    // A key file that is not a key (binary, or text of the wrong length).
    use std::os::unix::fs::PermissionsExt;
    for (name, bytes) in [
        ("bin.key", vec![0xffu8, 0xfe, 0, 1, 2]),
        ("short.key", b"abcd\n".to_vec()),
    ] {
        let k = e.p(name);
        std::fs::write(&k, bytes).unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        let o = run(&["get", "--config", &cfg, "--key-file", &k, "/", &e.p("out")]);
        assert_one_line_error(&o, &format!("key file {k} is not a cloudraid key file"));
        assert!(!stderr(&o).contains("UTF-8"), "{}", stderr(&o));
    }
    // A TOML error: file, line, column and the problem, on one line.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[[backend]]\nname = \"d\"\nurl = file:///x\n");
    let line = text.lines().count();
    std::fs::write(e.p("bad.toml"), &text).unwrap();
    let o = run(&["status", "--config", &e.p("bad.toml")]);
    assert_one_line_error(&o, &format!("bad.toml, line {line}, column 7: "));
    assert!(
        !stderr(&o).contains(" | "),
        "no squashed caret display: {}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[volume]", "[volume]\nsize = 3");
    std::fs::write(e.p("unknown.toml"), text).unwrap();
    assert_one_line_error(
        &run(&["status", "--config", &e.p("unknown.toml")]),
        "unknown.toml, line 3, column 1: unknown field `size`",
    );
    // The demo on a path that is a file: said so, nothing created.
    std::fs::write(e.p("plain-file"), b"x").unwrap();
    let o = bin()
        .args(["demo", &e.p("plain-file")])
        .env("XDG_DATA_HOME", e.p("data"))
        .output()
        .unwrap();
    assert_one_line_error(&o, "plain-file is a file, not a folder");
    assert!(!Path::new(&e.p("data")).exists());
}

#[test]
fn ls_escapes_names_for_the_terminal_and_json_keeps_their_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let e = Env::new();
    let cfg = common::three_backend_volume(&e, &[]);
    let src = e.base.join("src");
    std::fs::create_dir(&src).unwrap();
    let names: [&[u8]; 5] = [
        b"two\nlines",
        b"\x1b[2Jcleared",
        b"bad\xff",
        b"bad\xfe",
        b"plain.txt",
    ];
    for n in names {
        std::fs::write(src.join(std::ffi::OsStr::from_bytes(n)), b"x").unwrap();
    }
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(b"to\x07bell"), src.join("link"))
        .unwrap();
    let o = run(&["put", "--config", &cfg, src.to_str().unwrap(), "/d"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["ls", "--config", &cfg, "/d"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(
        !o.stdout.iter().any(|b| *b == 0x1b || *b == 0x07),
        "no escape sequence reaches the terminal: {table:?}"
    );
    // A header and one row per entry: a newline in a name does not split its row.
    assert_eq!(table.lines().count(), 1 + names.len() + 1, "{table}");
    for shown in [
        "'two'$'\\n''lines'",
        "$'\\033''[2Jcleared'",
        "'bad'$'\\377'",
        "'bad'$'\\376'",
        " plain.txt\n",
        " link -> 'to'$'\\007''bell'",
    ] {
        assert!(table.contains(shown), "{shown:?} in\n{table}");
    }
    // JSON: names as strings, and the exact bytes of those that are not UTF-8.
    let o = run(&["ls", "--config", &cfg, "--json", "/d"]);
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let exact: std::collections::HashSet<Vec<u8>> = entries
        .iter()
        .map(|v| match v["name_hex"].as_str() {
            Some(h) => hex::decode(h).unwrap(),
            None => v["name"].as_str().unwrap().as_bytes().to_vec(),
        })
        .collect();
    let mut want: std::collections::HashSet<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
    want.insert(b"link".to_vec());
    assert_eq!(exact, want);
    let plain = entries.iter().find(|v| v["name"] == "plain.txt").unwrap();
    assert!(plain.get("name_hex").is_none(), "{plain}");
    let link = entries.iter().find(|v| v["name"] == "link").unwrap();
    assert_eq!(link["target"], "to\u{7}bell");
}

#[test]
fn a_held_index_names_its_holder() {
    let e = Env::new();
    let cfg = common::three_backend_volume(&e, &[]);
    // This process takes the index's lock, as a running command holds it.
    use std::os::fd::AsRawFd;
    let db = std::fs::File::open(e.p("state/index/db")).unwrap();
    assert_eq!(
        unsafe { libc::flock(db.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let o = run(&["ls", "--config", &cfg, "/"]);
    assert_one_line_error(
        &o,
        &format!(
            "is held by another process (pid {}: `cli",
            std::process::id()
        ),
    );
    assert!(
        stderr(&o).contains("retry when it has finished"),
        "{}",
        stderr(&o)
    );
    drop(db);
    assert!(run(&["ls", "--config", &cfg, "/"]).status.success());
}

#[test]
fn mount_status_umount_and_remount() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let cfg = e.p("v.toml");
    let o = e.init(
        &cfg,
        &[
            "--backend",
            &e.backend("a"),
            "--backend",
            &e.backend("b"),
            "--backend",
            &e.backend("c"),
            "--state-dir",
            &e.p("state"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mp = e.p("mnt");
    assert_one_line_error(&run(&["mount", "--config", &cfg, &mp]), "mkdir");
    std::fs::create_dir(&mp).unwrap();
    let o = run(&["mount", "--config", &cfg, &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        mounted_type(&mp),
        Some((cfg.clone(), "fuse.cloudraid".into()))
    );
    assert_one_line_error(&run(&["mount", "--config", &cfg, &mp]), "already mounted");
    // On a second mountpoint: says where the volume is mounted, at once.
    let mp2 = e.p("mnt2");
    std::fs::create_dir(&mp2).unwrap();
    let started = std::time::Instant::now();
    assert_one_line_error(
        &run(&["mount", "--config", &cfg, &mp2]),
        &format!("the volume is mounted on {mp}"),
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(mounted_type(&mp2), None);

    let data = common::bytes(1, 9 << 20);
    std::fs::write(format!("{mp}/file.bin"), &data).unwrap();
    std::fs::create_dir(format!("{mp}/dir")).unwrap();
    std::fs::write(format!("{mp}/dir/small"), b"small").unwrap();
    let o = run(&["status", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains(&format!("mounted at {mp}")), "{s}");
    assert_eq!(
        s.matches("reachable").count(),
        4,
        "three backends and the health line: {s}"
    );
    assert!(s.contains("files            2"), "{s}");
    assert!(s.contains("overhead ratio   1.50x"), "{s}");

    let o = run(&["umount", &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mounted_type(&mp), None);
    let o = run(&["status", "--config", &cfg]);
    assert!(stdout(&o).contains("not mounted"), "{}", stdout(&o));
    assert_one_line_error(&run(&["umount", &mp]), "not mounted");

    let o = run(&["mount", "--config", &cfg, &mp, "-o", "ro,noatime"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(format!("{mp}/file.bin")).unwrap() == data);
    assert_eq!(std::fs::read(format!("{mp}/dir/small")).unwrap(), b"small");
    assert!(std::fs::write(format!("{mp}/new"), b"x").is_err());
    assert!(run(&["umount", &mp]).status.success());
    assert_one_line_error(
        &run(&["mount", "--config", &cfg, &mp, "-o", "bogus"]),
        "unknown mount option",
    );
}

#[test]
fn files_stay_readable_with_a_backend_folder_gone() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    // A small cache and chunk size, so reads really go to the backends.
    let (cfg, mp) = mounted_volume(
        &e,
        &[
            "--data-shards",
            "2",
            "--parity-shards",
            "1",
            "--chunk-size",
            "256KiB",
            "--cache-size",
            "1MiB",
        ],
    );
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            (
                format!("{mp}/f{i}"),
                common::bytes(i, (i as usize * 700_001) % (5 << 20) + 1),
            )
        })
        .collect();
    for (p, d) in &files {
        std::fs::write(p, d).unwrap();
    }
    // While mounted: the folder of backend b disappears (an unplugged drive).
    std::fs::rename(e.base.join("b"), e.base.join("b-unplugged")).unwrap();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    for (p, d) in &files {
        assert!(
            &std::fs::read(p).unwrap() == d,
            "{p} differs with backend b gone"
        );
    }
    let s = stdout(&run(&["status", "--config", &cfg]));
    let b_line = s.lines().find(|l| l.starts_with("b ")).unwrap();
    // Reads tripped b's circuit breaker: it is down, and the probe says why.
    assert!(b_line.contains("DOWN"), "{s}");
    assert!(s.contains("is the drive mounted?"), "{s}");
    assert!(s.contains("DEGRADED"), "{s}");
    // And after a remount with the folder still gone.
    assert!(run(&["umount", &mp]).status.success());
    let o = run(&["mount", "--config", &cfg, &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (p, d) in &files {
        assert!(&std::fs::read(p).unwrap() == d, "{p} differs after remount");
    }
    // A second backend gone is more than m=1: reads fail with EIO, listing still works.
    std::fs::rename(e.base.join("c"), e.base.join("c-unplugged")).unwrap();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    let err = std::fs::read(&files[11].0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert_eq!(std::fs::read_dir(&mp).unwrap().count(), 12);
    assert!(run(&["umount", &mp]).status.success());
    let log = std::fs::read_to_string(e.base.join("state/mount.log")).unwrap();
    assert!(
        log.contains("backend=b") && log.contains("is the drive mounted"),
        "log names the failing backend:\n{log}"
    );
}

#[test]
fn killed_daemon_leaves_committed_files_intact() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let (cfg, mp) = mounted_volume(&e, &[]);
    let data = common::bytes(4, 3 << 20);
    {
        let mut f = std::fs::File::create(format!("{mp}/kept")).unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        f.sync_all().unwrap();
    }
    std::os::unix::fs::symlink("kept", format!("{mp}/link")).unwrap();
    // fsync of the directory makes the new name durable at once (see docs/SEMANTICS.md).
    std::fs::File::open(&mp).unwrap().sync_all().unwrap();
    let status = stdout(&run(&["status", "--config", &cfg, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let pid = v["pid"].as_u64().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The dead mount is still listed; `cloudraid umount` clears it.
    assert!(mounted_type(&mp).is_some());
    let o = run(&["umount", &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["mount", "--config", &cfg, &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(format!("{mp}/kept")).unwrap() == data);
    assert_eq!(
        std::fs::read_link(format!("{mp}/link")).unwrap(),
        Path::new("kept")
    );
    assert!(run(&["umount", &mp]).status.success());
}

#[test]
fn config_pointing_at_another_volume_is_refused() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Env::new();
    let o = e.init(
        &e.p("one.toml"),
        &[
            "--backend",
            &e.backend("a"),
            "--backend",
            &e.backend("b"),
            "--state-dir",
            &e.p("s1"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = e.init(
        &e.p("two.toml"),
        &[
            "--backend",
            &e.backend("c"),
            "--backend",
            &e.backend("d"),
            "--state-dir",
            &e.p("s2"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Edit volume two's config so one backend is volume one's folder.
    let two = std::fs::read_to_string(e.p("two.toml"))
        .unwrap()
        .replace(&e.p("d"), &e.p("a"));
    std::fs::write(e.p("two.toml"), two).unwrap();
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();
    assert_one_line_error(
        &run(&["status", "--config", &e.p("two.toml")]),
        "wrong bucket or folder",
    );
    if can_mount() {
        assert_one_line_error(
            &run(&["mount", "--config", &e.p("two.toml"), &mp]),
            "wrong bucket or folder",
        );
        assert_eq!(mounted_type(&mp), None);
    }
}

#[test]
fn demo_creates_once_mounts_in_the_foreground_and_stops_on_ctrl_c() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let mp = e.p("demo-mnt");
    let start = || {
        bin()
            .args(["demo", &mp])
            .env("XDG_DATA_HOME", e.p("data"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wait_mounted = || {
        for _ in 0..200 {
            if mounted_type(&mp).is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("demo did not mount {mp}");
    };
    let child = start();
    wait_mounted();
    assert_eq!(mounted_type(&mp).unwrap().1, "fuse.cloudraid");
    let data = common::bytes(8, 5 << 20);
    std::fs::write(format!("{mp}/hello.bin"), &data).unwrap();
    let backends = e.base.join("data/cloudraid/demo/backends");
    for d in ["disk-a", "disk-b", "disk-c"] {
        assert!(
            backends.join(d).join("cloudraid.volume").exists(),
            "{d} holds the marker"
        );
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("created volume demo"),
        "{}",
        stdout(&out)
    );
    // It mounts the volume itself: no advice to mount it.
    assert!(!stdout(&out).contains("mount it with"), "{}", stdout(&out));
    assert_eq!(mounted_type(&mp), None, "Ctrl-C unmounts");
    // The second run reuses the same volume.
    let child = start();
    wait_mounted();
    assert!(std::fs::read(format!("{mp}/hello.bin")).unwrap() == data);
    // A demo on another mountpoint meanwhile says where the volume is mounted,
    // and creates nothing.
    let other = e.p("other/demo-mnt");
    let o = bin()
        .args(["demo", &other])
        .env("XDG_DATA_HOME", e.p("data"))
        .output()
        .unwrap();
    assert_one_line_error(&o, &format!("already mounted on {mp}"));
    assert!(!Path::new(&e.p("other")).exists(), "no folder left behind");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("created volume"), "{}", stdout(&out));
}

#[test]
fn scrub_reports_a_garbage_shard_and_reads_stay_correct() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let (cfg, mp) = mounted_volume(&e, &["--chunk-size", "256KiB"]);
    let data = common::bytes(12, 2 << 20);
    std::fs::write(format!("{mp}/f"), &data).unwrap();
    let o = run(&["scrub", "--config", &cfg]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("all shards are present and intact"),
        "{}",
        stdout(&o)
    );
    // Overwrite one shard object in backend a with garbage.
    let mut shards = Vec::new();
    for d in std::fs::read_dir(e.base.join("a/chunks")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            shards.push(f.unwrap().path());
        }
    }
    shards.sort();
    std::fs::write(&shards[0], b"not a shard at all").unwrap();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    assert!(run(&["umount", &mp]).status.success());
    assert!(run(&["mount", "--config", &cfg, &mp]).status.success());
    assert!(
        std::fs::read(format!("{mp}/f")).unwrap() == data,
        "read still correct"
    );
    // Mounted: through the daemon.
    let o = run(&["scrub", "--config", &cfg]);
    assert_one_line_error(&o, "scrub found 1 missing, damaged or unreachable shard(s)");
    let table = stdout(&o);
    let a_line = table.lines().find(|l| l.starts_with("a ")).unwrap();
    assert_eq!(
        a_line.split_whitespace().nth(3),
        Some("1"),
        "one corrupt shard on a:\n{table}"
    );
    assert!(
        table.contains("not a cloudraid shard (bad magic)"),
        "{table}"
    );
    assert!(run(&["umount", &mp]).status.success());
    // Not mounted: the same result, opening the volume directly.
    let o = run(&["scrub", "--config", &cfg, "--json"]);
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["bad"].as_array().unwrap().len(), 1);
    assert_eq!(v["bad"][0]["backend"], "a");
    assert_one_line_error(
        &run(&["scrub", "--config", &cfg, "--sample", "0"]),
        "percentage",
    );
    // Repair rewrites it; scrub is clean again.
    let o = run(&["repair", "--config", &cfg]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("repaired 1 chunk(s): 1 shard(s) rewritten"),
        "{}",
        stdout(&o)
    );
    assert!(run(&["scrub", "--config", &cfg]).status.success());
    // The same through the mount daemon, with a shard deleted on another backend.
    assert!(run(&["mount", "--config", &cfg, &mp]).status.success());
    let victim = std::fs::read_dir(e.base.join("b/chunks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let shard = std::fs::read_dir(&victim)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&shard).unwrap();
    assert!(!run(&["scrub", "--config", &cfg]).status.success());
    let o = run(&["repair", "--config", &cfg]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(shard.exists(), "the missing shard is back");
    assert!(run(&["scrub", "--config", &cfg]).status.success());
    assert!(std::fs::read(format!("{mp}/f")).unwrap() == data);
    assert!(run(&["umount", &mp]).status.success());
}
