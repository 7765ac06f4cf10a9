//! What `cloudraid policy check` prints: each rule with its layout, backends,
//! classes and what its chunks survive, then the rule and shard places of each
//! path asked about.

use super::class::Provider;
use super::place;
use super::rules::{FileFacts, PolicySet, Rule};
use crate::config::Config;
use std::fmt::Write;

/// A backend by slot: its name and provider.
fn backend(cfg: &Config, slot: u16) -> (&str, Provider) {
    let b = &cfg.backends[slot as usize];
    (
        b.name.as_str(),
        Provider::of_url(&b.url).unwrap_or(Provider::Local),
    )
}

/// "any 1 domain, or any 2 backends" (what every chunk of the rule survives).
pub fn survival(rule: &Rule, set: &PolicySet) -> String {
    let (domains, backends) = place::survives(rule.layout, &rule.candidates, rule.rotate);
    let named = set.domains.iter().any(|d| !d.starts_with("backend:"));
    let n_domains = place::domains(&rule.candidates);
    let n_backends = rule.candidates.len();
    let some = |n: usize, of: usize, what: &str| {
        if n >= of {
            format!("all {of} {what}s")
        } else {
            format!("any {n} {what}{}", if n == 1 { "" } else { "s" })
        }
    };
    match (domains, backends) {
        (0, 0) => "nothing (no parity)".into(),
        (d, b) if named && d != b => format!(
            "{} or {}",
            some(d, n_domains, "domain"),
            some(b, n_backends, "backend")
        ),
        (_, b) => some(b, n_backends, "backend"),
    }
}

/// Where the shards of a chunk go under `rule`, in words.
fn places(cfg: &Config, rule: &Rule) -> String {
    let name = |c: &place::Candidate| {
        let (n, p) = backend(cfg, c.slot);
        format!("{n} ({})", c.class.name(p))
    };
    if rule.rotate {
        format!(
            "{} shards per chunk spread over {}",
            rule.layout.total(),
            rule.candidates
                .iter()
                .map(name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        let p = place::place(rule.layout, &rule.candidates, 0)
            .unwrap_or_else(|| place::deal(rule.layout, &rule.candidates, 0));
        p.slots
            .iter()
            .zip(&p.classes)
            .enumerate()
            .map(|(i, (s, cl))| {
                let (n, pr) = backend(cfg, *s);
                format!("shard {i} → {n} ({})", cl.name(pr))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The whole report; `paths` are volume paths, matched with `size` and `uid`.
pub fn report(cfg: &Config, set: &PolicySet, paths: &[String], size: u64, uid: u32) -> String {
    let mut out = String::new();
    for r in &set.rules {
        let _ = writeln!(
            out,
            "rule {}: {}, survives {}; {}{}",
            r.name,
            r.describe_layout(),
            survival(r, set),
            places(cfg, r),
            if r.allow_archive_only {
                " (archive only allowed: reads may wait for a thaw)"
            } else {
                ""
            }
        );
    }
    for w in &set.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    for p in paths {
        let path = p.trim_start_matches('/');
        let r = set.choose(&FileFacts { path, size, uid });
        let _ = writeln!(
            out,
            "/{path}: rule {} ({}): {}",
            r.name,
            r.describe_layout(),
            places(cfg, r)
        );
    }
    out
}
