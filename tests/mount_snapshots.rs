//! Snapshots through a real mount, as a user meets them: `/.snapshots/ID/...`
//! browsed with ls, cat, cmp, stat, find and cd; every change inside refused
//! with EROFS; the mount daemon's schedule (`[snapshots] every`, `keep_last`,
//! which leaves snapshots taken by hand alone), and a missed time taken once at
//! the next mount; and, on the core alone, the schedule going on through a
//! fenced volume. Needs root and /dev/fuse (CI
//! has both); by hand without them, each test says so and skips.

mod common;

use common::{can_mount, run, stderr, stdout, three_backend_volume, Env};
use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One mount at a time (see ../shared/notes/fuse-here.md on EBUSY).
static SERIAL: Mutex<()> = Mutex::new(());

/// How long anything the tests wait for may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(120);

fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

fn sh_ok(cmd: &str) -> String {
    let o = sh(cmd);
    assert!(o.status.success(), "{cmd}: {}", stderr(&o));
    stdout(&o)
}

/// Polls `f` until it gives a value; fails naming `what` after [`DEADLINE`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The config as `init` wrote it, followed by `section` (the `[snapshots]` table).
fn set_schedule(cfg: &str, base: &str, section: &str) {
    std::fs::write(cfg, format!("{base}\n{section}")).unwrap();
}

fn mount(cfg: &str, mp: &str, opts: &[&str]) {
    let mut args = vec!["mount", "--config", cfg];
    args.extend_from_slice(opts);
    args.push(mp);
    let o = run(&args);
    assert!(o.status.success(), "mount: {}", stderr(&o));
}

fn umount(mp: &str) {
    let o = run(&["umount", mp]);
    assert!(o.status.success(), "umount: {}", stderr(&o));
}

/// The snapshot ids `ls` shows in the mount.
fn ids(mp: &str) -> BTreeSet<String> {
    sh_ok(&format!("ls {mp}/.snapshots"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// The daemon's log (appended to by every mount of the volume).
fn log(e: &Env) -> String {
    std::fs::read_to_string(e.base.join("state/mount.log")).unwrap_or_default()
}

/// Waits until the daemon's log has `n` lines containing `needle`; returns the last.
fn wait_log(e: &Env, needle: &str, n: usize) -> String {
    wait_for(&format!("{n} log lines with {needle:?}"), || {
        let text = log(e);
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
        (lines.len() >= n).then(|| lines[n - 1].to_string())
    })
}

/// One snapshot as `cloudraid snapshot list --json` gives it.
struct Listed {
    id: String,
    time_ns: i64,
    origin: String,
    tags: Vec<String>,
}

/// Every snapshot, oldest first, as `cloudraid snapshot list --json` gives them
/// (through the mount daemon when mounted).
fn listed(cfg: &str) -> Vec<Listed> {
    let o = run(&["snapshot", "list", "--config", cfg, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    rows.iter()
        .map(|r| Listed {
            id: r["id"].as_str().unwrap().to_string(),
            time_ns: chrono::DateTime::parse_from_rfc3339(r["time_utc"].as_str().unwrap())
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap(),
            origin: r["origin"].as_str().unwrap().to_string(),
            tags: r["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect(),
        })
        .collect()
}

/// `cloudraid snapshot create --config CFG ARGS...`: the new id, the last word
/// of its output.
fn create(cfg: &str, args: &[&str]) -> String {
    let mut all = vec!["snapshot", "create", "--config", cfg];
    all.extend_from_slice(args);
    let o = run(&all);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).split_whitespace().last().unwrap().to_string()
}

#[test]
fn snapshots_are_browsed_read_only_under_dot_snapshots() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let cfg = three_backend_volume(&e, &["--chunk-size", "64KiB"]);
    let base = std::fs::read_to_string(&cfg).unwrap();
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();

    // Files written through the mount, without a schedule: no snapshot.
    mount(&cfg, &mp, &[]);
    let big = common::bytes(7, 700_000);
    let big_copy = e.p("big.orig");
    std::fs::write(&big_copy, &big).unwrap();
    sh_ok(&format!(
        "mkdir {mp}/docs && printf 'version one' > {mp}/docs/a.txt && cp {big_copy} {mp}/docs/big.bin \
         && printf 'bee' > {mp}/b.txt && chmod 640 {mp}/b.txt && TZ=UTC touch -d '2020-01-02 03:04:05' {mp}/b.txt \
         && ln -s docs/a.txt {mp}/link"
    ));
    let stat_b = sh_ok(&format!("stat -c '%s %a %Y %F' {mp}/b.txt"));
    let stat_big = sh_ok(&format!("stat -c '%s %a %Y %F' {mp}/docs/big.bin"));
    assert_eq!(stat_b.trim(), "3 640 1577934245 regular file");
    assert!(ids(&mp).is_empty());
    umount(&mp);

    // The schedule takes its first snapshot as soon as the volume is mounted.
    set_schedule(&cfg, &base, "[snapshots]\nevery = \"1h\"\n");
    mount(&cfg, &mp, &[]);
    let s1 = wait_for("the snapshot taken at mount", || {
        ids(&mp).into_iter().next()
    });
    assert_eq!(s1.len(), 8, "{s1}");
    assert!(s1.bytes().all(|c| c.is_ascii_hexdigit()), "{s1}");
    wait_log(&e, &format!("scheduled snapshot {s1} taken: 3 files"), 1);

    // The live tree changes; the snapshot does not.
    sh_ok(&format!(
        "printf 'version two, longer' > {mp}/docs/a.txt && chmod 600 {mp}/docs/a.txt \
         && rm {mp}/b.txt {mp}/docs/big.bin && mv {mp}/link {mp}/link2 && mkdir {mp}/new"
    ));
    // A second snapshot, by hand (through the mount daemon).
    let s2 = create(&cfg, &["--tag", "after"]);
    assert_eq!(ids(&mp), BTreeSet::from([s1.clone(), s2.clone()]));
    let snap = format!("{mp}/.snapshots/{s1}");
    let snap2 = format!("{mp}/.snapshots/{s2}");
    assert_eq!(
        sh_ok(&format!("cat {snap2}/docs/a.txt")),
        "version two, longer"
    );
    assert_eq!(
        sh_ok(&format!("ls {snap2} {snap2}/docs")),
        format!("{snap2}:\ndocs\nlink2\nnew\n\n{snap2}/docs:\na.txt\n")
    );
    assert_eq!(sh_ok(&format!("stat -c %a {snap2}/docs/a.txt")), "600\n");
    assert_eq!(sh_ok(&format!("cat {snap}/docs/a.txt")), "version one");
    assert_eq!(
        sh_ok(&format!("cat {mp}/docs/a.txt")),
        "version two, longer"
    );
    sh_ok(&format!("cmp {big_copy} {snap}/docs/big.bin"));
    assert_eq!(
        sh_ok(&format!("stat -c '%s %a %Y %F' {snap}/b.txt")),
        stat_b
    );
    assert_eq!(
        sh_ok(&format!("stat -c '%s %a %Y %F' {snap}/docs/big.bin")),
        stat_big
    );
    assert_eq!(sh_ok(&format!("readlink {snap}/link")), "docs/a.txt\n");
    assert_eq!(sh_ok(&format!("cat {snap}/link")), "version one");
    assert_eq!(
        sh_ok(&format!("ls {snap} {snap}/docs")),
        format!("{snap}:\nb.txt\ndocs\nlink\n\n{snap}/docs:\na.txt\nbig.bin\n")
    );
    assert!(
        sh_ok(&format!("stat -c %a {snap}/docs/a.txt")).trim() == "644",
        "the old mode"
    );

    // Hidden from the root's listing and from tools that walk the tree, but
    // there for whoever names it.
    let ls = sh_ok(&format!("ls -a {mp}"));
    assert_eq!(ls, ".\n..\ndocs\nlink2\nnew\n");
    let found = sh_ok(&format!("find {mp}"));
    assert!(!found.contains(".snapshots"), "{found}");
    assert_eq!(found.lines().count(), 5, "{found}");
    assert_eq!(
        sh_ok(&format!(
            "cd {mp}/.snapshots && ls && cd {s1}/docs && cat a.txt"
        )),
        format!(
            "{}\nversion one",
            ids(&mp).into_iter().collect::<Vec<_>>().join("\n")
        )
    );
    assert!(sh_ok(&format!("stat -c %F {mp}/.snapshots")).starts_with("directory"));

    // Every change inside the view is refused: read-only file system.
    for cmd in [
        format!("touch {snap}/b.txt"),
        format!("touch {snap}/docs/new-file"),
        format!("echo x > {snap}/docs/a.txt"),
        format!("echo x >> {snap}/b.txt"),
        format!("rm {snap}/b.txt"),
        format!("rm -r {snap}/docs"),
        format!("mv {snap}/b.txt {snap}/c.txt"),
        format!("mv {snap}/b.txt {mp}/b.txt"),
        format!("mv {mp}/new {snap}/new"),
        format!("mkdir {snap}/d"),
        format!("rmdir {snap}/docs"),
        format!("chmod 777 {snap}/b.txt"),
        format!("chown 1234 {snap}/b.txt"),
        format!("ln {snap}/b.txt {snap}/hard"),
        format!("ln -s b.txt {snap}/sym"),
        format!("truncate -s 0 {snap}/b.txt"),
        format!("mkfifo {snap}/fifo"),
    ] {
        let o = sh(&cmd);
        assert!(!o.status.success(), "{cmd} succeeded");
        assert!(
            stderr(&o).contains("Read-only file system"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
    // Extended attributes, as setfattr(1) sets them.
    for path in [format!("{snap}/b.txt"), format!("{snap}/docs")] {
        let c = std::ffi::CString::new(path.clone()).unwrap();
        // SAFETY: valid NUL-terminated strings and a buffer of the given length.
        let r = unsafe {
            libc::setxattr(
                c.as_ptr(),
                c"user.color".as_ptr(),
                b"blue".as_ptr() as *const libc::c_void,
                4,
                0,
            )
        };
        let err = std::io::Error::last_os_error();
        assert_eq!(r, -1, "setxattr on {path} succeeded");
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{path}: {err}");
    }
    // The snapshots directory itself can be neither made, removed nor replaced.
    for cmd in [
        format!("mkdir {mp}/.snapshots"),
        format!("rmdir {mp}/.snapshots"),
        format!("rm -r {mp}/.snapshots/{s1}"),
        format!("mv {mp}/new {mp}/.snapshots"),
        format!("touch {mp}/.snapshots/x"),
    ] {
        let o = sh(&cmd);
        assert!(!o.status.success(), "{cmd} succeeded");
    }
    // Nothing of it changed.
    assert_eq!(ids(&mp), BTreeSet::from([s1.clone(), s2.clone()]));
    assert_eq!(sh_ok(&format!("cat {snap}/b.txt")), "bee");
    assert_eq!(
        sh_ok(&format!("ls {snap}")),
        "b.txt\ndocs\nlink\n",
        "nothing was added"
    );
    umount(&mp);
}

#[test]
fn the_schedule_keeps_the_last_snapshots_it_took() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let base = std::fs::read_to_string(&cfg).unwrap();
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();
    set_schedule(&cfg, &base, "[snapshots]\nevery = \"1s\"\nkeep_last = 2\n");
    mount(&cfg, &mp, &[]);
    std::fs::write(format!("{mp}/f.txt"), "by hand").unwrap();
    let manual = create(&cfg, &["--tag", "mine"]);
    // A new content each time, seen in a snapshot before the next one is written.
    let mut seen = BTreeSet::new();
    for generation in 0..4 {
        let text = format!("generation {generation}");
        std::fs::write(format!("{mp}/f.txt"), &text).unwrap();
        wait_for(&format!("a snapshot holding {text:?}"), || {
            let now = ids(&mp);
            seen.extend(now.iter().cloned());
            // Retention may remove a snapshot between the listing and the read.
            now.iter()
                .any(|id| {
                    std::fs::read_to_string(format!("{mp}/.snapshots/{id}/f.txt")).ok()
                        == Some(text.clone())
                })
                .then_some(())
        });
    }
    // No backend answers: snapshots are still taken (they are index records,
    // replicated once the backends are back).
    for b in ["a", "b", "c"] {
        std::fs::rename(e.base.join(b), e.base.join(format!("{b}-away"))).unwrap();
    }
    wait_for("a snapshot taken with every backend away", || {
        let now = ids(&mp);
        let new = now.iter().any(|id| !seen.contains(id));
        seen.extend(now);
        new.then_some(())
    });
    for b in ["a", "b", "c"] {
        std::fs::rename(e.base.join(format!("{b}-away")), e.base.join(b)).unwrap();
    }
    umount(&mp);
    assert!(seen.len() >= 5, "snapshots seen: {seen:?}");
    let line = wait_log(&e, "retention (last 2): 2 kept, removed", 1);
    assert!(line.contains("scheduled snapshot"), "{line}");

    // Mounted read-only, the schedule takes nothing: what is left is the
    // snapshot taken by hand, untouched, and what the retention kept of its own,
    // two snapshots, each readable, the newest of them holding the last
    // generation.
    mount(&cfg, &mp, &["-o", "ro"]);
    wait_log(
        &e,
        "read-only mount: the scheduled snapshots are not taken",
        1,
    );
    let all = ids(&mp);
    assert!(all.contains(&manual), "{all:?}");
    assert_eq!(
        std::fs::read_to_string(format!("{mp}/.snapshots/{manual}/f.txt")).unwrap(),
        "by hand"
    );
    let kept: BTreeSet<String> = all.into_iter().filter(|id| *id != manual).collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let mut contents: Vec<String> = kept
        .iter()
        .map(|id| std::fs::read_to_string(format!("{mp}/.snapshots/{id}/f.txt")).unwrap())
        .collect();
    contents.sort();
    assert!(
        contents
            .iter()
            .all(|c| ["generation 2", "generation 3"].contains(&c.as_str())),
        "{contents:?}"
    );
    assert_eq!(contents[1], "generation 3");
    // Longer than `every`, with a snapshot overdue: still nothing taken.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(ids(&mp).len(), 3);
    umount(&mp);
    let list = listed(&cfg);
    assert_eq!(list.len(), 3);
    for s in &list {
        if s.id == manual {
            assert_eq!(
                (s.origin.as_str(), &s.tags[..]),
                ("cli", &["mine".to_string()][..])
            );
        } else {
            assert!(kept.contains(&s.id), "{}", s.id);
            assert_eq!(
                (s.origin.as_str(), &s.tags[..]),
                ("schedule", &["scheduled".to_string()][..])
            );
        }
    }
}

#[test]
fn a_missed_time_is_taken_once_at_the_next_mount() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let base = std::fs::read_to_string(&cfg).unwrap();
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();
    set_schedule(&cfg, &base, "[snapshots]\nevery = \"1h\"\n");

    // First mount: none taken yet, so one at once.
    mount(&cfg, &mp, &[]);
    let first = wait_for("the first scheduled snapshot", || {
        ids(&mp).into_iter().next()
    });
    assert!(wait_log(&e, "snapshot schedule: every 1h", 1).contains("none taken yet"));
    umount(&mp);

    // Mounted again at once: not due, nothing taken; the log says when.
    mount(&cfg, &mp, &[]);
    let line = wait_log(&e, "snapshot schedule: every 1h", 2);
    assert!(line.contains("next one at"), "{line}");
    assert_eq!(ids(&mp), BTreeSet::from([first.clone()]));
    umount(&mp);

    // Unmounted for more than three intervals of 1s: at the next mount one
    // snapshot makes up for all of them, and the next comes 1s after it.
    let t1 = listed(&cfg)[0].time_ns;
    let missed_until = t1 + 3_500_000_000;
    let now = cloudraid::fs::now_nanos();
    if now < missed_until {
        std::thread::sleep(Duration::from_nanos((missed_until - now) as u64));
    }
    set_schedule(&cfg, &base, "[snapshots]\nevery = \"1s\"\n");
    mount(&cfg, &mp, &[]);
    let line = wait_log(&e, "snapshot schedule: every 1s", 1);
    assert!(
        line.contains("taking one now (times missed meanwhile are not made up one by one)"),
        "{line}"
    );
    wait_for("two scheduled snapshots after the missed ones", || {
        (ids(&mp).len() >= 3).then_some(())
    });
    umount(&mp);
    let times: Vec<i64> = listed(&cfg).iter().map(|s| s.time_ns).collect();
    assert_eq!(times[0], t1);
    assert!(times.len() >= 3, "{times:?}");
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 1_000_000_000,
            "scheduled snapshots closer than every (1s): a missed time was replayed: {times:?}"
        );
    }
}

/// A log captured in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }

    async fn wait(&self, needle: &str, n: usize) {
        let end = Instant::now() + DEADLINE;
        while self.count(needle) < n {
            assert!(
                Instant::now() < end,
                "gave up waiting for {n} log lines with {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The schedule over the filesystem core (no mount): its retention runs after
/// each snapshot; when the volume is fenced (its write lease taken over) each
/// attempt fails with one log line and is tried again at the next time; the
/// task stops when asked.
#[tokio::test]
async fn the_schedule_logs_and_retries_when_the_volume_is_fenced() {
    use cloudraid::backup::retention::KeepPolicy;
    use cloudraid::backup::schedule::{Schedule, ScheduleTask};
    let log = Captured::default();
    let _g = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .finish(),
    );
    let v = common::volume(2, 1, 3, 64 << 10);
    let task = ScheduleTask::spawn(
        v.fs.clone(),
        Schedule {
            every: Duration::from_secs(1),
            policy: KeepPolicy {
                last: 1,
                ..KeepPolicy::default()
            },
        },
    );
    log.wait("none taken yet: taking one now", 1).await;
    log.wait("retention (last 1): 1 kept, removed", 1).await;
    let left = v.fs.list_snapshots().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].origin, "schedule");

    v.fs.fence();
    let failed = "scheduled snapshot failed: the volume is open read-only (or another machine took its write lease over)";
    log.wait(failed, 2).await;
    assert_eq!(v.fs.list_snapshots().unwrap(), left);
    task.stop().await;
    assert_eq!(log.count("ended abnormally"), 0);
}
