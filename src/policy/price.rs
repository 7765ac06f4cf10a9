//! What storing and reading shards costs: a price per (provider, storage
//! class), with list-price defaults and the config's `[[price]]` overrides.
//!
//! Prices are in US dollars. "GB" in every figure is a binary gigabyte
//! (2^30 bytes, a GiB), the unit AWS, Google Cloud and Azure bill storage
//! and transfer in (docs/COST.md, "Units"). The defaults are the list prices
//! of [`PRICES_AS_OF`] in AWS us-east-1, GCP us-east1 (regional) and Azure
//! East US (LRS); docs/COST.md names the pages they come from.

use crate::config::BackendSection;
use crate::policy::class::{Provider, StorageClass};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// When the default prices were the providers' list prices.
pub const PRICES_AS_OF: &str = "2024-06";

/// Objects below this size are billed as this size in the classes that have
/// a minimum billable object size (S3 STANDARD_IA and GLACIER_IR).
pub const SMALL_OBJECT: u64 = 128 << 10;

/// The price of storing and reading objects of one class of one provider.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Storage, per GB (2^30 bytes) per month.
    pub storage_gb_month: f64,
    /// Retrieval fee, per GB read (cold classes).
    pub retrieval_gb: f64,
    /// Transfer out to the internet, per GB.
    pub egress_gb: f64,
    /// PUT, COPY, POST and LIST requests (S3 and GCS "class A", Azure write
    /// operations), per 1,000.
    pub put_per_1000: f64,
    /// GET and HEAD requests (class B, read operations), per 1,000.
    pub get_per_1000: f64,
    /// Restore (thaw) requests of archive classes, per 1,000.
    pub restore_per_1000: f64,
    /// A monthly fee per 1,000 objects (S3 INTELLIGENT_TIERING monitoring).
    pub objects_month_per_1000: f64,
    /// An object deleted or rewritten earlier is billed for this many days anyway.
    pub min_storage_days: u32,
    /// How long a thaw takes before an object can be read (standard tier),
    /// in hours; 0 for instantly readable classes.
    pub thaw_hours: f64,
    /// Objects smaller than [`SMALL_OBJECT`] are billed as that size.
    pub small_object_minimum: bool,
    /// Extra bytes billed per object: at this class's rate, and at the
    /// provider's STANDARD rate (S3 GLACIER and DEEP_ARCHIVE: 32 KiB of index
    /// and 8 KiB of metadata per object).
    pub overhead_bytes: u64,
    pub overhead_standard_bytes: u64,
}

impl Price {
    /// Nothing costs anything (local folders, memory).
    pub const FREE: Price = Price {
        storage_gb_month: 0.0,
        retrieval_gb: 0.0,
        egress_gb: 0.0,
        put_per_1000: 0.0,
        get_per_1000: 0.0,
        restore_per_1000: 0.0,
        objects_month_per_1000: 0.0,
        min_storage_days: 0,
        thaw_hours: 0.0,
        small_object_minimum: false,
        overhead_bytes: 0,
        overhead_standard_bytes: 0,
    };

    /// A price of storage and requests only (the other fields free).
    const fn hot(storage: f64, egress: f64, put: f64, get: f64) -> Price {
        Price {
            storage_gb_month: storage,
            egress_gb: egress,
            put_per_1000: put,
            get_per_1000: get,
            ..Price::FREE
        }
    }
}

/// Transfer out to the internet per GB, first paid tier.
const AWS_EGRESS: f64 = 0.09;
const GCP_EGRESS: f64 = 0.12;
const AZURE_EGRESS: f64 = 0.087;

/// The list price of a class of a provider ([`PRICES_AS_OF`]).
pub fn list_price(provider: Provider, class: StorageClass) -> Price {
    use StorageClass::*;
    match (provider, class) {
        (Provider::Local | Provider::Memory, _) => Price::FREE,
        // AWS S3, us-east-1 (first 50 TB tier).
        (Provider::Aws, Standard) => Price::hot(0.023, AWS_EGRESS, 0.005, 0.0004),
        (Provider::Aws, S3StandardIa) => Price {
            retrieval_gb: 0.01,
            min_storage_days: 30,
            small_object_minimum: true,
            ..Price::hot(0.0125, AWS_EGRESS, 0.01, 0.001)
        },
        // The frequent-access tier's price (what new objects pay), plus monitoring.
        (Provider::Aws, S3IntelligentTiering) => Price {
            objects_month_per_1000: 0.0025,
            ..Price::hot(0.023, AWS_EGRESS, 0.005, 0.0004)
        },
        (Provider::Aws, S3GlacierIr) => Price {
            retrieval_gb: 0.03,
            min_storage_days: 90,
            small_object_minimum: true,
            ..Price::hot(0.004, AWS_EGRESS, 0.02, 0.01)
        },
        (Provider::Aws, S3Glacier) => Price {
            retrieval_gb: 0.01,
            restore_per_1000: 0.05,
            min_storage_days: 90,
            thaw_hours: 5.0,
            overhead_bytes: 32 << 10,
            overhead_standard_bytes: 8 << 10,
            ..Price::hot(0.0036, AWS_EGRESS, 0.03, 0.0004)
        },
        (Provider::Aws, S3DeepArchive) => Price {
            retrieval_gb: 0.02,
            restore_per_1000: 0.10,
            min_storage_days: 180,
            thaw_hours: 12.0,
            overhead_bytes: 32 << 10,
            overhead_standard_bytes: 8 << 10,
            ..Price::hot(0.00099, AWS_EGRESS, 0.05, 0.0004)
        },
        // Google Cloud Storage, us-east1 (regional).
        (Provider::Gcp, Standard) => Price::hot(0.020, GCP_EGRESS, 0.005, 0.0004),
        (Provider::Gcp, GcsNearline) => Price {
            retrieval_gb: 0.01,
            min_storage_days: 30,
            ..Price::hot(0.010, GCP_EGRESS, 0.01, 0.001)
        },
        (Provider::Gcp, GcsColdline) => Price {
            retrieval_gb: 0.02,
            min_storage_days: 90,
            ..Price::hot(0.004, GCP_EGRESS, 0.02, 0.01)
        },
        (Provider::Gcp, GcsArchive) => Price {
            retrieval_gb: 0.05,
            min_storage_days: 365,
            ..Price::hot(0.0012, GCP_EGRESS, 0.05, 0.05)
        },
        // Azure Blob Storage, East US, LRS, first 50 TB.
        (Provider::Azure, Standard) => Price::hot(0.018, AZURE_EGRESS, 0.005, 0.0004),
        (Provider::Azure, AzureCool) => Price {
            retrieval_gb: 0.01,
            min_storage_days: 30,
            ..Price::hot(0.010, AZURE_EGRESS, 0.01, 0.001)
        },
        (Provider::Azure, AzureCold) => Price {
            retrieval_gb: 0.03,
            min_storage_days: 90,
            ..Price::hot(0.0036, AZURE_EGRESS, 0.018, 0.01)
        },
        (Provider::Azure, AzureArchive) => Price {
            retrieval_gb: 0.02,
            // The rehydration is billed as an Archive read operation
            // (standard priority, $5.50 per 10,000); the blob is then read hot.
            restore_per_1000: 0.55,
            min_storage_days: 180,
            thaw_hours: 15.0,
            ..Price::hot(0.00099, AZURE_EGRESS, 0.011, 0.0004)
        },
        // A class of another provider (not stored so): priced as that
        // provider's standard class.
        (p, _) => list_price(p, Standard),
    }
}

/// One `[[price]]` entry of the config: figures that replace the defaults for
/// every class of a provider or of one backend, or for one class of it.
///
/// ```toml
/// [[price]]
/// provider = "aws"              # or: backend = "nas" (one backend of this config)
/// class = "STANDARD_IA"         # optional: without it, every class
/// storage_gb_month = 0.0125     # any of the figures below; the others stay
/// egress_gb = 0.0
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_gb_month: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval_gb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_gb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put_per_1000: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_per_1000: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_per_1000: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_month_per_1000: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_storage_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thaw_hours: Option<f64>,
}

/// What an override applies to, once checked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// A provider's classes (`None`: all of them).
    Provider(Provider, Option<StorageClass>),
    /// A backend's classes, by the backend's name.
    Backend(String, Option<StorageClass>),
}

impl PriceOverride {
    fn figures(&self) -> [(&'static str, Option<f64>); 9] {
        [
            ("storage_gb_month", self.storage_gb_month),
            ("retrieval_gb", self.retrieval_gb),
            ("egress_gb", self.egress_gb),
            ("put_per_1000", self.put_per_1000),
            ("get_per_1000", self.get_per_1000),
            ("restore_per_1000", self.restore_per_1000),
            ("objects_month_per_1000", self.objects_month_per_1000),
            ("min_storage_days", self.min_storage_days.map(f64::from)),
            ("thaw_hours", self.thaw_hours),
        ]
    }

    /// What this entry applies to; `backends` are the config's (name, URL).
    fn target(&self, backends: &[(&str, &str)]) -> Result<Target, String> {
        let provider_of = |name: &str| -> Result<Provider, String> {
            const ALL: [Provider; 5] = [
                Provider::Aws,
                Provider::Gcp,
                Provider::Azure,
                Provider::Local,
                Provider::Memory,
            ];
            ALL.into_iter()
                .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| {
                    format!("provider {name:?} is not one of aws, gcp, azure, local, memory")
                })
        };
        let (provider, backend) = match (&self.provider, &self.backend) {
            (Some(_), Some(_)) => {
                return Err("names both a provider and a backend: keep one of them".into())
            }
            (None, None) => {
                return Err(
                    "names neither a provider nor a backend: add provider = \"aws\" (gcp, azure, local) or backend = \"NAME\""
                        .into(),
                )
            }
            (Some(p), None) => (provider_of(p)?, None),
            (None, Some(b)) => {
                let Some((name, url)) = backends.iter().find(|(n, _)| n == b) else {
                    let names: Vec<&str> = backends.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "backend {b:?} is not one of this config's backends ({}): name one of them",
                        names.join(", ")
                    ));
                };
                let p = Provider::of_url(url).ok_or_else(|| {
                    format!("backend {name:?} has a URL of no known provider: {url}")
                })?;
                (p, Some(name.to_string()))
            }
        };
        let class = self
            .class
            .as_deref()
            .map(|c| provider.class(c))
            .transpose()?;
        for (name, v) in self.figures() {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("{name} = {v} must be a number of at least 0"));
                }
            }
        }
        if self.figures().iter().all(|(_, v)| v.is_none()) {
            return Err(
                "sets no figure: add one, e.g. storage_gb_month = 0.02 (see docs/COST.md)".into(),
            );
        }
        Ok(match backend {
            Some(b) => Target::Backend(b, class),
            None => Target::Provider(provider, class),
        })
    }

    fn apply(&self, p: &mut Price) {
        let set = |slot: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut p.storage_gb_month, self.storage_gb_month);
        set(&mut p.retrieval_gb, self.retrieval_gb);
        set(&mut p.egress_gb, self.egress_gb);
        set(&mut p.put_per_1000, self.put_per_1000);
        set(&mut p.get_per_1000, self.get_per_1000);
        set(&mut p.restore_per_1000, self.restore_per_1000);
        set(&mut p.objects_month_per_1000, self.objects_month_per_1000);
        set(&mut p.thaw_hours, self.thaw_hours);
        if let Some(d) = self.min_storage_days {
            p.min_storage_days = d;
        }
    }
}

/// Checks the config's `[[price]]` entries against its backends: the error
/// names the entry, what is wrong and what to write instead.
pub fn check_overrides(
    overrides: &[PriceOverride],
    backends: &[BackendSection],
) -> Result<(), String> {
    let named: Vec<(&str, &str)> = backends
        .iter()
        .map(|b| (b.name.as_str(), b.url.as_str()))
        .collect();
    for (i, o) in overrides.iter().enumerate() {
        o.target(&named)
            .map_err(|e| format!("[[price]] entry {}: {e}", i + 1))?;
    }
    Ok(())
}

/// The prices of a volume's backends: a base table per (provider, class)
/// and the overrides of the config, the more specific winning (a provider's
/// classes, one class of it, a backend's classes, one class of that backend).
#[derive(Clone, Debug, Default)]
pub struct PriceTable {
    base: BTreeMap<(Provider, StorageClass), Price>,
    overrides: Vec<(Target, PriceOverride)>,
}

impl PriceTable {
    /// The providers' list prices.
    pub fn list_prices() -> PriceTable {
        let mut t = PriceTable::default();
        for p in [
            Provider::Aws,
            Provider::Gcp,
            Provider::Azure,
            Provider::Local,
            Provider::Memory,
        ] {
            for c in p.classes() {
                t.base.insert((p, *c), list_price(p, *c));
            }
        }
        t
    }

    /// A table of given prices only (every other class is free): tests and tools.
    pub fn of(prices: &[(Provider, StorageClass, Price)]) -> PriceTable {
        PriceTable {
            base: prices.iter().map(|(p, c, v)| ((*p, *c), *v)).collect(),
            overrides: Vec::new(),
        }
    }

    /// This table with the config's overrides; `backends`: the config's.
    pub fn with_overrides(
        mut self,
        overrides: &[PriceOverride],
        backends: &[BackendSection],
    ) -> Result<PriceTable, String> {
        let named: Vec<(&str, &str)> = backends
            .iter()
            .map(|b| (b.name.as_str(), b.url.as_str()))
            .collect();
        for (i, o) in overrides.iter().enumerate() {
            let t = o
                .target(&named)
                .map_err(|e| format!("[[price]] entry {}: {e}", i + 1))?;
            self.overrides.push((t, o.clone()));
        }
        // Least specific first; entries of the same rank in config order.
        self.overrides.sort_by_key(|(t, _)| match t {
            Target::Provider(_, None) => 0,
            Target::Provider(_, Some(_)) => 1,
            Target::Backend(_, None) => 2,
            Target::Backend(_, Some(_)) => 3,
        });
        Ok(self)
    }

    /// The price of `class` on backend `backend` of `provider`.
    pub fn price(&self, backend: &str, provider: Provider, class: StorageClass) -> Price {
        let mut p = self
            .base
            .get(&(provider, class))
            .copied()
            .unwrap_or(Price::FREE);
        for (t, o) in &self.overrides {
            let applies = match t {
                Target::Provider(tp, c) => *tp == provider && c.is_none_or(|c| c == class),
                Target::Backend(tb, c) => tb == backend && c.is_none_or(|c| c == class),
            };
            if applies {
                o.apply(&mut p);
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends() -> Vec<BackendSection> {
        vec![
            BackendSection::new("s3", "s3://bucket/p"),
            BackendSection::new("nas", "file:///mnt/nas"),
        ]
    }

    fn parse(toml_text: &str) -> Vec<PriceOverride> {
        #[derive(Deserialize)]
        struct Doc {
            price: Vec<PriceOverride>,
        }
        toml::from_str::<Doc>(toml_text).unwrap().price
    }

    #[test]
    fn list_prices_cover_every_class_and_local_is_free() {
        let t = PriceTable::list_prices();
        for p in [Provider::Aws, Provider::Gcp, Provider::Azure] {
            for c in p.classes() {
                let price = t.price("x", p, *c);
                assert!(price.storage_gb_month > 0.0, "{p} {c:?}");
                assert!(price.egress_gb > 0.0, "{p} {c:?}");
                // Archive classes are the ones that need a thaw, and only they.
                assert_eq!(price.thaw_hours > 0.0, !c.instant(), "{p} {c:?}");
            }
        }
        assert_eq!(
            t.price("x", Provider::Local, StorageClass::Standard),
            Price::FREE
        );
        let s3 = t.price("x", Provider::Aws, StorageClass::Standard);
        assert_eq!((s3.storage_gb_month, s3.put_per_1000), (0.023, 0.005));
        let deep = t.price("x", Provider::Aws, StorageClass::S3DeepArchive);
        assert!(deep.storage_gb_month < s3.storage_gb_month / 20.0);
        assert_eq!(deep.min_storage_days, 180);
    }

    #[test]
    fn overrides_apply_from_least_to_most_specific() {
        let o = parse(
            r#"
            [[price]]
            backend = "s3"
            class = "STANDARD_IA"
            storage_gb_month = 0.5
            [[price]]
            provider = "aws"
            egress_gb = 0.0
            storage_gb_month = 0.1
            [[price]]
            backend = "nas"
            storage_gb_month = 0.004
            "#,
        );
        let t = PriceTable::list_prices()
            .with_overrides(&o, &backends())
            .unwrap();
        let std = t.price("s3", Provider::Aws, StorageClass::Standard);
        assert_eq!((std.storage_gb_month, std.egress_gb), (0.1, 0.0));
        assert_eq!(std.put_per_1000, 0.005, "figures not named stay");
        let ia = t.price("s3", Provider::Aws, StorageClass::S3StandardIa);
        assert_eq!((ia.storage_gb_month, ia.egress_gb), (0.5, 0.0));
        // Another AWS backend gets the provider's override, not s3's.
        let other = t.price("other", Provider::Aws, StorageClass::S3StandardIa);
        assert_eq!(other.storage_gb_month, 0.1);
        let nas = t.price("nas", Provider::Local, StorageClass::Standard);
        assert_eq!(
            (nas.storage_gb_month, nas.egress_gb),
            (0.004, 0.0),
            "a named local backend can be priced"
        );
    }

    #[test]
    fn bad_overrides_say_what_to_fix() {
        let err = |text: &str| check_overrides(&parse(text), &backends()).unwrap_err();
        let e = err("[[price]]\nbackend = \"tape\"\nstorage_gb_month = 1.0");
        assert!(
            e.contains("entry 1") && e.contains("\"tape\"") && e.contains("s3, nas"),
            "{e}"
        );
        let e = err("[[price]]\nprovider = \"aws\"\nclass = \"COLDLINE\"\nget_per_1000 = 1.0");
        assert!(e.contains("COLDLINE") && e.contains("DEEP_ARCHIVE"), "{e}");
        let e = err("[[price]]\nprovider = \"ibm\"\negress_gb = 1.0");
        assert!(e.contains("\"ibm\"") && e.contains("aws, gcp"), "{e}");
        let e = err("[[price]]\nprovider = \"aws\"\nbackend = \"s3\"\negress_gb = 1.0");
        assert!(e.contains("keep one"), "{e}");
        let e = err("[[price]]\nprovider = \"gcp\"\nclass = \"NEARLINE\"");
        assert!(e.contains("sets no figure"), "{e}");
        let e = err("[[price]]\nprovider = \"azure\"\negress_gb = -0.1");
        assert!(e.contains("egress_gb = -0.1"), "{e}");
        let e = err("[[price]]\nstorage_gb_month = 0.1");
        assert!(e.contains("neither a provider nor a backend"), "{e}");
        let bad =
            toml::from_str::<toml::Table>("[[price]]\nprovider = \"aws\"\nstorage = 1.0").unwrap();
        let e = bad["price"].as_array().unwrap()[0]
            .clone()
            .try_into::<PriceOverride>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `storage`"), "{e}");
    }
}
