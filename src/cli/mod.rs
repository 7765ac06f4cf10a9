//! Command handlers of the `cloudraid` binary, and what they share: the key
//! source of this run, the runtime, reports, progress bars, and running tree
//! operations through the mount daemon or on the volume opened here.

pub mod api;
pub mod args;
pub mod backup;
pub mod mount;
pub mod policy;
pub mod snapshot;
pub mod tree;
pub mod volume;

use cloudraid::backup::protect::Proof;
use cloudraid::config::Config;
use cloudraid::front::{control, ops, setup};
use cloudraid::fs::Fs;
use std::path::{Path, PathBuf};

/// The exit code of a command that succeeded in part (`backup run`: 3).
pub static EXIT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// How this run unlocks encrypted volumes (from the global options).
pub static KEYS: std::sync::OnceLock<setup::KeySource> = std::sync::OnceLock::new();

/// The key source of this run; `locked` for commands that need no key.
pub fn keys(locked: bool) -> setup::KeySource {
    setup::KeySource {
        locked,
        ..KEYS.get().cloned().unwrap_or_default()
    }
}

/// The key source of a command that uses the key when it is given (no prompt)
/// and works without it.
pub fn keys_if_given() -> setup::KeySource {
    setup::KeySource {
        prompt: false,
        ..keys(false)
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Asks the mount daemon, if the volume is mounted. `Ok(None)`: not mounted, so
/// the caller opens the volume itself.
pub async fn ask_daemon<T>(
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
pub fn print_report<T: serde::Serialize>(
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
pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub fn new(what: &str) -> Progress {
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

    pub fn update(&self, done: u64, total: u64) {
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

/// Runs a tree operation through the mount daemon when the volume is mounted,
/// else on the volume opened here, and hands its report to `show`. Unavailable
/// backends are named: in the error if the operation fails, else in a warning.
pub fn on_volume<T: serde::de::DeserializeOwned>(
    config_path: &Path,
    req: control::Request,
    read_only: bool,
    progress_label: Option<&str>,
    show: impl FnOnce(T) -> Result<(), String>,
) -> Result<(), String> {
    on_volume_proved(config_path, req, None, read_only, progress_label, show)
}

/// Builds the request again with the proof of a protected operation.
pub type WithProof<'a> = &'a dyn Fn(Proof) -> control::Request;

/// As [`on_volume`], for an operation that protected snapshots refuse without
/// proof: when it is refused so, the proof is asked for (the passphrase typed on
/// the terminal) and the request made again with it by `with_proof`.
pub fn on_volume_proved<T: serde::de::DeserializeOwned>(
    config_path: &Path,
    req: control::Request,
    with_proof: Option<WithProof>,
    read_only: bool,
    progress_label: Option<&str>,
    show: impl FnOnce(T) -> Result<(), String>,
) -> Result<(), String> {
    let config = Config::load(config_path)?;
    let p = Progress::bytes(progress_label);
    let progress = |d: u64, t: u64| p.update(d, t);
    let (resp, down) = runtime()?.block_on(async {
        if let Some(mut r) =
            control::request_with_progress(&config.volume.state_dir, &req, &progress).await?
        {
            if let (true, Some(again)) = (r.needs_proof, with_proof) {
                let proof = ask_proof(&config, r.error.as_deref().unwrap_or_default())?;
                r = control::request_with_progress(&config.volume.state_dir, &again(proof), &progress)
                    .await?
                    .ok_or("the mount daemon went away (see mount.log in the state dir)")?;
            }
            let down = r.down.clone();
            return Ok::<_, String>((r, down));
        }
        // Listing reads only the index: no key needed for it.
        let locked = matches!(
            req,
            control::Request::Ls { .. }
                | control::Request::Du { .. }
                | control::Request::Thaw { .. }
                | control::Request::Fsck { repair: false, .. }
                | control::Request::SnapshotList
                | control::Request::SnapshotDiff { .. }
                | control::Request::PolicyApply { dry_run: true, .. }
                | control::Request::BackupPlan {
                    thorough: false,
                    ..
                }
                | control::Request::BackupHistory { .. }
                | control::Request::Events { .. }
                | control::Request::TokenList
                | control::Request::KeyChanged { .. }
        );
        // A passphrase typed here to open the volume is also the proof that a
        // protected operation needs: it is not asked twice.
        let mut source = keys(locked);
        let mut typed = None;
        if with_proof.is_some() && source.would_prompt(&config) {
            let cred = source.credential(&config)?;
            typed = Some(Proof::of(&cred));
            source.passed = Some(cred);
        }
        let (vol, checks) = setup::open_volume(&config, &source).await?;
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
                control::Request::Rm { .. }
                    | control::Request::Fsck { repair: true, .. }
                    | control::Request::SnapshotDelete { .. }
            );
            let mut r = control::execute(&fs, req, ops::current_caller(), None, &progress).await;
            if let (true, Some(again)) = (r.needs_proof, with_proof) {
                let proof = match typed {
                    Some(p) => p,
                    None => ask_proof(&config, r.error.as_deref().unwrap_or_default())?,
                };
                r = control::execute(&fs, again(proof), ops::current_caller(), None, &progress)
                    .await;
            }
            if !read_only {
                if removes && r.ok {
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
            cloudraid::meta::lease::release(&vol, me).await;
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

/// The proof given on the command line: a key file named with `--key-file`
/// (not one from the config).
pub fn given_proof() -> Result<Option<Proof>, String> {
    let Some(path) = KEYS.get().and_then(|k| k.key_file.clone()) else {
        return Ok(None);
    };
    let key = cloudraid::data::keys::read_key_file(&path)?;
    Ok(Some(Proof::of(
        &cloudraid::data::keys::Credential::KeyFile(key, path.display().to_string()),
    )))
}

/// The passphrase typed again on the terminal for a protected operation (never
/// from a file or the environment); without a terminal, `refusal`.
fn ask_proof(config: &Config, refusal: &str) -> Result<Proof, String> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty");
    if tty.is_err() {
        return Err(refusal.to_string());
    }
    let p = rpassword::prompt_password(format!(
        "The snapshots of volume {} are protected: type its passphrase: ",
        config.volume.name
    ))
    .map_err(|e| format!("cannot read the passphrase: {e}"))?;
    Ok(Proof::Passphrase { passphrase: p })
}

/// Absolute local paths (the mount daemon may run in another directory).
pub fn absolute(p: &Path) -> Result<PathBuf, String> {
    std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))
}
