//! `init`: a new volume's checks (shards, names, distinct places), and its
//! writing (folders, key file, index, markers, config), undone when it fails.

use super::{connect, read_marker, set_private_dir};
use crate::config::{default_shards, BackendSection, Config, Size, VolumeSection};
use crate::data::erasure::Layout;
use crate::data::keys::{Credential, KdfCost, KeySection};
use crate::format::{VolumeId, VolumeMarker, MARKER_FORMAT_VERSION, MARKER_KEY};
use crate::fs::{Caller, Fs};
use crate::meta::index::Index;
use crate::meta::SledMeta;
use crate::store::DynBackend;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
            readahead_chunks: crate::config::readahead_for(req.chunk_size.0),
            inline_max: crate::config::default_inline_max(),
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
        snapshots: None,
        policies: Vec::new(),
        prices: Vec::new(),
        jobs: Vec::new(),
        api: Default::default(),
        alerts: None,
    };
    config.validate()?;
    check_distinct_places(&config)?;
    let placement_warnings = crate::policy::rules::PolicySet::compile(&config)?.warnings;
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
    warnings.extend(placement_warnings);
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
            let key = crate::data::keys::create_key_file(p)?;
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
