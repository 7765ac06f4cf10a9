//! The mount daemon: `cloudraid mount` in the foreground or detached, and
//! `cloudraid umount`.
//!
//! Detaching re-executes the binary with `--foreground` in a new session, its
//! stdout a pipe back to the parent: the child writes `READY` once the kernel has
//! completed the FUSE handshake (the mount is live) or `ERROR <reason>`, and the
//! parent exits 0 or prints the reason. The child's log goes to `mount.log` in the
//! state dir.

use crate::config::Config;
use crate::front::control;
use crate::front::fuse;
use crate::front::mountopts::MountOpts;
use crate::front::setup;
use crate::fs::Fs;
use crate::meta::lease;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct MountArgs {
    pub config_path: PathBuf,
    pub mountpoint: PathBuf,
    pub options: Vec<String>,
    /// How to unlock an encrypted volume.
    pub keys: setup::KeySource,
}

/// One line of /proc/mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    pub target: PathBuf,
    pub fstype: String,
    pub options: String,
}

fn unescape(s: &str) -> String {
    // /proc/mounts writes space, tab, newline and backslash as \ooo octal escapes.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn mounts() -> Vec<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() >= 4).then(|| MountEntry {
                source: unescape(f[0]),
                target: PathBuf::from(unescape(f[1])),
                fstype: f[2].to_string(),
                options: f[3].to_string(),
            })
        })
        .collect()
}

pub fn find_mount(target: &Path) -> Option<MountEntry> {
    mounts().into_iter().rev().find(|m| m.target == target)
}

fn absolute(p: &Path) -> Result<PathBuf, String> {
    std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn check_mountpoint(mp: &Path) -> Result<(), String> {
    if let Some(m) = find_mount(mp) {
        return Err(format!(
            "{} is already mounted ({} from {}); unmount it first with `cloudraid umount {}`",
            mp.display(),
            m.fstype,
            m.source,
            mp.display()
        ));
    }
    match std::fs::metadata(mp) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(format!("mountpoint {} is not a directory", mp.display())),
        Err(e) => Err(format!(
            "mountpoint {} cannot be used ({e}); create it with `mkdir -p {}`",
            mp.display(),
            mp.display()
        )),
    }
}

/// Starts the mount daemon in the background and returns once the mount is live.
pub fn mount_detached(args: &MountArgs) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let config = Config::load(&args.config_path)?;
    let mp = absolute(&args.mountpoint)?;
    check_mountpoint(&mp)?;
    MountOpts::parse(&args.options, false)?;
    setup::set_private_dir(&config.volume.state_dir)?;
    let log_path = config.volume.state_dir.join("mount.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open log {}: {e}", log_path.display()))?;
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the cloudraid binary: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("mount")
        .arg("--foreground")
        .arg("--config")
        .arg(absolute(&args.config_path)?)
        .arg(&mp);
    for o in &args.options {
        cmd.arg("-o").arg(o);
    }
    if let Some(f) = &args.keys.key_file {
        cmd.arg("--key-file").arg(absolute(f)?);
    }
    if let Some(f) = &args.keys.passphrase_file {
        cmd.arg("--passphrase-file").arg(absolute(f)?);
    }
    // A passphrase typed here goes to the daemon through a pipe.
    let typed = if args.keys.would_prompt(&config) {
        let c = args.keys.credential(&config)?;
        cmd.arg("--passphrase-stdin");
        Some(c)
    } else {
        None
    };
    // Readiness goes through the pipe; systemd hears of it from a foreground mount.
    cmd.env("CLOUDRAID_READY_PIPE", "1")
        .env_remove("NOTIFY_SOCKET")
        .stdin(if typed.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the mount daemon: {e}"))?;
    if let (Some(crate::data::keys::Credential::Passphrase(p)), Some(mut stdin)) =
        (typed, child.stdin.take())
    {
        let line = zeroize::Zeroizing::new(format!("{}\n", p.as_str()));
        let _ = stdin.write_all(line.as_bytes());
    }
    let out = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    let _ = std::io::BufReader::new(out).read_line(&mut line);
    let line = line.trim();
    if line == "READY" {
        return Ok(());
    }
    let _ = child.wait();
    if let Some(reason) = line.strip_prefix("ERROR ") {
        return Err(reason.to_string());
    }
    let tail = std::fs::read_to_string(&log_path)
        .ok()
        .and_then(|t| t.lines().last().map(str::to_string))
        .unwrap_or_default();
    Err(format!(
        "the mount daemon exited before the mount was live: {tail} (log: {})",
        log_path.display()
    ))
}

/// Runs the mount in this process until it is unmounted or signalled.
pub fn mount_foreground(args: &MountArgs) -> Result<(), String> {
    let notify = std::env::var_os("CLOUDRAID_READY_PIPE").is_some();
    std::env::remove_var("CLOUDRAID_READY_PIPE");
    let result = run_mount(args, notify);
    if let Err(e) = &result {
        if notify {
            let _ = writeln!(std::io::stdout(), "ERROR {e}");
            let _ = std::io::stdout().flush();
        }
    }
    result
}

fn signal_ready() {
    let _ = writeln!(std::io::stdout(), "READY");
    let _ = std::io::stdout().flush();
    // Nothing else goes to the parent's pipe: point stdout at /dev/null.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: both descriptors are valid; dup2 replaces fd 1 atomically.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

/// Tells systemd (when it started us with a notify socket) how the mount is doing.
fn tell_systemd(state: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(false, state) {
            tracing::warn!("cannot notify systemd: {e}");
        }
    }
}

fn run_mount(args: &MountArgs, notify: bool) -> Result<(), String> {
    let mut config = Config::load(&args.config_path)?;
    let mp = absolute(&args.mountpoint)?;
    check_mountpoint(&mp)?;
    let opts = MountOpts::parse(&args.options, false)?;
    if let Some(c) = opts.cache_size {
        config.volume.cache_size = c;
    }
    if let Some(r) = opts.readahead_chunks {
        config.volume.readahead_chunks = r;
    }
    config.validate()?;
    config.api.check_tls()?;
    let source = absolute(&args.config_path)?.to_string_lossy().into_owned();
    let rt = daemon_runtime()?;
    rt.block_on(async {
        let (mut vol, checks) =
            setup::open_volume_waiting(&config, &args.keys, opts.startup_timeout()).await?;
        count_requests(&mut vol);
        let idx = setup::open_index_waiting(&config, Duration::from_secs(10)).await?;
        // One writer at a time: a read-write mount holds the write lease, given
        // back however the mount ends.
        let holder = if opts.read_only {
            None
        } else {
            Some(setup::become_writer(&config, &vol, &idx, opts.takeover).await?)
        };
        let ended = serve_mount(
            &config,
            &opts,
            Some(&mp),
            &source,
            notify,
            vol.clone(),
            idx,
            checks,
            holder.clone(),
        )
        .await;
        if let Some(me) = &holder {
            lease::release(&vol, me).await;
        }
        ended
    })
}

/// The daemon's runtime (mount and `serve`).
fn daemon_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cloudraid")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// `cloudraid serve`: the daemon of a mount without the mount (control
/// socket, REST API, upkeep, schedules) for the volume of `config`, until
/// SIGTERM or Ctrl-C.
pub fn serve_unmounted(
    config_path: &Path,
    config: &Config,
    keys: &setup::KeySource,
) -> Result<(), String> {
    let source = absolute(config_path)?.to_string_lossy().into_owned();
    let opts = MountOpts::parse(&[], false)?;
    let rt = daemon_runtime()?;
    rt.block_on(async {
        if control::request(&config.volume.state_dir, &control::Request::Status)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            return Err(format!(
                "volume {} is already open in a daemon (mounted, or another `cloudraid serve`); its [api] is served there",
                config.volume.name
            ));
        }
        let (mut vol, checks) =
            setup::open_volume_waiting(config, keys, opts.startup_timeout()).await?;
        count_requests(&mut vol);
        let idx = setup::open_index_waiting(config, Duration::from_secs(10)).await?;
        let holder = setup::become_writer(config, &vol, &idx, false).await?;
        let ended = serve_mount(
            config,
            &opts,
            None,
            &source,
            false,
            vol.clone(),
            idx,
            checks,
            Some(holder.clone()),
        )
        .await;
        lease::release(&vol, &holder).await;
        ended
    })
}

/// Every request the daemon sends to a backend is counted (`cloudraid cost`)
/// and measured (`/metrics`), whichever part of cloudraid sends it; called
/// right after the volume is opened, when nothing else holds it yet.
fn count_requests(vol: &mut Arc<crate::data::volume::Volume>) {
    match Arc::get_mut(vol) {
        Some(v) => {
            for (s, h) in v.slots.iter_mut().zip(&v.health) {
                s.backend = h.counting(&s.name, s.backend.clone());
            }
        }
        None => tracing::warn!("requests to the backends are not counted by this daemon"),
    }
}

/// The mount itself, once the lease is held: until unmounted. Without a
/// mountpoint (`cloudraid serve`), the same daemon without FUSE: until
/// SIGTERM or Ctrl-C.
#[allow(clippy::too_many_arguments)]
async fn serve_mount(
    config: &Config,
    opts: &MountOpts,
    mp: Option<&Path>,
    source: &str,
    notify: bool,
    vol: Arc<crate::data::volume::Volume>,
    idx: crate::meta::index::Index,
    checks: Vec<setup::BackendCheck>,
    holder: Option<lease::Holder>,
) -> Result<(), String> {
    let mut fs_opts = setup::fs_options(config, opts.read_only);
    fs_opts.show_uid = opts.uid;
    fs_opts.show_gid = opts.gid;
    let fs = Fs::load(vol, idx, fs_opts)?;
    let down: Vec<_> = checks.iter().filter(|c| c.error.is_some()).collect();
    for c in &down {
        tracing::warn!(
            "backend {} is unavailable ({}); files stay readable from the others",
            c.name,
            c.error.as_deref().unwrap_or("")
        );
    }
    if down.len() > config.volume.parity_shards as usize {
        tracing::warn!(
                "{} backends are unavailable, more than the {} this volume tolerates: some files will not be readable until they return",
                down.len(),
                config.volume.parity_shards
            );
    }
    // What a crash left in the journal goes up now; a first snapshot if none.
    if !opts.read_only {
        if let Some(log) = fs.metalog() {
            if let Err(e) = log.catch_up().await {
                tracing::warn!("metadata log: {e}; will retry");
            }
        }
    }
    let metalog = fs
        .metalog()
        .filter(|_| !opts.read_only)
        .map(|log| log.spawn(Duration::from_secs(5)));
    let renewal = holder.clone().map(|me| {
        let fenced = fs.clone();
        lease::spawn_renewal(
            fs.volume().clone(),
            me,
            Box::new(move |who| {
                crate::meta::events::record_local(
                    fenced.index(),
                    "lease_lost",
                    crate::format::Severity::Error,
                    "",
                    &format!("the write lease was taken over: {who}; this mount is read-only from now on"),
                );
                fenced.fence();
            }),
        )
    });
    let collector = fs.spawn_collector();
    let prober = fs.volume().spawn_prober(Duration::from_secs(5));
    let watcher = crate::meta::events::spawn_watch(
        fs.volume().clone(),
        fs.index().clone(),
        Duration::from_secs(2),
    );
    let completer = fs.spawn_degraded_repair(Duration::from_secs(10));
    let api_listener = match crate::front::api::bind(&config.api).await {
        Ok(l) => l,
        Err(e) => {
            collector.abort();
            prober.abort();
            completer.abort();
            watcher.abort();
            return Err(e);
        }
    };
    let mounted = match mp {
        Some(mp) => Some(
            fuse::mount(fs.clone(), mp, source, opts)
                .map_err(|e| format!("cannot mount at {}: {e}", mp.display()))?,
        ),
        None => None,
    };
    let sock = control::socket_path(&config.volume.state_dir);
    let listener = match control::listen(&sock) {
        Ok(l) => l,
        Err(e) => {
            if let (Some(mp), Some(m)) = (mp, mounted) {
                let _ = fuse::unmount(mp, true);
                let _ = m.join();
            }
            return Err(format!(
                "cannot create the control socket {}: {e}",
                sock.display()
            ));
        }
    };
    // An empty mountpoint: served without a mount (status says so).
    let shown = mp.map(|m| m.display().to_string()).unwrap_or_default();
    let ctl = tokio::spawn(control::serve(listener, fs.clone(), shown.clone()));
    let api = api_listener.map(|l| {
        crate::front::api::spawn(
            l,
            fs.clone(),
            config.api.clone(),
            Some(shown.clone()),
            PathBuf::from(source),
        )
    });
    match mp {
        Some(mp) => tracing::info!("volume {} mounted at {}", config.volume.name, mp.display()),
        None => tracing::info!("volume {} open (not mounted)", config.volume.name),
    }
    let schedule = config
        .snapshots
        .as_ref()
        .and_then(crate::backup::schedule::Schedule::of)
        .and_then(|s| {
            if opts.read_only {
                tracing::info!("read-only mount: the scheduled snapshots are not taken");
                None
            } else {
                Some(crate::backup::schedule::ScheduleTask::spawn(fs.clone(), s))
            }
        });
    let jobs = if opts.read_only {
        if config.jobs.iter().any(|j| j.schedule.is_some() || j.watch) {
            tracing::info!("read-only mount: the backup jobs' schedules and watches do not run");
        }
        None
    } else {
        let env = config.env_vars().unwrap_or_else(|e| {
            tracing::error!("backup jobs: {e}");
            Vec::new()
        });
        let watch =
            crate::backup::job::watch::JobWatch::spawn(fs.clone(), &config.jobs, env.clone());
        let sched = crate::backup::job::sched::JobSchedule::spawn(fs.clone(), &config.jobs, env);
        Some((sched, watch))
    };
    // Alerts run on a read-only mount too: an outage is worth knowing of there.
    let alerts = config.alerts.clone().map(|section| {
        let env = config.env_vars().unwrap_or_else(|e| {
            tracing::error!("alerts: {e}");
            Vec::new()
        });
        crate::front::alerts::Alerts::spawn(fs.clone(), section, config.jobs.clone(), env)
    });
    let up = checks.len() - down.len();
    let what = match mp {
        Some(mp) => format!("mounted at {}", mp.display()),
        None => "open".to_string(),
    };
    tell_systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!(
            "{what} ({up} of {} backends answer)",
            checks.len()
        )),
    ]);
    let api_url = config
        .api
        .address()
        .ok()
        .flatten()
        .map(|a| format!("; REST API at {}://{a}", config.api.scheme()))
        .unwrap_or_default();
    if notify {
        signal_ready();
    } else {
        match mp {
            Some(mp) => eprintln!(
                "cloudraid: volume {} mounted at {}{api_url} (Ctrl-C or `cloudraid umount {}` to unmount)",
                config.volume.name,
                mp.display(),
                mp.display()
            ),
            None => eprintln!(
                "cloudraid: volume {} open{api_url} (Ctrl-C to stop)",
                config.volume.name
            ),
        }
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let ended = match (mp, mounted) {
        (Some(mp), Some(mounted)) => {
            let mut join = tokio::task::spawn_blocking(move || mounted.join());
            loop {
                tokio::select! {
                    r = &mut join => break r,
                    _ = term.recv() => { let _ = fuse::unmount(mp, true); }
                    _ = int.recv() => { let _ = fuse::unmount(mp, true); }
                }
            }
        }
        _ => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            Ok(Ok(()))
        }
    };
    tell_systemd(&[sd_notify::NotifyState::Stopping]);
    ctl.abort();
    if let Some(a) = api {
        a.abort();
    }
    let _ = std::fs::remove_file(&sock);
    if let Some(s) = schedule {
        s.stop().await;
    }
    if let Some((sched, watch)) = jobs {
        if let Some(w) = watch {
            w.stop().await;
        }
        if let Some(s) = sched {
            s.stop().await;
        }
    }
    if let Some(a) = alerts {
        a.stop().await;
    }
    let synced = fs.sync_all().await;
    collector.abort();
    if let Some(m) = metalog {
        m.abort();
    }
    prober.abort();
    completer.abort();
    watcher.abort();
    if let Some(r) = renewal {
        r.abort();
    }
    match mp {
        Some(mp) => tracing::info!(
            "volume {} unmounted from {}",
            config.volume.name,
            mp.display()
        ),
        None => tracing::info!("volume {} closed", config.volume.name),
    }
    if let Err(e) = synced {
        return Err(format!("unmounted, but committing open files failed: {e}"));
    }
    match ended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the FUSE session ended with an error: {e}")),
        Err(e) => Err(format!("the FUSE session failed: {e}")),
    }
}

/// What /proc says process `pid` is doing, for messages about a daemon that
/// does not answer.
fn process_state(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    match stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .chars()
        .next()
    {
        Some('T') | Some('t') => {
            format!("it is stopped (SIGSTOP or a debugger); `kill -CONT {pid}` resumes it")
        }
        Some('D') => "it is blocked in the kernel".to_string(),
        Some('Z') | None => "it has exited".to_string(),
        Some(_) => "it is running but does not answer".to_string(),
    }
}

/// The pid of the process listening on the control socket (even a stopped one:
/// the kernel knows it from when it started listening).
fn daemon_pid(state_dir: &Path) -> Option<u32> {
    let s = std::os::unix::net::UnixStream::connect(control::socket_path(state_dir)).ok()?;
    use std::os::fd::AsRawFd;
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket and an out-parameter of the right size.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    (r == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

/// The FUSE connection number of the mount at `mp` (its device minor), from
/// /proc/self/mountinfo: nothing on the mount itself is touched.
fn fuse_connection(mp: &Path) -> Option<u32> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 4 && Path::new(&unescape(f[4])) == mp)
            .then(|| f[2].split(':').nth(1)?.parse().ok())
            .flatten()
    })
}

/// Aborts the FUSE connection of the mount at `mp` (fusectl): every request
/// waiting on its daemon fails at once with ENOTCONN.
fn abort_connection(mp: &Path) -> Result<(), String> {
    let conn = fuse_connection(mp).ok_or("its FUSE connection is not in /proc/self/mountinfo")?;
    let dir = Path::new("/sys/fs/fuse/connections");
    let abort = dir.join(conn.to_string()).join("abort");
    if !abort.exists() {
        // fusectl is not mounted yet.
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        // SAFETY: valid NUL-terminated strings; no data argument.
        unsafe {
            libc::mount(
                c("fusectl").as_ptr(),
                c("/sys/fs/fuse/connections").as_ptr(),
                c("fusectl").as_ptr(),
                0,
                std::ptr::null(),
            )
        };
    }
    std::fs::write(&abort, "1").map_err(|e| format!("cannot write {}: {e}", abort.display()))
}

/// `cloudraid umount --force`: aborts the mount's FUSE connection and detaches
/// it, without asking the daemon; what it had not stored is lost.
fn force_umount(mp: &Path, entry: &MountEntry) -> Result<(), String> {
    let pid = Config::load(Path::new(&entry.source))
        .ok()
        .and_then(|c| daemon_pid(&c.volume.state_dir));
    let aborted = abort_connection(mp);
    let c = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("cannot unmount {}: {e}", mp.display()));
    }
    if let Err(e) = aborted {
        eprintln!("cloudraid: warning: the FUSE connection was not aborted ({e}); processes waiting on the mount may stay blocked until its daemon answers");
    }
    if let Some(pid) = pid.filter(|p| Path::new(&format!("/proc/{p}")).exists()) {
        eprintln!(
            "cloudraid: warning: the mount daemon (pid {pid}) is still there ({}); changes it had not stored are lost; end it with `kill {pid}`",
            process_state(pid)
        );
    }
    Ok(())
}

/// `cloudraid umount`: commits pending data through the daemon, unmounts, and
/// waits for the daemon to finish. A daemon that does not answer within
/// `timeout` is reported (with how to force the unmount), not waited for;
/// `force` unmounts without it.
pub fn umount(mountpoint: &Path, force: bool, timeout: Duration) -> Result<(), String> {
    let mp = absolute(mountpoint)?;
    let entry = find_mount(&mp).ok_or_else(|| format!("{} is not mounted", mp.display()))?;
    if entry.fstype != "fuse.cloudraid" {
        return Err(format!(
            "{} is a {} mount, not a cloudraid one; use umount(8)",
            mp.display(),
            entry.fstype
        ));
    }
    if force {
        return force_umount(&mp, &entry);
    }
    let mut daemon_pid_seen = None;
    let mut unstored = None;
    if let Ok(config) = Config::load(Path::new(&entry.source)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let asked = rt.block_on(async {
            tokio::time::timeout(
                timeout,
                control::request(&config.volume.state_dir, &control::Request::Sync),
            )
            .await
        });
        let resp = match asked {
            Ok(Ok(r)) => r,
            // A daemon that just died (its socket still half there): the mount is
            // dead, and unmounting it is all that is left to do. A live daemon
            // commits its open files itself when the kernel ends the session.
            Ok(Err(e)) => {
                eprintln!("cloudraid: warning: the mount daemon does not answer ({e}); unmounting without it");
                None
            }
            Err(_) => {
                let who = match daemon_pid(&config.volume.state_dir) {
                    Some(pid) => format!(
                        "the mount daemon (pid {pid}) has not answered in {}s: {}",
                        timeout.as_secs(),
                        process_state(pid)
                    ),
                    None => format!(
                        "the mount daemon has not answered in {}s",
                        timeout.as_secs()
                    ),
                };
                return Err(format!(
                    "{who}; nothing was unmounted. To unmount without it (changes it has not stored are lost): `cloudraid umount --force {}` (or `umount -l {}`)",
                    mp.display(),
                    mp.display()
                ));
            }
        };
        if let Some(r) = resp {
            if !r.ok {
                // Unmounted all the same: the daemon tries again as it stops.
                unstored = Some(r.error.unwrap_or_default());
            }
            daemon_pid_seen = Some(r.pid);
        }
    }
    fuse::unmount(&mp, false).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            format!(
                "{} is busy: a process still uses files there; close them and retry",
                mp.display()
            )
        } else {
            format!("cannot unmount {}: {e}", mp.display())
        }
    })?;
    if let Some(pid) = daemon_pid_seen {
        let deadline = Instant::now() + Duration::from_secs(120).max(timeout);
        while Path::new(&format!("/proc/{pid}")).exists() {
            // A zombie (already exited) has no cmdline left.
            if std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.is_empty())
                .unwrap_or(true)
            {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "cloudraid: warning: unmounted, but the mount daemon (pid {pid}) is still finishing ({}); see mount.log in the state dir",
                    process_state(pid)
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if let Some(e) = unstored {
        return Err(format!(
            "unmounted {}, but pending changes could not be stored: {e}; the daemon's log (mount.log in the state dir) says what was lost",
            mp.display()
        ));
    }
    Ok(())
}
