//! The `cloudraid` command line.

mod cli;

use clap::Parser;
use cli::args::{write_man, Cli, Cmd, LogFormat};
use cli::mount::{demo, install_helper, mount_helper, sigpipe};
use cli::snapshot::{run_forget, run_restore, run_snapshot, ForgetArgs};
use cli::tree::{print_errors, run_get, run_put};
use cli::volume::{
    init_volume, kdf_cost, new_key, new_passphrase, run_repair, run_scrub, show_cost, show_status,
};
use cli::{absolute, keys, on_volume, print_report, runtime, Progress, KEYS};
use cloudraid::backup::retention::KeepPolicy;
use cloudraid::config::Config;
use cloudraid::front::{control, daemon, ops, setup};
use std::path::Path;
use std::process::ExitCode;

/// Logs go to stderr: the daemon's (mount: to its log file; serve) at info, the
/// other commands' only errors, since they report what matters themselves.
/// Text by default (no timestamps under systemd, whose journal adds them), or
/// one JSON object a line.
fn init_logging(daemon: bool, format: LogFormat) {
    let default = if daemon {
        "cloudraid=info,fuser=error,warn"
    } else {
        "off"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLOUDRAID_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => b.json().flatten_event(true).try_init(),
        LogFormat::Text if std::env::var_os("JOURNAL_STREAM").is_some() => {
            b.with_ansi(false).without_time().try_init()
        }
        LogFormat::Text => b.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
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
        Cmd::Cost {
            config,
            restore_mbps,
            json,
        } => show_cost(&config, restore_mbps, json),
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
        Cmd::Thaw {
            config,
            paths,
            tier,
            days,
            json,
        } => on_volume(
            &config,
            control::Request::Thaw { paths, tier, days },
            true,
            None,
            |r: ops::ThawReport| {
                print_report(&r, json, ops::render_thaw)?;
                match r.errors.len() {
                    0 => Ok(()),
                    1 => Err(r.errors[0].clone()),
                    n => Err(format!("{} (and {} more)", r.errors[0], n - 1)),
                }
            },
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
            let config_path = config;
            let config = Config::load(&config_path)?;
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
            // The event of it; the change itself is done whatever happens here.
            if let Err(e) = on_volume(
                &config_path,
                control::Request::KeyChanged { backends: done },
                true,
                None,
                |()| Ok(()),
            ) {
                eprintln!("cloudraid: warning: the key change is not in the event history: {e}");
            }
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
            print_report(&report, json, cloudraid::meta::metalog::render_recover)?;
            if !json {
                println!(
                    "mount it with: cloudraid mount --config {} MOUNTPOINT",
                    config_path.display()
                );
            }
            Ok(())
        }
        Cmd::Snapshot { cmd } => run_snapshot(cmd),
        Cmd::Policy { cmd } => cli::policy::run_policy(cmd),
        Cmd::Backup { cmd } => cli::backup::run_backup(cmd),
        Cmd::Token { cmd } => cli::api::run_token(cmd),
        Cmd::Events {
            config,
            since,
            json,
        } => cli::api::events(&config, since.as_deref(), json),
        Cmd::Serve { config } => cli::api::serve(&config),
        Cmd::Restore {
            config,
            snapshot,
            paths,
            in_place,
            overwrite,
        } => run_restore(&config, snapshot, paths, in_place, overwrite),
        Cmd::Forget {
            config,
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
            keep_tag,
            tag,
            dry_run,
            prune,
            json,
        } => run_forget(
            &config,
            ForgetArgs {
                policy: KeepPolicy {
                    last: keep_last,
                    hourly: keep_hourly,
                    daily: keep_daily,
                    weekly: keep_weekly,
                    monthly: keep_monthly,
                    yearly: keep_yearly,
                    within: keep_within,
                    tags: keep_tag,
                },
                tags: tag,
                dry_run,
                prune,
                json,
            },
        ),
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

/// One malloc arena for the whole process. glibc otherwise gives each of the
/// many runtime and blocking-pool threads an arena of its own (up to eight per
/// core), and chunk-sized buffers freed on one thread after being made on
/// another stay resident in all of them: a cold read of a large file then
/// held the cache plus some 280 MiB more (two arenas: ~110 MiB more, one:
/// ~70 MiB, at the same speed). Measured in docs/BENCHMARKS.md.
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let prog = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if prog == "mount.cloudraid" || prog == "mount.fuse.cloudraid" {
        init_logging(false, LogFormat::Text);
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
        Some(cloudraid::data::keys::Credential::Passphrase(
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
    let daemon = matches!(
        cli.cmd,
        Cmd::Mount { .. } | Cmd::Demo { .. } | Cmd::Serve { .. }
    );
    // The mount's daemon (started anew from this binary) logs as asked here.
    if cli.log_format == LogFormat::Json {
        std::env::set_var("CLOUDRAID_LOG_FORMAT", "json");
    }
    if !matches!(cli.cmd, Cmd::Mount { .. }) {
        // Like coreutils: output into a closed pipe (`cloudraid ls | head`) ends
        // the command quietly by SIGPIPE, instead of a panic on the failed write.
        // The mount daemon keeps ignoring it (`demo` from when it mounts): a
        // client that goes away must not stop the mount.
        sigpipe(libc::SIG_DFL);
    }
    init_logging(daemon, cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::from(cli::EXIT.load(std::sync::atomic::Ordering::SeqCst)),
        Err(e) => {
            eprintln!("cloudraid: error: {}", cloudraid::config::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
