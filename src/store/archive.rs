//! Archive storage classes: how a thaw (restore) is asked for, where one stands,
//! and how long it usually takes.
//!
//! An object in S3 GLACIER or DEEP_ARCHIVE, or in Azure's Archive tier, cannot be
//! read until it is thawed: a GET fails with [`StoreError::Archived`]
//! (`super::StoreError`). [`Backend::restore`](super::Backend::restore) asks the
//! provider for a thaw and [`Backend::thaw_state`](super::Backend::thaw_state)
//! tells where it stands. GCS ARCHIVE (and S3 GLACIER_IR) are read directly and
//! never need one.
//!
//! What a thaw does at each provider:
//! - S3 (RestoreObject): a temporary copy is made readable for the `days` asked;
//!   the object stays in its archive class and becomes unreadable again when the
//!   copy expires ([`ThawState::Ready::until`]).
//! - Azure (Set Blob Tier to Hot with a rehydrate priority): the blob moves to the
//!   Hot tier for good; once there it reads as [`ThawState::NotArchived`].

use crate::policy::class::StorageClass;
use std::fmt;
use std::time::{Duration, SystemTime};

/// How urgently a thaw is asked for; faster costs more per GB.
///
/// | tier | S3 (RestoreObject `Tier`) | Azure (`x-ms-rehydrate-priority`) |
/// |---|---|---|
/// | `Expedited` | Expedited (GLACIER only; DEEP_ARCHIVE gets Standard) | High |
/// | `Standard` | Standard | Standard |
/// | `Bulk` | Bulk | Standard (Azure has no cheaper priority) |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ThawTier {
    Expedited,
    #[default]
    Standard,
    Bulk,
}

impl ThawTier {
    pub const ALL: [ThawTier; 3] = [ThawTier::Expedited, ThawTier::Standard, ThawTier::Bulk];

    pub fn name(self) -> &'static str {
        match self {
            ThawTier::Expedited => "expedited",
            ThawTier::Standard => "standard",
            ThawTier::Bulk => "bulk",
        }
    }

    /// Parses `expedited`, `standard` or `bulk` (case-insensitive).
    pub fn parse(s: &str) -> Result<ThawTier, String> {
        let wanted = s.trim();
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| format!("thaw tier {wanted:?} is not one of: expedited, standard, bulk"))
    }

    /// The tier S3 is asked for when restoring an object of `class`: S3 offers
    /// no Expedited retrieval from DEEP_ARCHIVE, so Standard is asked instead.
    pub fn for_s3(self, class: StorageClass) -> ThawTier {
        if self == ThawTier::Expedited && class == StorageClass::S3DeepArchive {
            ThawTier::Standard
        } else {
            self
        }
    }

    /// The `Tier` value of an S3 RestoreObject request.
    pub fn s3_value(self) -> &'static str {
        match self {
            ThawTier::Expedited => "Expedited",
            ThawTier::Standard => "Standard",
            ThawTier::Bulk => "Bulk",
        }
    }

    /// The `x-ms-rehydrate-priority` of an Azure Set Blob Tier request.
    pub fn azure_priority(self) -> &'static str {
        match self {
            ThawTier::Expedited => "High",
            ThawTier::Standard | ThawTier::Bulk => "Standard",
        }
    }
}

impl fmt::Display for ThawTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long a thaw usually takes, as the provider documents it: "typically
/// between `min` and `max`" (`min` is zero where it gives only an upper bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThawWait {
    pub min: Duration,
    pub max: Duration,
}

impl fmt::Display for ThawWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, secs) = if self.max >= Duration::from_secs(3600) {
            ("hours", 3600)
        } else {
            ("minutes", 60)
        };
        let n = |d: Duration| d.as_secs().div_ceil(secs);
        if self.min.is_zero() {
            write!(f, "up to {} {unit}", n(self.max))
        } else {
            write!(f, "{}-{} {unit}", n(self.min), n(self.max))
        }
    }
}

const fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

const fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

/// How long a thaw of an object of `class` asked for at `tier` usually takes;
/// `None` for a class that is read at once.
///
/// | class | Expedited | Standard | Bulk |
/// |---|---|---|---|
/// | S3 GLACIER | 1-5 minutes | 3-5 hours | 5-12 hours |
/// | S3 DEEP_ARCHIVE | (as Standard) | up to 12 hours | up to 48 hours |
/// | Azure Archive | up to 1 hour (High, blobs under 10 GB) | up to 15 hours | (as Standard) |
///
/// Sources (read 2026-12): S3, "Archive retrieval options",
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/restoring-objects-retrieval-options.html>;
/// Azure, "Blob rehydration from the archive tier" (rehydration priority),
/// <https://learn.microsoft.com/en-us/azure/storage/blobs/archive-rehydrate-overview>.
pub fn expected_wait(class: StorageClass, tier: ThawTier) -> Option<ThawWait> {
    let w = |min, max| Some(ThawWait { min, max });
    match (class, tier) {
        (StorageClass::S3Glacier, ThawTier::Expedited) => w(minutes(1), minutes(5)),
        (StorageClass::S3Glacier, ThawTier::Standard) => w(hours(3), hours(5)),
        (StorageClass::S3Glacier, ThawTier::Bulk) => w(hours(5), hours(12)),
        (StorageClass::S3DeepArchive, ThawTier::Expedited | ThawTier::Standard) => {
            w(Duration::ZERO, hours(12))
        }
        (StorageClass::S3DeepArchive, ThawTier::Bulk) => w(Duration::ZERO, hours(48)),
        (StorageClass::AzureArchive, ThawTier::Expedited) => w(Duration::ZERO, hours(1)),
        (StorageClass::AzureArchive, ThawTier::Standard | ThawTier::Bulk) => {
            w(Duration::ZERO, hours(15))
        }
        _ => None,
    }
}

/// Where the thaw of one object stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThawState {
    /// Not in an archive class (or a provider without any): read it at once.
    NotArchived,
    /// In an archive class and not thawed: reads fail until a thaw is asked
    /// for and completes (also when an S3 restored copy has expired).
    Archived { class: StorageClass },
    /// A thaw was asked for and is running. `tier` is known where the
    /// provider reports it (Azure) or the request was just made.
    InProgress {
        class: StorageClass,
        tier: Option<ThawTier>,
    },
    /// Thawed: readable now, until `until` where the thawed copy expires (S3).
    Ready {
        class: StorageClass,
        until: Option<SystemTime>,
    },
}

impl ThawState {
    /// Can the object be read now?
    pub fn readable(&self) -> bool {
        matches!(self, ThawState::NotArchived | ThawState::Ready { .. })
    }

    /// How long a thaw in progress usually takes (at its tier, or Standard
    /// where the tier is not known), or one not yet asked for at Standard.
    pub fn expected_wait(&self) -> Option<ThawWait> {
        match *self {
            ThawState::Archived { class } => expected_wait(class, ThawTier::Standard),
            ThawState::InProgress { class, tier } => expected_wait(class, tier.unwrap_or_default()),
            ThawState::NotArchived | ThawState::Ready { .. } => None,
        }
    }
}

impl fmt::Display for ThawState {
    /// One phrase for a log line: "thaw in progress (DEEP_ARCHIVE, standard
    /// tier; usually up to 12 hours)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = |c: StorageClass| {
            // The provider follows from the class, except for Standard.
            let p = match c {
                StorageClass::AzureArchive | StorageClass::AzureCool | StorageClass::AzureCold => {
                    crate::policy::class::Provider::Azure
                }
                _ => crate::policy::class::Provider::Aws,
            };
            c.name(p)
        };
        match *self {
            ThawState::NotArchived => f.write_str("not archived: readable at once"),
            ThawState::Archived { class: c } => {
                write!(f, "archived in {}, no thaw requested", class(c))?;
                if let Some(w) = self.expected_wait() {
                    write!(f, " (a standard thaw takes {w})")?;
                }
                Ok(())
            }
            ThawState::InProgress { class: c, tier } => {
                write!(f, "thaw in progress ({}", class(c))?;
                if let Some(t) = tier {
                    write!(f, ", {t} tier")?;
                }
                if let Some(w) = self.expected_wait() {
                    write!(f, "; usually {w}")?;
                }
                f.write_str(")")
            }
            ThawState::Ready { class: c, until } => {
                write!(f, "thawed ({})", class(c))?;
                if let Some(u) = until {
                    let when = chrono::DateTime::<chrono::Utc>::from(u);
                    write!(f, ", readable until {}", when.format("%Y-%m-%d %H:%M UTC"))?;
                }
                Ok(())
            }
        }
    }
}

/// Reads an S3 `x-amz-restore` header: `ongoing-request="true"`, or
/// `ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`.
/// `None` if it is neither.
pub(crate) fn parse_s3_restore(header: &str, class: StorageClass) -> Option<ThawState> {
    let field = |name: &str| {
        let start = header.find(&format!("{name}=\""))? + name.len() + 2;
        let len = header[start..].find('"')?;
        Some(&header[start..start + len])
    };
    match field("ongoing-request")? {
        "true" => Some(ThawState::InProgress { class, tier: None }),
        "false" => {
            let until = field("expiry-date")
                .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
                .map(SystemTime::from);
            Some(ThawState::Ready { class, until })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_follow_the_providers_tables() {
        let w = |c, t| expected_wait(c, t).unwrap().to_string();
        assert_eq!(
            w(StorageClass::S3Glacier, ThawTier::Expedited),
            "1-5 minutes"
        );
        assert_eq!(w(StorageClass::S3Glacier, ThawTier::Standard), "3-5 hours");
        assert_eq!(
            w(StorageClass::S3DeepArchive, ThawTier::Standard),
            "up to 12 hours"
        );
        assert_eq!(
            w(StorageClass::S3DeepArchive, ThawTier::Bulk),
            "up to 48 hours"
        );
        assert_eq!(
            w(StorageClass::AzureArchive, ThawTier::Standard),
            "up to 15 hours"
        );
        assert_eq!(
            expected_wait(StorageClass::GcsArchive, ThawTier::Bulk),
            None
        );
        assert_eq!(expected_wait(StorageClass::Standard, ThawTier::Bulk), None);
        // Every class that needs a thaw has a wait at every tier.
        for c in [
            StorageClass::S3Glacier,
            StorageClass::S3DeepArchive,
            StorageClass::AzureArchive,
        ] {
            assert!(!c.instant());
            for t in ThawTier::ALL {
                assert!(expected_wait(c, t).is_some(), "{c:?} {t}");
            }
        }
        assert_eq!(
            ThawTier::Expedited.for_s3(StorageClass::S3DeepArchive),
            ThawTier::Standard
        );
        assert_eq!(
            ThawTier::Expedited.for_s3(StorageClass::S3Glacier),
            ThawTier::Expedited
        );
        assert_eq!(ThawTier::parse(" Bulk "), Ok(ThawTier::Bulk));
        assert!(ThawTier::parse("fast").unwrap_err().contains("expedited"));
    }

    #[test]
    fn s3_restore_header_is_read() {
        let c = StorageClass::S3DeepArchive;
        assert_eq!(
            parse_s3_restore("ongoing-request=\"true\"", c),
            Some(ThawState::InProgress {
                class: c,
                tier: None
            })
        );
        let ready = parse_s3_restore(
            "ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\"",
            c,
        )
        .unwrap();
        let ThawState::Ready {
            until: Some(until), ..
        } = ready
        else {
            panic!("{ready:?}")
        };
        assert_eq!(
            until.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_secs(1_356_048_000)
        );
        assert!(ready.readable());
        assert!(
            ready.to_string().contains("until 2012-12-21 00:00 UTC"),
            "{ready}"
        );
        assert_eq!(parse_s3_restore("garbage", c), None);
    }

    #[test]
    fn states_name_the_wait() {
        let s = ThawState::InProgress {
            class: StorageClass::S3DeepArchive,
            tier: Some(ThawTier::Bulk),
        };
        assert!(!s.readable());
        assert_eq!(
            s.to_string(),
            "thaw in progress (DEEP_ARCHIVE, bulk tier; usually up to 48 hours)"
        );
        let a = ThawState::Archived {
            class: StorageClass::AzureArchive,
        };
        assert_eq!(
            a.to_string(),
            "archived in Archive, no thaw requested (a standard thaw takes up to 15 hours)"
        );
        assert!(ThawState::NotArchived.readable());
    }
}
