//! The volume's TOML configuration file.

use crate::store::{BackendOptions, ClientSettings};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A byte size written as `4MiB`, `1GiB`, `512KiB`, `10MB` or plain bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(s: &str) -> Result<Size, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected e.g. 4MiB, 1GiB or 1048576"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => {
                return Err(format!(
                    "invalid size {s:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB, TiB)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: &[(u64, &str)] = &[
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (m, u) in UNITS {
            if self.0 >= *m && self.0.is_multiple_of(*m) {
                return write!(f, "{}{}", self.0 / m, u);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => Size::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Human-readable byte count for tables (`1.5 GiB`).
pub fn human(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumeSection {
    pub name: String,
    pub id: String,
    pub data_shards: u8,
    pub parity_shards: u8,
    pub chunk_size: Size,
    pub cache_size: Size,
    pub state_dir: PathBuf,
    /// Chunks encoded and uploaded at once per file commit (bounds write memory).
    #[serde(default = "default_upload_concurrency")]
    pub upload_concurrency: usize,
    /// Chunks read ahead of a sequential reader.
    #[serde(default = "default_readahead_chunks")]
    pub readahead_chunks: usize,
    /// Chunks of at most this many plaintext bytes are kept sealed in the index
    /// (and its metadata log) instead of as shards: small files cost no shard
    /// objects. 0 turns that off; at most [`MAX_INLINE`].
    #[serde(default = "default_inline_max")]
    pub inline_max: Size,
    /// Shards that must be stored for a write to succeed, from data_shards to
    /// data_shards + parity_shards (default: every shard but one, at least
    /// data_shards; see [`default_write_quorum`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_quorum: Option<u8>,
    /// A file of KEY=VALUE lines (AWS_*, GOOGLE_*, AZURE_*) with the backends'
    /// credentials, for mounts that get no user environment (fstab, systemd).
    /// It must be readable by its owner only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<PathBuf>,
    /// Smallest and largest chunk (default: a quarter and four times chunk_size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_min: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_max: Option<Size>,
    /// `aes-256-gcm` (chunks, names and metadata encrypted on the backends) or
    /// `none`. Set by `init`; it must agree with the volume's marker.
    #[serde(default = "default_encryption")]
    pub encryption: String,
    /// Compression of new chunks: `zstd` (level 3), `zstd:LEVEL` (1..=19) or `none`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// A key file that unlocks the volume (for unattended mounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// A file holding the passphrase on its first line (for unattended mounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
}

pub const ENCRYPTION_AES: &str = "aes-256-gcm";

fn default_encryption() -> String {
    ENCRYPTION_AES.into()
}
fn default_compression() -> String {
    "zstd".into()
}

impl VolumeSection {
    /// The content-defined chunk sizes of new data.
    pub fn chunking(&self) -> crate::data::chunker::Chunking {
        let around = crate::data::chunker::Chunking::around(self.chunk_size.0 as u32);
        crate::data::chunker::Chunking {
            min: self.chunk_min.map_or(around.min, |s| s.0 as u32),
            max: self.chunk_max.map_or(around.max, |s| s.0 as u32),
            ..around
        }
    }

    /// The read-ahead a mount uses: `readahead_chunks`, but never more average
    /// chunks than half the chunk cache holds. Chunks fetched ahead into a
    /// cache too small for them are evicted before the reader gets there and
    /// fetched again.
    pub fn effective_readahead(&self) -> usize {
        let avg = self.chunking().avg.max(1) as u64;
        let room = (self.cache_size.0 / 2 / avg) as usize;
        self.readahead_chunks.min(room)
    }

    pub fn encrypted(&self) -> bool {
        self.encryption != "none"
    }

    /// The compression of new chunks.
    pub fn compression(&self) -> Result<crate::data::seal::Compression, String> {
        use crate::data::seal::Compression;
        let bad = || {
            format!(
                "compression {:?} must be \"zstd\", \"zstd:LEVEL\" (1 to 19) or \"none\"",
                self.compression
            )
        };
        match self.compression.split_once(':') {
            None if self.compression == "none" => Ok(Compression::None),
            None if self.compression == "zstd" => Ok(Compression::Zstd(3)),
            Some(("zstd", l)) => match l.parse::<i32>() {
                Ok(l) if (1..=19).contains(&l) => Ok(Compression::Zstd(l)),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    pub fn write_quorum(&self) -> usize {
        let (k, m) = (self.data_shards as usize, self.parity_shards as usize);
        self.write_quorum
            .map(|q| q as usize)
            .unwrap_or_else(|| default_write_quorum(k, m))
            .clamp(k, k + m)
    }
}

/// The write quorum when the config sets none: every shard but one, and at least
/// k, so that writes go on while any one backend is down, whatever k and m
/// (2+1 → 2, 3+1 → 3, 4+2 → 5, 1+1 → 1).
pub fn default_write_quorum(k: usize, m: usize) -> usize {
    (k + m).saturating_sub(1).max(k)
}

fn default_upload_concurrency() -> usize {
    4
}
/// Chunks up to 8 KiB are kept in the index by default.
pub fn default_inline_max() -> Size {
    Size(8 << 10)
}

/// The largest `inline_max`: bigger chunks would swell the index and its
/// metadata log, which every change rewrites to the backends.
pub const MAX_INLINE: u64 = 64 << 10;

fn default_readahead_chunks() -> usize {
    4
}

/// The read-ahead `init` writes: 16 MiB of average chunks, 4 to 16 chunks. A
/// cold sequential read of a local disk reached its speed with 16 one-MiB
/// chunks ahead, and stayed 10 % short with 4 (docs/BENCHMARKS.md); more
/// chunks of a larger size would only hold more memory in flight.
pub fn readahead_for(chunk_size: u64) -> usize {
    ((16u64 << 20) / chunk_size.max(1)).clamp(4, 16) as usize
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    pub name: String,
    pub url: String,
    /// Cloud backends: time to connect (default 2s).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<std::time::Duration>,
    /// Cloud backends: time for a whole request (default 10s).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_timeout: Option<std::time::Duration>,
    /// Cloud backends: retries of a failed request (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<usize>,
    /// Cloud backends: no retry after this long (default 5s).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_timeout: Option<std::time::Duration>,
    /// Failure domain (a provider, a region, a building); without one the
    /// backend is a domain of its own. No chunk puts more than m shards in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The storage class of every shard stored here, unless a policy rule says
    /// otherwise (default: the provider's standard class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "BackendOptions::is_empty")]
    pub options: BackendOptions,
}

impl BackendSection {
    pub fn new(name: &str, url: &str) -> Self {
        BackendSection {
            name: name.into(),
            url: url.into(),
            connect_timeout: None,
            request_timeout: None,
            retries: None,
            retry_timeout: None,
            domain: None,
            storage_class: None,
            options: Default::default(),
        }
    }

    /// The client settings of this backend: the defaults, overridden by the config.
    pub fn client(&self) -> ClientSettings {
        let d = ClientSettings::default();
        ClientSettings {
            connect_timeout: self.connect_timeout.unwrap_or(d.connect_timeout),
            request_timeout: self.request_timeout.unwrap_or(d.request_timeout),
            retries: self.retries.unwrap_or(d.retries),
            retry_timeout: self.retry_timeout.unwrap_or(d.retry_timeout),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub volume: VolumeSection,
    #[serde(rename = "backend")]
    pub backends: Vec<BackendSection>,
    /// Scheduled snapshots (`[snapshots]`); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<SnapshotsSection>,
    /// Placement rules (`[[policy]]`), matched in order, the last one (without
    /// `match`) the default; none: every file as `[volume]` says.
    #[serde(default, rename = "policy", skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicySection>,
    /// `[[price]]`: prices replacing the defaults (docs/COST.md).
    #[serde(default, rename = "price", skip_serializing_if = "Vec::is_empty")]
    pub prices: Vec<crate::policy::price::PriceOverride>,
    /// `[[job]]`: backup jobs (see `backup::job`).
    #[serde(default, rename = "job", skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<crate::backup::job::config::JobSection>,
    /// `[api]`: the REST API and web dashboard (off without `listen`).
    #[serde(default, skip_serializing_if = "is_default_api")]
    pub api: crate::front::api::ApiSection,
    /// `[alerts]`: rules and where their messages go (none without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<crate::front::alerts::AlertsSection>,
}

fn is_default_api(a: &crate::front::api::ApiSection) -> bool {
    *a == crate::front::api::ApiSection::default()
}

/// `[[policy]]`: a placement rule (see `policy::rules`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    pub name: String,
    /// What the rule applies to; absent: everything (the default rule, last).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<MatchSection>,
    /// `ec:K+M` or `replicate:N`; absent: `[volume]`'s data_shards + parity_shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// The backends allowed, in order of preference (reads try them in this
    /// order); absent: all of them, load spread by chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<String>>,
    /// Storage class per backend name, for this rule's shards.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_class: BTreeMap<String, String>,
    /// Accept chunks with fewer than k shards readable at once (archive
    /// classes): reads then wait for a thaw.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_archive_only: bool,
}

/// `match = { ... }` of a `[[policy]]`: every key given must hold.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchSection {
    /// File name extensions, without the dot, any case (`["jpg", "tar.gz"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// Paths in the volume, gitignore-style globs (`docs/**`, `*.iso`, `/top/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Size>,
    /// A user name or a numeric uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// A file owner, by name or uid.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Owner {
    Uid(u32),
    Name(String),
}

/// `[snapshots]`: the snapshots the mount daemon takes on a schedule, and the
/// retention it applies to them after each (see `backup::schedule`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsSection {
    /// Time between two scheduled snapshots (at least 1s); absent: no schedule.
    #[serde(
        default,
        deserialize_with = "every_de",
        serialize_with = "humantime_serde::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub every: Option<std::time::Duration>,
    #[serde(
        default,
        deserialize_with = "count_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_last: Option<u32>,
    #[serde(
        default,
        deserialize_with = "count_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_hourly: Option<u32>,
    #[serde(
        default,
        deserialize_with = "count_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_daily: Option<u32>,
    #[serde(
        default,
        deserialize_with = "count_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_weekly: Option<u32>,
    #[serde(
        default,
        deserialize_with = "count_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_monthly: Option<u32>,
    #[serde(
        default,
        deserialize_with = "count_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_yearly: Option<u32>,
    #[serde(
        default,
        deserialize_with = "within_de",
        serialize_with = "humantime_serde::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_within: Option<std::time::Duration>,
    /// Tag lists (`"a,b"`: both tags), as `cloudraid forget --keep-tag`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_tags: Vec<String>,
}

/// The shortest `[snapshots] every`.
pub const MIN_SNAPSHOT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

fn duration_de<'de, D: Deserializer<'de>>(
    d: D,
    key: &str,
) -> Result<std::time::Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(s.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "{key} = {s:?} is not a duration ({e}): write e.g. \"30min\", \"1h\" or \"7days\""
        ))
    })
}

fn every_de<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
    let t = duration_de(d, "every")?;
    if t < MIN_SNAPSHOT_INTERVAL {
        return Err(serde::de::Error::custom(format!(
            "every = \"{}\" is too short: scheduled snapshots are at least 1s apart",
            humantime::format_duration(t)
        )));
    }
    Ok(Some(t))
}

fn within_de<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
    let t = duration_de(d, "keep_within")?;
    if t.is_zero() {
        return Err(serde::de::Error::custom(
            "keep_within = \"0s\" keeps nothing: give a duration such as \"7days\", or leave the key out",
        ));
    }
    Ok(Some(t))
}

pub(crate) fn count_de<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match u32::deserialize(d)? {
        0 => Err(serde::de::Error::custom(
            "a keep_* count of 0 keeps nothing: give at least 1, or leave the key out",
        )),
        n => Ok(Some(n)),
    }
}

impl SnapshotsSection {
    /// The `keep_*` rules as a retention policy (empty when none is given).
    pub fn policy(&self) -> crate::backup::retention::KeepPolicy {
        crate::backup::retention::KeepPolicy {
            last: self.keep_last.unwrap_or(0),
            hourly: self.keep_hourly.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
            within: self.keep_within,
            tags: self.keep_tags.clone(),
        }
    }

    /// The names of the `keep_*` keys that are set.
    fn keep_keys(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (set, key) in [
            (self.keep_last.is_some(), "keep_last"),
            (self.keep_hourly.is_some(), "keep_hourly"),
            (self.keep_daily.is_some(), "keep_daily"),
            (self.keep_weekly.is_some(), "keep_weekly"),
            (self.keep_monthly.is_some(), "keep_monthly"),
            (self.keep_yearly.is_some(), "keep_yearly"),
            (self.keep_within.is_some(), "keep_within"),
            (!self.keep_tags.is_empty(), "keep_tags"),
        ] {
            if set {
                v.push(key);
            }
        }
        v
    }

    fn validate(&self) -> Result<(), String> {
        let keys = self.keep_keys();
        if self.every.is_none() && !keys.is_empty() {
            return Err(format!(
                "[snapshots] {} without every: the keep_* rules apply to the snapshots the schedule takes; add e.g. every = \"1h\", or remove them (`cloudraid forget` takes its rules on the command line)",
                keys.join(", ")
            ));
        }
        if keys == ["keep_tags"] {
            return Err(
                "[snapshots] keep_tags alone keeps all of the scheduled snapshots or none (they carry the one tag \"scheduled\"): add a count (e.g. keep_last = 24) or keep_within".into(),
            );
        }
        Ok(())
    }
}

/// Bounds of the average chunk size (`chunk_size`).
pub const MIN_CHUNK: u64 = 64 << 10;
pub const MAX_CHUNK: u64 = 4 << 20;

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read config {}: {e} (create one with `cloudraid init --config {}`)",
                path.display(),
                path.display()
            )
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|e| {
            format!(
                "config {}{}: {}; fix it (see README: Configuration file)",
                path.display(),
                e.span()
                    .and_then(|s| text.get(..s.start))
                    .map(|before| {
                        let line = before.matches('\n').count() + 1;
                        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                        format!(", line {line}, column {column}")
                    })
                    .unwrap_or_default(),
                one_line(e.message())
            )
        })?;
        cfg.validate()
            .map_err(|e| format!("config {}: {e}", path.display()))?;
        Ok(cfg)
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = format!(
            "# cloudraid volume configuration (see README: Configuration)\n{}",
            toml::to_string_pretty(self).map_err(|e| e.to_string())?
        );
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!(
                    "cannot write config {}: cannot create its folder {}: {e}",
                    path.display(),
                    dir.display()
                )
            })?;
        }
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    pub fn validate(&self) -> Result<(), String> {
        let v = &self.volume;
        if crate::format::VolumeId::parse(&v.id).is_none() {
            return Err(format!("volume id {:?} is not a UUID", v.id));
        }
        if v.data_shards < 1 {
            return Err("data_shards must be at least 1".into());
        }
        if v.data_shards as usize + v.parity_shards as usize > 256 {
            return Err("data_shards + parity_shards must be at most 256".into());
        }
        if v.chunk_size.0 < MIN_CHUNK || v.chunk_size.0 > MAX_CHUNK {
            return Err(format!(
                "chunk_size {} must be between {} and {}",
                v.chunk_size,
                Size(MIN_CHUNK),
                Size(MAX_CHUNK)
            ));
        }
        let c = v.chunking();
        crate::data::chunker::Chunking::new(c.min, c.avg, c.max)
            .map_err(|e| format!("chunk_min/chunk_size/chunk_max: {e}"))?;
        if v.cache_size.0 < c.max as u64 {
            return Err(format!(
                "cache_size {} must hold at least the largest chunk ({})",
                v.cache_size,
                Size(c.max as u64)
            ));
        }
        if !v.state_dir.is_absolute() {
            return Err(format!(
                "state_dir {} must be an absolute path",
                v.state_dir.display()
            ));
        }
        if let Some(q) = v.write_quorum {
            let (k, total) = (
                v.data_shards,
                v.data_shards as usize + v.parity_shards as usize,
            );
            if q < k || q as usize > total {
                return Err(format!("write_quorum {q} must be between data_shards ({k}) and data_shards + parity_shards ({total})"));
            }
        }
        if v.inline_max.0 > MAX_INLINE {
            return Err(format!(
                "inline_max {} must be at most {} (chunks up to it are kept in the index; 0 turns that off)",
                v.inline_max,
                Size(MAX_INLINE)
            ));
        }
        if v.upload_concurrency == 0 {
            return Err("upload_concurrency must be at least 1".into());
        }
        if v.encryption != ENCRYPTION_AES && v.encryption != "none" {
            return Err(format!(
                "encryption {:?} must be \"{ENCRYPTION_AES}\" or \"none\"",
                v.encryption
            ));
        }
        v.compression()?;
        if self.backends.is_empty() {
            return Err("no [[backend]] entries".into());
        }
        let mut names = std::collections::HashSet::new();
        for b in &self.backends {
            if !names.insert(&b.name) {
                return Err(format!("backend name {:?} is used twice", b.name));
            }
        }
        if let Some(s) = &self.snapshots {
            s.validate()?;
        }
        crate::policy::rules::PolicySet::compile(self)?;
        crate::policy::price::check_overrides(&self.prices, &self.backends)?;
        for (i, j) in self.jobs.iter().enumerate() {
            j.validate()?;
            if self.jobs[..i].iter().any(|o| o.name == j.name) {
                return Err(format!(
                    "two [[job]] tables are named {:?}: give each job its own name",
                    j.name
                ));
            }
        }
        self.api.address()?;
        if let Some(a) = &self.alerts {
            a.validate()?;
        }
        Ok(())
    }
}

impl Config {
    /// The `[[job]]` named `name`.
    pub fn job(&self, name: &str) -> Result<&crate::backup::job::config::JobSection, String> {
        self.jobs.iter().find(|j| j.name == name).ok_or_else(|| {
            if self.jobs.is_empty() {
                format!(
                    "no backup job {name:?}: the config has no [[job]]; see README \"Backup jobs\""
                )
            } else {
                format!(
                    "no backup job {name:?} in the config; its jobs: {}",
                    self.jobs
                        .iter()
                        .map(|j| j.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        })
    }

    /// The entries of the volume's `env_file`, if it has one.
    pub fn env_vars(&self) -> Result<Vec<(String, String)>, String> {
        let Some(path) = &self.volume.env_file else {
            return Ok(Vec::new());
        };
        let file = open_private(
            path,
            "env_file",
            "create it with the backends' credentials (KEY=VALUE lines) and `chmod 600` it, or remove env_file from the config",
        )?;
        dotenvy::from_read_iter(file)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("env_file {}: {e}", path.display()))
    }
}

/// Opens a file that holds secrets (env file, key file, passphrase file) and
/// checks, on the file opened, that only its owner can read it and that the
/// owner is this user or root. `what` names it in messages; `hint` says what to
/// do when it cannot be opened.
pub fn open_private(path: &Path, what: &str, hint: &str) -> Result<std::fs::File, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{what} {shown}: {e}; {hint}"))?;
    let md = file
        .metadata()
        .map_err(|e| format!("{what} {shown}: {e}"))?;
    if md.mode() & 0o077 != 0 {
        return Err(format!(
            "{what} {shown} holds secrets but is readable by others (mode {:o}); run `chmod 600 {shown}`",
            md.mode() & 0o777
        ));
    }
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if md.uid() != me && md.uid() != 0 {
        return Err(format!(
            "{what} {shown} belongs to user {}, not to this user ({me}) or root, so anyone with that account could change it; run `chown {me} {shown}`",
            md.uid()
        ));
    }
    Ok(file)
}

/// Default (k, m) for `n` backends: about a third of them parity, at least one
/// when there are two or more (2 → 1+1, 3 → 2+1, 4 → 3+1, 6 → 4+2, 9 → 6+3).
pub fn default_shards(n: usize) -> (usize, usize) {
    if n <= 1 {
        return (1, 0);
    }
    let m = (n / 3).max(1);
    (n - m, m)
}

/// Collapses a multi-line message into one line.
pub fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readahead_never_outruns_half_the_cache() {
        let mut v: VolumeSection = toml::from_str(
            "name = \"v\"\nid = \"x\"\ndata_shards = 4\nparity_shards = 2\n\
             chunk_size = \"1MiB\"\ncache_size = \"1GiB\"\nstate_dir = \"/s\"\n\
             readahead_chunks = 16",
        )
        .unwrap();
        v.chunk_size = Size(256 << 10);
        v.cache_size = Size(1 << 20);
        assert_eq!(v.effective_readahead(), 2);
        v.cache_size = Size(256 << 20);
        assert_eq!(v.effective_readahead(), 16);
        v.cache_size = Size(256 << 10);
        assert_eq!(v.effective_readahead(), 0);
    }

    #[test]
    fn readahead_written_by_init_is_16_mib_of_chunks_within_4_to_16() {
        assert_eq!(readahead_for(1 << 20), 16);
        assert_eq!(readahead_for(64 << 10), 16);
        assert_eq!(readahead_for(2 << 20), 8);
        assert_eq!(readahead_for(4 << 20), 4);
        assert_eq!(readahead_for(16 << 20), 4);
    }

    #[test]
    fn sizes() {
        assert_eq!(Size::parse("4MiB").unwrap(), Size(4 << 20));
        assert_eq!(Size::parse("1GiB").unwrap(), Size(1 << 30));
        assert_eq!(Size::parse("1048576").unwrap(), Size(1 << 20));
        assert_eq!(Size::parse("10 MB").unwrap(), Size(10_000_000));
        assert!(Size::parse("4 parsecs").is_err());
        assert!(Size::parse("").is_err());
        assert_eq!(Size(4 << 20).to_string(), "4MiB");
        assert_eq!(Size(1000).to_string(), "1000");
    }

    #[test]
    fn backend_client_settings_parse_with_defaults() {
        let b: BackendSection = toml::from_str(
            "name = \"aws\"\nurl = \"s3://b\"\nconnect_timeout = \"500ms\"\nretries = 0\n",
        )
        .unwrap();
        let c = b.client();
        assert_eq!(c.connect_timeout, std::time::Duration::from_millis(500));
        assert_eq!(c.retries, 0);
        assert_eq!(c.request_timeout, ClientSettings::default().request_timeout);
        let bad = toml::from_str::<BackendSection>(
            "name = \"x\"\nurl = \"s3://b\"\nrequest_timeout = \"soon\"\n",
        );
        assert!(bad.is_err());
    }

    #[test]
    fn default_redundancy() {
        assert_eq!(default_shards(1), (1, 0));
        assert_eq!(default_shards(2), (1, 1));
        assert_eq!(default_shards(3), (2, 1));
        assert_eq!(default_shards(6), (4, 2));
    }

    #[test]
    fn default_write_quorum_survives_one_backend_down() {
        // (k, m) → quorum: one shard may always be missing, never fewer than k.
        for (k, m, q) in [
            (1, 0, 1),
            (1, 1, 1),
            (2, 1, 2),
            (3, 1, 3),
            (4, 2, 5),
            (6, 3, 8),
        ] {
            assert_eq!(default_write_quorum(k, m), q, "{k}+{m}");
        }
    }

    /// A valid config followed by `extra`, loaded from a file.
    fn load_with(extra: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.toml");
        std::fs::write(
            &path,
            format!(
                "[volume]\nname = \"v\"\nid = \"0d9c4cbe-5b8e-4f5e-9a63-8f6f5b3c2a10\"\ndata_shards = 2\nparity_shards = 1\nchunk_size = \"1MiB\"\ncache_size = \"256MiB\"\nstate_dir = \"/var/lib/v\"\n\n[[backend]]\nname = \"a\"\nurl = \"file:///a\"\n{extra}"
            ),
        )
        .unwrap();
        Config::load(&path).map_err(|e| e.replace(&path.display().to_string(), "FILE"))
    }

    #[test]
    fn the_snapshot_schedule_is_read_into_a_policy() {
        let c = load_with(
            "\n[snapshots]\nevery = \"1h\"\nkeep_last = 24\nkeep_daily = 7\nkeep_within = \"2days\"\nkeep_tags = [\"important\"]\n",
        )
        .unwrap();
        let s = c.snapshots.as_ref().unwrap();
        assert_eq!(s.every, Some(std::time::Duration::from_secs(3600)));
        let p = s.policy();
        assert_eq!((p.last, p.daily, p.hourly), (24, 7, 0));
        assert_eq!(p.within, Some(std::time::Duration::from_secs(2 * 86400)));
        assert_eq!(p.tags, vec!["important".to_string()]);
        // Saved and loaded again, it is the same.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("again.toml");
        c.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), c);
        // Without the table: no schedule; an empty one too.
        assert_eq!(load_with("").unwrap().snapshots, None);
        let empty = load_with("[snapshots]\n").unwrap();
        assert_eq!(empty.snapshots.unwrap().every, None);
    }

    #[test]
    fn bad_snapshot_settings_are_refused_with_their_line() {
        // The valid part above takes 12 lines; [snapshots] is line 13.
        for (extra, needle) in [
            (
                "[snapshots]\nevery = \"500ms\"\n",
                "line 14, column 9: every = \"500ms\" is too short: scheduled snapshots are at least 1s apart",
            ),
            (
                "[snapshots]\nevery = \"soon\"\n",
                "line 14, column 9: every = \"soon\" is not a duration",
            ),
            (
                "[snapshots]\nevery = \"1h\"\nkeep_lats = 3\n",
                "line 15, column 1: unknown field `keep_lats`",
            ),
            (
                "[snapshots]\nevery = \"1h\"\nkeep_last = 0\n",
                "line 15, column 13: a keep_* count of 0 keeps nothing",
            ),
            (
                "[snapshots]\nevery = \"1h\"\nkeep_within = \"0s\"\n",
                "line 15, column 15: keep_within = \"0s\" keeps nothing",
            ),
            (
                "[snapshots]\nkeep_last = 3\nkeep_within = \"1day\"\n",
                "config FILE: [snapshots] keep_last, keep_within without every: the keep_* rules apply to the snapshots the schedule takes; add e.g. every = \"1h\", or remove them (`cloudraid forget` takes its rules on the command line)",
            ),
            (
                "[snapshots]\nevery = \"1h\"\nkeep_tags = [\"a\"]\n",
                "keep_tags alone keeps all of the scheduled snapshots or none",
            ),
        ] {
            let e = load_with(extra).unwrap_err();
            assert!(e.contains(needle), "{extra:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn inline_max_defaults_to_8kib_and_is_bounded() {
        assert_eq!(load_with("").unwrap().volume.inline_max, Size(8 << 10));
        let with = |v: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("v.toml");
            std::fs::write(
                &path,
                format!("[volume]\nname = \"v\"\nid = \"0d9c4cbe-5b8e-4f5e-9a63-8f6f5b3c2a10\"\ndata_shards = 2\nparity_shards = 1\nchunk_size = \"1MiB\"\ncache_size = \"256MiB\"\nstate_dir = \"/var/lib/v\"\ninline_max = {v}\n\n[[backend]]\nname = \"a\"\nurl = \"file:///a\"\n"),
            )
            .unwrap();
            Config::load(&path).map_err(|e| e.replace(&path.display().to_string(), "FILE"))
        };
        assert_eq!(with("\"0\"").unwrap().volume.inline_max, Size(0));
        assert_eq!(with("\"64KiB\"").unwrap().volume.inline_max, Size(64 << 10));
        assert_eq!(with("4096").unwrap().volume.inline_max, Size(4096));
        let e = with("\"1MiB\"").unwrap_err();
        assert_eq!(
            e,
            "config FILE: inline_max 1MiB must be at most 64KiB (chunks up to it are kept in the index; 0 turns that off)"
        );
        let e = with("\"lots\"").unwrap_err();
        assert!(
            e.contains("line 9, column 14: invalid size \"lots\""),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn the_readme_example_config_is_valid() {
        let readme = include_str!("../README.md");
        let section = &readme[readme.find("## Configuration file").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let cfg: Config = toml::from_str(example).unwrap();
        cfg.validate().unwrap();
        let s = cfg.snapshots.unwrap();
        assert_eq!(s.every, Some(std::time::Duration::from_secs(3600)));
        assert_eq!(s.policy().describe(), "last 24, daily 7, weekly 4");
    }
}
