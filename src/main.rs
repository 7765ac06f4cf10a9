//! The `cloudraid` command line.

use clap::{Parser, Subcommand};
use cloudraid::config::{Config, Size};
use cloudraid::{control, daemon, scrub, setup, status};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cloudraid",
    version,
    about = "A backup drive that survives a cloud going dark: files are erasure-coded across several storage providers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
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
        /// Chunk size.
        #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = parse_size)]
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
    },
    /// Mount a volume. Returns once the mount is live, unless --foreground.
    Mount {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        mountpoint: PathBuf,
        /// Mount options: ro, rw, allow_other, allow_root, nosuid, nodev, noexec, noatime...
        #[arg(short = 'o', value_name = "OPTIONS")]
        options: Vec<String>,
        /// Stay in the foreground until unmounted (Ctrl-C unmounts).
        #[arg(long, short = 'f')]
        foreground: bool,
    },
    /// Store pending data, then unmount.
    #[command(alias = "unmount")]
    Umount { mountpoint: PathBuf },
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
    /// Create (once) a demo volume over three local folders and mount it in the foreground.
    Demo { mountpoint: PathBuf },
}

fn parse_size(s: &str) -> Result<Size, String> {
    Size::parse(s)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLOUDRAID_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("cloudraid=info,fuser=error,warn"));
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

fn init_volume(req: setup::InitRequest) -> Result<(), String> {
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
    for w in report.warnings {
        println!("warning: {w}");
    }
    println!(
        "mount it with: cloudraid mount --config {} MOUNTPOINT",
        path.display()
    );
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
            "{what} {{bar:40}} {{pos}}/{{len}} chunks, {{eta}} left"
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
                let (vol, _) = setup::open_volume(&config).await?;
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
                let (vol, _) = setup::open_volume(&config).await?;
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
                let (vol, _) = setup::open_volume(&config).await?;
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

fn demo(mountpoint: &Path) -> Result<(), String> {
    let base = dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("cloudraid")
        .join("demo");
    let config = base.join("demo.toml");
    if !config.exists() {
        let backends = ["disk-a", "disk-b", "disk-c"]
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    format!("file://{}", base.join("backends").join(n).display()),
                )
            })
            .collect();
        init_volume(setup::InitRequest {
            config_path: config.clone(),
            name: Some("demo".into()),
            backends,
            data_shards: Some(2),
            parity_shards: Some(1),
            write_quorum: None,
            chunk_size: Size(4 << 20),
            cache_size: Size(256 << 20),
            state_dir: Some(base.join("state")),
            force: false,
            allow_shared_backends: false,
        })?;
    }
    std::fs::create_dir_all(mountpoint)
        .map_err(|e| format!("cannot create {}: {e}", mountpoint.display()))?;
    println!(
        "demo volume: 2 data + 1 parity shards over three folders in {}",
        base.join("backends").display()
    );
    println!(
        "copy files into {}; any one of the three folders can vanish and they stay readable.",
        mountpoint.display()
    );
    println!(
        "in another terminal: cloudraid status --config {}",
        config.display()
    );
    daemon::mount_foreground(&daemon::MountArgs {
        config_path: config,
        mountpoint: mountpoint.to_path_buf(),
        options: vec![],
    })
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
        } => init_volume(setup::InitRequest {
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
        }),
        Cmd::Mount {
            config,
            mountpoint,
            options,
            foreground,
        } => {
            let args = daemon::MountArgs {
                config_path: config,
                mountpoint,
                options,
            };
            if foreground {
                daemon::mount_foreground(&args)
            } else {
                daemon::mount_detached(&args)
            }
        }
        Cmd::Umount { mountpoint } => {
            daemon::umount(&mountpoint)?;
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
    }
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloudraid: error: {}", cloudraid::config::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
