//! Which of two placements of a chunk is the stronger: a chunk shared by files
//! of several rules has one placement, that of the strongest of their rules.
//!
//! Stronger, in this order:
//! 1. at least k shards readable without a thaw beats fewer (reads need no wait);
//! 2. more parity shards (more losses survived);
//! 3. more shards in all;
//! 4. between rules equal on all three, the one earlier in the config.
//!
//! A chunk's record is compared by its shape alone (k, m, the class of each
//! shard): it does not say which rule placed it, and needs not.

use super::class::StorageClass;
use super::rules::Rule;
use crate::format::{ChunkId, ChunkRecord};

/// The strength of one placement; greater is stronger (ties: see
/// [`stronger_rule`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Strength {
    /// At least k shards are readable without a thaw.
    pub instant: bool,
    pub m: u8,
    pub total: u16,
}

/// The strength of `k`+`m` shards in these classes (empty: all standard).
pub fn strength(k: u8, m: u8, classes: &[StorageClass]) -> Strength {
    let total = k as u16 + m as u16;
    let instant = if classes.is_empty() {
        total
    } else {
        classes.iter().filter(|c| c.instant()).count() as u16
    };
    Strength {
        instant: instant >= k as u16,
        m,
        total,
    }
}

/// The strength of a chunk as its record stores it (an inline chunk has no
/// shards: the weakest).
pub fn of_record(rec: &ChunkRecord) -> Strength {
    let classes: Vec<StorageClass> = rec
        .classes
        .iter()
        .map(|c| StorageClass::from_code(*c).unwrap_or_default())
        .collect();
    strength(rec.k, rec.m, &classes)
}

/// The strength of chunk `id` placed by `rule`.
pub fn of_rule(rule: &Rule, id: &ChunkId) -> Strength {
    let p = rule.place(id);
    strength(rule.layout.k as u8, rule.layout.m as u8, &p.classes)
}

/// The stronger of two rules for chunk `id`: by strength, then the one
/// earlier in the config.
pub fn stronger_rule<'a>(a: &'a Rule, b: &'a Rule, id: &ChunkId) -> &'a Rule {
    let (sa, sb) = (of_rule(a, id), of_rule(b, id));
    if sa > sb || (sa == sb && a.index <= b.index) {
        a
    } else {
        b
    }
}

/// Whether placing chunk `id` by `rule` would make it stronger than it is
/// stored as `rec` (a commit that finds the chunk stored re-places it then).
pub fn rule_is_stronger(rule: &Rule, id: &ChunkId, rec: &ChunkRecord) -> bool {
    !rec.is_inline() && of_rule(rule, id) > of_record(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::class::StorageClass::*;

    #[test]
    fn instant_reads_come_first() {
        // 4+2 with only 3 instant shards loses to a plain 2 copies.
        let archived = strength(
            4,
            2,
            &[
                Standard,
                Standard,
                Standard,
                S3DeepArchive,
                S3DeepArchive,
                S3DeepArchive,
            ],
        );
        let copies = strength(1, 1, &[]);
        assert!(copies > archived);
        // Enough instant shards: the parity decides.
        let ok = strength(
            4,
            2,
            &[
                Standard,
                Standard,
                Standard,
                Standard,
                S3DeepArchive,
                S3DeepArchive,
            ],
        );
        assert!(ok > copies);
    }

    #[test]
    fn then_parity_then_shards() {
        assert!(strength(2, 2, &[]) > strength(1, 1, &[]));
        assert!(strength(1, 2, &[]) > strength(8, 1, &[]));
        assert!(strength(4, 2, &[]) > strength(2, 2, &[]));
        assert_eq!(strength(2, 2, &[]), strength(2, 2, &[Standard; 4]));
        assert!(
            strength(2, 2, &[])
                > strength(
                    2,
                    2,
                    &[Standard, S3DeepArchive, S3DeepArchive, S3DeepArchive]
                )
        );
    }

    #[test]
    fn a_record_is_judged_by_its_shape() {
        let rec = ChunkRecord {
            refs: 1,
            len: 10,
            sealed_len: 40,
            k: 1,
            m: 1,
            shard_size: 120,
            placement: vec![0, 1],
            inline: None,
            classes: vec![Standard.code(), S3DeepArchive.code()],
        };
        assert_eq!(
            of_record(&rec),
            Strength {
                instant: true,
                m: 1,
                total: 2
            }
        );
        let inline = ChunkRecord::inline(10, vec![0; 40]);
        assert!(of_record(&inline) < of_record(&rec));
    }

    #[test]
    fn between_rules_the_stronger_then_the_earlier() {
        let text = r#"
[volume]
name = "v"
id = "6f0b3c2e-3f4a-4d55-9a4e-0f7d4c1b2a10"
data_shards = 2
parity_shards = 2
chunk_size = "1MiB"
cache_size = "256MiB"
state_dir = "/var/lib/v"
[[backend]]
name = "a"
url = "file:///mnt/a"
[[backend]]
name = "b"
url = "file:///mnt/b"
[[backend]]
name = "c"
url = "file:///mnt/c"
[[backend]]
name = "d"
url = "file:///mnt/d"
[[policy]]
name = "text"
match = { extensions = ["txt"] }
layout = "replicate:2"
backends = ["a", "b"]
[[policy]]
name = "docs"
match = { extensions = ["doc"] }
layout = "replicate:2"
backends = ["c", "d"]
[[policy]]
name = "default"
layout = "ec:2+2"
"#;
        let cfg: crate::config::Config = toml::from_str(text).unwrap();
        let set = crate::policy::rules::PolicySet::compile(&cfg).unwrap();
        let id = ChunkId([3; 32]);
        let (text, docs, default) = (&set.rules[0], &set.rules[1], &set.rules[2]);
        assert_eq!(stronger_rule(text, default, &id).name, "default");
        assert_eq!(stronger_rule(default, text, &id).name, "default");
        // Equal strength: the earlier rule.
        assert_eq!(stronger_rule(docs, text, &id).name, "text");
        assert_eq!(stronger_rule(text, docs, &id).name, "text");
    }
}
