//! Providers and their storage classes.
//!
//! A backend's provider follows from its URL's scheme. Each shard is stored in
//! one class of its provider; the class is recorded per shard in the chunk's
//! index record as a one-byte code (docs/FORMAT.md, "Storage class codes"), so
//! what was uploaded stays known whatever the config says later.

use std::fmt;

/// Who stores a backend's objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
    /// A local folder or drive (`file://`).
    Local,
    /// `memory://` (tests).
    Memory,
}

impl Provider {
    /// The provider of a backend URL, by its scheme.
    pub fn of_url(url: &str) -> Option<Provider> {
        let scheme = url.split_once("://")?.0;
        Some(match scheme {
            "s3" => Provider::Aws,
            "gs" => Provider::Gcp,
            "az" => Provider::Azure,
            "file" => Provider::Local,
            "memory" => Provider::Memory,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
            Provider::Local => "local",
            Provider::Memory => "memory",
        }
    }

    /// The classes a backend of this provider accepts, by name.
    pub fn classes(self) -> &'static [StorageClass] {
        use StorageClass::*;
        match self {
            Provider::Aws => &[
                Standard,
                S3StandardIa,
                S3IntelligentTiering,
                S3GlacierIr,
                S3Glacier,
                S3DeepArchive,
            ],
            Provider::Gcp => &[Standard, GcsNearline, GcsColdline, GcsArchive],
            Provider::Azure => &[Standard, AzureCool, AzureCold, AzureArchive],
            Provider::Local | Provider::Memory => &[Standard],
        }
    }

    /// Parses a class name as this provider spells it (case-insensitive).
    pub fn class(self, name: &str) -> Result<StorageClass, String> {
        let wanted = name.trim();
        self.classes()
            .iter()
            .copied()
            .find(|c| c.name(self).eq_ignore_ascii_case(wanted))
            .ok_or_else(|| {
                format!(
                    "storage class {wanted:?} is not one of {}'s: {}",
                    self.name(),
                    self.classes()
                        .iter()
                        .map(|c| c.name(self))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A storage class. `Standard` is each provider's default (S3 and GCS
/// STANDARD, Azure Hot, and the only class of a local folder). The
/// discriminants are the codes recorded in the index: never reuse one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum StorageClass {
    #[default]
    Standard = 0,
    S3StandardIa = 1,
    S3IntelligentTiering = 2,
    S3GlacierIr = 3,
    S3Glacier = 4,
    S3DeepArchive = 5,
    GcsNearline = 6,
    GcsColdline = 7,
    GcsArchive = 8,
    AzureCool = 9,
    AzureCold = 10,
    AzureArchive = 11,
}

impl StorageClass {
    const ALL: [StorageClass; 12] = [
        StorageClass::Standard,
        StorageClass::S3StandardIa,
        StorageClass::S3IntelligentTiering,
        StorageClass::S3GlacierIr,
        StorageClass::S3Glacier,
        StorageClass::S3DeepArchive,
        StorageClass::GcsNearline,
        StorageClass::GcsColdline,
        StorageClass::GcsArchive,
        StorageClass::AzureCool,
        StorageClass::AzureCold,
        StorageClass::AzureArchive,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The class of an index code (`None`: written by a newer build).
    pub fn from_code(code: u8) -> Option<StorageClass> {
        Self::ALL.get(code as usize).copied()
    }

    /// The name the provider uses (what `storage_class` takes in the config and
    /// what is sent on upload).
    pub fn name(self, provider: Provider) -> &'static str {
        use StorageClass::*;
        match self {
            Standard if provider == Provider::Azure => "Hot",
            Standard => "STANDARD",
            S3StandardIa => "STANDARD_IA",
            S3IntelligentTiering => "INTELLIGENT_TIERING",
            S3GlacierIr => "GLACIER_IR",
            S3Glacier => "GLACIER",
            S3DeepArchive => "DEEP_ARCHIVE",
            GcsNearline => "NEARLINE",
            GcsColdline => "COLDLINE",
            GcsArchive => "ARCHIVE",
            AzureCool => "Cool",
            AzureCold => "Cold",
            AzureArchive => "Archive",
        }
    }

    /// Can an object of this class be read at once? S3 GLACIER and
    /// DEEP_ARCHIVE and Azure Archive must be restored (thawed) first; GCS
    /// ARCHIVE and S3 GLACIER_IR are read directly (at a retrieval fee).
    pub fn instant(self) -> bool {
        !matches!(
            self,
            StorageClass::S3Glacier | StorageClass::S3DeepArchive | StorageClass::AzureArchive
        )
    }

    /// The value sent with an upload, `None` for the provider's default (no
    /// header: the bucket's or account's default tier applies).
    pub fn upload_value(self, provider: Provider) -> Option<&'static str> {
        (self != StorageClass::Standard).then(|| self.name(provider))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_stable() {
        for c in StorageClass::ALL {
            assert_eq!(StorageClass::from_code(c.code()), Some(c));
        }
        assert_eq!(StorageClass::S3DeepArchive.code(), 5);
        assert_eq!(StorageClass::AzureArchive.code(), 11);
        assert_eq!(StorageClass::from_code(12), None);
    }

    #[test]
    fn names_parse_per_provider() {
        assert_eq!(
            Provider::Aws.class("deep_archive"),
            Ok(StorageClass::S3DeepArchive)
        );
        assert_eq!(Provider::Azure.class("hot"), Ok(StorageClass::Standard));
        assert_eq!(
            Provider::Gcp.class("NEARLINE"),
            Ok(StorageClass::GcsNearline)
        );
        let e = Provider::Gcp.class("GLACIER").unwrap_err();
        assert!(e.contains("NEARLINE") && e.contains("gcp"), "{e}");
        assert!(Provider::Local.class("COLDLINE").is_err());
        assert_eq!(Provider::of_url("az://c/p"), Some(Provider::Azure));
        assert_eq!(Provider::of_url("ftp://x"), None);
    }

    #[test]
    fn archive_classes_need_a_thaw() {
        assert!(!StorageClass::S3Glacier.instant());
        assert!(!StorageClass::AzureArchive.instant());
        assert!(StorageClass::S3GlacierIr.instant());
        assert!(StorageClass::GcsArchive.instant());
        assert_eq!(StorageClass::Standard.upload_value(Provider::Aws), None);
        assert_eq!(
            StorageClass::AzureCool.upload_value(Provider::Azure),
            Some("Cool")
        );
    }
}
