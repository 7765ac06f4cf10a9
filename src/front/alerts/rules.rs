//! `[alerts]` as the config writes it: the rules (each off, or on after a
//! duration or under a floor) and the `[[alerts.notify]]` targets.

use crate::backup::job::notify;
use crate::config::Size;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

/// A rule that is off, or on after a duration (`"5m"`; `true`: its default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct After(pub Option<Duration>);

impl Serialize for After {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_bool(false),
            Some(d) => s.serialize_str(&humantime::format_duration(d).to_string()),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    B(bool),
    S(String),
}

fn after_or(default: Duration) -> impl Fn(Raw) -> Result<After, String> {
    move |r| {
        match r {
        Raw::B(false) => Ok(After(None)),
        Raw::B(true) => Ok(After(Some(default))),
        Raw::S(s) => humantime::parse_duration(&s)
            .map(|d| After(Some(d)))
            .map_err(|e| {
                format!("{s:?} is not a duration ({e}): write e.g. \"5m\", or false to turn the rule off")
            }),
    }
    }
}

macro_rules! after_field {
    ($name:ident, $default:expr) => {
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<After, D::Error> {
            after_or($default)(Raw::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    };
}
after_field!(de_backend_down, DEFAULT_BACKEND_DOWN);
after_field!(de_degraded, DEFAULT_DEGRADED);
after_field!(de_job_missed, DEFAULT_JOB_MISSED);

pub(super) const DEFAULT_BACKEND_DOWN: Duration = Duration::from_secs(5 * 60);
pub(super) const DEFAULT_DEGRADED: Duration = Duration::from_secs(60 * 60);
pub(super) const DEFAULT_JOB_MISSED: Duration = Duration::from_secs(60 * 60);
pub(super) const DEFAULT_DISK_FREE: u64 = 1 << 30;

/// A free-space floor, or off (`false`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Floor(pub Option<u64>);

impl Serialize for Floor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_bool(false),
            Some(n) => Size(n).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Floor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Raw::deserialize(d)? {
            Raw::B(false) => Ok(Floor(None)),
            Raw::B(true) => Ok(Floor(Some(DEFAULT_DISK_FREE))),
            Raw::S(s) => Size::parse(&s).map(|n| Floor(Some(n.0))).map_err(|e| {
                serde::de::Error::custom(format!("{e}; or false to turn the rule off"))
            }),
        }
    }
}

fn yes() -> bool {
    true
}

/// `[alerts]`: which rules are on, and where their messages go.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    #[serde(default = "d_backend_down", deserialize_with = "de_backend_down")]
    pub backend_down: After,
    #[serde(default = "d_degraded", deserialize_with = "de_degraded")]
    pub degraded: After,
    #[serde(default = "yes")]
    pub scrub_damage: bool,
    #[serde(default = "yes")]
    pub job_failed: bool,
    #[serde(default = "d_job_missed", deserialize_with = "de_job_missed")]
    pub job_missed: After,
    #[serde(default = "d_disk_free")]
    pub disk_free_below: Floor,
    #[serde(default = "yes")]
    pub lease_lost: bool,
    /// Messages sent in any hour at most.
    #[serde(default = "d_max_per_hour")]
    pub max_per_hour: u32,
    /// Where messages go: `[[alerts.notify]]`.
    #[serde(default)]
    pub notify: Vec<AlertTarget>,
}

fn d_backend_down() -> After {
    After(Some(DEFAULT_BACKEND_DOWN))
}
fn d_degraded() -> After {
    After(Some(DEFAULT_DEGRADED))
}
fn d_job_missed() -> After {
    After(Some(DEFAULT_JOB_MISSED))
}
fn d_disk_free() -> Floor {
    Floor(Some(DEFAULT_DISK_FREE))
}
fn d_max_per_hour() -> u32 {
    20
}

/// `[[alerts.notify]]`: a webhook, an email, or both.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertTarget {
    /// A URL each message is POSTed to as JSON (`text` and `content` hold one
    /// line, as Slack and Discord webhooks expect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Recipients, sender and server, as for job notifications (the login comes
    /// from the env file: `SMTP_USERNAME`, `SMTP_PASSWORD`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<String>,
}

impl AlertsSection {
    pub fn validate(&self) -> Result<(), String> {
        if self.notify.is_empty() {
            return Err("[alerts] has no [[alerts.notify]]: add one with webhook = \"https://...\" or email = [\"you@example.org\"] and smtp = \"smtp://host:587\"".into());
        }
        for t in &self.notify {
            if t.webhook.is_none() && t.email.is_empty() {
                return Err(
                    "an [[alerts.notify]] has neither webhook nor email: give it one".into(),
                );
            }
            if let Some(w) = &t.webhook {
                match url::Url::parse(w) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    _ => {
                        return Err(format!(
                            "[[alerts.notify]] webhook {:?} is not an http(s) URL",
                            notify::redact_url(w)
                        ))
                    }
                }
            }
            if !t.email.is_empty() {
                match &t.smtp {
                    None => return Err("an [[alerts.notify]] with email has no smtp server: add smtp = \"smtp://host:587\"".into()),
                    Some(s) => {
                        notify::SmtpServer::parse(s)?;
                    }
                }
            }
        }
        if self.max_per_hour == 0 {
            return Err(
                "[alerts] max_per_hour = 0 would send nothing: remove [alerts] to turn alerts off"
                    .into(),
            );
        }
        Ok(())
    }
}
