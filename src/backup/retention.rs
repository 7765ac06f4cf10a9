//! Snapshot retention: which snapshots `forget --keep-*` keeps, with restic's
//! semantics (restic's `internal/data/snapshot_policy.go`).
//!
//! # What is kept
//!
//! Snapshots are grouped by the paths they back up (the sorted list of paths),
//! and each group is decided on its own: a rule never looks at the snapshots of
//! another group. Within a group the snapshots are taken from the newest to the
//! oldest (equal times: in the order of their ids). A snapshot is kept when at
//! least one rule keeps it, and every rule that keeps it is given as a reason;
//! all other snapshots are removed.
//!
//! - `last N` keeps the N newest snapshots ("last snapshot").
//! - `hourly N`, `daily N`, `weekly N`, `monthly N`, `yearly N` keep, for each of
//!   the N most recent hours (days, weeks, months, years) that have at least one
//!   snapshot, the newest snapshot of that period ("daily snapshot" …). Periods
//!   are calendar periods in the time zone given to [`apply`] (the local time
//!   zone, in the CLI), not spans counted back from now: an hour is :00 to :59, a
//!   day 00:00 to 23:59, a week Monday to Sunday (ISO weeks, numbered within the
//!   ISO year), a month and a year the calendar ones. Periods without a snapshot
//!   are not counted, so `daily 7` keeps the last seven days that have a snapshot,
//!   however far apart. If a rule still has periods left when it reaches the
//!   oldest snapshot of the group, it keeps that oldest snapshot as well, even
//!   when a newer snapshot of the same period was already kept ("oldest daily
//!   snapshot" …): the kept history then reaches back as far as possible.
//! - `within D` keeps every snapshot made less than D before the newest
//!   snapshot of the group: strictly after (newest − D), so a snapshot exactly D
//!   older than the newest is removed ("within 2days"). Snapshots dated in the
//!   future (after the moment `forget` runs) are not taken as the newest, so a
//!   wrong clock on one backup cannot make this rule drop the others; they are
//!   themselves always kept by this rule, and if every snapshot of a group is in
//!   the future, all are kept. D is a duration as humantime reads it (`36h`,
//!   `2days`, `1week`); a D of zero means the rule is not given.
//! - `tags` keeps every snapshot that matches at least one entry ("tag keep").
//!   An entry is a tag list: tags separated by commas, which the snapshot must all
//!   have (`daily,important` keeps the snapshots that have both tags). The empty
//!   entry matches the snapshots that have no tag at all ("untagged").
//!
//! Counts of 0, no `within` and no `tags` mean "rule not given". A policy with
//! no rule ([`KeepPolicy::is_empty`]) would remove every snapshot; callers refuse
//! it, like restic. A policy with rules can still keep nothing of a group (only
//! `tags`, and no snapshot of the group matches): restic refuses to run then
//! ("refusing to delete last snapshot of snapshot group"); [`apply`] only
//! decides, and leaves that check to its caller.
//!
//! Applying a policy again to the snapshots it kept (at the same moment, in the
//! same time zone) keeps all of them.
//!
//! # Differences from restic
//!
//! - Periods are computed in one time zone, the one given to [`apply`]; restic
//!   uses for each snapshot the UTC offset recorded in its timestamp (the zone
//!   of the machine that made it).
//! - `within` is an exact duration (humantime units: a day is 24h, a month
//!   30.44 days, a year 365.25 days); restic's `--keep-within 1y2m3d4h`
//!   counts calendar years and months back from the newest snapshot. Days and
//!   hours give the same result.
//! - Snapshots with equal times are ordered by id, so the result does not depend
//!   on the order they were listed in; restic keeps the listing order.
//! - Groups are by paths only: restic's default `--group-by host,paths`, the
//!   host being always the same here; there is no other grouping.
//! - There is no "unlimited" count (restic's `-1`; a large N does the same) and
//!   no `--keep-within-hourly` … rules.
//! - Reasons are listed as last, hourly, daily, weekly, monthly, yearly, within,
//!   tags (restic lists tags and within first), and worded "tag a,b" (restic:
//!   "has tags [a, b]") and "within 2days" (humantime's spelling of D).
//!
//! Pure: no I/O. [`apply`] reads the clock once (for the snapshots in the
//! future); [`apply_at`] takes that moment as an argument.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use std::collections::BTreeMap;
use std::time::Duration;

/// One snapshot as the policy sees it.
#[derive(Clone, Debug)]
pub struct SnapshotMeta {
    pub id: String,
    pub time: DateTime<Utc>,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
}

/// `--keep-*` options. 0 / None / empty = rule not given (a `within` of zero
/// too). Every field may be left out when deserialising.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct KeepPolicy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    #[serde(with = "humantime_serde", default)]
    pub within: Option<Duration>,
    /// Tag lists: `"a,b"` matches the snapshots that have both a and b; `""`
    /// the snapshots without any tag.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl KeepPolicy {
    /// True when no rule is given: applying it would remove every snapshot, so callers refuse it.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(n, _, _)| *n == 0)
            && self.within_rule().is_none()
            && self.tags.is_empty()
    }

    /// "last 3, daily 7, within 2days, tag keep" — for messages ("no rule" when empty).
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .counts()
            .iter()
            .filter(|(n, _, _)| *n > 0)
            .map(|(n, unit, _)| format!("{} {n}", unit.name()))
            .collect();
        if let Some(d) = self.within_rule() {
            parts.push(within_reason(d));
        }
        parts.extend(self.tags.iter().map(|t| tag_reason(&tag_list(t))));
        if parts.is_empty() {
            "no rule".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// The counted rules, in the order their reasons are listed.
    fn counts(&self) -> [(u32, Unit, &'static str); 6] {
        [
            (self.last, Unit::Last, "last snapshot"),
            (self.hourly, Unit::Hour, "hourly snapshot"),
            (self.daily, Unit::Day, "daily snapshot"),
            (self.weekly, Unit::Week, "weekly snapshot"),
            (self.monthly, Unit::Month, "monthly snapshot"),
            (self.yearly, Unit::Year, "yearly snapshot"),
        ]
    }

    fn within_rule(&self) -> Option<Duration> {
        self.within.filter(|d| !d.is_zero())
    }
}

/// What the policy decided for one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub id: String,
    pub keep: bool,
    /// Every rule that keeps the snapshot, e.g. `["last snapshot", "daily
    /// snapshot", "within 2days", "tag keep"]`; empty when it is removed.
    pub reasons: Vec<String>,
}

/// Decide for every snapshot. Snapshots are grouped by their `paths` (sorted list; like restic's default
/// `--group-by paths`, the host being always the same here); each group is decided on its own.
/// The result has one Decision per input snapshot, ordered newest first (ties: by id).
/// Snapshots after the current time are in the future for `within` (see the module doc).
pub fn apply<Tz: TimeZone>(
    policy: &KeepPolicy,
    snapshots: &[SnapshotMeta],
    tz: &Tz,
) -> Vec<Decision> {
    apply_at(policy, snapshots, tz, Utc::now())
}

/// [`apply`], with `now` as the current time: snapshots after it are in the future.
pub fn apply_at<Tz: TimeZone>(
    policy: &KeepPolicy,
    snapshots: &[SnapshotMeta],
    tz: &Tz,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut order: Vec<usize> = (0..snapshots.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&snapshots[a], &snapshots[b]);
        b.time.cmp(&a.time).then_with(|| a.id.cmp(&b.id))
    });
    let mut groups: BTreeMap<Vec<&str>, Vec<usize>> = BTreeMap::new();
    for &i in &order {
        let mut key: Vec<&str> = snapshots[i].paths.iter().map(String::as_str).collect();
        key.sort_unstable();
        groups.entry(key).or_default().push(i);
    }
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); snapshots.len()];
    for members in groups.values() {
        let group: Vec<&SnapshotMeta> = members.iter().map(|&i| &snapshots[i]).collect();
        for (&i, r) in members.iter().zip(decide_group(policy, &group, tz, now)) {
            reasons[i] = r;
        }
    }
    order
        .into_iter()
        .map(|i| {
            let reasons = std::mem::take(&mut reasons[i]);
            Decision {
                id: snapshots[i].id.clone(),
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect()
}

/// The periods of the counted rules (`Last`: each snapshot its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Last,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Last => "last",
            Unit::Hour => "hourly",
            Unit::Day => "daily",
            Unit::Week => "weekly",
            Unit::Month => "monthly",
            Unit::Year => "yearly",
        }
    }

    /// The period of a snapshot: restic's `ymdh`, `ymd`, `yw`, `ym`, `y`, and
    /// for `Last` the snapshot's position (`always`).
    fn bucket<Tz: TimeZone>(
        self,
        nr: usize,
        time: &DateTime<Utc>,
        tz: &Tz,
    ) -> (i64, u32, u32, u32) {
        let t = time.with_timezone(tz);
        let year = i64::from(t.year());
        match self {
            Unit::Last => (nr as i64, 0, 0, 0),
            Unit::Hour => (year, t.month(), t.day(), t.hour()),
            Unit::Day => (year, t.month(), t.day(), 0),
            Unit::Week => {
                let w = t.iso_week();
                (i64::from(w.year()), w.week(), 0, 0)
            }
            Unit::Month => (year, t.month(), 0, 0),
            Unit::Year => (year, 0, 0, 0),
        }
    }
}

fn within_reason(d: Duration) -> String {
    format!("within {}", humantime::format_duration(d))
}

/// A `tags` entry as restic reads a `--keep-tag`: split at commas, each tag trimmed.
fn tag_list(entry: &str) -> Vec<&str> {
    entry.split(',').map(str::trim).collect()
}

fn tag_reason(list: &[&str]) -> String {
    match list {
        [""] => "untagged".to_string(),
        _ => format!("tag {}", list.join(",")),
    }
}

/// restic's `Snapshot.HasTags`: the snapshot has every tag of the list; an empty
/// tag matches a snapshot without tags.
fn has_tags(snapshot: &SnapshotMeta, list: &[&str]) -> bool {
    for &tag in list {
        if tag.is_empty() && snapshot.tags.is_empty() {
            return true;
        }
        if !snapshot.tags.iter().any(|t| t == tag) {
            return false;
        }
    }
    true
}

/// One group, sorted newest first: the reasons to keep each snapshot, in that order.
fn decide_group<Tz: TimeZone>(
    policy: &KeepPolicy,
    group: &[&SnapshotMeta],
    tz: &Tz,
    now: DateTime<Utc>,
) -> Vec<Vec<String>> {
    struct Counted {
        left: u32,
        unit: Unit,
        reason: &'static str,
        last: Option<(i64, u32, u32, u32)>,
    }
    let mut counted: Vec<Counted> = policy
        .counts()
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(left, unit, reason)| Counted {
            left,
            unit,
            reason,
            last: None,
        })
        .collect();

    // `within`: kept when strictly after the cut-off; `None` keeps everything
    // (every snapshot in the future, or D reaching before the start of time).
    let within = policy.within_rule().map(|d| {
        let newest = group.iter().map(|s| s.time).filter(|t| *t < now).max();
        let cutoff = newest.and_then(|n| {
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| n.checked_sub_signed(d))
        });
        (cutoff, within_reason(d))
    });
    let tags: Vec<(Vec<&str>, String)> = policy
        .tags
        .iter()
        .map(|entry| {
            let list = tag_list(entry);
            let reason = tag_reason(&list);
            (list, reason)
        })
        .collect();

    let oldest = group.len().saturating_sub(1);
    group
        .iter()
        .enumerate()
        .map(|(nr, s)| {
            let mut reasons = Vec::new();
            for rule in counted.iter_mut().filter(|r| r.left > 0) {
                let bucket = rule.unit.bucket(nr, &s.time, tz);
                let same = rule.last == Some(bucket);
                if !same || nr == oldest {
                    rule.last = Some(bucket);
                    rule.left -= 1;
                    reasons.push(if same {
                        format!("oldest {}", rule.reason)
                    } else {
                        rule.reason.to_string()
                    });
                }
            }
            if let Some((cutoff, reason)) = &within {
                if cutoff.is_none_or(|c| s.time > c) {
                    reasons.push(reason.clone());
                }
            }
            for (list, reason) in &tags {
                if has_tags(s, list) {
                    reasons.push(reason.clone());
                }
            }
            reasons
        })
        .collect()
}

#[cfg(test)]
mod tests;
