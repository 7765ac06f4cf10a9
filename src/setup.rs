//! Creating a volume (`init`) and opening one from its config, with the checks
//! that keep a config from being pointed at the wrong storage.

use crate::config::{default_shards, BackendSection, Config, Size, VolumeSection};
use crate::erasure::Layout;
use crate::format::{VolumeId, VolumeMarker, MARKER_FORMAT_VERSION, MARKER_KEY};
use crate::fs::{Caller, Fs, FsOptions};
use crate::index::Index;
use crate::meta::{MetaStore, SledMeta};
use crate::store::{open_backend, DynBackend, StoreError};
use crate::volume::{Slot, Volume};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct InitRequest {
    pub config_path: PathBuf,
    pub name: Option<String>,
    pub backends: Vec<(String, String)>,
    pub data_shards: Option<usize>,
    pub parity_shards: Option<usize>,
    pub write_quorum: Option<u8>,
    pub chunk_size: Size,
    pub cache_size: Size,
    pub state_dir: Option<PathBuf>,
    pub force: bool,
    pub allow_shared_backends: bool,
    /// Credentials file to reference from the config (`env_file`).
    pub env_file: Option<PathBuf>,
}

/// What `init` did, for the user.
pub struct InitReport {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Parses `NAME=URL`.
pub fn parse_backend_arg(s: &str) -> Result<(String, String), String> {
    let (name, url) = s.split_once('=').ok_or_else(|| {
        format!("--backend {s:?} must be NAME=URL, e.g. disk1=file:///mnt/disk1/cloudraid")
    })?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "backend name {name:?} must be letters, digits, - or _"
        ));
    }
    Ok((name.to_string(), url.to_string()))
}

pub fn default_state_dir(name: &str, id: &VolumeId) -> PathBuf {
    let base = dirs::data_dir().unwrap_or_else(|| PathBuf::from("/var/lib"));
    base.join("cloudraid")
        .join(format!("{name}-{}", &id.to_string()[..8]))
}

/// How many whole backends can be lost when `k+m` shards are spread over `n`.
pub fn backend_fault_tolerance(k: usize, m: usize, n: usize) -> usize {
    let per_backend = (k + m).div_ceil(n.max(1));
    m / per_backend.max(1)
}

async fn read_marker(b: &DynBackend) -> Result<Option<VolumeMarker>, String> {
    match tokio::time::timeout(Duration::from_secs(30), b.get(MARKER_KEY)).await {
        Err(_) => Err("no answer within 30 s".into()),
        Ok(Err(StoreError::NotFound(_))) => Ok(None),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(bytes)) => VolumeMarker::from_bytes(&bytes).map(Some),
    }
}

pub fn set_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot set mode 0700 on {}: {e}", dir.display()))
}

pub async fn init(req: InitRequest) -> Result<InitReport, String> {
    if req.config_path.exists() && !req.force {
        return Err(format!(
            "config {} already exists; pass --force to overwrite it (the volume it describes stays on its backends)",
            req.config_path.display()
        ));
    }
    if req.backends.is_empty() {
        return Err("no backends: give at least one --backend NAME=URL".into());
    }
    let n = req.backends.len();
    let (dk, dm) = default_shards(n);
    let k = req.data_shards.unwrap_or(dk);
    let m = req.parity_shards.unwrap_or(if req.data_shards.is_some() {
        n.saturating_sub(k)
    } else {
        dm
    });
    if k < 1 {
        return Err("--data-shards must be at least 1".into());
    }
    Layout::new(k, m).map_err(|e| e.to_string())?;
    let mut warnings = Vec::new();
    if k + m > n {
        if !req.allow_shared_backends {
            return Err(format!(
                "{k} data + {m} parity shards need {} distinct backends, but {n} were given; add backends, lower --data-shards/--parity-shards, or pass --allow-shared-backends",
                k + m
            ));
        }
        let tol = backend_fault_tolerance(k, m, n);
        warnings.push(format!(
            "{} shards share {n} backends: the volume survives the loss of {tol} backend(s), not {m}",
            k + m
        ));
    }
    if m == 0 {
        warnings.push("no parity shards: losing any backend loses data".into());
    }
    let mut names = std::collections::HashSet::new();
    for (name, _) in &req.backends {
        if !names.insert(name) {
            return Err(format!("backend name {name:?} is given twice"));
        }
    }
    let name = req
        .name
        .clone()
        .or_else(|| {
            req.config_path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "cloudraid".into());
    let id = VolumeId::random();
    let state_dir = match &req.state_dir {
        Some(d) => std::path::absolute(d).map_err(|e| format!("state dir {}: {e}", d.display()))?,
        None => default_state_dir(&name, &id),
    };
    let config = Config {
        volume: VolumeSection {
            name: name.clone(),
            id: id.to_string(),
            data_shards: k as u8,
            parity_shards: m as u8,
            chunk_size: req.chunk_size,
            cache_size: req.cache_size,
            state_dir: state_dir.clone(),
            upload_concurrency: 4,
            readahead_chunks: 4,
            write_quorum: req.write_quorum,
            env_file: req.env_file.clone(),
        },
        backends: req
            .backends
            .iter()
            .map(|(n, u)| BackendSection::new(n, u))
            .collect(),
    };
    config.validate()?;

    // Local folders are created; every backend must then answer and be free of
    // other volumes before anything is written anywhere.
    for b in &config.backends {
        if let Some(path) = b.url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "backend {}: file:// URLs need an absolute path (file:///...)",
                    b.name
                ));
            }
            std::fs::create_dir_all(path)
                .map_err(|e| format!("backend {}: cannot create folder {path}: {e}", b.name))?;
        }
    }
    let backends = connect(&config)?;
    let markers = futures::future::join_all(backends.iter().map(|s| read_marker(&s.backend))).await;
    for (slot, m) in backends.iter().zip(markers) {
        match m {
            Err(e) => return Err(format!("backend {} ({}) cannot be reached: {e}; fix it or leave it out", slot.name, slot.backend.describe())),
            Ok(Some(existing)) => {
                return Err(format!(
                    "backend {} ({}) already holds volume {} ({:?}); use an empty bucket, folder or prefix for a new volume",
                    slot.name,
                    slot.backend.describe(),
                    existing.volume_id,
                    existing.volume_name
                ))
            }
            Ok(None) => {}
        }
    }
    if state_dir.join("index").exists() {
        return Err(format!(
            "state dir {} already holds a volume's index; choose another --state-dir or remove it",
            state_dir.display()
        ));
    }
    set_private_dir(&state_dir)?;
    for sub in ["cache", "staging"] {
        set_private_dir(&state_dir.join(sub))?;
    }
    let meta = SledMeta::open(&state_dir.join("index")).map_err(|e| e.to_string())?;
    let idx = Index::new(Arc::new(meta));
    // SAFETY: getuid/getgid cannot fail.
    let owner = unsafe {
        Caller {
            uid: libc::getuid(),
            gid: libc::getgid(),
        }
    };
    Fs::format(&idx, id, owner).map_err(|e| format!("cannot write the local index: {e}"))?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    for (i, slot) in backends.iter().enumerate() {
        let marker = VolumeMarker {
            format: VolumeMarker::FORMAT.into(),
            version: MARKER_FORMAT_VERSION,
            volume_id: id.to_string(),
            volume_name: name.clone(),
            data_shards: k as u8,
            parity_shards: m as u8,
            backend_name: slot.name.clone(),
            backend_slot: i as u16,
            created_unix: created,
        };
        let written = slot
            .backend
            .put_if_absent(MARKER_KEY, Bytes::from(marker.to_bytes()))
            .await
            .map_err(|e| format!("backend {}: cannot write the volume marker: {e}", slot.name))?;
        if !written {
            return Err(format!(
                "backend {}: another volume's marker appeared while creating this one",
                slot.name
            ));
        }
    }
    config.save(&req.config_path)?;
    Ok(InitReport { config, warnings })
}

fn connect(config: &Config) -> Result<Vec<Slot>, String> {
    let env = config.env_vars()?;
    config
        .backends
        .iter()
        .map(|b| {
            // The env file's credentials, overridden by the backend's own options.
            let mut options = crate::store::env_options(&b.url, &env, &b.options);
            options.extend(b.options.clone());
            let backend = open_backend(&b.url, &options, &b.client())
                .map_err(|e| format!("backend {}: {e}", b.name))?;
            Ok(Slot {
                name: b.name.clone(),
                backend: Arc::new(backend) as DynBackend,
            })
        })
        .collect()
}

/// State of one backend when the volume was opened.
#[derive(Clone, Debug)]
pub struct BackendCheck {
    pub name: String,
    pub error: Option<String>,
}

/// Builds the volume's data plane from its config and checks every backend's
/// marker. A backend holding another volume is an error; an unreachable one is
/// reported and tolerated (reads use the others).
pub async fn open_volume(config: &Config) -> Result<(Arc<Volume>, Vec<BackendCheck>), String> {
    let v = &config.volume;
    let id = VolumeId::parse(&v.id).ok_or("volume id is not a UUID")?;
    let slots = connect(config)?;
    let layout =
        Layout::new(v.data_shards as usize, v.parity_shards as usize).map_err(|e| e.to_string())?;
    let markers = futures::future::join_all(slots.iter().map(|s| read_marker(&s.backend))).await;
    let mut checks = Vec::new();
    let mut unreachable = Vec::new();
    for (i, (slot, m)) in slots.iter().zip(markers).enumerate() {
        let error = match m {
            Ok(Some(mk)) if mk.volume_id != v.id => {
                return Err(format!(
                    "backend {} ({}) holds volume {} ({:?}), not this config's volume {}; the config points at the wrong bucket or folder",
                    slot.name,
                    slot.backend.describe(),
                    mk.volume_id,
                    mk.volume_name,
                    v.id
                ))
            }
            Ok(Some(_)) => None,
            Ok(None) => Some("volume marker missing (wrong or emptied bucket/folder?)".to_string()),
            Err(e) => {
                unreachable.push((i, e.clone()));
                Some(e)
            }
        };
        if let Some(e) = &error {
            tracing::warn!("backend {} is unavailable: {e}", slot.name);
        }
        checks.push(BackendCheck {
            name: slot.name.clone(),
            error,
        });
    }
    let vol = Volume::new(id, v.name.clone(), slots, layout, v.cache_size.0)
        .with_write_quorum(v.write_quorum());
    // Unreachable backends start down: reads and writes skip them at once, and
    // the mount's prober brings them back when they answer.
    for (i, e) in unreachable {
        vol.health[i].mark_down(&e);
    }
    Ok((Arc::new(vol), checks))
}

/// As [`open_volume`], but while fewer than k backends answer with the volume's
/// marker (the network is not up yet, a provider is briefly out), tries again
/// with growing pauses for up to `wait`, then fails with what went wrong.
pub async fn open_volume_waiting(
    config: &Config,
    wait: Duration,
) -> Result<(Arc<Volume>, Vec<BackendCheck>), String> {
    let k = config.volume.data_shards as usize;
    let deadline = std::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(500);
    loop {
        // One attempt may hang on a backend that does not answer at all; the
        // deadline bounds it too.
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(opened) =
            tokio::time::timeout(left.max(Duration::from_secs(1)), open_volume(config)).await
        else {
            return Err(format!(
                "the backends did not answer within {}s; check the network, the credentials (env_file) and the backends, or wait longer with -o startup_timeout=DURATION",
                wait.as_secs()
            ));
        };
        let (vol, checks) = opened?;
        let up = checks.iter().filter(|c| c.error.is_none()).count();
        if up >= k {
            return Ok((vol, checks));
        }
        let errors: Vec<String> = checks
            .iter()
            .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.name)))
            .collect();
        let now = std::time::Instant::now();
        if now >= deadline {
            return Err(format!(
                "only {up} of {} backends answer and this volume needs {k} to be read ({}); check the network, the credentials (env_file) and the backends, or wait longer with -o startup_timeout=DURATION",
                checks.len(),
                errors.join("; ")
            ));
        }
        tracing::warn!(
            "only {up} of {} backends answer, {k} needed; retrying for up to {}s more ({})",
            checks.len(),
            (deadline - now).as_secs(),
            errors.join("; ")
        );
        drop(vol);
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

pub fn open_index(config: &Config) -> Result<Index, String> {
    let dir = &config.volume.state_dir;
    let path = dir.join("index");
    if !path.exists() {
        return Err(format!(
            "no local index in {} (state_dir of the config); the volume was created elsewhere or its state dir was removed",
            dir.display()
        ));
    }
    let meta: Arc<dyn MetaStore> = Arc::new(SledMeta::open(&path).map_err(|e| e.to_string())?);
    Index::journaled(meta).map_err(|e| e.to_string())
}

/// Rebuilds the local index of `config`'s volume from the metadata log on its
/// backends, into a state dir that has none.
pub async fn recover(
    config: &Config,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<crate::metalog::RecoverReport, String> {
    let dir = &config.volume.state_dir;
    let path = dir.join("index");
    if path.exists() {
        return Err(format!(
            "{} already holds an index; recover rebuilds a lost one: move the state dir away first if it is damaged",
            path.display()
        ));
    }
    let (vol, checks) = open_volume(config).await?;
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
        let report = crate::metalog::recover(&vol, meta.clone(), progress).await?;
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
            Err(crate::meta::MetaError::Locked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(meta) => return Index::journaled(Arc::new(meta)).map_err(|e| e.to_string()),
            Err(_) => return open_index(config),
        }
    }
}

pub fn fs_options(config: &Config, read_only: bool) -> FsOptions {
    FsOptions {
        read_only,
        staging_dir: config.volume.state_dir.join("staging"),
        chunk_size: config.volume.chunk_size.0 as u32,
        upload_concurrency: config.volume.upload_concurrency,
        readahead_chunks: config.volume.readahead_chunks,
        show_uid: None,
        show_gid: None,
        writer: crate::lease::Holder::of_state_dir(&config.volume.state_dir)
            .map(|h| h.id)
            .unwrap_or_default(),
    }
}

/// Takes the volume's write lease for the holder of `config`'s state dir
/// (`takeover` forces it), then checks that the local index is as new as the
/// metadata on the backends. When that check fails the lease is given back.
pub async fn become_writer(
    config: &Config,
    vol: &Arc<Volume>,
    idx: &Index,
    takeover: bool,
) -> Result<crate::lease::Holder, String> {
    use crate::lease;
    let me = lease::Holder::of_state_dir(&config.volume.state_dir)?;
    lease::acquire(vol, &me, takeover, lease::now_secs())
        .await
        .map_err(|e| e.to_string())?;
    let log = crate::metalog::MetaLog::new(vol.clone(), idx.clone(), me.id.clone());
    if let Err(e) = log.ensure_fresh().await {
        lease::release(vol, &me).await;
        return Err(e);
    }
    Ok(me)
}

/// Opens everything: volume, index and filesystem core.
pub async fn open_fs(
    config: &Config,
    read_only: bool,
) -> Result<(Arc<Fs>, Vec<BackendCheck>), String> {
    let (vol, checks) = open_volume(config).await?;
    let idx = open_index(config)?;
    let fs = Fs::load(vol, idx, fs_options(config, read_only))?;
    Ok((fs, checks))
}
