//! The command line's clap definitions, and the man pages written from them.

use clap::{Parser, Subcommand};
use cloudraid::config::Size;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "cloudraid",
    version,
    about = "A backup drive that survives a cloud going dark: files are erasure-coded across several storage providers"
)]
pub struct Cli {
    /// Unlock an encrypted volume with this key file (init: create it). Named here,
    /// it is also the proof that deleting protected snapshots needs.
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Read the passphrase of an encrypted volume from the first line of FILE
    /// (also: CLOUDRAID_PASSPHRASE, or a prompt on a terminal).
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// The passphrase comes on standard input (used by `mount` for its daemon).
    #[arg(long, global = true, hide = true)]
    pub passphrase_stdin: bool,
    /// How the daemon (mount, serve) writes its log: text lines, without
    /// timestamps under systemd (the journal adds them), or JSON, one object a line.
    #[arg(long, global = true, value_enum, env = "CLOUDRAID_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Cmd {
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
    /// What the volume costs a month per backend and storage class, the requests
    /// counted by the mount, a full restore, and plain 2x/3x replication (docs/COST.md).
    Cost {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Download rate assumed for the full restore's time, in Mbit/s.
        #[arg(long, value_name = "MBPS", default_value_t = 100.0, value_parser = parse_mbps)]
        restore_mbps: f64,
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
    /// Ask for the thaws (restores) that files in an archive class (S3 GLACIER,
    /// DEEP_ARCHIVE, Azure Archive) need to be read; thaws in progress are not asked again.
    Thaw {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Files or directories in the volume (directories with everything below).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// How fast (and at what price): expedited, standard or bulk.
        #[arg(long, default_value = "standard")]
        tier: String,
        /// Days a thawed S3 copy stays readable (Azure moves blobs to Hot for good).
        #[arg(long, default_value_t = cloudraid::data::volume::DEFAULT_THAW_DAYS)]
        days: u32,
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
    /// Snapshots of the volume: create, list, diff, delete, protect, unprotect.
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCmd,
    },
    /// Backup jobs ([[job]] in the config): run, list, history, install-timer, daemon.
    Backup {
        #[command(subcommand)]
        cmd: BackupCmd,
    },
    /// The volume's event history, oldest first: backends down and back,
    /// degraded and refused writes, scrub and repair results, backup job runs,
    /// snapshots made and deleted, a lost write lease.
    Events {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only events since then: a duration back from now ("1h", "7days") or a
        /// time ("2026-12-01 08:00:00", local).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// API tokens for the REST API and web dashboard: create, list, revoke.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Serve the REST API of a volume that is not mounted ([api] listen in the
    /// config) until Ctrl-C; a mounted volume's daemon serves it itself.
    Serve {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Placement rules ([[policy]] in the config): check them.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Copy paths of a snapshot to a local folder (like get), or bring them back
    /// into the volume at their old paths (--in-place; nothing is uploaded).
    #[command(
        override_usage = "cloudraid restore --config FILE SNAPSHOT PATH... DEST [--overwrite]\n       cloudraid restore --config FILE SNAPSHOT PATH... --in-place [--overwrite]"
    )]
    Restore {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The snapshot: its id, a unique prefix of at least 4 digits, or `latest`.
        #[arg(value_name = "SNAPSHOT")]
        snapshot: String,
        /// Paths in the snapshot (/ for everything), then the local DEST (not with --in-place).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Restore into the volume at the paths' old places instead of a local folder.
        #[arg(long)]
        in_place: bool,
        /// Replace existing entries (local files, or live files with --in-place;
        /// directories are merged). Without it an existing one is refused and nothing is done.
        #[arg(long)]
        overwrite: bool,
    },
    /// Delete the snapshots a retention policy does not keep (restic's --keep-* rules).
    Forget {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Keep the N newest snapshots.
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        keep_last: u32,
        /// Keep the newest snapshot of each of the N latest hours that have one.
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        keep_hourly: u32,
        /// Keep the newest snapshot of each of the N latest days that have one.
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        keep_daily: u32,
        /// Keep the newest snapshot of each of the N latest weeks that have one.
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        keep_weekly: u32,
        /// Keep the newest snapshot of each of the N latest months that have one.
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        keep_monthly: u32,
        /// Keep the newest snapshot of each of the N latest years that have one.
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        keep_yearly: u32,
        /// Keep every snapshot taken less than DURATION before the newest (e.g. 36h, 14days).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        keep_within: Option<std::time::Duration>,
        /// Keep the snapshots with these tags (a,b: both tags). Repeat for more.
        #[arg(long, value_name = "TAGS")]
        keep_tag: Vec<String>,
        /// Consider only the snapshots that have one of these tags. Repeat for more.
        #[arg(long, value_name = "TAG")]
        tag: Vec<String>,
        /// Say which snapshots would go and what would be freed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete the freed shards from the backends now, and wait for it.
        #[arg(long)]
        prune: bool,
        /// Print JSON instead of a report.
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

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Make a token; its secret is printed once, alone on the last line (only
    /// its hash is kept, with the volume: `recover` brings it back).
    Create {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// A name to list and revoke it by.
        #[arg(long)]
        name: String,
        /// read: status, listings, downloads; write: also uploads, deletes,
        /// folders; admin: everything.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// The tokens: names, roles, when made (never their secrets).
    List {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke the token NAME: requests with it are refused from now on.
    Revoke {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        name: String,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RoleArg {
    Read,
    Write,
    Admin,
}

#[derive(Subcommand)]
pub enum BackupCmd {
    /// Run JOB now: print its plan (new, changed, deleted, unchanged), store it
    /// with a progress bar, snapshot it and apply its retention. Exit 0: the
    /// whole run succeeded; 3: partial (some entries failed, listed); 1: failed
    /// or skipped. Through the mount daemon when mounted.
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The job's name (`name` of a [[job]] of the config).
        job: String,
        /// Print the plan, with the bytes to upload after deduplication (the
        /// changed files are read and cut into chunks), and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The jobs of the config: schedule, next run, last run and its result.
    List {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every run of JOB (of every job without one), oldest first: start,
    /// duration, entries, bytes, result and errors. Kept in the volume's index.
    History {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        job: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a systemd service and timer that run JOB on its schedule
    /// (cloudraid-backup-JOB.service and .timer), then say how to enable them.
    InstallTimer {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        job: String,
        /// Where the units are written.
        #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
        dir: PathBuf,
    },
    /// Run the jobs' schedules on a machine that does not mount the volume:
    /// each job runs when due (a run missed while this was not running runs
    /// once at start), until stopped. Needs the key without a prompt
    /// (key_file or passphrase_file).
    Daemon {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Check every rule against the backends and failure domains (exit 1 if
    /// one cannot be met) and print, for each PATH, the rule that takes it and
    /// where its shards go. Reads the config only.
    Check {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Volume paths to place (e.g. photos/a.jpg).
        paths: Vec<String>,
        /// The size the PATHs are matched with (rules with min_size/max_size).
        #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_size)]
        size: cloudraid::config::Size,
        /// The owner (uid) the PATHs are matched with (default: yours).
        #[arg(long, value_name = "UID")]
        owner: Option<u32>,
    },
    /// Re-place stored files after a rule change: each file's rule chosen
    /// again, each chunk moved to where the strongest rule of its files puts
    /// it (never fewer shards than before at any moment; run again to resume).
    /// Through the mount daemon when mounted.
    Apply {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print the plan (files and chunks to move, bytes per backend) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum SnapshotCmd {
    /// Take a snapshot (atomic: each file as last committed); prints its id as the last word.
    Create {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// A tag for the snapshot. Repeat for more.
        #[arg(long = "tag", value_name = "TEXT")]
        tags: Vec<String>,
        /// Cover only this path of the volume (default: everything). Repeat for more.
        #[arg(long = "path", value_name = "PATH")]
        paths: Vec<String>,
    },
    /// List the snapshots, oldest first.
    List {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// What changed between two snapshots, or from a snapshot to the live tree (B = live).
    Diff {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The older side: a snapshot id, unique prefix or `latest`.
        a: String,
        /// The newer side: a snapshot, or `live`.
        b: String,
        /// Print JSON instead of a list.
        #[arg(long)]
        json: bool,
    },
    /// Delete snapshots (every id is checked first: one unknown and none is deleted).
    Delete {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Snapshot ids (or unique prefixes, or `latest`).
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Protect the snapshots: deleting them, and unprotect, then need the
    /// passphrase typed again (or --key-file FILE on the command line).
    Protect {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Turn snapshot protection off (needs the passphrase typed again, or --key-file FILE).
    Unprotect {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 30s, 1h, 2days)"))
}

fn parse_mbps(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "{s:?}: a download rate in Mbit/s above 0, e.g. 100"
        )),
    }
}

fn parse_size(s: &str) -> Result<Size, String> {
    Size::parse(s)
}

pub fn write_man(dir: Option<&Path>) -> Result<(), String> {
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
