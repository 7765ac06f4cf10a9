//! Backup jobs as a user runs them: `backup run` (its plan, dry run, a second
//! run with nothing changed, changes and mirrored deletes), a missing source, a
//! failing or hanging hook, an unreadable file (partial, exit 3), a run killed
//! half-way and the next run finishing it, retention, the history (and through
//! `recover`), `backup list`, `install-timer`, and runs through the mount
//! daemon and its schedule.

mod common;

use common::{
    assert_one_line_error, bin, can_mount, ok, run, stderr, stdout, three_backend_volume, Env,
};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Appends a [[job]] table to the config.
fn add_job(cfg: &str, toml: &str) {
    let mut s = std::fs::read_to_string(cfg).unwrap();
    s.push_str("\n[[job]]\n");
    s.push_str(toml);
    std::fs::write(cfg, s).unwrap();
}

/// A source tree: documents, a nested folder, a file to exclude and a
/// node_modules folder to exclude.
fn source_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deep")).unwrap();
    std::fs::create_dir_all(root.join("node_modules/pkg")).unwrap();
    std::fs::write(root.join("a.txt"), b"first file\n").unwrap();
    std::fs::write(root.join("sub/b.bin"), common::bytes(1, 300_000)).unwrap();
    std::fs::write(root.join("sub/deep/c.bin"), common::bytes(2, 70_000)).unwrap();
    std::fs::write(root.join("scratch.tmp"), b"temporary").unwrap();
    std::fs::write(root.join("node_modules/pkg/index.js"), b"x").unwrap();
}

/// The run's JSON report.
fn run_json(cfg: &str, job: &str) -> serde_json::Value {
    let out = ok(&["backup", "run", "--config", cfg, job, "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Copies the volume's `path` out to `dest` (get).
fn get(cfg: &str, path: &str, dest: &Path) {
    ok(&["get", "--config", cfg, path, dest.to_str().unwrap()]);
}

#[test]
fn runs_store_the_sources_and_then_only_what_changed() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &["--chunk-size", "64KiB"]);
    let src = e.base.join("docs");
    source_tree(&src);
    add_job(
        &cfg,
        &format!(
            "name = \"nightly\"\nsources = [{src:?}]\ndestination = \"/backups/nightly\"\nexclude = [\"*.tmp\", \"node_modules/\"]\nmirror_deletes = true\nkeep_last = 2\n"
        ),
    );

    // The dry run plans (bytes to upload after deduplication) and changes nothing.
    let plan = ok(&["backup", "run", "--config", &cfg, "nightly", "--dry-run"]);
    assert!(
        plan.contains("3 new, 0 changed, 0 to delete, 0 unchanged"),
        "{plan}"
    );
    assert!(plan.contains("to upload after deduplication"), "{plan}");
    assert_one_line_error(&run(&["ls", "--config", &cfg, "/backups"]), "backups");

    // The first run stores everything but the excluded entries.
    let out = ok(&["backup", "run", "--config", &cfg, "nightly"]);
    assert!(out.contains("job nightly: success — 3 new"), "{out}");
    let back = e.base.join("back");
    // A folder copied to a new local path becomes that path (like cp -r).
    get(&cfg, "/backups/nightly/docs", &back);
    let expected = e.base.join("expected");
    std::fs::create_dir_all(expected.join("sub/deep")).unwrap();
    for f in ["a.txt", "sub/b.bin", "sub/deep/c.bin"] {
        std::fs::copy(src.join(f), expected.join(f)).unwrap();
    }
    for d in [
        "a.txt",
        "sub/b.bin",
        "sub/deep/c.bin",
        "",
        "sub",
        "sub/deep",
    ] {
        // Times are the source's.
        let t = std::fs::metadata(src.join(d)).unwrap().modified().unwrap();
        let f = std::fs::File::open(expected.join(d)).unwrap();
        f.set_modified(t).unwrap();
    }
    common::assert_same_tree(&expected, &back);

    // Nothing changed: nothing stored, nothing uploaded.
    let r = run_json(&cfg, "nightly");
    assert_eq!(r["run"]["result"], "success", "{r}");
    assert_eq!(r["run"]["new"], 0);
    assert_eq!(r["run"]["changed"], 0);
    assert_eq!(r["run"]["unchanged"], 3);
    assert_eq!(r["run"]["uploaded_bytes"], 0);
    let second_snapshot = r["run"]["snapshot"].as_str().unwrap().to_string();

    // One changed, one new, one deleted: only they move; the deleted file stays
    // in the earlier snapshot.
    std::fs::write(src.join("a.txt"), b"first file, edited\n").unwrap();
    std::fs::write(src.join("sub/new.txt"), b"new").unwrap();
    std::fs::remove_file(src.join("sub/deep/c.bin")).unwrap();
    let r = run_json(&cfg, "nightly");
    assert_eq!(
        (
            &r["run"]["new"],
            &r["run"]["changed"],
            &r["run"]["deleted"],
            &r["run"]["unchanged"]
        ),
        (&1.into(), &1.into(), &1.into(), &1.into()),
        "{r}"
    );
    assert!(r["run"]["uploaded_bytes"].as_u64().unwrap() < 1000, "{r}");
    let ls = ok(&["ls", "--config", &cfg, "/backups/nightly/docs/sub/deep"]);
    assert!(!ls.contains("c.bin"), "{ls}");
    let old = e.base.join("old");
    ok(&[
        "restore",
        "--config",
        &cfg,
        &second_snapshot,
        "/backups/nightly/docs/sub/deep/c.bin",
        old.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&old).unwrap(), common::bytes(2, 70_000));

    // keep_last = 2: the job's third snapshot removed its first.
    let snaps = ok(&["snapshot", "list", "--config", &cfg]);
    let forgotten = r["forgotten"].as_array().unwrap();
    assert_eq!(forgotten.len(), 1, "{r}");
    let oldest = forgotten[0].as_str().unwrap();
    assert!(
        oldest != second_snapshot && !snaps.contains(oldest),
        "{snaps}"
    );
    assert_eq!(
        snaps.lines().filter(|l| l.contains("nightly")).count(),
        2,
        "{snaps}"
    );

    // History and list.
    let h = ok(&["backup", "history", "--config", &cfg, "nightly"]);
    assert_eq!(
        h.lines().filter(|l| l.contains(" success ")).count(),
        3,
        "{h}"
    );
    let l = ok(&["backup", "list", "--config", &cfg]);
    assert!(
        l.contains("nightly") && l.contains("when asked") && l.contains("success"),
        "{l}"
    );

    // An unknown job: one line naming the jobs there are.
    assert_one_line_error(
        &run(&["backup", "run", "--config", &cfg, "weekly"]),
        "its jobs: nightly",
    );

    // The history survives the loss of the machine (recover from the backends).
    std::fs::remove_dir_all(e.base.join("state")).unwrap();
    ok(&["recover", "--config", &cfg]);
    let h2 = ok(&["backup", "history", "--config", &cfg, "nightly"]);
    assert_eq!(h, h2);
}

/// A file moved within the source (renamed, or into another folder) is stored
/// at its new path without uploading its bytes again, even with no snapshot
/// holding them, and the old path goes.
#[test]
fn a_moved_file_is_not_uploaded_again() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &["--chunk-size", "64KiB"]);
    let src = e.base.join("docs");
    source_tree(&src);
    add_job(
        &cfg,
        &format!(
            "name = \"n\"\nsources = [{src:?}]\ndestination = \"/b\"\nmirror_deletes = true\nsnapshot = false\n"
        ),
    );
    let first = run_json(&cfg, "n")["run"].clone();
    assert!(
        first["uploaded_bytes"].as_u64().unwrap() >= 300_000,
        "{first}"
    );
    // Both moves meet the old path first: a folder's names are compared in
    // order, and of two folders the later name is walked first.
    std::fs::rename(src.join("sub/b.bin"), src.join("sub/zz-renamed.bin")).unwrap();
    std::fs::create_dir(src.join("sub/a-later")).unwrap();
    std::fs::rename(src.join("sub/deep/c.bin"), src.join("sub/a-later/c.bin")).unwrap();
    let r = run_json(&cfg, "n")["run"].clone();
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(r["new"], 2, "{r}");
    assert_eq!(r["deleted"], 2, "{r}");
    assert_eq!(r["uploaded_bytes"], 0, "{r}");
    let out = e.base.join("out");
    get(&cfg, "/b/docs", &out);
    assert_eq!(
        std::fs::read(out.join("sub/zz-renamed.bin")).unwrap(),
        common::bytes(1, 300_000)
    );
    assert_eq!(
        std::fs::read(out.join("sub/a-later/c.bin")).unwrap(),
        common::bytes(2, 70_000)
    );
    assert!(!out.join("sub/b.bin").exists());
    assert!(!out.join("sub/deep/c.bin").exists());
    let fsck = ok(&["fsck", "--config", &cfg]);
    assert!(fsck.contains("clean"), "{fsck}");
}

#[test]
fn a_missing_source_fails_the_run_and_deletes_nothing() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let src = e.base.join("docs");
    source_tree(&src);
    add_job(
        &cfg,
        &format!(
            "name = \"n\"\nsources = [{src:?}]\ndestination = \"/b\"\nmirror_deletes = true\n"
        ),
    );
    ok(&["backup", "run", "--config", &cfg, "n"]);
    std::fs::rename(&src, e.base.join("elsewhere")).unwrap();
    let o = run(&["backup", "run", "--config", &cfg, "n"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("cloudraid: error: job n failed") && err.contains("docs"),
        "{err}"
    );
    // Everything stored is still there.
    let ls = ok(&["ls", "--config", &cfg, "/b/docs/sub"]);
    assert!(ls.contains("b.bin"), "{ls}");
    let h = ok(&["backup", "history", "--config", &cfg, "n"]);
    assert!(h.contains(" failed "), "{h}");
}

#[test]
fn hooks_run_around_the_job_and_a_failing_or_hanging_one_is_reported() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let src = e.base.join("docs");
    source_tree(&src);
    let marks = e.base.join("marks");
    add_job(
        &cfg,
        &format!(
            "name = \"hooked\"\nsources = [{src:?}]\ndestination = \"/h\"\nbefore = \"echo before $CLOUDRAID_JOB >> {m}\"\nafter = \"echo after $CLOUDRAID_RESULT >> {m}\"\n",
            m = marks.display()
        ),
    );
    add_job(
        &cfg,
        &format!(
            "name = \"refused\"\nsources = [{src:?}]\ndestination = \"/r\"\nbefore = \"echo not today >&2; exit 7\"\non_error = \"echo on_error $CLOUDRAID_RESULT >> {m}\"\n",
            m = marks.display()
        ),
    );
    add_job(
        &cfg,
        &format!(
            "name = \"hangs\"\nsources = [{src:?}]\ndestination = \"/x\"\nbefore = \"sleep 600\"\nhook_timeout = \"1s\"\n"
        ),
    );
    ok(&["backup", "run", "--config", &cfg, "hooked"]);
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "before hooked\nafter success\n"
    );

    // A failing `before` skips the run and says why; on_error runs.
    let o = run(&["backup", "run", "--config", &cfg, "refused"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("skipped") && err.contains("not today"),
        "{err}"
    );
    assert_one_line_error(&run(&["ls", "--config", &cfg, "/r"]), "/r");
    assert!(std::fs::read_to_string(&marks)
        .unwrap()
        .ends_with("on_error skipped\n"));

    // A hanging hook is stopped at its timeout.
    let t = Instant::now();
    let o = run(&["backup", "run", "--config", &cfg, "hangs"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert!(
        stderr(&o).contains("timed out") || stderr(&o).contains("timeout"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unreadable_file_makes_the_run_partial_and_the_rest_is_stored() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root to run the job as another user");
        return;
    }
    // The job runs as nobody, who cannot read one file of the source.
    let e = Env::new();
    std::fs::set_permissions(&e.base, std::fs::Permissions::from_mode(0o777)).unwrap();
    let src = e.base.join("docs");
    source_tree(&src);
    std::fs::write(src.join("secret.txt"), b"root only").unwrap();
    std::fs::set_permissions(
        src.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let as_nobody = |args: &[&str]| {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_cloudraid"))
            .args(args)
            .env("CLOUDRAID_PASSPHRASE", "test passphrase")
            .env("HOME", &e.base);
        c.output().unwrap()
    };
    let cfg = e.p("v.toml");
    let mut init = vec!["init", "--config", &cfg];
    init.extend_from_slice(&common::CHEAP_KDF);
    let (a, b, c, st) = (e.backend("a"), e.backend("b"), e.backend("c"), e.p("state"));
    init.extend_from_slice(&[
        "--backend",
        &a,
        "--backend",
        &b,
        "--backend",
        &c,
        "--state-dir",
        &st,
    ]);
    let o = as_nobody(&init);
    assert!(o.status.success(), "{}", stderr(&o));
    add_job(
        &cfg,
        &format!("name = \"p\"\nsources = [{src:?}]\ndestination = \"/p\"\n"),
    );
    let o = as_nobody(&["backup", "run", "--config", &cfg, "p"]);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("partial") && out.contains("secret.txt"),
        "{out}"
    );
    let o = as_nobody(&["ls", "--config", &cfg, "/p/docs/sub"]);
    assert!(stdout(&o).contains("b.bin"), "{}", stderr(&o));
}

#[test]
fn a_run_killed_half_way_is_finished_by_the_next() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &["--chunk-size", "64KiB"]);
    let src = e.base.join("many");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..150u64 {
        std::fs::write(src.join(format!("f{i:03}")), common::bytes(i, 200_000)).unwrap();
    }
    add_job(
        &cfg,
        &format!(
            "name = \"big\"\nsources = [{src:?}]\ndestination = \"/big\"\nmirror_deletes = true\n"
        ),
    );
    let mut child = bin()
        .args(["backup", "run", "--config", &cfg, "big"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has stored part of the tree.
    let t = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let stored: usize = ["a", "b", "c"]
            .iter()
            .map(|b| walk_count(&e.base.join(b)))
            .sum();
        if stored > 60 || t.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let out = ok(&["backup", "run", "--config", &cfg, "big"]);
    assert!(out.contains("success"), "{out}");
    let back = e.base.join("back");
    get(&cfg, "/big/many", &back);
    for i in 0..150u64 {
        assert_eq!(
            std::fs::read(back.join(format!("f{i:03}"))).unwrap(),
            common::bytes(i, 200_000),
            "f{i:03}"
        );
    }
    assert_eq!(std::fs::read_dir(&back).unwrap().count(), 150);
    let o = run(&["fsck", "--config", &cfg]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

fn walk_count(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk_count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn install_timer_writes_units_systemd_accepts() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    add_job(
        &cfg,
        "name = \"nightly\"\nsources = [\"/etc/hostname\"]\ndestination = \"/n\"\nschedule = \"30 3 * * 1-5\"\nrandom_delay = \"10m\"\n",
    );
    add_job(
        &cfg,
        "name = \"manual\"\nsources = [\"/etc/hostname\"]\ndestination = \"/m\"\n",
    );
    let dir = e.base.join("units");
    let out = ok(&[
        "backup",
        "install-timer",
        "--config",
        &cfg,
        "nightly",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.contains("systemctl enable --now cloudraid-backup-nightly.timer"),
        "{out}"
    );
    let timer = std::fs::read_to_string(dir.join("cloudraid-backup-nightly.timer")).unwrap();
    assert!(
        timer.contains("OnCalendar=Mon..Fri *-*-* 3:30:00"),
        "{timer}"
    );
    assert!(
        timer.contains("Persistent=true") && timer.contains("RandomizedDelaySec=600"),
        "{timer}"
    );
    let service = std::fs::read_to_string(dir.join("cloudraid-backup-nightly.service")).unwrap();
    assert!(
        service.contains(&format!("backup run --config {cfg} nightly")),
        "{service}"
    );
    if let Ok(o) = std::process::Command::new("systemd-analyze")
        .args(["calendar", "Mon..Fri *-*-* 3:30:00"])
        .output()
    {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("03:30:00"));
    }
    assert_one_line_error(
        &run(&[
            "backup",
            "install-timer",
            "--config",
            &cfg,
            "manual",
            "--dir",
            dir.to_str().unwrap(),
        ]),
        "has no schedule",
    );
}

#[test]
fn bad_job_configs_are_refused_with_their_line() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let good = std::fs::read_to_string(&cfg).unwrap();
    for (job, needle) in [
        ("schedule = \"0 25 * * *\"", "schedule"),
        ("schedule = \"every day\"", "schedule"),
        ("exclude = [\"[z-a]\"]", "pattern"),
    ] {
        std::fs::write(&cfg, &good).unwrap();
        add_job(
            &cfg,
            &format!("name = \"j\"\nsources = [\"/etc\"]\ndestination = \"/j\"\n{job}\n"),
        );
        let line = good.lines().count() + 6;
        let o = run(&["backup", "list", "--config", &cfg]);
        assert_one_line_error(&o, needle);
        assert!(
            stderr(&o).contains(&format!("line {line}")),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn mounted_runs_go_through_the_daemon_and_missed_schedules_run_at_mount() {
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let src = e.base.join("docs");
    source_tree(&src);
    add_job(
        &cfg,
        &format!("name = \"minutely\"\nsources = [{src:?}]\ndestination = \"/m\"\nschedule = \"* * * * *\"\n"),
    );
    // A run now, then a minute boundary passes while nothing is mounted.
    ok(&["backup", "run", "--config", &cfg, "minutely"]);
    let start = chrono::Local::now();
    while chrono::Local::now().format("%M").to_string() == start.format("%M").to_string() {
        std::thread::sleep(Duration::from_millis(500));
    }
    std::fs::write(src.join("later.txt"), b"later").unwrap();
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();
    ok(&["mount", "--config", &cfg, &mp]);
    // The missed run runs at once.
    let t = Instant::now();
    while !Path::new(&format!("{mp}/m/docs/later.txt")).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the missed run did not run"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A run asked for while mounted goes through the daemon.
    std::fs::write(src.join("asked.txt"), b"asked").unwrap();
    let out = ok(&["backup", "run", "--config", &cfg, "minutely"]);
    assert!(out.contains("1 new"), "{out}");
    assert_eq!(
        std::fs::read(format!("{mp}/m/docs/asked.txt")).unwrap(),
        b"asked"
    );
    let h = ok(&["backup", "history", "--config", &cfg, "minutely", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&h).unwrap();
    let triggers: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(&triggers[..3], ["manual", "missed", "manual"], "{h}");
    ok(&["umount", &mp]);
}

#[test]
fn a_database_dump_is_stored_restores_and_dedups_on_the_next_run() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &["--chunk-size", "64KiB"]);
    let db = e.base.join("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);")
        .unwrap();
    for i in 0..2000u64 {
        conn.execute(
            "INSERT INTO t(id, v) VALUES (?1, ?2)",
            rusqlite::params![i as i64, common::bytes(i, 1000)],
        )
        .unwrap();
    }
    let src = e.base.join("docs");
    source_tree(&src);
    add_job(
        &cfg,
        &format!(
            "name = \"db\"\nsources = [{src:?}]\ndestination = \"/d\"\n\n[[job.database]]\nkind = \"sqlite\"\nname = \"app\"\npath = {db:?}\n"
        ),
    );
    let r = run_json(&cfg, "db");
    assert_eq!(r["run"]["result"], "success", "{r}");
    assert_eq!(r["run"]["databases"], 1);
    let back = e.base.join("app-restored.sqlite");
    get(&cfg, "/d/databases/app.sqlite", &back);
    let restored = rusqlite::Connection::open(&back).unwrap();
    let ok: String = restored
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let (n, sum): (i64, i64) = restored
        .query_row("SELECT count(*), sum(length(v)) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((n, sum), (2000, 2_000_000));
    let v: Vec<u8> = restored
        .query_row("SELECT v FROM t WHERE id = 1234", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, common::bytes(1234, 1000));
    // A few rows changed: the next dump uploads a small part of the database.
    conn.execute("UPDATE t SET v = x'00' WHERE id < 5", [])
        .unwrap();
    let r = run_json(&cfg, "db");
    let dumped = std::fs::metadata(&back).unwrap().len();
    let up = r["run"]["uploaded_bytes"].as_u64().unwrap();
    assert!(
        up < dumped / 4,
        "uploaded {up} of a {dumped}-byte dump: {r}"
    );
    // An unreachable database: the run is partial, the previous dump stays.
    std::fs::rename(&db, e.base.join("moved.db")).unwrap();
    let o = run(&["backup", "run", "--config", &cfg, "db"]);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("database app"), "{}", stdout(&o));
    let again = e.base.join("again.sqlite");
    get(&cfg, "/d/databases/app.sqlite", &again);
    let n: i64 = rusqlite::Connection::open(&again)
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2000);
}

#[test]
fn watch_mode_follows_writes_renames_and_deletes() {
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let src = e.base.join("docs");
    source_tree(&src);
    add_job(
        &cfg,
        &format!("name = \"live\"\nsources = [{src:?}]\ndestination = \"/live\"\nwatch = true\nwatch_delay = \"1s\"\n"),
    );
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();
    ok(&["mount", "--config", &cfg, &mp]);
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{what}: not within 30 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let vol = format!("{mp}/live/docs");
    // At start: the whole source.
    wait_for("first sync", &|| {
        Path::new(&format!("{vol}/sub/b.bin")).exists()
    });
    std::fs::write(src.join("new.txt"), b"written now").unwrap();
    wait_for("a new file", &|| {
        std::fs::read(format!("{vol}/new.txt")).ok().as_deref() == Some(b"written now")
    });
    std::fs::rename(src.join("a.txt"), src.join("renamed.txt")).unwrap();
    wait_for("a rename", &|| {
        Path::new(&format!("{vol}/renamed.txt")).exists()
            && !Path::new(&format!("{vol}/a.txt")).exists()
    });
    std::fs::remove_file(src.join("sub/b.bin")).unwrap();
    wait_for("a delete", &|| {
        !Path::new(&format!("{vol}/sub/b.bin")).exists()
    });
    ok(&["umount", &mp]);
}
