//! The `cloudraid` command line.

use clap::{Parser, Subcommand};
use cloudraid::config::{human, Config, Size};
use cloudraid::fs::Fs;
use cloudraid::{control, daemon, ops, scrub, setup, status};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cloudraid",
    version,
    about = "A backup drive that survives a cloud going dark: files are erasure-coded across several storage providers"
)]
struct Cli {
    /// Unlock an encrypted volume with this key file (init: create it).
    #[arg(long, global = true, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Read the passphrase of an encrypted volume from the first line of FILE
    /// (also: CLOUDRAID_PASSPHRASE, or a prompt on a terminal).
    #[arg(long, global = true, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// The passphrase comes on standard input (used by `mount` for its daemon).
    #[arg(long, global = true, hide = true)]
    passphrase_stdin: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// How this run unlocks encrypted volumes (from the global options).
static KEYS: std::sync::OnceLock<setup::KeySource> = std::sync::OnceLock::new();

/// The key source of this run; `locked` for commands that need no key.
fn keys(locked: bool) -> setup::KeySource {
    setup::KeySource {
        locked,
        ..KEYS.get().cloned().unwrap_or_default()
    }
}

/// The key source of a command that uses the key when it is given (no prompt)
/// and works without it.
fn keys_if_given() -> setup::KeySource {
    setup::KeySource {
        prompt: false,
        ..keys(false)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a volume over several backends and write its config file.
    Init {
        /// Where to write the config (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// A backend, as NAME=URL (file:///path, s3://bucket[/prefix], gs://bucket[/prefix], az://container[/prefix], memory://). Repeat for each.
        #[arg(long = "backend", value_name = "NAME=URL", required = true)]
        backends: Vec<String>,
        /// Data shards per chunk (k). Default: from the number of backends (3 → 2, 6 → 4).
        #[arg(long, value_name = "K")]
        data_shards: Option<usize>,
        /// Parity shards per chunk (m): how many backends may be lost. Default: about a third of the backends.
        #[arg(long, value_name = "M")]
        parity_shards: Option<usize>,
        /// Shards that must be stored for a write to succeed (K..K+M; default K+1).
        #[arg(long, value_name = "N")]
        write_quorum: Option<u8>,
        /// Average chunk size (content-defined: chunks range from a quarter to four times it; 64KiB-4MiB).
        #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
        chunk_size: Size,
        /// Memory for the chunk cache.
        #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
        cache_size: Size,
        /// Local state (index, staging). Default: under the user's data dir.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Volume name (default: the config file's name).
        #[arg(long)]
        name: Option<String>,
        /// Overwrite an existing config file.
        #[arg(long)]
        force: bool,
        /// Allow more shards than backends (less fault tolerance).
        #[arg(long)]
        allow_shared_backends: bool,
        /// A root-only file of KEY=VALUE credentials (AWS_*, GOOGLE_*, AZURE_*) for mounts
        /// started without a user environment (fstab, systemd).
        #[arg(long, value_name = "FILE")]
        env_file: Option<PathBuf>,
        /// Store chunks and metadata unencrypted (encryption is the default).
        #[arg(long)]
        no_encryption: bool,
        /// Compression of chunks: zstd, zstd:LEVEL (1-19) or none.
        #[arg(long, value_name = "ALGO", default_value = "zstd")]
        compression: String,
        /// Memory for the passphrase's key derivation (Argon2id).
        #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
        kdf_memory: Size,
        /// Passes of the passphrase's key derivation (Argon2id).
        #[arg(long, value_name = "N", default_value_t = 3)]
        kdf_passes: u32,
    },
    /// Change the passphrase of an encrypted volume (rewraps its key on every backend).
    Passwd {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The new passphrase's file (first line); else CLOUDRAID_NEW_PASSPHRASE, else
        /// asked twice on the terminal.
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        /// Memory for the new passphrase's key derivation (Argon2id).
        #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
        kdf_memory: Size,
        /// Passes of the new passphrase's key derivation.
        #[arg(long, value_name = "N", default_value_t = 3)]
        kdf_passes: u32,
    },
    /// Mount a volume. Returns once the mount is live, unless --foreground.
    Mount {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        mountpoint: PathBuf,
        /// Mount options: ro, rw, allow_other, allow_root, uid=N, gid=N, nosuid, nodev, noexec, noatime,
        /// cache_size=SIZE, readahead=N, startup_timeout=DURATION (fstab-only options are dropped).
        #[arg(short = 'o', value_name = "OPTIONS")]
        options: Vec<String>,
        /// Stay in the foreground until unmounted (Ctrl-C unmounts).
        #[arg(long, short = 'f')]
        foreground: bool,
        /// Take the write lease over from another machine or state dir that holds
        /// it (only when that one is gone: it stops writing at its next renewal).
        #[arg(long)]
        takeover: bool,
    },
    /// Store pending data, then unmount.
    #[command(alias = "unmount")]
    Umount {
        mountpoint: PathBuf,
        /// Unmount without the daemon: abort its FUSE connection and detach the
        /// mount (for a daemon that does not answer; what it had not stored is lost).
        #[arg(long)]
        force: bool,
        /// How long to wait for the daemon to store pending changes.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Backends, their state and what they hold; volume totals.
    Status {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read back every shard (or a sample) and check it; exits non-zero if any is missing or damaged.
    Scrub {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Check only this percentage of the chunks (chosen by id: the same ones each time).
        #[arg(long, value_name = "PERCENT", default_value_t = 100.0)]
        sample: f64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild missing and damaged shards from the good ones, and report what was fixed.
    Repair {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// List a directory of the volume (or one file): mode, size, modified, chunks, redundancy.
    Ls {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// A path in the volume.
        #[arg(default_value = "/")]
        path: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Copy local files and directories into the volume. Files the volume already
    /// holds with the same content are skipped.
    Put {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Local files and directories (directories are copied with their contents).
        #[arg(required = true, value_name = "LOCAL")]
        sources: Vec<PathBuf>,
        /// Where in the volume: an existing directory to copy into, or the new name of a single source.
        #[arg(value_name = "DEST")]
        dest: String,
    },
    /// Copy files and directories out of the volume, restoring modes and times.
    Get {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Paths in the volume.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// A local directory to copy into, or the new name of a single path.
        #[arg(value_name = "DEST")]
        dest: PathBuf,
    },
    /// Remove files and symlinks from the volume (directories with -r).
    Rm {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Remove directories and their contents.
        #[arg(short, long)]
        recursive: bool,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Create directories in the volume.
    Mkdir {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Create missing parents; an existing directory is not an error.
        #[arg(short, long)]
        parents: bool,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// How much a tree holds, and what its distinct chunks take on the backends.
    Du {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(default_value = "/")]
        path: String,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Wait until every change made through the mount is stored (nothing to do unmounted).
    Sync {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check the index against itself and the backends; exits non-zero if a problem is left.
    Fsck {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Fix link and reference counts, entries and cookies (unreachable files go to
        /// /lost+found), and delete orphaned shards older than the grace period.
        #[arg(long)]
        repair: bool,
        /// Orphaned shards younger than this are left alone (they may be uploads in progress).
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
        grace: std::time::Duration,
        /// Print JSON instead of a report.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the local index from the metadata on the backends (a new machine,
    /// a lost state dir); works with up to m backends down.
    Recover {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Create (once) a demo volume over three local folders and mount it in the foreground.
    Demo { mountpoint: PathBuf },
    /// Install the mount helper (mount.cloudraid and mount.fuse.cloudraid) so that
    /// mount(8) and /etc/fstab can mount volumes.
    InstallHelper {
        /// Where mount(8) looks for helpers.
        #[arg(long, value_name = "DIR", default_value = "/sbin")]
        dir: PathBuf,
        /// Remove the helper instead.
        #[arg(long)]
        remove: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or write one page per command into a directory.
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 30s, 1h, 2days)"))
}

fn parse_size(s: &str) -> Result<Size, String> {
    Size::parse(s)
}

/// Logs go to stderr: the mount daemon's (to its log file) at info, the other
/// commands' only errors, since they report what matters themselves.
fn init_logging(daemon: bool) {
    let default = if daemon {
        "cloudraid=info,fuser=error,warn"
    } else {
        "off"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLOUDRAID_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Argon2id cost from the command line.
fn kdf_cost(memory: Size, passes: u32) -> Result<cloudraid::keys::KdfCost, String> {
    let cost = cloudraid::keys::KdfCost {
        m_cost_kib: u32::try_from(memory.0 / 1024).unwrap_or(u32::MAX),
        t_cost: passes,
        p_cost: 1,
    };
    cost.check()
        .map_err(|e| format!("--kdf-memory {memory} / --kdf-passes {passes}: {e}"))?;
    Ok(cost)
}

/// A new passphrase: from a file, from the environment variable `env`, or typed twice.
fn new_passphrase(file: Option<&Path>, env: &str) -> Result<cloudraid::keys::Credential, String> {
    use cloudraid::keys::Credential;
    use zeroize::Zeroizing;
    if let Some(f) = file {
        return setup::read_passphrase_file(f);
    }
    if let Ok(p) = std::env::var(env) {
        if p.is_empty() {
            return Err(format!("{env} is empty"));
        }
        return Ok(Credential::Passphrase(Zeroizing::new(p)));
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(format!(
            "no new passphrase: set {env}, give a passphrase file, or run on a terminal to type it"
        ));
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|e| format!("cannot read the passphrase: {e}"))
    };
    let first = ask("New passphrase: ")?;
    if first.is_empty() {
        return Err("the passphrase is empty".into());
    }
    if *ask("Repeat it: ")? != *first {
        return Err("the two passphrases differ; nothing was changed".into());
    }
    Ok(Credential::Passphrase(first))
}

/// How `init` protects the new volume's key.
fn new_key(
    no_encryption: bool,
    key_file: Option<&Path>,
    passphrase_file: Option<&Path>,
) -> Result<setup::NewKey, String> {
    match (no_encryption, key_file) {
        (true, None) if passphrase_file.is_none() => Ok(setup::NewKey::None),
        (true, _) => Err("--no-encryption takes no key file or passphrase".into()),
        (false, Some(f)) => Ok(setup::NewKey::KeyFile(absolute(f)?)),
        (false, None) => {
            new_passphrase(passphrase_file, setup::PASSPHRASE_ENV).map(setup::NewKey::Passphrase)
        }
    }
}

/// Creates a volume and reports it; `hint`: say how to mount it.
fn init_volume(req: setup::InitRequest, hint: bool) -> Result<(), String> {
    let path = req.config_path.clone();
    let report = runtime()?.block_on(setup::init(req))?;
    let v = &report.config.volume;
    println!(
        "created volume {} ({}): {}+{} shards over {} backends, chunk {}, cache {}",
        v.name,
        v.id,
        v.data_shards,
        v.parity_shards,
        report.config.backends.len(),
        v.chunk_size,
        v.cache_size
    );
    println!("config: {}", path.display());
    println!("state:  {}", v.state_dir.display());
    match (&v.key_file, v.encrypted()) {
        (Some(k), _) => println!(
            "encrypted; key file: {} (back it up elsewhere: without it the volume cannot be opened)",
            k.display()
        ),
        (None, true) => println!("encrypted with your passphrase (without it the volume cannot be opened)"),
        (None, false) => println!("not encrypted"),
    }
    for w in report.warnings {
        println!("warning: {w}");
    }
    if hint {
        println!(
            "mount it with: cloudraid mount --config {} MOUNTPOINT",
            path.display()
        );
    }
    Ok(())
}

/// Asks the mount daemon, if the volume is mounted. `Ok(None)`: not mounted, so
/// the caller opens the volume itself.
async fn ask_daemon<T>(
    config: &Config,
    req: control::Request,
    pick: impl FnOnce(control::Response) -> Option<T>,
) -> Result<Option<T>, String> {
    match control::request(&config.volume.state_dir, &req).await? {
        None => Ok(None),
        Some(r) if r.ok => pick(r)
            .map(Some)
            .ok_or_else(|| "the mount daemon sent no report".to_string()),
        Some(r) => Err(r.error.unwrap_or_else(|| "the mount daemon refused".into())),
    }
}

/// Prints a report as JSON or with its table renderer.
fn print_report<T: serde::Serialize>(
    report: &T,
    json: bool,
    render: fn(&T) -> String,
) -> Result<(), String> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render(report));
    }
    Ok(())
}

/// A progress bar on stderr when it is a terminal; cleared when dropped.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(what: &str) -> Progress {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}}, {{eta}} left"
        )) {
            bar.set_style(style);
        }
        Progress(Some(bar))
    }

    /// A bar counting bytes (for transfers), or none without a label.
    fn bytes(what: Option<&str>) -> Progress {
        use std::io::IsTerminal;
        let Some(what) = what.filter(|_| std::io::stderr().is_terminal()) else {
            return Progress(None);
        };
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}}, {{eta}} left"
        )) {
            bar.set_style(style);
        }
        Progress(Some(bar))
    }

    fn update(&self, done: u64, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
            b.set_position(done);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

fn show_status(config_path: &Path, json: bool) -> Result<(), String> {
    let config = Config::load(config_path)?;
    let report = runtime()?.block_on(async {
        match ask_daemon(&config, control::Request::Status, |r| r.status).await? {
            Some(r) => Ok(r),
            None => {
                let (vol, _) = setup::open_volume(&config, &keys(true)).await?;
                let idx = setup::open_index(&config)?;
                status::gather(&vol, &idx).await
            }
        }
    })?;
    print_report(&report, json, status::render)
}

fn run_scrub(config_path: &Path, sample: f64, json: bool) -> Result<(), String> {
    if !(sample > 0.0 && sample <= 100.0) {
        return Err(format!(
            "--sample {sample} must be a percentage above 0 and at most 100"
        ));
    }
    let config = Config::load(config_path)?;
    let report = runtime()?.block_on(async {
        match ask_daemon(&config, control::Request::Scrub { sample }, |r| r.scrub).await? {
            Some(r) => Ok(r),
            None => {
                // Shards are checked as stored: no key needed (with it, a shard
                // altered along with its checksum is named even when m = 1).
                let (vol, _) = setup::open_volume(&config, &keys_if_given()).await?;
                let idx = setup::open_index(&config)?;
                let p = Progress::new("scrub");
                scrub::scrub(&vol, &idx, sample, &|d, t| p.update(d, t)).await
            }
        }
    })?;
    print_report(&report, json, scrub::render)?;
    if report.clean() {
        Ok(())
    } else {
        Err(format!(
            "scrub found {} missing, damaged or unreachable shard(s); files stay readable while each chunk keeps {} good shards; `cloudraid repair` rebuilds them",
            report.bad.len(),
            config.volume.data_shards
        ))
    }
}

fn run_repair(config_path: &Path, json: bool) -> Result<(), String> {
    let config = Config::load(config_path)?;
    let report = runtime()?.block_on(async {
        match ask_daemon(&config, control::Request::Repair, |r| r.repair).await? {
            Some(r) => Ok(r),
            None => {
                let (vol, _) = setup::open_volume(&config, &keys(false)).await?;
                let idx = setup::open_index(&config)?;
                let p = Progress::new("repair");
                scrub::repair(&vol, &idx, &|d, t| p.update(d, t)).await
            }
        }
    })?;
    print_report(&report, json, scrub::render_repair)?;
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} chunk(s) or shard(s) could not be repaired (listed above); bring their backends back and run repair again",
            report.failed.len()
        ))
    }
}

/// Runs a tree operation through the mount daemon when the volume is mounted,
/// else on the volume opened here, and hands its report to `show`. Unavailable
/// backends are named: in the error if the operation fails, else in a warning.
fn on_volume<T: serde::de::DeserializeOwned>(
    config_path: &Path,
    req: control::Request,
    read_only: bool,
    progress_label: Option<&str>,
    show: impl FnOnce(T) -> Result<(), String>,
) -> Result<(), String> {
    let config = Config::load(config_path)?;
    let p = Progress::bytes(progress_label);
    let progress = |d: u64, t: u64| p.update(d, t);
    let (resp, down) = runtime()?.block_on(async {
        if let Some(r) =
            control::request_with_progress(&config.volume.state_dir, &req, &progress).await?
        {
            let down = r.down.clone();
            return Ok::<_, String>((r, down));
        }
        // Listing reads only the index: no key needed for it.
        let locked = matches!(
            req,
            control::Request::Ls { .. }
                | control::Request::Du { .. }
                | control::Request::Fsck { repair: false, .. }
        );
        let (vol, checks) = setup::open_volume(&config, &keys(locked)).await?;
        let idx = setup::open_index(&config)?;
        // A change without a mount holds the write lease for its duration.
        let holder = if read_only {
            None
        } else {
            Some(setup::become_writer(&config, &vol, &idx, false).await?)
        };
        let done = async {
            let fs = Fs::load(vol.clone(), idx, setup::fs_options(&config, read_only))?;
            if let (Some(log), false) = (fs.metalog(), read_only) {
                if let Err(e) = log.catch_up().await {
                    eprintln!("cloudraid: warning: metadata log not uploaded yet: {e}");
                }
            }
            let removes = matches!(
                req,
                control::Request::Rm { .. } | control::Request::Fsck { repair: true, .. }
            );
            let r = control::execute(&fs, req, ops::current_caller(), None, &progress).await;
            if !read_only {
                if removes {
                    // No mount daemon collects garbage: delete the freed chunks now.
                    if let Err(e) = fs.collect_garbage().await {
                        eprintln!("cloudraid: warning: freed chunks stay stored until the next collection: {e}");
                    }
                }
                fs.sync_all()
                    .await
                    .map_err(|e| format!("cannot make the index durable: {e}"))?;
                if let Some(log) = fs.metalog() {
                    if let Err(e) = log.push_and_compact().await {
                        eprintln!("cloudraid: warning: metadata log not uploaded yet: {e}");
                    }
                }
            }
            Ok::<_, String>(r)
        }
        .await;
        if let Some(me) = &holder {
            cloudraid::lease::release(&vol, me).await;
        }
        let down: Vec<String> = checks
            .iter()
            .filter(|c| c.error.is_some())
            .map(|c| c.name.clone())
            .collect();
        Ok((done?, down))
    })?;
    drop(p);
    let result = if resp.ok {
        serde_json::from_value(resp.data.unwrap_or_default())
            .map_err(|e| format!("unreadable report: {e}"))
            .and_then(show)
    } else {
        Err(resp.error.unwrap_or_else(|| "the operation failed".into()))
    };
    if down.is_empty() {
        return result;
    }
    let note = format!(
        "unavailable backend(s): {} (see `cloudraid status --config {}`)",
        down.join(", "),
        config_path.display()
    );
    match result {
        Ok(()) => {
            eprintln!("cloudraid: warning: {note}");
            Ok(())
        }
        Err(e) => Err(format!("{e}; {note}")),
    }
}

/// Absolute local paths (the mount daemon may run in another directory).
fn absolute(p: &Path) -> Result<PathBuf, String> {
    std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// What could not be done: one error line, or one line each and a summary.
/// `done`: whether anything else was done (and reported on stdout).
fn print_errors(errors: &[String], what: &str, done: bool) -> Result<(), String> {
    match errors {
        [] => Ok(()),
        [one] => Err(one.clone()),
        many => {
            for e in many {
                eprintln!("cloudraid: {e}");
            }
            Err(format!(
                "{} {what} failed (listed above); {}",
                many.len(),
                if done {
                    "the rest was done"
                } else {
                    "nothing was done"
                }
            ))
        }
    }
}

fn run_put(config: &Path, sources: &[PathBuf], dest: String) -> Result<(), String> {
    let sources = sources
        .iter()
        .map(|s| absolute(s))
        .collect::<Result<Vec<_>, _>>()?;
    on_volume(
        config,
        control::Request::Put { sources, dest },
        false,
        Some("put"),
        |r: ops::TransferReport| {
            // A summary only of what was done: an error alone says nothing was.
            let stored = r.files + r.dirs + r.symlinks + r.specials > 0;
            if stored || (r.unchanged == 0 && r.errors.is_empty()) {
                println!(
            "stored {} file(s) ({}), {} director{}, {} symlink(s){}; {} chunk(s) uploaded, {} already stored",
            r.files,
            human(r.bytes),
            r.dirs,
            if r.dirs == 1 { "y" } else { "ies" },
            r.symlinks,
            specials(r.specials),
            r.chunks_uploaded,
            r.chunks_deduplicated
        );
            }
            if r.unchanged > 0 {
                println!(
                    "skipped {} file(s) ({}) already stored with the same content",
                    r.unchanged,
                    human(r.unchanged_bytes)
                );
            }
            print_errors(&r.errors, "copies", stored || r.unchanged > 0)
        },
    )
}

/// ", N special file(s)" when FIFOs, sockets or devices were copied.
fn specials(n: u64) -> String {
    match n {
        0 => String::new(),
        n => format!(", {n} special file(s)"),
    }
}

fn run_get(config: &Path, paths: Vec<String>, dest: &Path) -> Result<(), String> {
    let dest = absolute(dest)?;
    on_volume(
        config,
        control::Request::Get {
            paths,
            dest: dest.clone(),
        },
        true,
        Some("get"),
        |r: ops::TransferReport| {
            let done = r.files + r.dirs + r.symlinks + r.specials > 0;
            if done || r.errors.is_empty() {
                println!(
                    "wrote {} file(s) ({}), {} director{}, {} symlink(s){} to {}",
                    r.files,
                    human(r.bytes),
                    r.dirs,
                    if r.dirs == 1 { "y" } else { "ies" },
                    r.symlinks,
                    specials(r.specials),
                    dest.display()
                );
            }
            print_errors(&r.errors, "copies", done)
        },
    )
}

fn install_helper(dir: &Path, remove: bool) -> Result<(), String> {
    let exe = std::env::current_exe()
        .and_then(|e| e.canonicalize())
        .map_err(|e| format!("cannot find the cloudraid binary: {e}"))?;
    for name in ["mount.cloudraid", "mount.fuse.cloudraid"] {
        let link = dir.join(name);
        let existed = std::fs::symlink_metadata(&link).is_ok();
        if existed {
            std::fs::remove_file(&link)
                .map_err(|e| format!("cannot replace {}: {e} (run as root)", link.display()))?;
        }
        if remove {
            if existed {
                println!("removed {}", link.display());
            } else {
                println!("{} was not installed", link.display());
            }
            continue;
        }
        std::os::unix::fs::symlink(&exe, &link)
            .map_err(|e| format!("cannot create {}: {e} (run as root)", link.display()))?;
        println!("{} -> {}", link.display(), exe.display());
    }
    if !remove {
        println!("mount(8) can now mount volumes: mount -t cloudraid CONFIG MOUNTPOINT, or an fstab line such as");
        println!("  /etc/cloudraid/backup.toml /mnt/backup cloudraid defaults,_netdev,nofail 0 0");
    }
    Ok(())
}

fn write_man(dir: Option<&Path>) -> Result<(), String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let Some(dir) = dir else {
        let mut out = std::io::stdout();
        return clap_mangen::Man::new(cmd)
            .render(&mut out)
            .map_err(|e| e.to_string());
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!("man pages written to {}", dir.display());
    Ok(())
}

/// `mount.cloudraid`: what mount(8) runs for `mount -t cloudraid` and fstab.
fn mount_helper(args: &[String]) -> ExitCode {
    use cloudraid::mountopts::{parse_helper_args, MountOpts};
    // mount(8)'s exit codes: 1 for a wrong invocation, 32 for a failed mount.
    let h = match parse_helper_args(args) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("mount.cloudraid: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = match MountOpts::parse(&h.options, h.sloppy) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("mount.cloudraid: {e}");
            return ExitCode::from(1);
        }
    };
    for o in &opts.ignored {
        eprintln!("mount.cloudraid: ignoring unknown option {o:?} (-s)");
    }
    if h.verbose {
        println!(
            "mount.cloudraid: {} on {} type fuse.cloudraid ({}){}",
            h.source,
            h.mountpoint,
            opts.to_list(),
            if opts.dropped.is_empty() {
                String::new()
            } else {
                format!("; not for the kernel: {}", opts.dropped.join(","))
            }
        );
    }
    if h.fake {
        if h.verbose {
            println!("mount.cloudraid: fake mount (-f): nothing mounted");
        }
        return ExitCode::SUCCESS;
    }
    let args = daemon::MountArgs {
        config_path: PathBuf::from(&h.source),
        mountpoint: PathBuf::from(&h.mountpoint),
        options: vec![opts.to_list()],
        keys: keys(false),
    };
    match daemon::mount_detached(&args) {
        Ok(()) => {
            if h.verbose {
                println!("mount.cloudraid: {} is live", h.mountpoint);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mount.cloudraid: {}", cloudraid::config::one_line(&e));
            ExitCode::from(32)
        }
    }
}

fn sigpipe(disposition: libc::sighandler_t) {
    // SAFETY: SIG_DFL and SIG_IGN need no handler; setting them has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, disposition) };
}

fn demo(mountpoint: &Path) -> Result<(), String> {
    let base = dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("cloudraid")
        .join("demo");
    let config = base.join("demo.toml");
    let mountpoint = &absolute(mountpoint)?;
    if mountpoint.exists() && !mountpoint.is_dir() {
        return Err(format!(
            "{} is a file, not a folder: give the demo a folder to mount on (it is created if missing), e.g. `cloudraid demo /tmp/cloudraid-demo`",
            mountpoint.display()
        ));
    }
    if config.exists() {
        let loaded = Config::load(&config)?;
        if let Some(at) = setup::mounted_at(&loaded).first() {
            return Err(format!(
                "the demo volume is already mounted on {}: use it there, or stop that demo (Ctrl-C in its terminal, or `cloudraid umount {}`) to mount it on {}",
                at.display(),
                at.display(),
                mountpoint.display()
            ));
        }
    } else {
        let backends = ["disk-a", "disk-b", "disk-c"]
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    format!("file://{}", base.join("backends").join(n).display()),
                )
            })
            .collect();
        init_volume(
            setup::InitRequest {
                config_path: config.clone(),
                name: Some("demo".into()),
                backends,
                data_shards: Some(2),
                parity_shards: Some(1),
                write_quorum: None,
                chunk_size: Size(1 << 20),
                cache_size: Size(256 << 20),
                state_dir: Some(base.join("state")),
                force: false,
                allow_shared_backends: false,
                env_file: None,
                // Encrypted, with a key file beside it so that it mounts unattended.
                new_key: setup::NewKey::KeyFile(base.join("demo.key")),
                kdf_cost: Default::default(),
                compression: "zstd".into(),
            },
            false,
        )?;
    }
    // The folders created here are removed again if the mount fails.
    let mut created = Vec::new();
    let mut dir = Some(mountpoint.as_path());
    while let Some(d) = dir.filter(|d| !d.exists()) {
        created.push(d.to_path_buf());
        dir = d.parent();
    }
    std::fs::create_dir_all(mountpoint)
        .map_err(|e| format!("cannot create {}: {e}", mountpoint.display()))?;
    println!(
        "demo volume: 2 data + 1 parity shards over three folders in {}",
        base.join("backends").display()
    );
    println!(
        "mounting it on {}; copy files into it: any one of the three folders can vanish and they stay readable.",
        mountpoint.display()
    );
    println!(
        "in another terminal: cloudraid status --config {}",
        config.display()
    );
    sigpipe(libc::SIG_IGN);
    let mounted = daemon::mount_foreground(&daemon::MountArgs {
        config_path: config,
        mountpoint: mountpoint.to_path_buf(),
        options: vec![],
        keys: keys(false),
    });
    if mounted.is_err() {
        for d in &created {
            let _ = std::fs::remove_dir(d);
        }
    }
    mounted
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Init {
            config,
            backends,
            data_shards,
            parity_shards,
            write_quorum,
            chunk_size,
            cache_size,
            state_dir,
            name,
            force,
            allow_shared_backends,
            env_file,
            no_encryption,
            compression,
            kdf_memory,
            kdf_passes,
        } => init_volume(
            setup::InitRequest {
                new_key: new_key(
                    no_encryption,
                    cli.key_file.as_deref(),
                    cli.passphrase_file.as_deref(),
                )?,
                kdf_cost: kdf_cost(kdf_memory, kdf_passes)?,
                compression,
                env_file: env_file.map(|f| absolute(&f)).transpose()?,
                write_quorum,
                config_path: config,
                name,
                backends: backends
                    .iter()
                    .map(|b| setup::parse_backend_arg(b))
                    .collect::<Result<_, _>>()?,
                data_shards,
                parity_shards,
                chunk_size,
                cache_size,
                state_dir,
                force,
                allow_shared_backends,
            },
            true,
        ),
        Cmd::Mount {
            config,
            mountpoint,
            mut options,
            foreground,
            takeover,
        } => {
            if takeover {
                options.push("takeover".into());
            }
            let args = daemon::MountArgs {
                config_path: config,
                mountpoint,
                options,
                keys: keys(false),
            };
            if foreground {
                daemon::mount_foreground(&args)
            } else {
                daemon::mount_detached(&args)
            }
        }
        Cmd::Umount {
            mountpoint,
            force,
            timeout,
        } => {
            daemon::umount(&mountpoint, force, timeout)?;
            println!("unmounted {}", mountpoint.display());
            Ok(())
        }
        Cmd::Status { config, json } => show_status(&config, json),
        Cmd::Demo { mountpoint } => demo(&mountpoint),
        Cmd::Scrub {
            config,
            sample,
            json,
        } => run_scrub(&config, sample, json),
        Cmd::Repair { config, json } => run_repair(&config, json),
        Cmd::Ls { config, path, json } => on_volume(
            &config,
            control::Request::Ls { path },
            true,
            None,
            |entries: Vec<ops::ListEntry>| print_report(&entries, json, |e| ops::render_list(e)),
        ),
        Cmd::Put {
            config,
            sources,
            dest,
        } => run_put(&config, &sources, dest),
        Cmd::Get {
            config,
            paths,
            dest,
        } => run_get(&config, paths, &dest),
        Cmd::Rm {
            config,
            recursive,
            paths,
        } => on_volume(
            &config,
            control::Request::Rm { paths, recursive },
            false,
            None,
            |r: ops::RemoveReport| {
                let done = r.files + r.dirs > 0;
                if done || r.errors.is_empty() {
                    println!("removed {} file(s) and {} director(ies)", r.files, r.dirs);
                }
                print_errors(&r.errors, "removals", done)
            },
        ),
        Cmd::Mkdir {
            config,
            parents,
            paths,
        } => on_volume(
            &config,
            control::Request::Mkdir { paths, parents },
            false,
            None,
            |r: ops::MkdirReport| {
                let done = r.created > 0;
                if done || r.errors.is_empty() {
                    println!("created {} director(ies)", r.created);
                }
                print_errors(&r.errors, "mkdirs", done)
            },
        ),
        Cmd::Du { config, path, json } => on_volume(
            &config,
            control::Request::Du { path },
            true,
            None,
            |r: ops::DuReport| print_report(&r, json, ops::render_du),
        ),
        Cmd::Sync { config } => {
            let config = Config::load(&config)?;
            let resp = runtime()?.block_on(control::request(
                &config.volume.state_dir,
                &control::Request::Sync,
            ))?;
            match resp {
                None => println!("not mounted: nothing is pending"),
                Some(r) if r.ok => println!("every change made through the mount is stored"),
                Some(r) => return Err(r.error.unwrap_or_else(|| "sync failed".into())),
            }
            Ok(())
        }
        Cmd::Fsck {
            config,
            repair,
            grace,
            json,
        } => on_volume(
            &config,
            control::Request::Fsck {
                repair,
                grace_secs: grace.as_secs(),
            },
            !repair,
            None,
            |r: cloudraid::fs::fsck::FsckReport| {
                print_report(&r, json, cloudraid::fs::fsck::render)?;
                if r.clean() {
                    Ok(())
                } else if repair {
                    Err("fsck found problems it cannot fix (listed above)".into())
                } else {
                    Err("fsck found problems (listed above); `cloudraid fsck --repair` fixes those marked so".into())
                }
            },
        ),
        Cmd::Passwd {
            config,
            new_passphrase_file,
            kdf_memory,
            kdf_passes,
        } => {
            let config = Config::load(&config)?;
            if !config.volume.encrypted() {
                return Err(format!(
                    "volume {} is not encrypted: it has no passphrase to change",
                    config.volume.name
                ));
            }
            let cost = kdf_cost(kdf_memory, kdf_passes)?;
            let current = keys(false);
            // The current passphrase is asked first (when nothing else gives it).
            let current = if current.would_prompt(&config) {
                setup::KeySource {
                    passed: Some(current.credential(&config)?),
                    ..current
                }
            } else {
                current
            };
            let new = new_passphrase(new_passphrase_file.as_deref(), "CLOUDRAID_NEW_PASSPHRASE")?;
            let done = runtime()?.block_on(setup::passwd(&config, &current, &new, cost))?;
            println!(
                "passphrase changed on {} backend(s): {}",
                done.len(),
                done.join(", ")
            );
            Ok(())
        }
        Cmd::Recover { config, json } => {
            let config_path = config;
            let config = Config::load(&config_path)?;
            let p = Progress::new("recover");
            let report = runtime()?.block_on(setup::recover(&config, &keys(false), &|d, t| {
                p.update(d, t)
            }))?;
            drop(p);
            print_report(&report, json, cloudraid::metalog::render_recover)?;
            if !json {
                println!(
                    "mount it with: cloudraid mount --config {} MOUNTPOINT",
                    config_path.display()
                );
            }
            Ok(())
        }
        Cmd::InstallHelper { dir, remove } => install_helper(&dir, remove),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "cloudraid",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Cmd::Man { dir } => write_man(dir.as_deref()),
    }
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let prog = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if prog == "mount.cloudraid" || prog == "mount.fuse.cloudraid" {
        init_logging(false);
        let args: Option<Vec<String>> = argv[1..]
            .iter()
            .map(|a| a.to_str().map(str::to_string))
            .collect();
        let Some(args) = args else {
            eprintln!("mount.cloudraid: an argument is not valid UTF-8; give the config path and mountpoint in UTF-8");
            return ExitCode::from(1);
        };
        return mount_helper(&args);
    }
    let cli = Cli::parse();
    let passed = if cli.passphrase_stdin {
        let mut line = zeroize::Zeroizing::new(String::new());
        let _ = std::io::stdin().read_line(&mut line);
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        Some(cloudraid::keys::Credential::Passphrase(
            zeroize::Zeroizing::new(p),
        ))
    } else {
        None
    };
    let _ = KEYS.set(setup::KeySource {
        key_file: cli.key_file.clone(),
        passphrase_file: cli.passphrase_file.clone(),
        prompt: true,
        passed,
        locked: false,
    });
    let daemon = matches!(cli.cmd, Cmd::Mount { .. } | Cmd::Demo { .. });
    if !matches!(cli.cmd, Cmd::Mount { .. }) {
        // Like coreutils: output into a closed pipe (`cloudraid ls | head`) ends
        // the command quietly by SIGPIPE, instead of a panic on the failed write.
        // The mount daemon keeps ignoring it (`demo` from when it mounts): a
        // client that goes away must not stop the mount.
        sigpipe(libc::SIG_DFL);
    }
    init_logging(daemon);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloudraid: error: {}", cloudraid::config::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
