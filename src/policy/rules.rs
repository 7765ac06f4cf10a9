//! Placement rules: the `[[policy]]` sections of a volume's config, compiled
//! and checked against its backends, and matched against files.
//!
//! Rules are matched in order and the first that matches decides; the last has
//! no `match` and takes everything else. A volume without rules has one, named
//! `default`: `[volume]`'s data_shards + parity_shards over every backend.

use super::class::{Provider, StorageClass};
use super::place::{self, Candidate, Placement};
use crate::config::{Config, MatchSection, Owner, PolicySection};
use crate::data::erasure::Layout;
use crate::format::ChunkId;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::sync::Arc;

/// The name of the rule of a volume without `[[policy]]` sections.
pub const DEFAULT_RULE: &str = "default";

/// One compiled `[[policy]]`.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    /// Its position in the config (0: the first).
    pub index: usize,
    pub layout: Layout,
    /// The backends allowed, in order of preference, with their domain and class.
    pub candidates: Vec<Candidate>,
    /// No order of preference: each chunk's deal starts at a backend derived
    /// from its id, so load spreads.
    pub rotate: bool,
    pub allow_archive_only: bool,
    /// Placed within the domain bound. Only the implicit rule of a volume
    /// without rules or domains may not be (volumes from before domains: its
    /// shards are dealt round the backends as they always were, and
    /// [`PolicySet::warnings`] says what that risks).
    pub bounded: bool,
    /// The implicit rule of a volume without `[[policy]]`: its chunks keep the
    /// records and shard keys chunks had before rules (no classes).
    pub legacy: bool,
    matcher: Option<Matcher>,
}

#[derive(Debug)]
struct Matcher {
    extensions: Vec<String>,
    paths: Option<GlobSet>,
    min_size: Option<u64>,
    max_size: Option<u64>,
    owner: Option<u32>,
}

/// What a file is matched on.
#[derive(Clone, Copy, Debug)]
pub struct FileFacts<'a> {
    /// Its path in the volume, from the root, without a leading `/`.
    pub path: &'a str,
    pub size: u64,
    pub uid: u32,
}

impl Rule {
    /// Where the shards of chunk `id` go under this rule.
    pub fn place(&self, id: &ChunkId) -> Placement {
        let start = place::start_of(id, self.candidates.len(), self.rotate);
        if self.bounded {
            place::place(self.layout, &self.candidates, start)
                .expect("rules are checked to fit when compiled")
        } else {
            place::deal(self.layout, &self.candidates, start)
        }
    }

    /// `ec:4+2`, or `3 copies` for a replicated layout.
    pub fn describe_layout(&self) -> String {
        describe_layout(self.layout)
    }

    /// Does this rule take `f`? (The default rule takes everything.)
    pub fn matches(&self, f: &FileFacts) -> bool {
        let Some(m) = &self.matcher else { return true };
        self.matches_but_size(f)
            && m.min_size.is_none_or(|min| f.size >= min)
            && m.max_size.is_none_or(|max| f.size <= max)
    }

    fn matches_but_size(&self, f: &FileFacts) -> bool {
        let Some(m) = &self.matcher else { return true };
        let name = f
            .path
            .rsplit('/')
            .next()
            .unwrap_or(f.path)
            .to_ascii_lowercase();
        (m.extensions.is_empty()
            || m.extensions
                .iter()
                .any(|e| name.len() > e.len() + 1 && name.ends_with(&format!(".{e}"))))
            && m.paths.as_ref().is_none_or(|g| g.is_match(f.path))
            && m.owner.is_none_or(|u| u == f.uid)
    }

    fn has_size_bounds(&self) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|m| m.min_size.is_some() || m.max_size.is_some())
    }
}

/// `ec:K+M`, or `N copies` when K is 1.
pub fn describe_layout(l: Layout) -> String {
    if l.k == 1 {
        format!("{} copies", l.total())
    } else {
        format!("ec:{}+{}", l.k, l.m)
    }
}

/// The compiled rules of a volume, in order, the default last.
#[derive(Debug)]
pub struct PolicySet {
    pub rules: Vec<Arc<Rule>>,
    /// Domain names, indexed by `Candidate::domain`.
    pub domains: Vec<String>,
    /// What the config risks without being wrong (shown by init, mount,
    /// status and `policy check`).
    pub warnings: Vec<String>,
}

impl PolicySet {
    /// Compiles and checks the config's rules against its backends: one line
    /// saying what is wrong and what to change when a rule cannot be met.
    pub fn compile(cfg: &Config) -> Result<PolicySet, String> {
        let base = Layout::new(
            cfg.volume.data_shards as usize,
            cfg.volume.parity_shards as usize,
        )
        .map_err(|e| e.to_string())?;
        let mut domains: Vec<String> = Vec::new();
        let mut backends = Vec::new();
        for (slot, b) in cfg.backends.iter().enumerate() {
            let provider = Provider::of_url(&b.url)
                .ok_or_else(|| {
                    format!(
                        "backend {}: invalid backend URL {:?}: unknown scheme; use file:///path, s3://bucket[/prefix], gs://bucket[/prefix], az://container[/prefix] or memory://",
                        b.name, b.url
                    )
                })?;
            let domain = b
                .domain
                .clone()
                .unwrap_or_else(|| format!("backend:{}", b.name));
            let d = match domains.iter().position(|x| *x == domain) {
                Some(d) => d,
                None => {
                    domains.push(domain);
                    domains.len() - 1
                }
            };
            let class = match &b.storage_class {
                Some(c) => provider
                    .class(c)
                    .map_err(|e| format!("backend {}: {e}", b.name))?,
                None => StorageClass::Standard,
            };
            backends.push((
                b.name.as_str(),
                provider,
                Candidate {
                    slot: slot as u16,
                    domain: d as u16,
                    class,
                },
            ));
        }
        let sections: Vec<PolicySection> = if cfg.policies.is_empty() {
            vec![PolicySection {
                name: DEFAULT_RULE.into(),
                ..Default::default()
            }]
        } else {
            cfg.policies.clone()
        };
        let mut rules = Vec::new();
        let mut warnings = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (index, p) in sections.iter().enumerate() {
            let at = format!("[[policy]] {:?}", p.name);
            if p.name.trim().is_empty() {
                return Err(format!(
                    "[[policy]] number {} has no name: give each rule a name",
                    index + 1
                ));
            }
            if !names.insert(p.name.clone()) {
                return Err(format!(
                    "{at}: the name is used twice; give each rule its own"
                ));
            }
            let last = index + 1 == sections.len();
            match (&p.matches, last) {
                (Some(_), true) => {
                    return Err(format!(
                        "{at}: the last rule is the default and takes every file no other rule matched: remove its `match`, or add a rule without one after it"
                    ))
                }
                (None, false) => {
                    return Err(format!(
                        "{at}: a rule without `match` takes every file, so the rules after it would never apply: give it a `match`, or move it last"
                    ))
                }
                _ => {}
            }
            let layout = match &p.layout {
                Some(s) => parse_layout(s).map_err(|e| format!("{at}: {e}"))?,
                None => base,
            };
            let allowed: Vec<&(&str, Provider, Candidate)> = match &p.backends {
                None => backends.iter().collect(),
                Some(list) => {
                    if list.is_empty() {
                        return Err(format!("{at}: backends = [] allows none: name at least one, or leave the key out for all"));
                    }
                    let mut v = Vec::new();
                    for n in list {
                        let b = backends.iter().find(|b| b.0 == n).ok_or_else(|| {
                            format!(
                                "{at}: no backend is named {n:?} (the backends are {})",
                                backends.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
                            )
                        })?;
                        if v.iter().any(|x: &&(&str, Provider, Candidate)| x.0 == n) {
                            return Err(format!("{at}: backend {n:?} is listed twice"));
                        }
                        v.push(b);
                    }
                    v
                }
            };
            for n in p.storage_class.keys() {
                if !allowed.iter().any(|b| b.0 == n) {
                    return Err(format!(
                        "{at}: storage_class names backend {n:?}, which this rule does not use"
                    ));
                }
            }
            let mut candidates = Vec::new();
            for (name, provider, c) in allowed.iter().map(|b| (b.0, b.1, b.2)) {
                let class = match p.storage_class.get(name) {
                    Some(cl) => provider
                        .class(cl)
                        .map_err(|e| format!("{at}: backend {name}: {e}"))?,
                    None => c.class,
                };
                candidates.push(Candidate { class, ..c });
            }
            let implicit =
                cfg.policies.is_empty() && cfg.backends.iter().all(|b| b.domain.is_none());
            let bounded = place::fits(layout, &candidates);
            if !bounded {
                let why = too_few_domains(&at, layout, &candidates, &domains);
                if !implicit {
                    return Err(why);
                }
                warnings.push(format!(
                    "layout {} over {} backend(s) puts more than {} shards of a chunk on one backend, so losing it loses data: add backends, or lower data_shards",
                    describe_layout(layout),
                    candidates.len(),
                    layout.m
                ));
            }
            let rotate = p.backends.is_none();
            if !p.allow_archive_only {
                check_instant(&at, layout, &candidates, rotate, bounded, &backends)?;
            }
            let matcher = p
                .matches
                .as_ref()
                .map(|m| compile_match(m).map_err(|e| format!("{at}: {e}")))
                .transpose()?;
            let legacy = cfg.policies.is_empty()
                && candidates.iter().all(|c| c.class == StorageClass::Standard);
            rules.push(Arc::new(Rule {
                name: p.name.clone(),
                index,
                layout,
                candidates,
                rotate,
                allow_archive_only: p.allow_archive_only,
                bounded,
                legacy,
                matcher,
            }));
        }
        warnings.extend(lookalikes(cfg));
        Ok(PolicySet {
            rules,
            domains,
            warnings,
        })
    }

    /// The rules of a volume without `[[policy]]` over `slots` backends, each
    /// a domain of its own, all in their standard class.
    pub fn uniform(layout: Layout, slots: usize) -> PolicySet {
        let candidates: Vec<Candidate> = (0..slots)
            .map(|i| Candidate {
                slot: i as u16,
                domain: i as u16,
                class: StorageClass::Standard,
            })
            .collect();
        PolicySet {
            rules: vec![Arc::new(Rule {
                name: DEFAULT_RULE.into(),
                index: 0,
                layout,
                bounded: place::fits(layout, &candidates),
                candidates,
                rotate: true,
                allow_archive_only: false,
                legacy: true,
                matcher: None,
            })],
            domains: (0..slots).map(|i| format!("backend:{i}")).collect(),
            warnings: Vec::new(),
        }
    }

    /// The rule that takes `f`: the first that matches.
    pub fn choose(&self, f: &FileFacts) -> &Arc<Rule> {
        self.rules
            .iter()
            .find(|r| r.matches(f))
            .unwrap_or_else(|| self.rules.last().expect("a policy set has a default rule"))
    }

    /// The rule that will take `f` whatever size it ends with, given that it
    /// has `f.size` bytes already and only grows (a file being written from its
    /// start); `None` while a size bound could still change the answer.
    pub fn settled(&self, f: &FileFacts) -> Option<&Arc<Rule>> {
        for r in &self.rules {
            if !r.matches_but_size(f) {
                continue;
            }
            if !r.has_size_bounds() {
                return Some(r);
            }
            let m = r.matcher.as_ref().expect("size bounds come with a matcher");
            let too_big = m.max_size.is_some_and(|max| f.size > max);
            let big_enough = m.min_size.is_none_or(|min| f.size >= min);
            if too_big {
                continue;
            }
            // Within bounds now, but it may grow past max_size; below min_size
            // now, but it may reach it: either way, not settled yet.
            if big_enough && m.max_size.is_none() {
                return Some(r);
            }
            return None;
        }
        self.rules.last()
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Rule>> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The rule of a volume without `[[policy]]`.
    pub fn default_rule(&self) -> &Arc<Rule> {
        self.rules.last().expect("a policy set has a default rule")
    }
}

/// Parses `ec:K+M` or `replicate:N` (N copies: k 1, m N-1).
pub fn parse_layout(s: &str) -> Result<Layout, String> {
    let bad = || {
        format!("layout {s:?} is not `ec:K+M` (e.g. \"ec:4+2\") or `replicate:N` (e.g. \"replicate:2\")")
    };
    let (kind, rest) = s.trim().split_once(':').ok_or_else(bad)?;
    let (k, m) = match kind.trim() {
        "ec" => {
            let (k, m) = rest.split_once('+').ok_or_else(bad)?;
            let k: usize = k.trim().parse().map_err(|_| bad())?;
            let m: usize = m.trim().parse().map_err(|_| bad())?;
            (k, m)
        }
        "replicate" => {
            let n: usize = rest.trim().parse().map_err(|_| bad())?;
            if n == 0 {
                return Err(format!(
                    "layout {s:?}: replicate:0 keeps no copy; use replicate:1 or more"
                ));
            }
            (1, n - 1)
        }
        _ => return Err(bad()),
    };
    Layout::new(k, m).map_err(|_| format!("layout {s:?}: K must be 1 to 255 and K+M at most 256"))
}

fn too_few_domains(at: &str, layout: Layout, c: &[Candidate], domains: &[String]) -> String {
    let mut per: Vec<(String, usize)> = Vec::new();
    for x in c {
        let d = domains[x.domain as usize].clone();
        match per.iter_mut().find(|p| p.0 == d) {
            Some(p) => p.1 += 1,
            None => per.push((d, 1)),
        }
    }
    for p in per.iter_mut() {
        p.0 = shown_domain(&p.0);
    }
    let fullest = per
        .iter()
        .max_by_key(|p| p.1)
        .map(|p| p.0.clone())
        .unwrap_or_default();
    format!(
        "{at}: layout {} needs {} shards per chunk with at most {} in any failure domain, but its backends are in {} domain(s) ({}), so {fullest} would hold more than {}: add backends in other domains, or choose a layout with fewer shards or more parity",
        describe_layout(layout),
        layout.total(),
        layout.m,
        per.len(),
        per.iter().map(|p| format!("{}: {} backend(s)", p.0, p.1)).collect::<Vec<_>>().join(", "),
        layout.m
    )
}

/// Backends without a `domain` that look like one place: the same cloud
/// bucket or container, or local folders on one filesystem. Each is a domain
/// of its own, so a chunk may put several shards there: a warning says so.
fn lookalikes(cfg: &Config) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let place = |b: &crate::config::BackendSection| -> Option<String> {
        let url = url::Url::parse(&b.url).ok()?;
        match url.scheme() {
            "file" => {
                // The filesystem of the folder, or of its nearest existing parent.
                let mut p = url.to_file_path().ok()?;
                loop {
                    if let Ok(m) = std::fs::metadata(&p) {
                        return Some(format!("one filesystem (device {})", m.dev()));
                    }
                    if !p.pop() {
                        return None;
                    }
                }
            }
            "memory" => None,
            scheme => {
                let endpoint = b
                    .options
                    .iter()
                    .find(|(k, _)| k.to_ascii_lowercase().contains("endpoint"))
                    .map(|(_, v)| format!(" at {v}"))
                    .unwrap_or_default();
                Some(format!(
                    "{scheme}://{}{endpoint}",
                    url.host_str().unwrap_or("")
                ))
            }
        }
    };
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for b in cfg.backends.iter().filter(|b| b.domain.is_none()) {
        if let Some(p) = place(b) {
            match groups.iter_mut().find(|g| g.0 == p) {
                Some(g) => g.1.push(&b.name),
                None => groups.push((p, vec![&b.name])),
            }
        }
    }
    groups
        .into_iter()
        .filter(|g| g.1.len() > 1)
        .map(|(p, names)| {
            format!(
                "backends {} are in {p} but name no domain, so each counts as a failure domain of its own: losing that place loses all their shards at once (put them on different disks or providers, or give each backend the domain it really is in)",
                names.join(", ")
            )
        })
        .collect()
}

/// A domain as messages name it: a backend without a `domain` is one of its
/// own, `backend NAME`.
pub fn shown_domain(d: &str) -> String {
    match d.strip_prefix("backend:") {
        Some(name) => format!("backend {name}"),
        None => d.to_string(),
    }
}

/// At least k shards of every chunk must be readable without a thaw.
fn check_instant(
    at: &str,
    layout: Layout,
    c: &[Candidate],
    rotate: bool,
    bounded: bool,
    backends: &[(&str, Provider, Candidate)],
) -> Result<(), String> {
    let starts = if rotate { c.len() } else { 1 };
    for s in 0..starts {
        let p = if bounded {
            place::place(layout, c, s).expect("checked to fit")
        } else {
            place::deal(layout, c, s)
        };
        let instant = p.classes.iter().filter(|cl| cl.instant()).count();
        if instant < layout.k {
            let archived: Vec<String> = p
                .slots
                .iter()
                .zip(&p.classes)
                .filter(|(_, cl)| !cl.instant())
                .map(|(slot, cl)| {
                    let (name, provider, _) = backends[*slot as usize];
                    format!("{name} ({})", cl.name(provider))
                })
                .collect();
            return Err(format!(
                "{at}: only {instant} of the {} shards of a chunk would be readable without a thaw, and reads need {} (archive classes: {}); use an instant class on more backends, or set allow_archive_only = true to accept reads that wait hours for a thaw",
                layout.total(),
                layout.k,
                archived.join(", ")
            ));
        }
    }
    Ok(())
}

fn compile_match(m: &MatchSection) -> Result<Matcher, String> {
    let extensions = m
        .extensions
        .iter()
        .map(|e| {
            let e = e.trim().trim_start_matches('.').to_ascii_lowercase();
            if e.is_empty() || e.contains(['/', '*', '?', '[']) {
                Err(format!("match.extensions: {e:?} is not an extension (write \"jpg\", not \"*.jpg\" or a path)"))
            } else {
                Ok(e)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let paths = if m.paths.is_empty() {
        None
    } else {
        let mut b = GlobSetBuilder::new();
        for p in &m.paths {
            for g in gitignore_globs(p) {
                b.add(
                    GlobBuilder::new(&g)
                        .literal_separator(true)
                        .build()
                        .map_err(|e| format!("match.paths: {p:?}: {e}"))?,
                );
            }
        }
        Some(b.build().map_err(|e| format!("match.paths: {e}"))?)
    };
    if let (Some(a), Some(b)) = (m.min_size, m.max_size) {
        if a.0 > b.0 {
            return Err(format!(
                "match: min_size {a} is larger than max_size {b}, so nothing matches"
            ));
        }
    }
    let owner = match &m.owner {
        None => None,
        Some(Owner::Uid(u)) => Some(*u),
        Some(Owner::Name(n)) => Some(
            uzers::get_user_by_name(n)
                .ok_or_else(|| {
                    format!(
                        "match.owner: no user is named {n:?} on this machine (give a uid instead)"
                    )
                })?
                .uid(),
        ),
    };
    Ok(Matcher {
        extensions,
        paths,
        min_size: m.min_size.map(|s| s.0),
        max_size: m.max_size.map(|s| s.0),
        owner,
    })
}

/// A gitignore-style pattern as globs over paths from the volume root (no
/// leading `/`): a leading `/` anchors it at the root, a pattern without `/`
/// matches at any depth, a trailing `/` (a folder) takes everything under it,
/// and a match of a folder takes everything under it too.
fn gitignore_globs(p: &str) -> Vec<String> {
    let p = p.trim();
    let dir_only = p.ends_with('/');
    let body = p.trim_end_matches('/');
    let anchored = body.starts_with('/') || body.trim_start_matches('/').contains('/');
    let body = body.trim_start_matches('/');
    let base = if anchored || body.starts_with("**") {
        body.to_string()
    } else {
        format!("**/{body}")
    };
    let mut v = vec![format!("{base}/**")];
    if !dir_only {
        v.push(base);
    }
    v
}

#[cfg(test)]
mod tests;
