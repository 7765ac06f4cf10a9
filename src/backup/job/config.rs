//! `[[job]]`: a backup job as the volume config declares it. Everything that can
//! be checked without running the job (cron expressions, patterns, names, where
//! each source lands) is checked when the config is loaded: a value that is
//! wrong is refused with its line by the deserializer, a combination that is
//! wrong by [`JobSection::validate`].

use crate::backup::retention::KeepPolicy;
use serde::{Deserialize, Deserializer, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The longest a hook runs when the job does not say (`hook_timeout`).
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long watch mode waits after a file's last change (`watch_delay`).
pub const DEFAULT_WATCH_DELAY: Duration = Duration::from_secs(2);

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    pub name: String,
    /// Local folders or files; each is stored as `destination/<its last component>`.
    #[serde(default)]
    pub sources: Vec<PathBuf>,
    /// A folder of the volume (`/backups/nightly`).
    pub destination: String,
    /// Gitignore-style patterns: only what they match is backed up (empty: everything).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Patterns,
    /// Gitignore-style patterns of what is never backed up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Patterns,
    /// Do not descend into other file systems met under a source.
    #[serde(default)]
    pub one_file_system: bool,
    /// Store what symlinks point to instead of the links.
    #[serde(default)]
    pub follow_symlinks: bool,
    /// When the job runs by itself: a cron expression (`0 3 * * *`) or a systemd
    /// calendar string (`daily`, `Mon..Fri 03:00`); absent: only when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleText>,
    /// Each scheduled run starts up to this much later, at random.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub random_delay: Option<Duration>,
    /// Keep the destination in step with the sources as they change (inotify).
    #[serde(default)]
    pub watch: bool,
    /// Watch mode stores a file this long after its last change.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub watch_delay: Option<Duration>,
    /// A file deleted from a source is removed from the destination (it stays
    /// in the snapshots); false: kept.
    #[serde(default = "yes")]
    pub mirror_deletes: bool,
    /// End each successful run with a snapshot of the destination, tagged with
    /// the job's name, and apply the `keep_*` rules to those snapshots.
    #[serde(default = "yes")]
    pub snapshot: bool,
    #[serde(
        default,
        deserialize_with = "crate::config::count_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_last: Option<u32>,
    #[serde(
        default,
        deserialize_with = "crate::config::count_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_hourly: Option<u32>,
    #[serde(
        default,
        deserialize_with = "crate::config::count_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_daily: Option<u32>,
    #[serde(
        default,
        deserialize_with = "crate::config::count_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_weekly: Option<u32>,
    #[serde(
        default,
        deserialize_with = "crate::config::count_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_monthly: Option<u32>,
    #[serde(
        default,
        deserialize_with = "crate::config::count_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_yearly: Option<u32>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_within: Option<Duration>,
    /// Shell commands (`sh -c`): before the run (failing: the run is skipped),
    /// after a run that stored something, and when the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
    /// The longest a hook may run before it is killed (default 5 minutes).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub hook_timeout: Option<Duration>,
    /// Databases dumped into `destination/databases/`.
    #[serde(default, rename = "database", skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<DatabaseSection>,
    /// Where the result of each run is sent.
    #[serde(default, rename = "notify", skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifySection>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
    Mysql,
}

impl DatabaseKind {
    /// The extension of the stored dump.
    pub fn extension(self) -> &'static str {
        match self {
            DatabaseKind::Sqlite => "sqlite",
            DatabaseKind::Postgres => "pgdump",
            DatabaseKind::Mysql => "sql",
        }
    }
}

/// `[[job.database]]`: a database dumped by each run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub kind: DatabaseKind,
    /// Stored as `destination/databases/NAME.EXT`.
    pub name: String,
    /// SQLite: the database file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// PostgreSQL / MySQL: `postgres://user@host:port/db`, `mysql://user@host:port/db`.
    /// A password is better kept in the env file (`PGPASSWORD`, `MYSQL_PWD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Further arguments for pg_dump / mysqldump.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl DatabaseSection {
    /// The file name of the dump in `destination/databases/`.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.name, self.kind.extension())
    }
}

/// When a notification is sent.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    Success,
    Partial,
    Failure,
}

/// `[[job.notify]]`: a webhook or an email after each run whose result is in `on`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// Results that send it (default: partial and failure).
    #[serde(default = "NotifySection::default_on")]
    pub on: Vec<NotifyOn>,
    /// A URL the run's summary is POSTed to as JSON (`text` holds a one-line
    /// summary, as Slack and Discord webhooks expect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Email: recipients, sender and server (`smtp://host:587`, STARTTLS when the
    /// server offers it; `smtps://host:465`: TLS from the start). The user and
    /// password come from the env file: `SMTP_USERNAME`, `SMTP_PASSWORD`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<String>,
}

impl NotifySection {
    fn default_on() -> Vec<NotifyOn> {
        vec![NotifyOn::Partial, NotifyOn::Failure]
    }
}

/// A list of gitignore-style patterns, each checked when the config is loaded.
pub type Patterns = Vec<Pattern>;

/// One gitignore-style pattern (`*.tmp`, `node_modules/`, `/cache`, `!keep.tmp`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Pattern(pub String);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut b = ignore::gitignore::GitignoreBuilder::new("/");
        b.add_line(None, &s)
            .map_err(|e| serde::de::Error::custom(format!("pattern {s:?} is not valid: {e}")))?;
        b.build()
            .map_err(|e| serde::de::Error::custom(format!("pattern {s:?} is not valid: {e}")))?;
        if s.trim().is_empty() {
            return Err(serde::de::Error::custom(
                "an empty pattern matches nothing: remove it",
            ));
        }
        Ok(Pattern(s))
    }
}

/// A `schedule`, checked when the config is loaded (see `backup::job::when`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ScheduleText(pub String);

impl<'de> Deserialize<'de> for ScheduleText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        super::when::When::parse(&s).map_err(serde::de::Error::custom)?;
        Ok(ScheduleText(s))
    }
}

impl JobSection {
    /// The retention of this job's snapshots (empty: every one is kept).
    pub fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last.unwrap_or(0),
            hourly: self.keep_hourly.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
            within: self.keep_within,
            tags: Vec::new(),
        }
    }

    pub fn hook_timeout(&self) -> Duration {
        self.hook_timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT)
    }

    pub fn watch_delay(&self) -> Duration {
        self.watch_delay.unwrap_or(DEFAULT_WATCH_DELAY)
    }

    /// The parsed schedule, if the job has one.
    pub fn when(&self) -> Option<super::when::When> {
        self.schedule
            .as_ref()
            .map(|s| super::when::When::parse(&s.0).expect("checked when the config was loaded"))
    }

    /// The name each source is stored under in the destination: its last component.
    pub fn stored_name(source: &std::path::Path) -> Option<String> {
        source.file_name().map(|n| n.to_string_lossy().into_owned())
    }

    /// What the deserializer cannot check alone: names, sources, where each lands.
    pub fn validate(&self) -> Result<(), String> {
        let job = &self.name;
        if job.is_empty()
            || !job
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || job.starts_with('.')
        {
            return Err(format!(
                "[[job]] name {job:?}: use letters, digits, '-', '_' and '.' (it names the job on the command line, in snapshot tags and in systemd units)"
            ));
        }
        if self.sources.is_empty() && self.databases.is_empty() {
            return Err(format!(
                "[[job]] {job}: no sources and no [[job.database]]: give sources = [\"/path\"] or a database to back up"
            ));
        }
        if !self.destination.starts_with('/') {
            return Err(format!(
                "[[job]] {job}: destination {:?} is a folder of the volume, written from its root (e.g. \"/backups/{job}\")",
                self.destination
            ));
        }
        if self.destination.split('/').any(|c| c == "..") {
            return Err(format!(
                "[[job]] {job}: destination {:?} must not contain `..`",
                self.destination
            ));
        }
        let mut names: Vec<(String, String)> = Vec::new();
        for s in &self.sources {
            if !s.is_absolute() {
                return Err(format!(
                    "[[job]] {job}: source {:?} is relative; write it from / (the job may run from the mount daemon, whose working directory is /)",
                    s.display()
                ));
            }
            let Some(n) = Self::stored_name(s) else {
                return Err(format!(
                    "[[job]] {job}: source {:?} has no last component to store it under; name a folder below /",
                    s.display()
                ));
            };
            if !self.databases.is_empty() && n == "databases" {
                return Err(format!(
                    "[[job]] {job}: source {} would be stored as {}/databases, where the database dumps go; back up its parent folder or move the dumps to another job",
                    s.display(),
                    self.destination.trim_end_matches('/')
                ));
            }
            if let Some((other, _)) = names.iter().find(|(_, m)| *m == n) {
                return Err(format!(
                    "[[job]] {job}: sources {other} and {} would both be stored as {}/{n}; put them in two jobs or back up their common parent",
                    s.display(),
                    self.destination.trim_end_matches('/')
                ));
            }
            names.push((s.display().to_string(), n));
        }
        let mut dbs: Vec<String> = Vec::new();
        for d in &self.databases {
            let what = format!("[[job]] {job}: [[job.database]] {:?}", d.name);
            if d.name.is_empty() || d.name.contains('/') || d.name.starts_with('.') {
                return Err(format!("{what}: the name is a file name in {}/databases: no '/', not starting with '.'", self.destination.trim_end_matches('/')));
            }
            if dbs.contains(&d.file_name()) {
                return Err(format!("{what}: two databases would be stored as databases/{}; give them different names", d.file_name()));
            }
            dbs.push(d.file_name());
            match (d.kind, &d.path, &d.url) {
                (DatabaseKind::Sqlite, Some(p), None) if p.is_absolute() => {}
                (DatabaseKind::Sqlite, Some(p), None) => {
                    return Err(format!(
                        "{what}: path {:?} is relative; write it from /",
                        p.display()
                    ))
                }
                (DatabaseKind::Sqlite, _, _) => {
                    return Err(format!(
                        "{what}: a sqlite database takes path = \"/path/to/file.db\" (and no url)"
                    ))
                }
                (kind, None, Some(u)) => {
                    let scheme = if kind == DatabaseKind::Postgres {
                        &["postgres", "postgresql"][..]
                    } else {
                        &["mysql", "mariadb"][..]
                    };
                    let parsed = url::Url::parse(u).map_err(|e| format!("{what}: url {u:?} is not a URL ({e}); write e.g. {}://user@127.0.0.1/dbname", scheme[0]))?;
                    if !scheme.contains(&parsed.scheme()) {
                        return Err(format!(
                            "{what}: url {u:?} should start with {}://",
                            scheme[0]
                        ));
                    }
                    if parsed.path().trim_matches('/').is_empty() {
                        return Err(format!("{what}: url {u:?} names no database; add it as the path: {}://user@host/dbname", scheme[0]));
                    }
                }
                (kind, _, _) => {
                    return Err(format!(
                        "{what}: a {} database takes url = \"{}://user@host/dbname\" (and no path)",
                        if kind == DatabaseKind::Postgres {
                            "postgres"
                        } else {
                            "mysql"
                        },
                        if kind == DatabaseKind::Postgres {
                            "postgres"
                        } else {
                            "mysql"
                        },
                    ))
                }
            }
        }
        for (i, n) in self.notify.iter().enumerate() {
            let what = format!("[[job]] {job}: [[job.notify]] #{}", i + 1);
            if n.webhook.is_none() && n.email.is_empty() {
                return Err(format!("{what} has neither webhook nor email: give webhook = \"https://...\" or email = [\"you@example.org\"]"));
            }
            if let Some(w) = &n.webhook {
                let u = url::Url::parse(w)
                    .map_err(|e| format!("{what}: webhook {w:?} is not a URL ({e})"))?;
                if !matches!(u.scheme(), "http" | "https") {
                    return Err(format!(
                        "{what}: webhook {w:?} must be an http:// or https:// URL"
                    ));
                }
            }
            if !n.email.is_empty() && (n.smtp.is_none() || n.from.is_none()) {
                return Err(format!(
                    "{what}: email needs smtp = \"smtp://host:587\" and from = \"cloudraid@host\""
                ));
            }
            if let Some(s) = &n.smtp {
                let u = url::Url::parse(s).map_err(|e| {
                    format!("{what}: smtp {s:?} is not a URL ({e}); write smtp://host:587")
                })?;
                if !matches!(u.scheme(), "smtp" | "smtps") || u.host_str().is_none() {
                    return Err(format!(
                        "{what}: smtp {s:?} should be smtp://host:port or smtps://host:port"
                    ));
                }
            }
            if n.on.is_empty() {
                return Err(format!("{what}: on = [] sends nothing; give on = [\"failure\", \"partial\", \"success\"] or remove the table"));
            }
        }
        if self.watch && self.sources.is_empty() {
            return Err(format!(
                "[[job]] {job}: watch = true needs sources to watch"
            ));
        }
        if !self.snapshot && !self.policy().is_empty() {
            return Err(format!("[[job]] {job}: keep_* rules apply to the job's snapshots, but snapshot = false; remove one or the other"));
        }
        Ok(())
    }
}
