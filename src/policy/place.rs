//! Where the shards of one chunk go: a pure function of the chunk, the layout
//! and the backends a rule allows, that never puts more than m shards of a
//! chunk in one failure domain.
//!
//! Shards are dealt round the allowed backends in their order of preference
//! (shard 0 on the first, shard 1 on the next...), skipping a backend whose
//! domain already holds m shards of the chunk. A rule that lists no backends
//! starts the deal at a backend derived from the chunk id, so load spreads
//! over all of them (the placement of volumes from before policies, unchanged
//! when every backend is a domain of its own). With m = 0 nothing survives the
//! loss of any shard and domains are not checked.

use super::class::StorageClass;
use crate::data::erasure::Layout;
use crate::format::ChunkId;

/// One backend a rule allows, in its order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The backend's slot (its position in the config's backend list).
    pub slot: u16,
    /// Its failure domain, as an index into the volume's domain list.
    pub domain: u16,
    /// The class its shards are stored in under this rule.
    pub class: StorageClass,
}

/// Where each shard of a chunk goes, and in which class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub slots: Vec<u16>,
    pub classes: Vec<StorageClass>,
}

/// The most shards of one chunk a domain may hold.
pub fn domain_bound(layout: Layout) -> usize {
    if layout.m == 0 {
        usize::MAX
    } else {
        layout.m
    }
}

/// Distinct domains among `candidates`.
pub fn domains(candidates: &[Candidate]) -> usize {
    let mut d: Vec<u16> = candidates.iter().map(|c| c.domain).collect();
    d.sort_unstable();
    d.dedup();
    d.len()
}

/// Can `layout` be placed over `candidates` within the domain bound? The deal
/// fills each domain up to m shards, so it succeeds exactly when the domains
/// can hold k + m shards between them.
pub fn fits(layout: Layout, candidates: &[Candidate]) -> bool {
    !candidates.is_empty()
        && domains(candidates).saturating_mul(domain_bound(layout)) >= layout.total()
}

/// Where the deal starts for `id`: at backend 0 for a rule with an order of
/// preference, else at one derived from the chunk id (as volumes always did).
pub fn start_of(id: &ChunkId, candidates: usize, rotate: bool) -> usize {
    if rotate {
        u16::from_be_bytes([id.0[0], id.0[1]]) as usize % candidates.max(1)
    } else {
        0
    }
}

/// Deals the k + m shards round `candidates` from `start`. `None` when the
/// layout does not fit (see [`fits`]).
pub fn place(layout: Layout, candidates: &[Candidate], start: usize) -> Option<Placement> {
    if !fits(layout, candidates) {
        return None;
    }
    let n = candidates.len();
    let bound = domain_bound(layout);
    let mut held: std::collections::HashMap<u16, usize> = Default::default();
    let mut out = Placement {
        slots: Vec::with_capacity(layout.total()),
        classes: Vec::with_capacity(layout.total()),
    };
    let mut cursor = start % n;
    for _ in 0..layout.total() {
        let pick = (0..n)
            .map(|step| (cursor + step) % n)
            .find(|&j| held.get(&candidates[j].domain).copied().unwrap_or(0) < bound)?;
        let c = candidates[pick];
        *held.entry(c.domain).or_default() += 1;
        out.slots.push(c.slot);
        out.classes.push(c.class);
        cursor = (pick + 1) % n;
    }
    Some(out)
}

/// Deals the shards round `candidates` from `start` without the domain bound
/// (a backend may get more than m): how volumes without domains always placed
/// shards when they had fewer backends than the layout needed.
pub fn deal(layout: Layout, candidates: &[Candidate], start: usize) -> Placement {
    let n = candidates.len();
    let picks = (0..layout.total()).map(|i| candidates[(start + i) % n]);
    Placement {
        slots: picks.clone().map(|c| c.slot).collect(),
        classes: picks.map(|c| c.class).collect(),
    }
}

/// What losing whole domains or backends does to chunks placed by `layout`
/// over `candidates`, over every starting point of the deal: the most domains
/// and the most backends whose loss every chunk survives (`usize::MAX`: all).
pub fn survives(layout: Layout, candidates: &[Candidate], rotate: bool) -> (usize, usize) {
    let starts = if rotate { candidates.len().max(1) } else { 1 };
    let mut worst = (usize::MAX, usize::MAX);
    for s in 0..starts {
        let p = place(layout, candidates, s).unwrap_or_else(|| deal(layout, candidates, s));
        let doms = |slot: u16| {
            candidates
                .iter()
                .find(|c| c.slot == slot)
                .map(|c| c.domain)
                .unwrap_or(u16::MAX)
        };
        let by_domain = counts(p.slots.iter().map(|&s| doms(s)));
        let by_backend = counts(p.slots.iter().copied());
        worst.0 = worst
            .0
            .min(losable(&by_domain, layout.m, domains(candidates)));
        let backends = {
            let mut b: Vec<u16> = candidates.iter().map(|c| c.slot).collect();
            b.sort_unstable();
            b.dedup();
            b.len()
        };
        worst.1 = worst.1.min(losable(&by_backend, layout.m, backends));
    }
    worst
}

/// Shards per group, largest first.
fn counts(items: impl Iterator<Item = u16>) -> Vec<usize> {
    let mut m: std::collections::HashMap<u16, usize> = Default::default();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    let mut v: Vec<usize> = m.into_values().collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

/// How many of `groups` groups can be lost (the fullest first) while at most
/// `m` shards go; every group when the shards never run short.
fn losable(held: &[usize], m: usize, groups: usize) -> usize {
    let mut lost = 0;
    for (n, h) in held.iter().enumerate() {
        lost += h;
        if lost > m {
            return n;
        }
    }
    // Groups that hold no shard of any chunk can go too.
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cands(domains: &[u16]) -> Vec<Candidate> {
        domains
            .iter()
            .enumerate()
            .map(|(i, d)| Candidate {
                slot: i as u16,
                domain: *d,
                class: StorageClass::Standard,
            })
            .collect()
    }

    fn layout(k: usize, m: usize) -> Layout {
        Layout { k, m }
    }

    #[test]
    fn every_backend_its_own_domain_is_the_old_placement() {
        let c = cands(&[0, 1, 2, 3, 4, 5]);
        let p = place(layout(4, 2), &c, 4).unwrap();
        assert_eq!(p.slots, vec![4, 5, 0, 1, 2, 3]);
        // Fewer backends than shards: two shards on each of three.
        let c = cands(&[0, 1, 2]);
        let p = place(layout(4, 2), &c, 1).unwrap();
        assert_eq!(p.slots, vec![1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn a_domain_never_holds_more_than_m() {
        // Two backends in one region, one elsewhere, one more elsewhere.
        let c = cands(&[0, 0, 1, 2]);
        let p = place(layout(2, 1), &c, 0).unwrap();
        assert_eq!(p.slots, vec![0, 2, 3]);
        assert!(!fits(layout(4, 2), &cands(&[0, 0, 0, 1])));
        assert!(fits(layout(1, 1), &cands(&[0, 1])));
        assert!(!fits(layout(1, 1), &cands(&[7, 7])));
    }

    #[test]
    fn replication_keeps_the_order_of_preference() {
        let c = cands(&[0, 1, 2]);
        assert_eq!(place(layout(1, 2), &c, 0).unwrap().slots, vec![0, 1, 2]);
        assert_eq!(place(layout(1, 1), &c, 0).unwrap().slots, vec![0, 1]);
    }

    #[test]
    fn survival_counts_domains_and_backends() {
        // ec:4+2 over six backends in three providers of two each: any one
        // provider, or any two backends.
        let c = cands(&[0, 0, 1, 1, 2, 2]);
        assert_eq!(survives(layout(4, 2), &c, true), (1, 2));
        // Three copies on three providers: any two.
        assert_eq!(survives(layout(1, 2), &cands(&[0, 1, 2]), false), (2, 2));
        // No parity: nothing.
        assert_eq!(survives(layout(2, 0), &cands(&[0, 1]), false), (0, 0));
    }

    proptest! {
        /// For any backends, domains and layout that fit: every chunk's
        /// placement keeps each domain within m shards, so losing any one
        /// domain leaves at least k shards.
        #[test]
        fn placements_survive_losing_any_domain(
            doms in proptest::collection::vec(0u16..5, 1..9),
            k in 1usize..6,
            m in 1usize..4,
            start in 0usize..16,
        ) {
            let c = cands(&doms);
            let l = layout(k, m);
            match place(l, &c, start) {
                None => prop_assert!(!fits(l, &c)),
                Some(p) => {
                    prop_assert_eq!(p.slots.len(), k + m);
                    for d in 0..5u16 {
                        let held = p.slots.iter().filter(|&&s| c[s as usize].domain == d).count();
                        prop_assert!(held <= m, "domain {} holds {} > m={}", d, held, m);
                        prop_assert!(k + m - held >= k);
                    }
                }
            }
        }
    }
}
