//! The local index in the state dir: opening it (waiting while a finishing
//! mount holds it), saying who holds it, and `recover` rebuilding a lost one.

use super::{open_volume, set_private_dir, KeySource};
use crate::config::Config;
use crate::meta::index::Index;
use crate::meta::{MetaStore, SledMeta};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub fn open_index(config: &Config) -> Result<Index, String> {
    let dir = &config.volume.state_dir;
    let path = dir.join("index");
    if !path.exists() {
        return Err(format!(
            "no local index in {} (state_dir of the config); the volume was created elsewhere or its state dir was removed",
            dir.display()
        ));
    }
    let meta: Arc<dyn MetaStore> = Arc::new(SledMeta::open(&path).map_err(|e| match e {
        crate::meta::MetaError::Locked { .. } => index_in_use(config, &path),
        e => e.to_string(),
    })?);
    Index::journaled(meta).map_err(|e| e.to_string())
}

/// Where `config`'s volume is mounted now (through this config or another copy
/// of it: same state dir).
pub fn mounted_at(config: &Config) -> Vec<PathBuf> {
    crate::front::daemon::mounts()
        .into_iter()
        .filter(|m| m.fstype == "fuse.cloudraid")
        .filter(|m| {
            Config::load(Path::new(&m.source))
                .is_ok_and(|c| c.volume.state_dir == config.volume.state_dir)
        })
        .map(|m| m.target)
        .collect()
}

/// The process holding the lock on `file` (flock, as sled takes it), from
/// /proc/locks.
fn lock_holder(file: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(file).ok()?;
    let dev = md.dev();
    let (major, minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    let want = format!("{major:02x}:{minor:02x}:{}", md.ino());
    std::fs::read_to_string("/proc/locks")
        .ok()?
        .lines()
        .find_map(|l| {
            // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5245024 0 EOF"
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6 && f[5] == want)
                .then(|| f[4].parse().ok())
                .flatten()
        })
}

/// Says who holds the local index at `index` (a mount of the volume, or which
/// running command), and what to do.
fn index_in_use(config: &Config, index: &Path) -> String {
    let pid = lock_holder(&index.join("db"));
    let shown_pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    if let Some(at) = mounted_at(config).first() {
        return format!(
            "local index at {} is in use: the volume is mounted on {}{shown_pid}; use that mount (cloudraid commands go through it), or unmount it first with `cloudraid umount {}`",
            index.display(),
            at.display(),
            at.display()
        );
    }
    // The holder's command line, and whether it is a mount (daemon or demo).
    let command = pid.and_then(|p| {
        let raw = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
        let words: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let name = Path::new(words.first()?)
            .file_name()?
            .to_string_lossy()
            .into_owned();
        let mut args = words[1..].iter();
        let mut sub = None;
        while let Some(w) = args.next() {
            if w == "--key-file" || w == "--passphrase-file" {
                args.next();
            } else if !w.starts_with('-') {
                sub = Some(w.as_str());
                break;
            }
        }
        let ours = name == "cloudraid" || name.starts_with("mount.");
        let mount = name.starts_with("mount.") || (ours && matches!(sub, Some("mount" | "demo")));
        let mut line = std::iter::once(name)
            .chain(words[1..].iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        if line.chars().count() > 80 {
            line = line.chars().take(77).collect::<String>() + "...";
        }
        Some((line, ours, mount))
    });
    match (pid, command) {
        (Some(p), Some((c, _, true))) => format!(
            "local index at {} is in use by a cloudraid mount that is starting or stopping (pid {p}: `{c}`); retry in a moment",
            index.display()
        ),
        (Some(p), Some((c, true, false))) => format!(
            "local index at {} is held by a running cloudraid command (pid {p}: `{c}`); retry when it has finished",
            index.display()
        ),
        (Some(p), Some((c, false, false))) => format!(
            "local index at {} is held by another process (pid {p}: `{c}`); retry when it has finished",
            index.display()
        ),
        _ => format!(
            "local index at {} is in use by another cloudraid command or a mount{shown_pid}; retry when it has finished",
            index.display()
        ),
    }
}

/// Rebuilds the local index of `config`'s volume from the metadata log on its
/// backends, into a state dir that has none.
pub async fn recover(
    config: &Config,
    keys: &KeySource,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<crate::meta::metalog::RecoverReport, String> {
    let dir = &config.volume.state_dir;
    let path = dir.join("index");
    if path.exists() {
        return Err(format!(
            "{} already holds an index; recover rebuilds a lost one: move the state dir away first if it is damaged",
            path.display()
        ));
    }
    let (vol, checks) = open_volume(config, keys).await?;
    if checks.iter().all(|c| c.error.is_some()) {
        return Err(format!(
            "no backend answers ({}); check the network and credentials",
            checks
                .iter()
                .map(|c| format!("{}: {}", c.name, c.error.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    set_private_dir(dir)?;
    for sub in ["cache", "staging"] {
        set_private_dir(&dir.join(sub))?;
    }
    let result = async {
        let meta: Arc<dyn MetaStore> = Arc::new(SledMeta::open(&path).map_err(|e| e.to_string())?);
        let report = crate::meta::metalog::recover(&vol, meta.clone(), progress).await?;
        let idx = Index::new(meta);
        match idx.superblock().map_err(|e| e.to_string())? {
            Some(sb) if sb.volume_id == vol.id => Ok(report),
            Some(sb) => Err(format!(
                "the metadata on the backends belongs to volume {}, not {}",
                sb.volume_id, vol.id
            )),
            None => Err("the recovered metadata has no superblock".to_string()),
        }
    }
    .await;
    if result.is_err() {
        // Leave no half-built index behind: a retry starts clean.
        let _ = std::fs::remove_dir_all(&path);
    }
    result
}

/// As [`open_index`], but while another process holds the index (a mount
/// daemon that was just unmounted and is finishing), waits for up to `wait`.
pub async fn open_index_waiting(config: &Config, wait: Duration) -> Result<Index, String> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let path = config.volume.state_dir.join("index");
        if !path.exists() {
            return open_index(config);
        }
        match SledMeta::open(&path) {
            // Mounted elsewhere: that mount will not let go (say so at once).
            Err(crate::meta::MetaError::Locked { .. })
                if std::time::Instant::now() < deadline && mounted_at(config).is_empty() =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(meta) => return Index::journaled(Arc::new(meta)).map_err(|e| e.to_string()),
            Err(_) => return open_index(config),
        }
    }
}
