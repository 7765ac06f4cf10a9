//! Mounting front ends: the `mount.cloudraid` helper, `install-helper` and `demo`.

use super::volume::init_volume;
use super::{absolute, keys};
use cloudraid::config::{Config, Size};
use cloudraid::front::{daemon, setup};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn install_helper(dir: &Path, remove: bool) -> Result<(), String> {
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

/// `mount.cloudraid`: what mount(8) runs for `mount -t cloudraid` and fstab.
pub fn mount_helper(args: &[String]) -> ExitCode {
    use cloudraid::front::mountopts::{parse_helper_args, MountOpts};
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

pub fn sigpipe(disposition: libc::sighandler_t) {
    // SAFETY: SIG_DFL and SIG_IGN need no handler; setting them has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, disposition) };
}

pub fn demo(mountpoint: &Path) -> Result<(), String> {
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
