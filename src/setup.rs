//! Creating a volume (`init`) and opening one from its config, with the checks
//! that keep a config from being pointed at the wrong storage.

use crate::config::{default_shards, BackendSection, Config, Size, VolumeSection};
use crate::erasure::Layout;
use crate::format::{VolumeId, VolumeMarker, MARKER_FORMAT_VERSION, MARKER_KEY};
use crate::fs::{Caller, Fs, FsOptions};
use crate::index::Index;
use crate::keys::{Credential, KdfCost, KeySection, Keys};
use crate::meta::{MetaStore, SledMeta};
use crate::seal::ChunkSealer;
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
    /// How the new volume's master key will be unlocked.
    pub new_key: NewKey,
    pub kdf_cost: KdfCost,
    /// `compression` of the config.
    pub compression: String,
}

/// How a new volume's key is protected.
pub enum NewKey {
    /// Not encrypted.
    None,
    Passphrase(Credential),
    /// A key file to create (it must not exist), referenced from the config.
    KeyFile(PathBuf),
}

/// Where the passphrase or key of an encrypted volume comes from, in this order:
/// `--key-file`, `--passphrase-file`, the config's `key_file`, then its
/// `passphrase_file`, `CLOUDRAID_PASSPHRASE` (from the environment or the
/// env_file), a passphrase piped by a parent (the mount daemon), and last a
/// prompt on the terminal.
#[derive(Clone, Debug, Default)]
pub struct KeySource {
    pub key_file: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    /// Ask on the terminal when nothing else gives the passphrase; without it,
    /// the volume stays locked then (commands for which the key is optional).
    pub prompt: bool,
    /// The passphrase given by the process that started this one.
    pub passed: Option<Credential>,
    /// Open the volume without its key: only commands that check stored bytes
    /// (scrub, status) work then.
    pub locked: bool,
}

pub const PASSPHRASE_ENV: &str = "CLOUDRAID_PASSPHRASE";

/// The passphrase on the first line of a private file.
pub fn read_passphrase_file(path: &Path) -> Result<Credential, String> {
    use std::io::Read;
    let shown = path.display();
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    crate::config::open_private(
        path,
        "passphrase file",
        "write the passphrase on its first line",
    )?
    .read_to_end(&mut bytes)
    .map_err(|e| format!("passphrase file {shown}: {e}"))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        format!(
            "passphrase file {shown} is not text (UTF-8): give a file with the passphrase on its first line"
        )
    })?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(format!("passphrase file {shown} is empty"));
    }
    Ok(Credential::Passphrase(zeroize::Zeroizing::new(
        line.to_string(),
    )))
}

impl KeySource {
    /// Whether unlocking `config`'s volume would ask on the terminal (nothing
    /// else gives its passphrase or key).
    pub fn would_prompt(&self, config: &Config) -> bool {
        config.volume.encrypted() && !self.locked && matches!(self.given(config), Ok(None))
    }

    /// The credential from the first source that gives one without asking.
    fn given(&self, config: &Config) -> Result<Option<Credential>, String> {
        let key_file = |p: &Path| {
            crate::keys::read_key_file(p).map(|k| Credential::KeyFile(k, p.display().to_string()))
        };
        let passphrase = |p: String| Credential::Passphrase(zeroize::Zeroizing::new(p));
        let v = &config.volume;
        Ok(Some(if let Some(p) = &self.key_file {
            key_file(p)?
        } else if let Some(p) = &self.passphrase_file {
            read_passphrase_file(p)?
        } else if let Some(p) = &v.key_file {
            key_file(p)?
        } else if let Some(p) = &v.passphrase_file {
            read_passphrase_file(p)?
        } else if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
            passphrase(p)
        } else if let Some((_, p)) = config
            .env_vars()?
            .into_iter()
            .find(|(k, _)| k == PASSPHRASE_ENV)
        {
            passphrase(p)
        } else if let Some(c) = &self.passed {
            c.clone()
        } else {
            return Ok(None);
        }))
    }

    /// The credential to unlock `config`'s volume with: given, or typed.
    pub fn credential(&self, config: &Config) -> Result<Credential, String> {
        if let Some(c) = self.given(config)? {
            return Ok(c);
        }
        if self.prompt && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            let p = rpassword::prompt_password(format!(
                "Passphrase for volume {}: ",
                config.volume.name
            ))
            .map_err(|e| format!("cannot read the passphrase: {e}"))?;
            return Ok(Credential::Passphrase(zeroize::Zeroizing::new(p)));
        }
        Err(format!(
            "volume {} is encrypted: give its passphrase ({PASSPHRASE_ENV}, --passphrase-file FILE, or passphrase_file in the config) or its key file (--key-file FILE, or key_file in the config)",
            config.volume.name
        ))
    }
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
            chunk_min: None,
            chunk_max: None,
            cache_size: req.cache_size,
            state_dir: state_dir.clone(),
            upload_concurrency: 4,
            readahead_chunks: 4,
            write_quorum: req.write_quorum,
            env_file: req.env_file.clone(),
            encryption: if matches!(req.new_key, NewKey::None) {
                "none".into()
            } else {
                crate::config::ENCRYPTION_AES.into()
            },
            compression: req.compression.clone(),
            key_file: match &req.new_key {
                NewKey::KeyFile(p) => Some(p.clone()),
                _ => None,
            },
            passphrase_file: None,
        },
        backends: req
            .backends
            .iter()
            .map(|(n, u)| BackendSection::new(n, u))
            .collect(),
    };
    config.validate()?;
    check_distinct_places(&config)?;
    if state_dir.join("index").exists() {
        return Err(format!(
            "state dir {} already holds a volume's index; choose another --state-dir or remove it",
            state_dir.display()
        ));
    }
    // Whatever this creates is undone if a later step fails, so that a retry
    // starts from where this one did.
    let mut made = Made::default();
    let result = init_writing(&req, &config, &mut made, id, &name, k, m).await;
    if result.is_err() {
        made.undo().await;
    }
    result.map(|()| InitReport { config, warnings })
}

/// What a failing `init` has to take back: folders, a key file, markers.
#[derive(Default)]
struct Made {
    /// Folders created, parents before children.
    dirs: Vec<PathBuf>,
    /// The index directory (removed with its contents).
    index: Option<PathBuf>,
    key_file: Option<PathBuf>,
    /// Markers written: their backend, and the folder of a file:// one.
    markers: Vec<(DynBackend, Option<PathBuf>)>,
}

impl Made {
    /// Creates `dir` and its missing parents, remembering each.
    fn mkdirs(&mut self, dir: &Path) -> Result<(), std::io::Error> {
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(p) = d.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            missing.push(p.to_path_buf());
            d = p.parent();
        }
        std::fs::create_dir_all(dir)?;
        self.dirs.extend(missing.into_iter().rev());
        Ok(())
    }

    async fn undo(self) {
        for (b, folder) in &self.markers {
            match folder {
                // Directly: deleting through the store would also remove the
                // folder once empty, even one that was there before.
                Some(f) => {
                    let _ = std::fs::remove_file(f.join(MARKER_KEY));
                }
                None => {
                    let _ = b.delete(MARKER_KEY).await;
                }
            }
        }
        if let Some(k) = &self.key_file {
            let _ = std::fs::remove_file(k);
        }
        if let Some(i) = &self.index {
            let _ = std::fs::remove_dir_all(i);
            // The space the index keeps beside it (meta/sled_store.rs).
            for extension in ["reserve", "reserve.tmp"] {
                let _ = std::fs::remove_file(i.with_extension(extension));
            }
        }
        // Children first; a folder that holds anything else stays.
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The steps of `init` that write: backend folders, key file, state dir and
/// index, markers, config.
#[allow(clippy::too_many_arguments)]
async fn init_writing(
    req: &InitRequest,
    config: &Config,
    made: &mut Made,
    id: VolumeId,
    name: &str,
    k: usize,
    m: usize,
) -> Result<(), String> {
    let state_dir = &config.volume.state_dir;
    // Local folders are created; every backend must then answer and be free of
    // other volumes before anything else is written anywhere.
    for b in &config.backends {
        if let Some(path) = file_folder(b)? {
            made.mkdirs(&path).map_err(|e| {
                format!(
                    "backend {}: cannot create folder {}: {e}",
                    b.name,
                    path.display()
                )
            })?;
        }
    }
    let backends = connect(config)?;
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
    let cred = match &req.new_key {
        NewKey::None => None,
        NewKey::Passphrase(c) => Some(c.clone()),
        NewKey::KeyFile(p) => {
            let key = crate::keys::create_key_file(p)?;
            made.key_file = Some(p.clone());
            Some(Credential::KeyFile(key, p.display().to_string()))
        }
    };
    let encryption = match &cred {
        Some(cred) => Some(
            KeySection::create(cred, id, req.kdf_cost)
                .map_err(|e| e.to_string())?
                .0,
        ),
        None => None,
    };
    for dir in [
        state_dir.clone(),
        state_dir.join("cache"),
        state_dir.join("staging"),
    ] {
        made.mkdirs(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        set_private_dir(&dir)?;
    }
    made.index = Some(state_dir.join("index"));
    {
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
    }
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    for (i, (slot, b)) in backends.iter().zip(&config.backends).enumerate() {
        let marker = VolumeMarker {
            format: VolumeMarker::FORMAT.into(),
            version: MARKER_FORMAT_VERSION,
            volume_id: id.to_string(),
            volume_name: name.to_string(),
            data_shards: k as u8,
            parity_shards: m as u8,
            backend_name: slot.name.clone(),
            backend_slot: i as u16,
            created_unix: created,
            encryption: encryption.clone(),
        };
        let written = slot
            .backend
            .put_if_absent(MARKER_KEY, Bytes::from(marker.to_bytes()))
            .await
            .map_err(|e| format!("backend {}: cannot write the volume marker: {e}", slot.name))?;
        if !written {
            return Err(format!(
                "backend {}: another volume's marker appeared while creating this one; nothing was created, retry with an empty folder or bucket",
                slot.name
            ));
        }
        made.markers
            .push((slot.backend.clone(), file_folder(b).ok().flatten()));
    }
    config.save(&req.config_path)
}

/// Where a backend keeps its objects, to tell two backends that are the same
/// place (or one inside the other) apart from distinct ones.
#[derive(Debug, PartialEq)]
struct Place {
    /// The store: "file", or a cloud URL's scheme, bucket and options.
    store: String,
    /// Path components inside it.
    path: Vec<String>,
    /// As shown to the user.
    shown: String,
}

/// `path` with its symlinks, `.` and `..` resolved as far as it exists, and the
/// rest taken as written.
fn resolved_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => {
                out.push(n);
                if let Ok(real) = out.canonicalize() {
                    out = real;
                }
            }
        }
    }
    out
}

/// The folder of a file:// backend.
fn file_folder(b: &BackendSection) -> Result<Option<PathBuf>, String> {
    if !b.url.starts_with("file:") {
        return Ok(None);
    }
    url::Url::parse(&b.url)
        .ok()
        .filter(|u| u.host_str().unwrap_or("").is_empty())
        .and_then(|u| u.to_file_path().ok())
        .filter(|p| p.is_absolute())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "backend {}: file:// URLs need an absolute path (file:///...)",
                b.name
            )
        })
}

fn place(b: &BackendSection) -> Option<Place> {
    if let Ok(Some(path)) = file_folder(b) {
        let real = resolved_path(&path);
        return Some(Place {
            store: "file".into(),
            path: real
                .components()
                .skip(1)
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect(),
            shown: real.display().to_string(),
        });
    }
    let url = url::Url::parse(&b.url).ok()?;
    if !matches!(url.scheme(), "s3" | "gs" | "az") {
        return None;
    }
    let options: Vec<_> = b.options.iter().collect();
    Some(Place {
        store: format!(
            "{}://{} {options:?}",
            url.scheme(),
            url.host_str().unwrap_or("")
        ),
        path: url
            .path()
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_string)
            .collect(),
        shown: b.url.trim_end_matches('/').to_string(),
    })
}

/// Refuses two backends that are the same folder or bucket prefix (also written
/// differently: `dir/`, `dir/../dir`, a symlink), or one inside the other: the
/// volume would count them as two copies where there is one.
fn check_distinct_places(config: &Config) -> Result<(), String> {
    let places: Vec<_> = config.backends.iter().map(|b| (b, place(b))).collect();
    for (i, (a, pa)) in places.iter().enumerate() {
        for (b, pb) in &places[i + 1..] {
            let (Some(pa), Some(pb)) = (pa, pb) else {
                continue;
            };
            if pa.store != pb.store {
                continue;
            }
            let n = pa.path.len().min(pb.path.len());
            if pa.path[..n] != pb.path[..n] {
                continue;
            }
            let what = if pa.path.len() == pb.path.len() {
                format!("are the same place ({})", pa.shown)
            } else if pa.path.len() < pb.path.len() {
                format!("are one inside the other ({} holds {})", pa.shown, pb.shown)
            } else {
                format!("are one inside the other ({} holds {})", pb.shown, pa.shown)
            };
            return Err(format!(
                "backends {} ({}) and {} ({}) {what}: each backend must be a folder or bucket prefix of its own, or losing one place loses several shards; nothing was created",
                a.name, a.url, b.name, b.url
            ));
        }
    }
    Ok(())
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
pub async fn open_volume(
    config: &Config,
    keys: &KeySource,
) -> Result<(Arc<Volume>, Vec<BackendCheck>), String> {
    let probe = probe(config).await?;
    build(config, probe, keys)
}

/// The backends of a volume, each with its marker checked.
pub struct Probe {
    slots: Vec<Slot>,
    checks: Vec<BackendCheck>,
    unreachable: Vec<(usize, String)>,
    /// The key sections of the markers that were read (distinct ones).
    sections: Vec<Option<KeySection>>,
}

impl Probe {
    pub fn answering(&self) -> usize {
        self.checks.iter().filter(|c| c.error.is_none()).count()
    }
}

async fn probe(config: &Config) -> Result<Probe, String> {
    let v = &config.volume;
    let slots = connect(config)?;
    let markers = futures::future::join_all(slots.iter().map(|s| read_marker(&s.backend))).await;
    let mut checks = Vec::new();
    let mut unreachable = Vec::new();
    let mut sections = Vec::new();
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
            Ok(Some(mk)) => {
                if !sections.contains(&mk.encryption) {
                    sections.push(mk.encryption);
                }
                None
            }
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
    Ok(Probe {
        slots,
        checks,
        unreachable,
        sections,
    })
}

/// Unlocks the volume's key (when it is encrypted) and builds its data plane.
fn build(
    config: &Config,
    probe: Probe,
    source: &KeySource,
) -> Result<(Arc<Volume>, Vec<BackendCheck>), String> {
    let v = &config.volume;
    let id = VolumeId::parse(&v.id).ok_or("volume id is not a UUID")?;
    let layout =
        Layout::new(v.data_shards as usize, v.parity_shards as usize).map_err(|e| e.to_string())?;
    let compression = v.compression()?;
    // The config says whether the volume is encrypted: a marker that disagrees
    // (one replaced on a backend) is not followed.
    let sections: Vec<&KeySection> = probe.sections.iter().flatten().collect();
    if !v.encrypted() && !sections.is_empty() {
        return Err(format!(
            "the config says volume {} is not encrypted, but its markers hold keys; set encryption = \"{}\" in the config",
            v.name,
            crate::config::ENCRYPTION_AES
        ));
    }
    if v.encrypted() && sections.is_empty() && probe.sections.iter().any(Option::is_none) {
        return Err(format!(
            "the config says volume {} is encrypted, but its markers hold no keys; a marker was replaced, or the config is wrong (encryption = \"none\")",
            v.name
        ));
    }
    let sealer = if !v.encrypted() {
        ChunkSealer::plain(id, compression)
    } else if source.locked
        || sections.is_empty()
        || (!source.prompt && source.would_prompt(config))
    {
        // Locked (by request, or no marker answered: the open fails later on
        // with what the backends said).
        ChunkSealer::encrypted(id, None, compression)
    } else {
        let cred = source.credential(config)?;
        // Every distinct copy of the key material is tried: one damaged or
        // altered marker must not lock the user out.
        let mut errors = Vec::new();
        let mut master = None;
        for sec in sections {
            match sec.unlock(&cred, id) {
                Ok(m) => {
                    master = Some(m);
                    break;
                }
                Err(e) => errors.push(e),
            }
        }
        match master {
            Some(master) => {
                ChunkSealer::encrypted(id, Some(Keys::derive(&master, id)), compression)
            }
            None => {
                use crate::keys::KeyError;
                let e = errors
                    .iter()
                    .find(|e| matches!(e, KeyError::WrongPassphrase | KeyError::WrongKeyFile(_)))
                    .or(errors.first())
                    .cloned()
                    .unwrap_or(KeyError::NoPassphraseSlot);
                let wrong = matches!(e, KeyError::WrongPassphrase | KeyError::WrongKeyFile(_));
                if wrong && !source.prompt {
                    // A command that works without the key goes on without it.
                    eprintln!("cloudraid: warning: {e}; going on without the key");
                    ChunkSealer::encrypted(id, None, compression)
                } else {
                    return Err(e.to_string());
                }
            }
        }
    };
    let vol = Volume::new(
        id,
        v.name.clone(),
        probe.slots,
        layout,
        v.cache_size.0,
        sealer,
    )
    .with_write_quorum(v.write_quorum());
    // Unreachable backends start down: reads and writes skip them at once, and
    // the mount's prober brings them back when they answer.
    for (i, e) in probe.unreachable {
        vol.health[i].mark_down(&e);
    }
    Ok((Arc::new(vol), probe.checks))
}

/// `passwd`: unlocks the volume's key with the current credential and wraps it
/// again with `new` on every backend (all must answer, or the old passphrase
/// would still open the volume where the marker was not rewritten). Returns the
/// backends whose marker was rewritten.
pub async fn passwd(
    config: &Config,
    keys: &KeySource,
    new: &Credential,
    cost: KdfCost,
) -> Result<Vec<String>, String> {
    let v = &config.volume;
    if !v.encrypted() {
        return Err(format!(
            "volume {} is not encrypted: it has no passphrase to change",
            v.name
        ));
    }
    let id = VolumeId::parse(&v.id).ok_or("volume id is not a UUID")?;
    let slots = connect(config)?;
    let markers = futures::future::join_all(slots.iter().map(|s| read_marker(&s.backend))).await;
    let mut found = Vec::new();
    for (slot, m) in slots.iter().zip(markers) {
        match m {
            Ok(Some(mk)) if mk.volume_id == v.id && mk.encryption.is_some() => found.push(mk),
            Ok(Some(mk)) if mk.volume_id != v.id => {
                return Err(format!(
                    "backend {} holds volume {}, not {}; nothing was changed",
                    slot.name, mk.volume_id, v.id
                ))
            }
            Ok(_) => {
                return Err(format!(
                    "backend {} has no marker with this volume's keys; run `cloudraid repair` first (nothing was changed)",
                    slot.name
                ))
            }
            Err(e) => {
                return Err(format!(
                    "backend {} does not answer ({e}); passwd must rewrite the key on every backend, or the old passphrase would still open the volume there: nothing was changed",
                    slot.name
                ))
            }
        }
    }
    let mut section = found[0].encryption.clone().expect("checked above");
    let cred = keys.credential(config)?;
    let master = section.unlock(&cred, id).map_err(|e| e.to_string())?;
    section
        .replace_slot(new, &master, id, cost)
        .map_err(|e| e.to_string())?;
    let mut done = Vec::new();
    for (slot, mk) in slots.iter().zip(found) {
        let marker = VolumeMarker {
            encryption: Some(section.clone()),
            ..mk
        };
        slot.backend
            .put(MARKER_KEY, Bytes::from(marker.to_bytes()))
            .await
            .map_err(|e| {
                format!(
                    "backend {}: cannot rewrite the marker ({e}); the backends done so far take the new passphrase ({}), the others the old one: run passwd again",
                    slot.name,
                    done.join(", ")
                )
            })?;
        done.push(slot.name.clone());
    }
    Ok(done)
}

/// As [`open_volume`], but while fewer than k backends answer with the volume's
/// marker (the network is not up yet, a provider is briefly out), tries again
/// with growing pauses for up to `wait`, then fails with what went wrong.
pub async fn open_volume_waiting(
    config: &Config,
    keys: &KeySource,
    wait: Duration,
) -> Result<(Arc<Volume>, Vec<BackendCheck>), String> {
    let k = config.volume.data_shards as usize;
    let deadline = std::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(500);
    loop {
        // One attempt may hang on a backend that does not answer at all; the
        // deadline bounds it too.
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(probed) =
            tokio::time::timeout(left.max(Duration::from_secs(1)), probe(config)).await
        else {
            return Err(format!(
                "the backends did not answer within {}s; check the network, the credentials (env_file) and the backends, or wait longer with -o startup_timeout=DURATION",
                wait.as_secs()
            ));
        };
        let probed = probed?;
        let up = probed.answering();
        if up >= k {
            return build(config, probed, keys);
        }
        let errors: Vec<String> = probed
            .checks
            .iter()
            .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.name)))
            .collect();
        let total = probed.checks.len();
        let now = std::time::Instant::now();
        if now >= deadline {
            return Err(format!(
                "only {up} of {total} backends answer and this volume needs {k} to be read ({}); check the network, the credentials (env_file) and the backends, or wait longer with -o startup_timeout=DURATION",
                errors.join("; ")
            ));
        }
        tracing::warn!(
            "only {up} of {total} backends answer, {k} needed; retrying for up to {}s more ({})",
            (deadline - now).as_secs(),
            errors.join("; ")
        );
        drop(probed);
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
    let meta: Arc<dyn MetaStore> = Arc::new(SledMeta::open(&path).map_err(|e| match e {
        crate::meta::MetaError::Locked { .. } => index_in_use(config, &path),
        e => e.to_string(),
    })?);
    Index::journaled(meta).map_err(|e| e.to_string())
}

/// Where `config`'s volume is mounted now (through this config or another copy
/// of it: same state dir).
pub fn mounted_at(config: &Config) -> Vec<PathBuf> {
    crate::daemon::mounts()
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
) -> Result<crate::metalog::RecoverReport, String> {
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

pub fn fs_options(config: &Config, read_only: bool) -> FsOptions {
    FsOptions {
        read_only,
        staging_dir: config.volume.state_dir.join("staging"),
        chunking: config.volume.chunking(),
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
    keys: &KeySource,
    read_only: bool,
) -> Result<(Arc<Fs>, Vec<BackendCheck>), String> {
    let (vol, checks) = open_volume(config, keys).await?;
    let idx = open_index(config)?;
    let fs = Fs::load(vol, idx, fs_options(config, read_only))?;
    Ok((fs, checks))
}
