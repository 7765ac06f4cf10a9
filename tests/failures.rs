//! What users meet when things fail, through a real mount and the CLI: a
//! backend folder moved away (writes go on; with too few, a clear refusal and
//! nothing half-written), a mount daemon that does not answer (`umount` says so
//! in bounded time and can force it), and the state dir's disk filling up
//! (nothing acknowledged is lost; freeing space brings the mount back).
//! Needs root and /dev/fuse (CI has both); by hand without them, each test
//! says so and skips.

mod common;

use common::{bin, mounted_volume, run, stderr, stdout, Env};
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// These tests mount and move folders around: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn status_json(cfg: &str) -> serde_json::Value {
    let o = run(&["status", "--config", cfg, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn status_text(cfg: &str) -> String {
    let o = run(&["status", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

/// Writes `data` to `path` and closes it, returning the first error of open,
/// write or close (close's result matters: that is when cloudraid stores).
fn write_and_close(path: &Path, data: &[u8]) -> Result<(), std::io::Error> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    let fd = f.into_raw_fd();
    // SAFETY: fd is ours, closed once.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn writes_go_on_with_one_backend_away_and_a_blocked_write_leaves_the_old_version() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !common::can_mount() {
        return;
    }
    let e = Env::new();
    // Three folders: 2+1, default quorum 2.
    let (cfg, mp) = mounted_volume(&e, &[]);
    let mnt = Path::new(&mp);
    std::fs::rename(e.p("a"), e.p("a.away")).unwrap();
    let data = common::bytes(1, 3 << 20);
    write_and_close(&mnt.join("during"), &data).expect("writes go on with one backend away");
    assert_eq!(std::fs::read(mnt.join("during")).unwrap(), data);
    assert!(status_json(&cfg)["degraded_chunks"].as_u64().unwrap() > 0);
    // Back: the missing shards are written by the daemon on its own.
    std::fs::rename(e.p("a.away"), e.p("a")).unwrap();
    wait_until("degraded chunks completed", Duration::from_secs(40), || {
        status_json(&cfg)["degraded_chunks"].as_u64() == Some(0)
    });

    // Two away: a write cannot reach its quorum.
    std::fs::rename(e.p("a"), e.p("a.away")).unwrap();
    std::fs::rename(e.p("b"), e.p("b.away")).unwrap();
    let old = b"the previous version".to_vec();
    std::fs::rename(e.p("b.away"), e.p("b")).unwrap();
    write_and_close(&mnt.join("old"), &old).unwrap();
    std::fs::rename(e.p("b"), e.p("b.away")).unwrap();
    let err = write_and_close(&mnt.join("new"), &common::bytes(2, 8 << 20)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let err = write_and_close(&mnt.join("old"), &common::bytes(3, 1 << 20)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // Exactly the previous versions, at once, through the mount and ls.
    assert_eq!(std::fs::metadata(mnt.join("new")).unwrap().len(), 0);
    assert_eq!(std::fs::read(mnt.join("new")).unwrap(), b"");
    assert_eq!(
        std::fs::metadata(mnt.join("old")).unwrap().len(),
        old.len() as u64
    );
    let o = run(&["ls", "--config", &cfg, "/", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ls: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entry = |n: &str| {
        ls.as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (
            entry("new")["size"].as_u64(),
            entry("new")["chunks"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(entry("old")["size"].as_u64(), Some(old.len() as u64));
    // Where the user looks: status and the daemon's log.
    let text = status_text(&cfg);
    assert!(
        text.contains("writes blocked: 1 of 3 backends answer, 2 needed"),
        "{text}"
    );
    let j = status_json(&cfg);
    assert_eq!(j["writes"]["blocked"], true);
    let log = std::fs::read_to_string(e.p("state/mount.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("writes blocked"))
        .unwrap_or_else(|| panic!("no 'writes blocked' in the log:\n{log}"));
    // Each by name, with why (a backend already marked down says so instead
    // of repeating its folder's error).
    assert!(
        line.contains("a (unreachable") && line.contains("b (unreachable"),
        "the log names both backends: {line}"
    );
    // Both back: writes work again.
    std::fs::rename(e.p("a.away"), e.p("a")).unwrap();
    std::fs::rename(e.p("b.away"), e.p("b")).unwrap();
    wait_until("writes accepted again", Duration::from_secs(20), || {
        write_and_close(&mnt.join("new"), b"stored").is_ok()
    });
    assert_eq!(std::fs::read(mnt.join("new")).unwrap(), b"stored");
    assert_eq!(
        std::fs::read(mnt.join("old")).unwrap(),
        old,
        "the previous version"
    );
    let o = run(&["umount", &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn daemon_pid(cfg: &str) -> i32 {
    status_json(cfg)["pid"].as_i64().unwrap() as i32
}

#[test]
fn umount_of_a_stopped_daemon_says_so_in_bounded_time_and_force_works() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !common::can_mount() {
        return;
    }
    let e = Env::new();
    let (cfg, mp) = mounted_volume(&e, &[]);
    std::fs::write(Path::new(&mp).join("f"), b"x").unwrap();
    let pid = daemon_pid(&cfg);
    // SAFETY: signalling our own child daemon.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let t = Instant::now();
    let mut child = bin()
        .args(["umount", "--timeout", "3s", &mp])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            unsafe { libc::kill(pid, libc::SIGCONT) };
            panic!("cloudraid umount hung on a stopped daemon");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    common::assert_one_line_error(&o, "has not answered in 3s");
    let err = stderr(&o);
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("stopped"),
        "{err}"
    );
    assert!(
        err.contains(&format!("cloudraid umount --force {mp}")),
        "{err}"
    );
    assert!(common::mounted_type(&mp).is_some(), "nothing was unmounted");

    let o = run(&["umount", "--force", &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(common::mounted_type(&mp).is_none(), "forced unmount");
    assert!(
        stderr(&o).contains(&format!("kill {pid}")),
        "{}",
        stderr(&o)
    );
    // Resumed, the daemon finds its session gone and exits.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let t = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The volume mounts again, and what was stored is there.
    std::fs::create_dir_all(&mp).unwrap();
    let o = run(&["mount", "--config", &cfg, &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(Path::new(&mp).join("f")).unwrap(), b"x");
    let o = run(&["umount", &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A tmpfs mounted at a path, unmounted (lazily) when dropped.
struct Tmpfs(String);

impl Tmpfs {
    fn mount(dir: &str, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
                dir,
            ])
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs failed");
        Tmpfs(dir.to_string())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        common::unmount_below(Path::new(&self.0).parent().unwrap());
        let _ = std::process::Command::new("umount")
            .args(["-l", &self.0])
            .status();
    }
}

/// Fills the filesystem of `path` with a file there, until ENOSPC.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = common::bytes(9, 1 << 16);
    while f.write_all(&block).is_ok() {}
    while f.write_all(&block[..512]).is_ok() {}
}

/// Mounts in the foreground with the daemon's log outside the state dir (which
/// fills up), in `e/daemon.log`; returns once the mount is live.
fn mount_logged(e: &Env, cfg: &str, mp: &str) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(e.p("daemon.log"))
        .unwrap();
    let mut child = bin()
        .args(["mount", "--foreground", "--config", cfg, mp])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_until("mounted", Duration::from_secs(30), || {
        assert!(child.try_wait().unwrap().is_none(), "{}", log_tail(e));
        common::mounted_type(mp).is_some()
    });
    child
}

/// The end of the mount daemon's log (for failure messages).
fn log_tail(e: &Env) -> String {
    let log = std::fs::read_to_string(e.p("daemon.log")).unwrap_or_default();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.trim_start().starts_with("at "))
        .collect();
    let panics: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("panicked"))
        .map(|(i, _)| lines[i..(i + 12).min(lines.len())].join("\n"))
        .collect();
    format!(
        "{}\n...\n{}",
        panics.join("\n---\n"),
        lines[lines.len().saturating_sub(20)..].join("\n")
    )
}

fn content(it: u64, i: u64) -> Vec<u8> {
    common::bytes(it * 100_000 + i, 1200)
}

/// The state dir on a small tmpfs that fills in the middle of writes: every
/// close that returned 0 and every mkdir that succeeded survives a remount;
/// operations that fail say ENOSPC; status shows the full disk; freeing space
/// brings writes back without a remount; umount works, full or not.
#[test]
fn a_full_state_dir_loses_nothing_acknowledged_and_recovers_when_space_is_freed() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !common::can_mount() {
        return;
    }
    let iterations: u64 = std::env::var("DISKFULL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let (mut acked_total, mut failed_total) = (0, 0);
    for it in 0..iterations {
        let e = Env::new();
        let _disk = Tmpfs::mount(&e.p("state"), "24m");
        let (cfg, mp) = (common::three_backend_volume(&e, &[]), e.p("mnt"));
        std::fs::create_dir(&mp).unwrap();
        let mut daemon = mount_logged(&e, &cfg, &mp);
        let mnt = Path::new(&mp);
        let filler = Path::new(&e.p("state")).join("filler");
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut failed_files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut dirs: Vec<String> = Vec::new();
        let fill_at = 40 + (it * 53) % 120;
        let mut saw_full_status = false;
        for i in 0..fill_at + 150 {
            if i == fill_at {
                fill(&filler);
            }
            if i % 5 == 4 {
                let name = format!("d{i}");
                match std::fs::create_dir(mnt.join(&name)) {
                    Ok(()) => dirs.push(name),
                    Err(err) => {
                        assert_eq!(
                            err.raw_os_error(),
                            Some(libc::ENOSPC),
                            "mkdir {i}: {err}; log:\n{}",
                            log_tail(&e)
                        );
                        failed_total += 1;
                    }
                }
                continue;
            }
            let name = format!("f{i}");
            let data = content(it, i);
            match write_and_close(&mnt.join(&name), &data) {
                Ok(()) => files.push((name, data)),
                Err(err) => {
                    assert_eq!(
                        err.raw_os_error(),
                        Some(libc::ENOSPC),
                        "file {i}: {err}; log:\n{}",
                        log_tail(&e)
                    );
                    failed_files.push((name, data));
                }
            }
            if !saw_full_status && !failed_files.is_empty() {
                // Right after an operation failed for want of space, status says so.
                let text = status_text(&cfg);
                assert!(
                    text.contains("local disk       FULL"),
                    "iteration {it}: {text}"
                );
                let j = status_json(&cfg);
                assert!(j["local_disk"]["free_bytes"].is_u64(), "{j}");
                assert!(j["local_disk"]["problem"].is_string(), "{j}");
                saw_full_status = true;
            }
        }
        failed_total += failed_files.len();
        assert!(
            !failed_files.is_empty(),
            "iteration {it}: the disk never filled"
        );
        assert!(
            saw_full_status,
            "iteration {it}: status shows the full disk"
        );
        if it % 2 == 0 {
            // Space freed: writes work again without a remount.
            std::fs::remove_file(&filler).unwrap();
            wait_until(
                "writes accepted after freeing space",
                Duration::from_secs(10),
                || write_and_close(&mnt.join("after"), b"after").is_ok(),
            );
            files.push(("after".into(), b"after".to_vec()));
            std::fs::create_dir(mnt.join("dir-after")).unwrap();
            dirs.push("dir-after".into());
            assert!(!status_text(&cfg).contains("local disk       FULL"));
        }
        // Unmounts whether the disk is still full or not.
        let o = run(&["umount", &mp]);
        assert!(o.status.success(), "iteration {it}: {}", stderr(&o));
        assert!(daemon.wait().unwrap().success(), "{}", log_tail(&e));
        let _ = std::fs::remove_file(&filler);
        let mut daemon = mount_logged(&e, &cfg, &mp);
        for (name, data) in &files {
            let got = std::fs::read(mnt.join(name))
                .unwrap_or_else(|err| panic!("iteration {it}: {name} acknowledged, now {err}"));
            assert!(
                got == *data,
                "iteration {it}: {name} acknowledged but reads back {} bytes",
                got.len()
            );
        }
        for name in &dirs {
            assert!(
                mnt.join(name).is_dir(),
                "iteration {it}: mkdir {name} succeeded, now gone"
            );
        }
        // A write that failed left no partial file: absent, empty, or (if its
        // last retry at release found room) whole.
        for (name, data) in &failed_files {
            if let Ok(got) = std::fs::read(mnt.join(name)) {
                assert!(
                    got.is_empty() || got == *data,
                    "iteration {it}: {name} is partial"
                );
            }
        }
        acked_total += files.len() + dirs.len();
        let o = run(&["umount", &mp]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(daemon.wait().unwrap().success(), "{}", log_tail(&e));
    }
    eprintln!(
        "{iterations} iterations: {acked_total} acknowledged operations all kept, {failed_total} refused with ENOSPC"
    );
}
