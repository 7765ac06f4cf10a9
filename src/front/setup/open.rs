//! Opening a volume from its config: its backends (with the env file's
//! credentials) and their markers, its key unlocked from the first source that
//! gives it, waiting for backends at startup, and the filesystem core on top.

use super::{connect, open_index, read_marker};
use crate::config::Config;
use crate::data::erasure::Layout;
use crate::data::keys::{Credential, KeySection, Keys};
use crate::data::seal::ChunkSealer;
use crate::data::volume::{Slot, Volume};
use crate::format::VolumeId;
use crate::fs::{Fs, FsOptions};
use crate::meta::index::Index;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
            crate::data::keys::read_key_file(p)
                .map(|k| Credential::KeyFile(k, p.display().to_string()))
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
                use crate::data::keys::KeyError;
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
    .with_write_quorum(v.write_quorum())
    .with_inline_max(v.inline_max.0 as usize)
    .with_policies(crate::policy::rules::PolicySet::compile(config)?)
    .with_read_costs(read_costs(config)?);
    // Unreachable backends start down: reads and writes skip them at once, and
    // the mount's prober brings them back when they answer.
    for (i, e) in probe.unreachable {
        vol.health[i].mark_down(&e);
    }
    Ok((Arc::new(vol), probe.checks))
}

/// What reading a GB costs from each backend, per class code (egress plus
/// retrieval, from the price table and the config's `[[price]]`), in
/// millionths: reads ask the cheaper shards first.
fn read_costs(config: &Config) -> Result<Vec<[u32; 12]>, String> {
    use crate::policy::class::{Provider, StorageClass};
    let prices = crate::policy::price::PriceTable::list_prices()
        .with_overrides(&config.prices, &config.backends)?;
    Ok(config
        .backends
        .iter()
        .map(|b| {
            let provider = Provider::of_url(&b.url).unwrap_or(Provider::Local);
            let mut row = [0u32; 12];
            for (code, cost) in row.iter_mut().enumerate() {
                if let Some(class) = StorageClass::from_code(code as u8) {
                    let p = prices.price(&b.name, provider, class);
                    *cost = ((p.egress_gb + p.retrieval_gb) * 1e6).round() as u32;
                }
            }
            row
        })
        .collect())
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
pub fn fs_options(config: &Config, read_only: bool) -> FsOptions {
    FsOptions {
        read_only,
        staging_dir: config.volume.state_dir.join("staging"),
        chunking: config.volume.chunking(),
        upload_concurrency: config.volume.upload_concurrency,
        readahead_chunks: config.volume.effective_readahead(),
        show_uid: None,
        show_gid: None,
        writer: crate::meta::lease::Holder::of_state_dir(&config.volume.state_dir)
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
) -> Result<crate::meta::lease::Holder, String> {
    use crate::meta::lease;
    let me = lease::Holder::of_state_dir(&config.volume.state_dir)?;
    lease::acquire(vol, &me, takeover, lease::now_secs())
        .await
        .map_err(|e| e.to_string())?;
    let log = crate::meta::metalog::MetaLog::new(vol.clone(), idx.clone(), me.id.clone());
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
