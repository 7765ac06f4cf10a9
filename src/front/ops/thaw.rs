//! `thaw`: asks for the thaws that files in an archive class need to be read.

use super::{children, display, fs_err, join, resolve};
use crate::data::volume::ThawSettings;
use crate::format::Kind;
use crate::fs::thaw::FileThaw;
use crate::fs::Fs;
use crate::store::ThawTier;
use serde::{Deserialize, Serialize};

/// One file that needs (or needed) a thaw.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThawedFile {
    pub path: String,
    /// `requested` (thaws asked now), `in_progress` (asked before, still
    /// running), `readable` (thawed) or `failed` (a thaw could not be asked).
    pub state: String,
    /// Chunks that need a thaw, and those of them not readable yet.
    pub chunks: usize,
    pub waiting: usize,
    /// Shards: thaws requested now, in progress, thawed already.
    pub requested: usize,
    pub in_progress: usize,
    pub ready: usize,
    /// The usual wait of the slowest thaw in progress ("up to 12 hours").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThawReport {
    pub tier: String,
    pub days: u32,
    /// Files looked at, and those readable without any thaw.
    pub files: u64,
    pub instant: u64,
    /// The files that need a thaw, in the order met.
    pub thawing: Vec<ThawedFile>,
    /// Shards whose thaw was requested now, and those in progress.
    pub requested: usize,
    pub in_progress: usize,
    /// The usual wait of the slowest thaw in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
    /// What could not be done, one line each.
    pub errors: Vec<String>,
}

fn state_of(t: &FileThaw) -> &'static str {
    if t.short > 0 {
        "failed"
    } else if t.readable() {
        "readable"
    } else if t.requested > 0 {
        "requested"
    } else {
        "in_progress"
    }
}

/// `thaw`: for every file at or below `paths`, asks for the thaws its
/// chunks need to be read (each chunk: only as many archived shards as it
/// lacks of k); thaws in progress are counted, not asked again.
pub async fn thaw(fs: &Fs, paths: &[String], tier: &str, days: u32) -> Result<ThawReport, String> {
    if paths.is_empty() {
        return Err("nothing to thaw: give one or more paths in the volume".into());
    }
    let tier = ThawTier::parse(tier)?;
    if days == 0 {
        return Err("--days must be at least 1 (how long a thawed copy stays readable)".into());
    }
    let how = ThawSettings { tier, days };
    let mut r = ThawReport {
        tier: tier.name().into(),
        days,
        ..Default::default()
    };
    let mut plan = Vec::new();
    for p in paths {
        plan.push((display(p), resolve(fs, p).await?));
    }
    let mut wait = None;
    while let Some((path, a)) = plan.pop() {
        match a.kind {
            Kind::Dir => match children(fs, a.ino).await {
                Ok(kids) => {
                    for (name, ino, _) in kids.into_iter().rev() {
                        match fs.getattr(ino).await {
                            Ok(ka) => plan.push((join(&path, &name), ka)),
                            Err(e) => r.errors.push(fs_err(&join(&path, &name), e)),
                        }
                    }
                }
                Err(e) => r.errors.push(fs_err(&path, e)),
            },
            Kind::File => {
                r.files += 1;
                let t = match fs.thaw_file(a.ino, how).await {
                    Ok(t) => t,
                    Err(e) => {
                        r.errors.push(fs_err(&path, e));
                        continue;
                    }
                };
                if t.needing == 0 {
                    r.instant += 1;
                    continue;
                }
                r.requested += t.requested;
                r.in_progress += t.in_progress;
                wait = crate::data::volume::longer_wait(wait, t.wait);
                if t.short > 0 {
                    r.errors.push(format!(
                        "{path}: a thaw could not be requested for {} chunk(s): {}",
                        t.short,
                        t.errors.first().cloned().unwrap_or_default()
                    ));
                }
                r.thawing.push(ThawedFile {
                    path,
                    state: state_of(&t).into(),
                    chunks: t.needing,
                    waiting: t.waiting,
                    requested: t.requested,
                    in_progress: t.in_progress,
                    ready: t.ready,
                    wait: t.wait.map(|w| w.to_string()),
                    errors: t.errors,
                });
            }
            _ => {}
        }
    }
    r.wait = wait.map(|w| w.to_string());
    Ok(r)
}

pub fn render_thaw(r: &ThawReport) -> String {
    let mut out = String::new();
    for f in &r.thawing {
        let wait = f
            .wait
            .as_deref()
            .map(|w| format!(", expected in {w}"))
            .unwrap_or_default();
        let line = match f.state.as_str() {
            "requested" => format!(
                "thaw requested for {} shard(s) of {} chunk(s){wait}",
                f.requested, f.waiting
            ),
            "in_progress" => format!(
                "thaw in progress for {} chunk(s){wait} from the request; nothing new requested",
                f.waiting
            ),
            "readable" => "thawed: readable now".to_string(),
            _ => format!(
                "a thaw could not be requested ({})",
                f.errors.first().cloned().unwrap_or_default()
            ),
        };
        out.push_str(&format!("{}: {line}\n", f.path));
    }
    let wait = r
        .wait
        .as_deref()
        .map(|w| format!("; the slowest is expected in {w}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "{} file(s): {} readable without a thaw, {} in an archive class; {} thaw request(s) sent now ({} tier, thawed copies kept {} days), {} shard(s) being thawed{wait}\n",
        r.files,
        r.instant,
        r.thawing.len(),
        r.requested,
        r.tier,
        r.days,
        r.in_progress,
    ));
    out
}
