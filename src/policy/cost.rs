//! What a volume costs: monthly storage per backend and class, the requests
//! counted so far, a full restore, and the same data under plain replication.
//!
//! The figures come from a [`Usage`]: one pass over the index's chunk records
//! fed to an [`Accumulator`]. Chunks are grouped by layout (k, and the slot and
//! class of each shard), so the restore estimate can pick, per group, the k
//! shards cheapest to read with whatever prices are given later: the index is
//! read once, by the process that holds it (the mount daemon when mounted),
//! and priced by the command with the config as it is now. Every function here
//! but [`usage_of`] is pure. docs/COST.md gives the formulas.

use crate::config::human;
use crate::format::{keys, ChunkRecord};
use crate::meta::index::Index;
use crate::policy::class::{Provider, StorageClass};
use crate::policy::price::{Price, PriceTable, PRICES_AS_OF, SMALL_OBJECT};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Bytes in the GB that providers bill by (2^30, see docs/COST.md, "Units").
pub const GIB: f64 = (1u64 << 30) as f64;

/// Restore time is estimated at this download rate unless told otherwise.
pub const DEFAULT_MBPS: f64 = 100.0;

/// A backend of the volume, at its slot (its position in the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    pub name: String,
    pub provider: Provider,
}

impl BackendInfo {
    /// The backends of a config, in slot order.
    pub fn of_config(config: &crate::config::Config) -> Result<Vec<BackendInfo>, String> {
        config
            .backends
            .iter()
            .map(|b| {
                Ok(BackendInfo {
                    name: b.name.clone(),
                    provider: Provider::of_url(&b.url).ok_or_else(|| {
                        format!("backend {}: no known provider for URL {}", b.name, b.url)
                    })?,
                })
            })
            .collect()
    }
}

/// Chunks stored with the same layout: the same k, and each shard on the
/// same slot in the same class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub k: usize,
    /// Slot and storage class code of shard i.
    pub shards: Vec<(u16, u8)>,
    pub chunks: u64,
    /// Σ shard size over the group's chunks: what each shard position holds.
    pub shard_bytes: u64,
    /// Chunks whose shards are smaller than [`SMALL_OBJECT`], and Σ their shard size.
    pub small_chunks: u64,
    pub small_shard_bytes: u64,
}

/// What a volume stores, from its index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Backends of the volume (shard slots are taken modulo this).
    pub slots: usize,
    pub groups: Vec<Group>,
    /// Chunks stored as shards, and their sealed bytes (before parity).
    pub chunks: u64,
    pub sealed_bytes: u64,
    /// Chunks kept in the index (no shards), and their sealed bytes.
    pub inline_chunks: u64,
    pub inline_bytes: u64,
}

/// Requests a process sent to one backend and got an answer to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCount {
    /// PUT-class: uploads and listings.
    pub put: u64,
    /// GET-class: reads and HEADs.
    pub get: u64,
}

/// What the mount daemon (or the index read here) answers to `cost`: the
/// usage, and per slot the requests counted since the mount started (`None`
/// when not mounted).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UsageReport {
    pub usage: Usage,
    pub requests: Option<Vec<RequestCount>>,
}

/// A group's layout: k, and the slot and class code of each shard.
type Layout = (usize, Vec<(u16, u8)>);

/// Builds a [`Usage`] one chunk record at a time.
#[derive(Debug, Default)]
pub struct Accumulator {
    slots: usize,
    groups: HashMap<Layout, Group>,
    chunks: u64,
    sealed_bytes: u64,
    inline_chunks: u64,
    inline_bytes: u64,
}

impl Accumulator {
    /// For a volume of `slots` backends.
    pub fn new(slots: usize) -> Accumulator {
        Accumulator {
            slots: slots.max(1),
            ..Default::default()
        }
    }

    /// One sharded chunk: `k` data shards of `shard_size` bytes each, shard i
    /// on slot `placement[i]` in class `classes[i]` (a class code; missing
    /// codes, as in records written before classes existed, are STANDARD).
    pub fn add_chunk(&mut self, k: usize, shard_size: u64, placement: &[u16], classes: &[u8]) {
        let shards: Vec<(u16, u8)> = placement
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let slot = (*s as usize % self.slots) as u16;
                (slot, classes.get(i).copied().unwrap_or(0))
            })
            .collect();
        let g = self.groups.entry((k, shards)).or_default();
        g.chunks += 1;
        g.shard_bytes += shard_size;
        if shard_size < SMALL_OBJECT {
            g.small_chunks += 1;
            g.small_shard_bytes += shard_size;
        }
        self.chunks += 1;
    }

    /// One chunk record of the index.
    pub fn add_record(&mut self, rec: &ChunkRecord) {
        if rec.is_inline() {
            self.inline_chunks += 1;
            self.inline_bytes += rec.sealed_len as u64;
            return;
        }
        self.sealed_bytes += rec.sealed_len as u64;
        self.add_chunk(
            rec.k as usize,
            rec.shard_size as u64,
            &rec.placement,
            &rec.classes,
        );
    }

    pub fn finish(self) -> Usage {
        let mut groups: Vec<(Layout, Group)> = self.groups.into_iter().collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        Usage {
            slots: self.slots,
            groups: groups
                .into_iter()
                .map(|((k, shards), g)| Group { k, shards, ..g })
                .collect(),
            chunks: self.chunks,
            sealed_bytes: self.sealed_bytes,
            inline_chunks: self.inline_chunks,
            inline_bytes: self.inline_bytes,
        }
    }
}

/// The usage of a volume of `slots` backends: one pass over its chunk records.
pub fn usage_of(idx: &Index, slots: usize) -> Result<Usage, String> {
    let mut acc = Accumulator::new(slots);
    idx.each::<ChunkRecord>(keys::CHUNK, |_, c| acc.add_record(&c))
        .map_err(|e| format!("cannot read the index: {e}"))?;
    Ok(acc.finish())
}

/// What one backend holds in one class, and what that costs a month.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassRow {
    pub backend: String,
    pub provider: String,
    pub class: String,
    pub bytes: u64,
    pub objects: u64,
    /// Objects under 128 KiB.
    pub small_objects: u64,
    /// Bytes billed: small objects rounded up where the class has a minimum
    /// object size, plus per-object overhead of archive classes.
    pub billed_bytes: u64,
    /// The price used, per GB-month.
    pub gb_month: f64,
    pub monthly: f64,
    pub min_storage_days: u32,
}

/// A backend's rows added up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendTotal {
    pub backend: String,
    pub provider: String,
    pub bytes: u64,
    pub objects: u64,
    pub monthly: f64,
}

/// Requests counted on one backend, and what they cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestCost {
    pub backend: String,
    /// The class whose request prices were used: the one holding most of the
    /// backend's bytes (STANDARD when it holds none).
    pub class: String,
    pub put: u64,
    pub get: u64,
    pub cost: f64,
}

/// Reading every chunk back once, each from its k cheapest shards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreEstimate {
    /// Bytes downloaded (shards, headers included).
    pub bytes: u64,
    /// GET requests, one per shard read.
    pub requests: u64,
    /// Shards that must be thawed first, and their restore requests' cost.
    pub thawed_shards: u64,
    pub egress: f64,
    pub retrieval: f64,
    pub request_cost: f64,
    pub thaw_cost: f64,
    pub total: f64,
    /// The longest thaw among the shards read (thaws run in parallel).
    pub thaw_hours: f64,
    /// Download time at `mbps` megabits per second.
    pub transfer_hours: f64,
    pub mbps: f64,
    pub hours: f64,
}

/// The volume's sealed bytes as plain copies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replication {
    pub copies: usize,
    pub bytes: u64,
    /// Where the copies are assumed to be: `backend CLASS` each.
    pub on: Vec<String>,
    pub monthly: f64,
}

/// Everything `cloudraid cost` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    pub volume: String,
    pub currency: String,
    /// When the default prices were list prices (overrides aside).
    pub prices_as_of: String,
    pub rows: Vec<ClassRow>,
    pub backends: Vec<BackendTotal>,
    pub stored_bytes: u64,
    pub objects: u64,
    pub small_objects: u64,
    pub objects_per_gib: f64,
    pub monthly: f64,
    pub chunks: u64,
    pub sealed_bytes: u64,
    pub inline_chunks: u64,
    pub inline_bytes: u64,
    /// Counted by a running mount since it started; `None` when not mounted.
    pub requests: Option<Vec<RequestCost>>,
    pub requests_cost: Option<f64>,
    pub restore: RestoreEstimate,
    pub replication: Vec<Replication>,
}

/// One shard position of a group, priced.
struct Priced {
    slot: usize,
    class: StorageClass,
    price: Price,
}

fn class_of(code: u8) -> StorageClass {
    StorageClass::from_code(code).unwrap_or_default()
}

fn priced(b: &BackendInfo, code: u8, prices: &PriceTable) -> (StorageClass, Price) {
    let class = class_of(code);
    (class, prices.price(&b.name, b.provider, class))
}

/// Bytes held and objects per (slot, class), from the groups.
#[derive(Default)]
struct Held {
    bytes: u64,
    objects: u64,
    small_objects: u64,
    small_bytes: u64,
}

fn held(usage: &Usage) -> BTreeMap<(usize, u8), Held> {
    let mut out: BTreeMap<(usize, u8), Held> = BTreeMap::new();
    for g in &usage.groups {
        for (slot, code) in &g.shards {
            let h = out.entry((*slot as usize, *code)).or_default();
            h.bytes += g.shard_bytes;
            h.objects += g.chunks;
            h.small_objects += g.small_chunks;
            h.small_bytes += g.small_shard_bytes;
        }
    }
    out
}

/// Monthly storage per backend and class, in slot then class order.
pub fn storage(usage: &Usage, backends: &[BackendInfo], prices: &PriceTable) -> Vec<ClassRow> {
    held(usage)
        .into_iter()
        .filter_map(|((slot, code), h)| {
            let b = backends.get(slot)?;
            let (class, p) = priced(b, code, prices);
            let mut billed = h.bytes;
            if p.small_object_minimum {
                billed = billed - h.small_bytes + h.small_objects * SMALL_OBJECT;
            }
            billed += h.objects * p.overhead_bytes;
            let standard = prices.price(&b.name, b.provider, StorageClass::Standard);
            let monthly = billed as f64 / GIB * p.storage_gb_month
                + (h.objects * p.overhead_standard_bytes) as f64 / GIB * standard.storage_gb_month
                + h.objects as f64 / 1000.0 * p.objects_month_per_1000;
            Some(ClassRow {
                backend: b.name.clone(),
                provider: b.provider.name().into(),
                class: class.name(b.provider).into(),
                bytes: h.bytes,
                objects: h.objects,
                small_objects: h.small_objects,
                billed_bytes: billed,
                gb_month: p.storage_gb_month,
                monthly,
                min_storage_days: p.min_storage_days,
            })
        })
        .collect()
}

/// Stored objects per GiB stored (0 for an empty volume).
pub fn objects_per_gib(objects: u64, bytes: u64) -> f64 {
    if bytes == 0 {
        0.0
    } else {
        objects as f64 / (bytes as f64 / GIB)
    }
}

/// The class holding most of each slot's bytes (STANDARD if none).
fn main_class(usage: &Usage, slots: usize) -> Vec<u8> {
    let mut best = vec![(0u64, 0u8); slots];
    for ((slot, code), h) in held(usage) {
        if slot < slots && h.bytes > best[slot].0 {
            best[slot] = (h.bytes, code);
        }
    }
    best.into_iter().map(|(_, c)| c).collect()
}

/// What the counted requests cost, per backend (priced at each backend's
/// main class).
pub fn requests(
    usage: &Usage,
    backends: &[BackendInfo],
    prices: &PriceTable,
    counts: &[RequestCount],
) -> Vec<RequestCost> {
    let main = main_class(usage, backends.len());
    backends
        .iter()
        .zip(counts)
        .zip(main)
        .map(|((b, n), code)| {
            let (class, p) = priced(b, code, prices);
            RequestCost {
                backend: b.name.clone(),
                class: class.name(b.provider).into(),
                put: n.put,
                get: n.get,
                cost: n.put as f64 / 1000.0 * p.put_per_1000
                    + n.get as f64 / 1000.0 * p.get_per_1000,
            }
        })
        .collect()
}

/// Reading every sharded chunk once from its k cheapest shards: instantly
/// readable ones first, then the lowest cost of reading the group's shard
/// there (egress and retrieval of its bytes, its GET request). Every backend
/// is assumed healthy. Time: the longest thaw, then the download at `mbps`.
pub fn restore(
    usage: &Usage,
    backends: &[BackendInfo],
    prices: &PriceTable,
    mbps: f64,
) -> RestoreEstimate {
    let mut r = RestoreEstimate {
        mbps,
        ..Default::default()
    };
    for g in &usage.groups {
        let gib = g.shard_bytes as f64 / GIB;
        let cost = |p: &Price, class: StorageClass| {
            let thaw = if class.instant() {
                0.0
            } else {
                p.restore_per_1000
            };
            gib * (p.egress_gb + p.retrieval_gb)
                + g.chunks as f64 / 1000.0 * (p.get_per_1000 + thaw)
        };
        let mut shards: Vec<Priced> = g
            .shards
            .iter()
            .filter_map(|(slot, code)| {
                let b = backends.get(*slot as usize)?;
                let (class, price) = priced(b, *code, prices);
                Some(Priced {
                    slot: *slot as usize,
                    class,
                    price,
                })
            })
            .collect();
        shards.sort_by(|a, b| {
            (!a.class.instant())
                .cmp(&!b.class.instant())
                .then(cost(&a.price, a.class).total_cmp(&cost(&b.price, b.class)))
                .then(a.slot.cmp(&b.slot))
        });
        for s in shards.iter().take(g.k) {
            let p = &s.price;
            r.bytes += g.shard_bytes;
            r.requests += g.chunks;
            r.egress += gib * p.egress_gb;
            r.retrieval += gib * p.retrieval_gb;
            r.request_cost += g.chunks as f64 / 1000.0 * p.get_per_1000;
            if !s.class.instant() {
                r.thawed_shards += g.chunks;
                r.thaw_cost += g.chunks as f64 / 1000.0 * p.restore_per_1000;
                r.thaw_hours = r.thaw_hours.max(p.thaw_hours);
            }
        }
    }
    r.total = r.egress + r.retrieval + r.request_cost + r.thaw_cost;
    r.transfer_hours = if mbps > 0.0 {
        r.bytes as f64 * 8.0 / (mbps * 1e6) / 3600.0
    } else {
        0.0
    };
    r.hours = r.thaw_hours + r.transfer_hours;
    r
}

/// The volume's sealed bytes kept as `copies` plain copies: each copy on a
/// different backend (the cheapest first; backends reused when there are
/// fewer), in the cheapest instantly readable class that backend holds shards
/// in now (its STANDARD class if it holds none). Storage only.
pub fn replication(
    usage: &Usage,
    backends: &[BackendInfo],
    prices: &PriceTable,
    copies: usize,
) -> Replication {
    let mut in_use: Vec<Vec<u8>> = vec![Vec::new(); backends.len()];
    for (slot, code) in held(usage).into_keys() {
        if slot < backends.len() && class_of(code).instant() {
            in_use[slot].push(code);
        }
    }
    let mut options: Vec<(f64, usize, StorageClass)> = backends
        .iter()
        .enumerate()
        .map(|(slot, b)| {
            let codes = if in_use[slot].is_empty() {
                vec![StorageClass::Standard.code()]
            } else {
                in_use[slot].clone()
            };
            codes
                .into_iter()
                .map(|c| {
                    let (class, p) = priced(b, c, prices);
                    (p.storage_gb_month, slot, class)
                })
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                .expect("at least one class")
        })
        .collect();
    options.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let gib = usage.sealed_bytes as f64 / GIB;
    let chosen: Vec<&(f64, usize, StorageClass)> = options.iter().cycle().take(copies).collect();
    Replication {
        copies,
        bytes: usage.sealed_bytes * copies as u64,
        on: chosen
            .iter()
            .map(|(_, slot, class)| {
                let b = &backends[*slot];
                format!("{} {}", b.name, class.name(b.provider))
            })
            .collect(),
        monthly: chosen.iter().map(|(price, _, _)| gib * price).sum::<f64>() + 0.0,
    }
}

/// The whole report. `counts`: requests per slot, when a mount counted them.
pub fn report(
    volume: &str,
    usage: &Usage,
    backends: &[BackendInfo],
    prices: &PriceTable,
    counts: Option<&[RequestCount]>,
    mbps: f64,
) -> Result<CostReport, String> {
    if backends.len() != usage.slots {
        return Err(format!(
            "the config names {} backends but the volume has {}: use the config the volume was created with",
            backends.len(),
            usage.slots
        ));
    }
    let rows = storage(usage, backends, prices);
    let totals = backends
        .iter()
        .map(|b| {
            let mine = rows.iter().filter(|r| r.backend == b.name);
            BackendTotal {
                backend: b.name.clone(),
                provider: b.provider.name().into(),
                bytes: mine.clone().map(|r| r.bytes).sum(),
                objects: mine.clone().map(|r| r.objects).sum(),
                // + 0.0: an empty sum is -0.0, shown as "-0".
                monthly: mine.map(|r| r.monthly).sum::<f64>() + 0.0,
            }
        })
        .collect();
    let stored_bytes = rows.iter().map(|r| r.bytes).sum();
    let objects = rows.iter().map(|r| r.objects).sum();
    let requests = counts.map(|c| requests(usage, backends, prices, c));
    Ok(CostReport {
        volume: volume.into(),
        currency: "USD".into(),
        prices_as_of: PRICES_AS_OF.into(),
        backends: totals,
        stored_bytes,
        objects,
        small_objects: rows.iter().map(|r| r.small_objects).sum(),
        objects_per_gib: objects_per_gib(objects, stored_bytes),
        monthly: rows.iter().map(|r| r.monthly).sum::<f64>() + 0.0,
        rows,
        chunks: usage.chunks,
        sealed_bytes: usage.sealed_bytes,
        inline_chunks: usage.inline_chunks,
        inline_bytes: usage.inline_bytes,
        requests_cost: requests.as_ref().map(|r| r.iter().map(|r| r.cost).sum()),
        requests,
        restore: restore(usage, backends, prices, mbps),
        replication: [2, 3]
            .into_iter()
            .map(|n| replication(usage, backends, prices, n))
            .collect(),
    })
}

/// Dollars: cents from $1 up, else four decimals.
pub fn usd(x: f64) -> String {
    if x >= 1.0 {
        format!("${x:.2}")
    } else {
        format!("${x:.4}")
    }
}

fn hours(h: f64) -> String {
    if h >= 48.0 {
        format!("{:.1} days", h / 24.0)
    } else if h >= 1.0 {
        format!("{h:.1} h")
    } else if h * 60.0 >= 1.0 {
        format!("{:.0} min", h * 60.0)
    } else {
        format!("{:.0} s", (h * 3600.0).ceil())
    }
}

pub fn render(r: &CostReport) -> String {
    let mut out = format!(
        "volume {}: {} list prices of {} (AWS us-east-1, GCP us-east1, Azure East US LRS) unless the config's [[price]] says otherwise\n\n",
        r.volume, r.currency, r.prices_as_of
    );
    let w = r
        .rows
        .iter()
        .map(|x| x.backend.len())
        .max()
        .unwrap_or(0)
        .max(7);
    out += &format!(
        "{:<w$}  {:<8}  {:<19}  {:>10}  {:>8}  {:>10}  {:>10}  {}\n",
        "BACKEND", "PROVIDER", "CLASS", "BYTES", "OBJECTS", "$/GB-MONTH", "$/MONTH", "MIN DAYS"
    );
    for x in &r.rows {
        out += &format!(
            "{:<w$}  {:<8}  {:<19}  {:>10}  {:>8}  {:>10}  {:>10}  {}\n",
            x.backend,
            x.provider,
            x.class,
            human(x.bytes),
            x.objects,
            format!("{:.5}", x.gb_month),
            usd(x.monthly),
            if x.min_storage_days > 0 {
                x.min_storage_days.to_string()
            } else {
                "-".into()
            }
        );
    }
    out += &format!(
        "{:<w$}  {:<8}  {:<19}  {:>10}  {:>8}  {:>10}  {:>10}\n\n",
        "total",
        "",
        "",
        human(r.stored_bytes),
        r.objects,
        "",
        usd(r.monthly)
    );
    out += &format!("per month        {}\n", usd(r.monthly));
    out += &format!(
        "objects per GiB  {:.0} ({} objects, {} of them under 128 KiB; small files multiply request costs: docs/COST.md)\n",
        r.objects_per_gib, r.objects, r.small_objects
    );
    if r.inline_chunks > 0 {
        out += &format!(
            "inline chunks    {} ({} sealed, in the metadata log rather than in shards; not priced)\n",
            r.inline_chunks,
            human(r.inline_bytes)
        );
    }
    match (&r.requests, r.requests_cost) {
        (Some(reqs), Some(total)) => {
            out += &format!("requests         {} since the mount started:", usd(total));
            for q in reqs {
                out += &format!(
                    " {} {} PUT + {} GET ({});",
                    q.backend,
                    q.put,
                    q.get,
                    usd(q.cost)
                );
            }
            out.pop();
            out += "\n";
        }
        _ => out += "requests         counted by a running mount only\n",
    }
    let x = &r.restore;
    out += &format!(
        "full restore     {}: {} downloaded (egress {}, retrieval {}, {} GET requests {}",
        usd(x.total),
        human(x.bytes),
        usd(x.egress),
        usd(x.retrieval),
        x.requests,
        usd(x.request_cost)
    );
    if x.thawed_shards > 0 {
        out += &format!(
            ", {} thaw requests {}); about {}: {} thaw, then {} at {} Mbit/s\n",
            x.thawed_shards,
            usd(x.thaw_cost),
            hours(x.hours),
            hours(x.thaw_hours),
            hours(x.transfer_hours),
            x.mbps
        );
    } else {
        out += &format!(
            "); about {} at {} Mbit/s, no thaw\n",
            hours(x.transfer_hours),
            x.mbps
        );
    }
    for p in &r.replication {
        let ratio = if r.monthly > 0.0 {
            format!(" ({:.2}x this volume)", p.monthly / r.monthly)
        } else {
            String::new()
        };
        out += &format!(
            "{} copies         {}/month{ratio}: {} on {}\n",
            p.copies,
            usd(p.monthly),
            human(p.bytes),
            p.on.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::price::Price;
    use StorageClass::*;

    const GIB_U: u64 = 1 << 30;

    /// The test's own prices (not the defaults), round figures to check by hand.
    fn table() -> PriceTable {
        let p = |storage, egress, retrieval, get| Price {
            storage_gb_month: storage,
            egress_gb: egress,
            retrieval_gb: retrieval,
            put_per_1000: 0.005,
            get_per_1000: get,
            ..Price::FREE
        };
        PriceTable::of(&[
            (Provider::Aws, Standard, p(0.023, 0.09, 0.0, 0.0004)),
            (
                Provider::Aws,
                S3StandardIa,
                Price {
                    small_object_minimum: true,
                    min_storage_days: 30,
                    ..p(0.0125, 0.09, 0.01, 0.001)
                },
            ),
            (
                Provider::Aws,
                S3DeepArchive,
                Price {
                    restore_per_1000: 0.1,
                    thaw_hours: 12.0,
                    overhead_bytes: 32 << 10,
                    overhead_standard_bytes: 8 << 10,
                    ..p(0.001, 0.09, 0.02, 0.0004)
                },
            ),
            (Provider::Gcp, Standard, p(0.02, 0.12, 0.0, 0.0004)),
            (Provider::Azure, Standard, p(0.018, 0.087, 0.0, 0.0004)),
        ])
    }

    fn backends() -> Vec<BackendInfo> {
        [
            ("s3", Provider::Aws),
            ("gcs", Provider::Gcp),
            ("az", Provider::Azure),
            ("nas", Provider::Local),
        ]
        .into_iter()
        .map(|(n, p)| BackendInfo {
            name: n.into(),
            provider: p,
        })
        .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ten_gib_in_s3_standard_is_23_cents_a_month() {
        // Providers bill per GB of 2^30 bytes: 10 GiB at $0.023 is $0.23,
        // not the $0.2470 that 10^9-byte GBs would give.
        let mut acc = Accumulator::new(4);
        for _ in 0..10 * 1024 {
            acc.add_chunk(1, 1 << 20, &[0], &[]);
        }
        let rows = storage(&acc.finish(), &backends(), &table());
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].bytes, rows[0].objects), (10 * GIB_U, 10240));
        assert_eq!(
            (rows[0].backend.as_str(), rows[0].class.as_str()),
            ("s3", "STANDARD")
        );
        assert!(close(rows[0].monthly, 0.23), "{}", rows[0].monthly);
        // 10 GB of 10^9 bytes is 9.31 GiB: $0.2142.
        let mut acc = Accumulator::new(4);
        for _ in 0..10 {
            acc.add_chunk(1, 1_000_000_000, &[0], &[]);
        }
        let rows = storage(&acc.finish(), &backends(), &table());
        assert!(
            close(rows[0].monthly, 0.023 * 1e10 / GIB),
            "{}",
            rows[0].monthly
        );
        assert_eq!(usd(rows[0].monthly), "$0.2142");
    }

    #[test]
    fn rows_per_backend_and_class_from_a_pass_over_chunk_records() {
        // Two 2+1 chunks over s3, gcs and az: one from a record without
        // classes (all STANDARD), one whose s3 shard is in STANDARD_IA.
        let mut acc = Accumulator::new(4);
        acc.add_chunk(2, GIB_U, &[0, 1, 2], &[]);
        acc.add_chunk(2, GIB_U, &[4, 5, 6], &[1, 0, 0]); // slots wrap: 0, 1, 2
        let u = acc.finish();
        assert_eq!(u.groups.len(), 2, "two layouts");
        let rows = storage(&u, &backends(), &table());
        let got: Vec<(&str, &str, u64, u64)> = rows
            .iter()
            .map(|r| (r.backend.as_str(), r.class.as_str(), r.bytes, r.objects))
            .collect();
        assert_eq!(
            got,
            vec![
                ("s3", "STANDARD", GIB_U, 1),
                ("s3", "STANDARD_IA", GIB_U, 1),
                ("gcs", "STANDARD", 2 * GIB_U, 2),
                ("az", "Hot", 2 * GIB_U, 2),
            ]
        );
        let monthly: Vec<f64> = rows.iter().map(|r| r.monthly).collect();
        for (got, want) in monthly.iter().zip([0.023, 0.0125, 0.04, 0.036]) {
            assert!(close(*got, want), "{monthly:?}");
        }
        let r = report("v", &u, &backends(), &table(), None, DEFAULT_MBPS).unwrap();
        assert!(close(r.monthly, 0.023 + 0.0125 + 0.04 + 0.036));
        assert_eq!((r.stored_bytes, r.objects), (6 * GIB_U, 6));
        assert!(close(r.objects_per_gib, 1.0));
        assert_eq!(r.backends[3].objects, 0, "nas holds nothing");
        assert!(r.requests.is_none());
        assert!(render(&r).contains("counted by a running mount only"));
    }

    #[test]
    fn small_objects_and_archive_overhead_are_billed() {
        let mut acc = Accumulator::new(4);
        // 1,000 shards of 4 KiB in STANDARD_IA: billed as 128 KiB each.
        for _ in 0..1000 {
            acc.add_chunk(1, 4 << 10, &[0], &[S3StandardIa.code()]);
        }
        let rows = storage(&acc.finish(), &backends(), &table());
        assert_eq!(rows[0].small_objects, 1000);
        assert_eq!(rows[0].billed_bytes, 1000 * (128 << 10));
        assert!(close(
            rows[0].monthly,
            1000.0 * 128.0 * 1024.0 / GIB * 0.0125
        ));
        // The same in STANDARD: billed as stored.
        let mut acc = Accumulator::new(4);
        for _ in 0..1000 {
            acc.add_chunk(1, 4 << 10, &[0], &[]);
        }
        let rows = storage(&acc.finish(), &backends(), &table());
        assert_eq!(rows[0].billed_bytes, 1000 * (4 << 10));
        // DEEP_ARCHIVE: 32 KiB more per object at its rate, 8 KiB at STANDARD's.
        let mut acc = Accumulator::new(4);
        acc.add_chunk(1, GIB_U, &[0], &[S3DeepArchive.code()]);
        let rows = storage(&acc.finish(), &backends(), &table());
        let want = (GIB_U + (32 << 10)) as f64 / GIB * 0.001 + (8u64 << 10) as f64 / GIB * 0.023;
        assert!(close(rows[0].monthly, want), "{} {want}", rows[0].monthly);
    }

    #[test]
    fn a_restore_reads_the_k_cheapest_shards_of_each_chunk() {
        // 2+2 on s3, gcs, az, nas: nas (free) and az (lowest egress) are read.
        let mut acc = Accumulator::new(4);
        for _ in 0..1024 {
            acc.add_chunk(2, 1 << 20, &[0, 1, 2, 3], &[]);
        }
        let u = acc.finish();
        let r = restore(&u, &backends(), &table(), 100.0);
        assert_eq!((r.bytes, r.requests, r.thawed_shards), (2 << 30, 2048, 0));
        assert!(close(r.egress, 0.087), "{r:?}");
        assert!(close(r.request_cost, 1024.0 / 1000.0 * 0.0004));
        assert!(close(r.total, 0.087 + 1.024 * 0.0004));
        // 2 GiB at 100 Mbit/s: 171.8 s.
        assert!(close(
            r.transfer_hours,
            (2u64 << 30) as f64 * 8.0 / 1e8 / 3600.0
        ));
        assert_eq!(r.thaw_hours, 0.0);
    }

    #[test]
    fn archived_shards_are_read_last_and_cost_a_thaw() {
        let mut acc = Accumulator::new(4);
        let deep = S3DeepArchive.code();
        // 1+1: one copy on s3 DEEP_ARCHIVE, one on gcs STANDARD: gcs is read
        // though its egress costs more.
        acc.add_chunk(1, GIB_U, &[0, 1], &[deep, 0]);
        // 2+0 with one shard archived: it must be thawed.
        acc.add_chunk(2, GIB_U, &[0, 2], &[deep, 0]);
        let r = restore(&acc.finish(), &backends(), &table(), 1000.0);
        assert_eq!((r.bytes, r.requests, r.thawed_shards), (3 * GIB_U, 3, 1));
        assert!(close(r.egress, 0.12 + 0.09 + 0.087), "{r:?}");
        assert!(close(r.retrieval, 0.02));
        assert!(close(r.thaw_cost, 0.1 / 1000.0));
        assert_eq!(r.thaw_hours, 12.0);
        assert!(close(r.hours, 12.0 + r.transfer_hours));
    }

    #[test]
    fn replication_puts_copies_on_the_cheapest_distinct_backends() {
        let mut acc = Accumulator::new(4);
        let rec = ChunkRecord {
            refs: 1,
            len: 2 << 20,
            sealed_len: 1 << 20,
            k: 2,
            m: 1,
            shard_size: (1 << 19) + 64,
            placement: vec![0, 1, 2],
            inline: None,
            classes: Vec::new(),
        };
        for _ in 0..1024 {
            acc.add_record(&rec);
        }
        // A record placed by a rule: its classes are read.
        let mut archived = Accumulator::new(4);
        archived.add_record(&ChunkRecord {
            classes: vec![S3DeepArchive.code(), 0, 0],
            ..rec.clone()
        });
        let rows = storage(&archived.finish(), &backends(), &table());
        assert_eq!(rows[0].class, "DEEP_ARCHIVE");
        acc.add_record(&ChunkRecord::inline(100, vec![0; 40]));
        let u = acc.finish();
        assert_eq!((u.chunks, u.sealed_bytes), (1024, GIB_U));
        assert_eq!((u.inline_chunks, u.inline_bytes), (1, 40));
        // Without nas: az $0.018, then gcs $0.02, then s3 $0.023.
        let three = &backends()[..3];
        let mut u3 = u.clone();
        u3.slots = 3;
        let two = replication(&u3, three, &table(), 2);
        assert_eq!(two.on, vec!["az Hot", "gcs STANDARD"]);
        assert_eq!(two.bytes, 2 * GIB_U);
        assert!(close(two.monthly, 0.018 + 0.02));
        let three_copies = replication(&u3, three, &table(), 3);
        assert!(close(three_copies.monthly, 0.018 + 0.02 + 0.023));
        // Fewer backends than copies: the cheapest is used again.
        let one = &backends()[..1];
        let mut u1 = u.clone();
        u1.slots = 1;
        let r = replication(&u1, one, &table(), 2);
        assert_eq!(r.on, vec!["s3 STANDARD", "s3 STANDARD"]);
        assert!(close(r.monthly, 0.046));
        // The volume itself: 1.5 GiB (+ headers) over three providers.
        let rep = report("v", &u3, three, &table(), None, 100.0).unwrap();
        let shard = ((1u64 << 19) + 64) as f64 * 1024.0 / GIB;
        assert!(close(rep.monthly, shard * (0.023 + 0.02 + 0.018)));
        assert!(rep.replication[0].monthly > rep.monthly);
    }

    #[test]
    fn counted_requests_are_priced_at_the_backends_main_class() {
        let mut acc = Accumulator::new(4);
        acc.add_chunk(1, GIB_U, &[0], &[S3StandardIa.code()]);
        acc.add_chunk(1, 1 << 20, &[0], &[]);
        let u = acc.finish();
        let counts = [
            RequestCount {
                put: 2000,
                get: 10_000,
            },
            RequestCount { put: 1000, get: 0 },
            RequestCount::default(),
            RequestCount {
                put: 5000,
                get: 5000,
            },
        ];
        let r = requests(&u, &backends(), &table(), &counts);
        assert_eq!(r[0].class, "STANDARD_IA");
        assert!(close(r[0].cost, 2.0 * 0.005 + 10.0 * 0.001));
        assert_eq!(r[1].class, "STANDARD");
        assert!(close(r[1].cost, 0.005));
        assert_eq!(r[3].cost, 0.0, "local folders are free");
        let rep = report("v", &u, &backends(), &table(), Some(&counts), 100.0).unwrap();
        assert!(close(rep.requests_cost.unwrap(), 0.02 + 0.005));
        let text = render(&rep);
        assert!(text.contains("s3 2000 PUT + 10000 GET ($0.0200)"), "{text}");
    }

    #[test]
    fn a_config_with_other_backends_is_refused() {
        let u = Accumulator::new(3).finish();
        let e = report("v", &u, &backends(), &table(), None, 100.0).unwrap_err();
        assert!(e.contains("names 4 backends but the volume has 3"), "{e}");
    }
}
