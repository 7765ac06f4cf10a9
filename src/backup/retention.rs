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
mod tests {
    use super::*;
    use chrono::{FixedOffset, NaiveDateTime};
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    fn plus2() -> FixedOffset {
        FixedOffset::east_opt(2 * 3600).unwrap()
    }

    /// A time given as "YYYY-MM-DD HH:MM[:SS[.f]]" local time in `tz`.
    fn local(tz: &FixedOffset, s: &str) -> DateTime<Utc> {
        let n = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
            .unwrap();
        tz.from_local_datetime(&n).unwrap().with_timezone(&Utc)
    }

    fn snap(id: &str, time: &str) -> SnapshotMeta {
        SnapshotMeta {
            id: id.to_string(),
            time: local(&plus2(), time),
            tags: vec![],
            paths: vec!["/data".to_string()],
        }
    }

    fn tagged(id: &str, time: &str, tags: &[&str]) -> SnapshotMeta {
        SnapshotMeta {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..snap(id, time)
        }
    }

    fn now() -> DateTime<Utc> {
        local(&plus2(), "2030-01-01 00:00")
    }

    /// The kept snapshots, newest first, as "id: reason; reason".
    fn kept(policy: &KeepPolicy, snapshots: &[SnapshotMeta]) -> Vec<String> {
        apply_at(policy, snapshots, &plus2(), now())
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| format!("{}: {}", d.id, d.reasons.join("; ")))
            .collect()
    }

    fn days(n: u64) -> Duration {
        Duration::from_secs(n * 86_400)
    }

    /// One snapshot a day at 12:00 from 2024-03-01 to 2024-03-10, ids d01..d10.
    fn ten_days() -> Vec<SnapshotMeta> {
        (1..=10)
            .map(|d| snap(&format!("d{d:02}"), &format!("2024-03-{d:02} 12:00")))
            .collect()
    }

    #[test]
    fn last_keeps_the_newest() {
        let policy = KeepPolicy {
            last: 3,
            ..Default::default()
        };
        assert_eq!(
            kept(&policy, &ten_days()),
            [
                "d10: last snapshot",
                "d09: last snapshot",
                "d08: last snapshot"
            ]
        );
        let policy = KeepPolicy {
            last: 30,
            ..Default::default()
        };
        assert_eq!(kept(&policy, &ten_days()).len(), 10);
    }

    #[test]
    fn hourly_keeps_the_newest_of_each_hour() {
        let s = [
            snap("a", "2024-03-01 10:05"),
            snap("b", "2024-03-01 10:55"),
            snap("c", "2024-03-01 11:00"),
            snap("d", "2024-03-01 11:59:59"),
            snap("e", "2024-03-01 13:30"),
            snap("f", "2024-03-02 13:10"),
        ];
        let policy = KeepPolicy {
            hourly: 3,
            ..Default::default()
        };
        assert_eq!(
            kept(&policy, &s),
            [
                "f: hourly snapshot",
                "e: hourly snapshot",
                "d: hourly snapshot"
            ]
        );
        let policy = KeepPolicy {
            hourly: 4,
            ..Default::default()
        };
        assert_eq!(kept(&policy, &s)[3], "b: hourly snapshot");
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_with_a_snapshot() {
        let s = [
            snap("a", "2024-03-01 09:00"),
            snap("b", "2024-03-01 23:59"),
            snap("c", "2024-03-03 00:00"),
            snap("d", "2024-03-03 08:00"),
            snap("e", "2024-03-07 08:00"),
        ];
        let policy = KeepPolicy {
            daily: 2,
            ..Default::default()
        };
        assert_eq!(
            kept(&policy, &s),
            ["e: daily snapshot", "d: daily snapshot"]
        );
        let policy = KeepPolicy {
            daily: 3,
            ..Default::default()
        };
        assert_eq!(
            kept(&policy, &s),
            [
                "e: daily snapshot",
                "d: daily snapshot",
                "b: daily snapshot"
            ]
        );
    }

    #[test]
    fn periods_are_in_the_given_time_zone() {
        // 23:30 and 22:30 UTC on 1 March: the same day in UTC, two days at +02:00.
        let s = [
            SnapshotMeta {
                time: local(&FixedOffset::east_opt(0).unwrap(), "2024-03-01 23:30"),
                ..snap("late", "2000-01-01 00:00")
            },
            SnapshotMeta {
                time: local(&FixedOffset::east_opt(0).unwrap(), "2024-03-01 21:30"),
                ..snap("early", "2000-01-01 00:00")
            },
        ];
        let policy = KeepPolicy {
            daily: 5,
            ..Default::default()
        };
        let utc = apply_at(&policy, &s, &Utc, now());
        let here = apply_at(&policy, &s, &plus2(), now());
        assert_eq!(
            utc.iter().map(|d| d.reasons.join("; ")).collect::<Vec<_>>(),
            ["daily snapshot", "oldest daily snapshot"]
        );
        assert_eq!(
            here.iter()
                .map(|d| d.reasons.join("; "))
                .collect::<Vec<_>>(),
            ["daily snapshot", "daily snapshot"]
        );
    }

    #[test]
    fn weekly_uses_iso_weeks_across_the_new_year() {
        // Thu 31 Dec 2020 and Sun 3 Jan 2021 are both in ISO week 2020-W53;
        // Mon 4 Jan 2021 starts 2021-W01; Sun 27 Dec 2020 is 2020-W52.
        let s = [
            snap("w52", "2020-12-27 23:00"),
            snap("w53a", "2020-12-31 12:00"),
            snap("w53b", "2021-01-03 23:59"),
            snap("w01", "2021-01-04 00:00"),
        ];
        let policy = KeepPolicy {
            weekly: 3,
            ..Default::default()
        };
        assert_eq!(
            kept(&policy, &s),
            [
                "w01: weekly snapshot",
                "w53b: weekly snapshot",
                "w52: weekly snapshot"
            ]
        );
    }

    #[test]
    fn monthly_and_yearly() {
        let s = [
            snap("2022-12", "2022-12-31 23:00"),
            snap("2023-01", "2023-01-15 12:00"),
            snap("2023-06a", "2023-06-01 00:00"),
            snap("2023-06b", "2023-06-30 23:59"),
            snap("2024-02", "2024-02-29 12:00"),
        ];
        let monthly = KeepPolicy {
            monthly: 3,
            ..Default::default()
        };
        assert_eq!(
            kept(&monthly, &s),
            [
                "2024-02: monthly snapshot",
                "2023-06b: monthly snapshot",
                "2023-01: monthly snapshot"
            ]
        );
        let yearly = KeepPolicy {
            yearly: 2,
            ..Default::default()
        };
        assert_eq!(
            kept(&yearly, &s),
            ["2024-02: yearly snapshot", "2023-06b: yearly snapshot"]
        );
    }

    #[test]
    fn the_oldest_snapshot_is_kept_while_periods_are_left() {
        // Two days only, daily 5: the newest of each day, and the oldest one as well.
        let s = [
            snap("a", "2024-03-01 08:00"),
            snap("b", "2024-03-01 09:00"),
            snap("c", "2024-03-01 10:00"),
            snap("d", "2024-03-02 10:00"),
        ];
        let policy = KeepPolicy {
            daily: 5,
            ..Default::default()
        };
        assert_eq!(
            kept(&policy, &s),
            [
                "d: daily snapshot",
                "c: daily snapshot",
                "a: oldest daily snapshot"
            ]
        );
        // No period left when the oldest is reached: not kept.
        let policy = KeepPolicy {
            daily: 2,
            ..Default::default()
        };
        assert_eq!(
            kept(&policy, &s),
            ["d: daily snapshot", "c: daily snapshot"]
        );
        // A single snapshot is kept as the newest of its day, not as the oldest.
        assert_eq!(kept(&policy, &s[..1]), ["a: daily snapshot"]);
    }

    #[test]
    fn within_counts_back_from_the_newest_snapshot() {
        let policy = KeepPolicy {
            within: Some(days(3)),
            ..Default::default()
        };
        // d10 is 2024-03-10 12:00; the cut-off 2024-03-07 12:00 is not after itself.
        assert_eq!(
            kept(&policy, &ten_days()),
            [
                "d10: within 3days",
                "d09: within 3days",
                "d08: within 3days"
            ]
        );
        let mut s = ten_days();
        s.push(snap("just-after", "2024-03-07 12:00:00.001"));
        assert_eq!(kept(&policy, &s)[3], "just-after: within 3days");
        // A zero duration is no rule.
        let zero = KeepPolicy {
            within: Some(Duration::ZERO),
            ..Default::default()
        };
        assert!(zero.is_empty());
        assert!(kept(&zero, &s).is_empty());
    }

    #[test]
    fn within_ignores_snapshots_in_the_future() {
        let policy = KeepPolicy {
            within: Some(days(2)),
            ..Default::default()
        };
        let mut s = ten_days();
        s.push(snap("future", "2031-01-01 00:00"));
        // The newest is d10 still; the future one is kept too.
        assert_eq!(
            kept(&policy, &s),
            [
                "future: within 2days",
                "d10: within 2days",
                "d09: within 2days"
            ]
        );
        // Every snapshot in the future: all kept.
        let early = local(&plus2(), "2000-01-01 00:00");
        let decisions = apply_at(&policy, &ten_days(), &plus2(), early);
        assert!(decisions.iter().all(|d| d.keep));
        // A snapshot at exactly `now` is not before it, so in the future: the
        // newest is d09, the cut-off d07's time.
        let at_d10 = local(&plus2(), "2024-03-10 12:00");
        let decisions = apply_at(&policy, &ten_days(), &plus2(), at_d10);
        let ids: Vec<&str> = decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(ids, ["d10", "d09", "d08"]);
    }

    #[test]
    fn huge_within_keeps_everything() {
        let policy = KeepPolicy {
            within: Some(Duration::from_secs(u64::MAX)),
            ..Default::default()
        };
        assert_eq!(kept(&policy, &ten_days()).len(), 10);
    }

    #[test]
    fn tags_keep_matching_snapshots() {
        let s = [
            tagged("none", "2024-03-01 00:00", &[]),
            tagged("a", "2024-03-02 00:00", &["a"]),
            tagged("b", "2024-03-03 00:00", &["b"]),
            tagged("ab", "2024-03-04 00:00", &["a", "b"]),
            tagged("c", "2024-03-05 00:00", &["c"]),
        ];
        let either = KeepPolicy {
            tags: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        assert_eq!(
            kept(&either, &s),
            ["ab: tag a; tag b", "b: tag b", "a: tag a"]
        );
        let both = KeepPolicy {
            tags: vec!["a, b".into()],
            ..Default::default()
        };
        assert_eq!(kept(&both, &s), ["ab: tag a,b"]);
        let untagged = KeepPolicy {
            tags: vec!["".into()],
            ..Default::default()
        };
        assert_eq!(kept(&untagged, &s), ["none: untagged"]);
        let missing = KeepPolicy {
            tags: vec!["zzz".into()],
            ..Default::default()
        };
        assert!(!missing.is_empty());
        assert!(kept(&missing, &s).is_empty());
    }

    #[test]
    fn rules_combine_and_every_reason_is_listed() {
        let mut s = ten_days();
        s[1].tags = vec!["keep".into()];
        s.push(snap("d10b", "2024-03-10 08:00"));
        let policy = KeepPolicy {
            last: 2,
            daily: 3,
            weekly: 2,
            within: Some(days(1)),
            tags: vec!["keep".into()],
            ..Default::default()
        };
        // 2024-03-10 is a Sunday: d10 ends one ISO week, d03 the one before.
        assert_eq!(
            kept(&policy, &s),
            [
                "d10: last snapshot; daily snapshot; weekly snapshot; within 1day",
                "d10b: last snapshot; within 1day",
                "d09: daily snapshot",
                "d08: daily snapshot",
                "d03: weekly snapshot",
                "d02: tag keep",
            ]
        );
    }

    #[test]
    fn groups_by_paths_are_decided_apart() {
        let at = |id: &str, time: &str, paths: &[&str]| SnapshotMeta {
            paths: paths.iter().map(|p| p.to_string()).collect(),
            ..snap(id, time)
        };
        let s = [
            at("ab1", "2024-03-01 00:00", &["/a", "/b"]),
            at("ba2", "2024-03-02 00:00", &["/b", "/a"]),
            at("a1", "2024-03-03 00:00", &["/a"]),
            at("a2", "2024-03-04 00:00", &["/a"]),
            at("none", "2024-03-05 00:00", &[]),
            at("b1", "2024-01-01 00:00", &["/b"]),
        ];
        let policy = KeepPolicy {
            last: 1,
            within: Some(days(1)),
            ..Default::default()
        };
        assert_eq!(
            kept(&policy, &s),
            [
                "none: last snapshot; within 1day",
                "a2: last snapshot; within 1day",
                "ba2: last snapshot; within 1day",
                "b1: last snapshot; within 1day",
            ]
        );
    }

    #[test]
    fn decisions_are_newest_first_with_ties_by_id() {
        let s = [
            snap("b", "2024-03-01 00:00"),
            snap("z", "2024-02-01 00:00"),
            snap("c", "2024-03-01 00:00"),
            snap("a", "2024-03-01 00:00"),
            snap("y", "2024-04-01 00:00"),
        ];
        let policy = KeepPolicy {
            last: 2,
            ..Default::default()
        };
        let decisions = apply_at(&policy, &s, &plus2(), now());
        let ids: Vec<&str> = decisions.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["y", "a", "b", "c", "z"]);
        assert_eq!(
            decisions[1],
            Decision {
                id: "a".into(),
                keep: true,
                reasons: vec!["last snapshot".into()]
            }
        );
        assert_eq!(
            decisions[2],
            Decision {
                id: "b".into(),
                keep: false,
                reasons: vec![]
            }
        );
        assert!(apply_at(&policy, &[], &plus2(), now()).is_empty());
    }

    #[test]
    fn apply_reads_the_clock() {
        let policy = KeepPolicy {
            within: Some(days(2)),
            last: 1,
            ..Default::default()
        };
        assert_eq!(
            apply(&policy, &ten_days(), &plus2()),
            apply_at(&policy, &ten_days(), &plus2(), now())
        );
    }

    #[test]
    fn is_empty_and_describe() {
        let empty = KeepPolicy::default();
        assert!(empty.is_empty());
        assert_eq!(empty.describe(), "no rule");
        let tags_only = KeepPolicy {
            tags: vec!["keep".into()],
            ..Default::default()
        };
        assert!(!tags_only.is_empty());
        assert_eq!(tags_only.describe(), "tag keep");
        for one in [
            KeepPolicy {
                last: 1,
                ..Default::default()
            },
            KeepPolicy {
                hourly: 1,
                ..Default::default()
            },
            KeepPolicy {
                daily: 1,
                ..Default::default()
            },
            KeepPolicy {
                weekly: 1,
                ..Default::default()
            },
            KeepPolicy {
                monthly: 1,
                ..Default::default()
            },
            KeepPolicy {
                yearly: 1,
                ..Default::default()
            },
            KeepPolicy {
                within: Some(Duration::from_secs(1)),
                ..Default::default()
            },
        ] {
            assert!(!one.is_empty(), "{one:?}");
        }
        let all = KeepPolicy {
            last: 3,
            hourly: 24,
            daily: 7,
            weekly: 4,
            monthly: 12,
            yearly: 10,
            within: Some(days(2) + Duration::from_secs(3600)),
            tags: vec!["keep".into(), "a , b".into(), "".into()],
        };
        assert_eq!(
            all.describe(),
            "last 3, hourly 24, daily 7, weekly 4, monthly 12, yearly 10, \
             within 2days 1h, tag keep, tag a,b, untagged"
        );
        let some = KeepPolicy {
            last: 3,
            daily: 7,
            within: Some(days(2)),
            tags: vec!["keep".into()],
            ..Default::default()
        };
        assert_eq!(some.describe(), "last 3, daily 7, within 2days, tag keep");
    }

    #[test]
    fn policy_serde() {
        let p: KeepPolicy =
            toml::from_str("daily = 7\nwithin = \"2days\"\ntags = [\"keep\"]").unwrap();
        assert_eq!(
            p,
            KeepPolicy {
                daily: 7,
                within: Some(days(2)),
                tags: vec!["keep".into()],
                ..Default::default()
            }
        );
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<KeepPolicy>(&json).unwrap(), p);
        assert_eq!(
            serde_json::from_str::<KeepPolicy>("{}").unwrap(),
            KeepPolicy::default()
        );
    }

    /// restic's own test (`TestApplyPolicy` in internal/data/snapshot_policy_test.go):
    /// its snapshots, and for the policies that exist here, the snapshots and
    /// reasons of its golden files (`testdata/policy_keep_snapshots_N`), the
    /// reasons in this module's wording.
    #[test]
    fn matches_restic_golden_files() {
        let lines: Vec<(String, Vec<String>)> = RESTIC_SNAPSHOTS
            .lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                let tags = f
                    .get(2)
                    .map_or(vec![], |t| t.split(',').map(String::from).collect());
                (format!("{} {}", f[0], f[1]), tags)
            })
            .collect();
        let snapshots: Vec<SnapshotMeta> = lines
            .iter()
            .enumerate()
            .map(|(i, (time, tags))| SnapshotMeta {
                id: format!("{i:03}"),
                time: local(&FixedOffset::east_opt(0).unwrap(), time),
                tags: tags.clone(),
                paths: vec![],
            })
            .collect();
        assert_eq!(snapshots.len(), 103);
        let time_of: HashMap<&str, &str> = snapshots
            .iter()
            .zip(&lines)
            .map(|(s, (time, _))| (s.id.as_str(), time.as_str()))
            .collect();
        let p = |f: fn(&mut KeepPolicy)| {
            let mut p = KeepPolicy::default();
            f(&mut p);
            p
        };
        let policies = [
            p(|_| {}),
            p(|p| p.last = 10),
            p(|p| p.last = 15),
            p(|p| p.hourly = 20),
            p(|p| p.daily = 3),
            p(|p| p.daily = 10),
            p(|p| p.daily = 30),
            p(|p| (p.last, p.daily) = (5, 5)),
            p(|p| (p.last, p.daily) = (2, 10)),
            p(|p| p.weekly = 2),
            p(|p| p.weekly = 4),
            p(|p| (p.daily, p.weekly) = (3, 4)),
            p(|p| p.monthly = 6),
            p(|p| (p.daily, p.weekly, p.monthly) = (2, 2, 6)),
            p(|p| p.yearly = 10),
            p(|p| (p.daily, p.weekly, p.monthly, p.yearly) = (7, 2, 3, 10)),
            p(|p| p.tags = vec!["foo".into()]),
            p(|p| p.tags = vec!["foo,bar".into()]),
            p(|p| p.tags = vec!["foo".into(), "bar".into()]),
            p(|p| p.within = Some(days(1))),
            p(|p| p.within = Some(days(2))),
            p(|p| p.within = Some(days(7))),
            p(|p| p.within = Some(days(13) + Duration::from_secs(23 * 3600))),
        ];
        assert_eq!(policies.len(), RESTIC_GOLDEN.len());
        for (policy, golden) in policies.iter().zip(RESTIC_GOLDEN) {
            let got: Vec<String> = apply_at(policy, &snapshots, &Utc, now())
                .into_iter()
                .filter(|d| d.keep)
                .map(|d| format!("{}: {}", time_of[d.id.as_str()], d.reasons.join("; ")))
                .collect();
            let want: Vec<&str> = golden.lines().filter(|l| !l.is_empty()).collect();
            assert_eq!(got, want, "{policy:?}");
        }
    }

    /// restic's `testExpireSnapshots`: UTC time, then the tags.
    const RESTIC_SNAPSHOTS: &str = "
2014-09-01 10:20:30
2014-09-02 10:20:30
2014-09-05 10:20:30
2014-09-06 10:20:30
2014-09-08 10:20:30
2014-09-09 10:20:30
2014-09-10 10:20:30
2014-09-11 10:20:30
2014-09-20 10:20:30
2014-09-22 10:20:30
2014-08-08 10:20:30
2014-08-10 10:20:30
2014-08-12 10:20:30
2014-08-13 10:20:30
2014-08-13 10:20:30.1
2014-08-15 10:20:30
2014-08-18 10:20:30
2014-08-20 10:20:30
2014-08-21 10:20:30
2014-08-22 10:20:30
2014-10-01 10:20:30 foo
2014-10-02 10:20:30 foo
2014-10-05 10:20:30 foo
2014-10-06 10:20:30 foo
2014-10-08 10:20:30 foo
2014-10-09 10:20:30 foo
2014-10-10 10:20:30 foo
2014-10-11 10:20:30 foo
2014-10-20 10:20:30 foo
2014-10-22 10:20:30 foo
2014-11-08 10:20:30 foo
2014-11-10 10:20:30 foo
2014-11-12 10:20:30 foo
2014-11-13 10:20:30 foo
2014-11-13 10:20:30.1 bar
2014-11-15 10:20:30 foo,bar
2014-11-18 10:20:30
2014-11-20 10:20:30
2014-11-21 10:20:30
2014-11-22 10:20:30
2015-09-01 10:20:30
2015-09-02 10:20:30
2015-09-05 10:20:30
2015-09-06 10:20:30
2015-09-08 10:20:30
2015-09-09 10:20:30
2015-09-10 10:20:30
2015-09-11 10:20:30
2015-09-20 10:20:30
2015-09-22 10:20:30
2015-08-08 10:20:30
2015-08-10 10:20:30
2015-08-12 10:20:30
2015-08-13 10:20:30
2015-08-13 10:20:30.1
2015-08-15 10:20:30
2015-08-18 10:20:30
2015-08-20 10:20:30
2015-08-21 10:20:30
2015-08-22 10:20:30
2015-10-01 10:20:30
2015-10-02 10:20:30
2015-10-05 10:20:30
2015-10-06 10:20:30
2015-10-08 10:20:30
2015-10-09 10:20:30
2015-10-10 10:20:30
2015-10-11 10:20:30
2015-10-20 10:20:30
2015-10-22 10:20:30
2015-10-22 10:20:30
2015-10-22 10:20:30 foo,bar
2015-10-22 10:20:30 foo,bar
2015-10-22 10:20:30 foo,bar
2015-11-08 10:20:30
2015-11-10 10:20:30
2015-11-12 10:20:30
2015-11-13 10:20:30
2015-11-13 10:20:30.1
2015-11-15 10:20:30
2015-11-18 10:20:30
2015-11-20 10:20:30
2015-11-21 10:20:30
2015-11-22 10:20:30
2016-01-01 01:02:03
2016-01-01 01:03:03
2016-01-01 07:08:03
2016-01-03 07:02:03
2016-01-04 10:23:03
2016-01-04 11:23:03
2016-01-04 12:23:03
2016-01-04 12:24:03
2016-01-04 12:28:03
2016-01-04 12:30:03
2016-01-04 16:23:03
2016-01-05 09:02:03
2016-01-06 08:02:03
2016-01-07 10:02:03
2016-01-08 20:02:03
2016-01-09 21:02:03
2016-01-12 21:02:03
2016-01-12 21:08:03
2016-01-18 12:02:03
";

    const RESTIC_GOLDEN: [&str; 23] = [
        // policy_keep_snapshots_0
        r"
",
        // policy_keep_snapshots_1
        r"
2016-01-18 12:02:03: last snapshot
2016-01-12 21:08:03: last snapshot
2016-01-12 21:02:03: last snapshot
2016-01-09 21:02:03: last snapshot
2016-01-08 20:02:03: last snapshot
2016-01-07 10:02:03: last snapshot
2016-01-06 08:02:03: last snapshot
2016-01-05 09:02:03: last snapshot
2016-01-04 16:23:03: last snapshot
2016-01-04 12:30:03: last snapshot
",
        // policy_keep_snapshots_2
        r"
2016-01-18 12:02:03: last snapshot
2016-01-12 21:08:03: last snapshot
2016-01-12 21:02:03: last snapshot
2016-01-09 21:02:03: last snapshot
2016-01-08 20:02:03: last snapshot
2016-01-07 10:02:03: last snapshot
2016-01-06 08:02:03: last snapshot
2016-01-05 09:02:03: last snapshot
2016-01-04 16:23:03: last snapshot
2016-01-04 12:30:03: last snapshot
2016-01-04 12:28:03: last snapshot
2016-01-04 12:24:03: last snapshot
2016-01-04 12:23:03: last snapshot
2016-01-04 11:23:03: last snapshot
2016-01-04 10:23:03: last snapshot
",
        // policy_keep_snapshots_5
        r"
2016-01-18 12:02:03: hourly snapshot
2016-01-12 21:08:03: hourly snapshot
2016-01-09 21:02:03: hourly snapshot
2016-01-08 20:02:03: hourly snapshot
2016-01-07 10:02:03: hourly snapshot
2016-01-06 08:02:03: hourly snapshot
2016-01-05 09:02:03: hourly snapshot
2016-01-04 16:23:03: hourly snapshot
2016-01-04 12:30:03: hourly snapshot
2016-01-04 11:23:03: hourly snapshot
2016-01-04 10:23:03: hourly snapshot
2016-01-03 07:02:03: hourly snapshot
2016-01-01 07:08:03: hourly snapshot
2016-01-01 01:03:03: hourly snapshot
2015-11-22 10:20:30: hourly snapshot
2015-11-21 10:20:30: hourly snapshot
2015-11-20 10:20:30: hourly snapshot
2015-11-18 10:20:30: hourly snapshot
2015-11-15 10:20:30: hourly snapshot
2015-11-13 10:20:30.1: hourly snapshot
",
        // policy_keep_snapshots_6
        r"
2016-01-18 12:02:03: daily snapshot
2016-01-12 21:08:03: daily snapshot
2016-01-09 21:02:03: daily snapshot
",
        // policy_keep_snapshots_7
        r"
2016-01-18 12:02:03: daily snapshot
2016-01-12 21:08:03: daily snapshot
2016-01-09 21:02:03: daily snapshot
2016-01-08 20:02:03: daily snapshot
2016-01-07 10:02:03: daily snapshot
2016-01-06 08:02:03: daily snapshot
2016-01-05 09:02:03: daily snapshot
2016-01-04 16:23:03: daily snapshot
2016-01-03 07:02:03: daily snapshot
2016-01-01 07:08:03: daily snapshot
",
        // policy_keep_snapshots_8
        r"
2016-01-18 12:02:03: daily snapshot
2016-01-12 21:08:03: daily snapshot
2016-01-09 21:02:03: daily snapshot
2016-01-08 20:02:03: daily snapshot
2016-01-07 10:02:03: daily snapshot
2016-01-06 08:02:03: daily snapshot
2016-01-05 09:02:03: daily snapshot
2016-01-04 16:23:03: daily snapshot
2016-01-03 07:02:03: daily snapshot
2016-01-01 07:08:03: daily snapshot
2015-11-22 10:20:30: daily snapshot
2015-11-21 10:20:30: daily snapshot
2015-11-20 10:20:30: daily snapshot
2015-11-18 10:20:30: daily snapshot
2015-11-15 10:20:30: daily snapshot
2015-11-13 10:20:30.1: daily snapshot
2015-11-12 10:20:30: daily snapshot
2015-11-10 10:20:30: daily snapshot
2015-11-08 10:20:30: daily snapshot
2015-10-22 10:20:30: daily snapshot
2015-10-20 10:20:30: daily snapshot
2015-10-11 10:20:30: daily snapshot
2015-10-10 10:20:30: daily snapshot
2015-10-09 10:20:30: daily snapshot
2015-10-08 10:20:30: daily snapshot
2015-10-06 10:20:30: daily snapshot
2015-10-05 10:20:30: daily snapshot
2015-10-02 10:20:30: daily snapshot
2015-10-01 10:20:30: daily snapshot
2015-09-22 10:20:30: daily snapshot
",
        // policy_keep_snapshots_9
        r"
2016-01-18 12:02:03: last snapshot; daily snapshot
2016-01-12 21:08:03: last snapshot; daily snapshot
2016-01-12 21:02:03: last snapshot
2016-01-09 21:02:03: last snapshot; daily snapshot
2016-01-08 20:02:03: last snapshot; daily snapshot
2016-01-07 10:02:03: daily snapshot
",
        // policy_keep_snapshots_10
        r"
2016-01-18 12:02:03: last snapshot; daily snapshot
2016-01-12 21:08:03: last snapshot; daily snapshot
2016-01-09 21:02:03: daily snapshot
2016-01-08 20:02:03: daily snapshot
2016-01-07 10:02:03: daily snapshot
2016-01-06 08:02:03: daily snapshot
2016-01-05 09:02:03: daily snapshot
2016-01-04 16:23:03: daily snapshot
2016-01-03 07:02:03: daily snapshot
2016-01-01 07:08:03: daily snapshot
",
        // policy_keep_snapshots_11
        r"
2016-01-18 12:02:03: weekly snapshot
2016-01-12 21:08:03: weekly snapshot
",
        // policy_keep_snapshots_12
        r"
2016-01-18 12:02:03: weekly snapshot
2016-01-12 21:08:03: weekly snapshot
2016-01-09 21:02:03: weekly snapshot
2016-01-03 07:02:03: weekly snapshot
",
        // policy_keep_snapshots_13
        r"
2016-01-18 12:02:03: daily snapshot; weekly snapshot
2016-01-12 21:08:03: daily snapshot; weekly snapshot
2016-01-09 21:02:03: daily snapshot; weekly snapshot
2016-01-03 07:02:03: weekly snapshot
",
        // policy_keep_snapshots_14
        r"
2016-01-18 12:02:03: monthly snapshot
2015-11-22 10:20:30: monthly snapshot
2015-10-22 10:20:30: monthly snapshot
2015-09-22 10:20:30: monthly snapshot
2015-08-22 10:20:30: monthly snapshot
2014-11-22 10:20:30: monthly snapshot
",
        // policy_keep_snapshots_15
        r"
2016-01-18 12:02:03: daily snapshot; weekly snapshot; monthly snapshot
2016-01-12 21:08:03: daily snapshot; weekly snapshot
2015-11-22 10:20:30: monthly snapshot
2015-10-22 10:20:30: monthly snapshot
2015-09-22 10:20:30: monthly snapshot
2015-08-22 10:20:30: monthly snapshot
2014-11-22 10:20:30: monthly snapshot
",
        // policy_keep_snapshots_16
        r"
2016-01-18 12:02:03: yearly snapshot
2015-11-22 10:20:30: yearly snapshot
2014-11-22 10:20:30: yearly snapshot
2014-08-08 10:20:30: oldest yearly snapshot
",
        // policy_keep_snapshots_17
        r"
2016-01-18 12:02:03: daily snapshot; weekly snapshot; monthly snapshot; yearly snapshot
2016-01-12 21:08:03: daily snapshot; weekly snapshot
2016-01-09 21:02:03: daily snapshot
2016-01-08 20:02:03: daily snapshot
2016-01-07 10:02:03: daily snapshot
2016-01-06 08:02:03: daily snapshot
2016-01-05 09:02:03: daily snapshot
2015-11-22 10:20:30: monthly snapshot; yearly snapshot
2015-10-22 10:20:30: monthly snapshot
2014-11-22 10:20:30: yearly snapshot
2014-08-08 10:20:30: oldest yearly snapshot
",
        // policy_keep_snapshots_18
        r"
2015-10-22 10:20:30: tag foo
2015-10-22 10:20:30: tag foo
2015-10-22 10:20:30: tag foo
2014-11-15 10:20:30: tag foo
2014-11-13 10:20:30: tag foo
2014-11-12 10:20:30: tag foo
2014-11-10 10:20:30: tag foo
2014-11-08 10:20:30: tag foo
2014-10-22 10:20:30: tag foo
2014-10-20 10:20:30: tag foo
2014-10-11 10:20:30: tag foo
2014-10-10 10:20:30: tag foo
2014-10-09 10:20:30: tag foo
2014-10-08 10:20:30: tag foo
2014-10-06 10:20:30: tag foo
2014-10-05 10:20:30: tag foo
2014-10-02 10:20:30: tag foo
2014-10-01 10:20:30: tag foo
",
        // policy_keep_snapshots_19
        r"
2015-10-22 10:20:30: tag foo,bar
2015-10-22 10:20:30: tag foo,bar
2015-10-22 10:20:30: tag foo,bar
2014-11-15 10:20:30: tag foo,bar
",
        // policy_keep_snapshots_20
        r"
2015-10-22 10:20:30: tag foo; tag bar
2015-10-22 10:20:30: tag foo; tag bar
2015-10-22 10:20:30: tag foo; tag bar
2014-11-15 10:20:30: tag foo; tag bar
2014-11-13 10:20:30.1: tag bar
2014-11-13 10:20:30: tag foo
2014-11-12 10:20:30: tag foo
2014-11-10 10:20:30: tag foo
2014-11-08 10:20:30: tag foo
2014-10-22 10:20:30: tag foo
2014-10-20 10:20:30: tag foo
2014-10-11 10:20:30: tag foo
2014-10-10 10:20:30: tag foo
2014-10-09 10:20:30: tag foo
2014-10-08 10:20:30: tag foo
2014-10-06 10:20:30: tag foo
2014-10-05 10:20:30: tag foo
2014-10-02 10:20:30: tag foo
2014-10-01 10:20:30: tag foo
",
        // policy_keep_snapshots_21
        r"
2016-01-18 12:02:03: within 1day
",
        // policy_keep_snapshots_22
        r"
2016-01-18 12:02:03: within 2days
",
        // policy_keep_snapshots_23
        r"
2016-01-18 12:02:03: within 7days
2016-01-12 21:08:03: within 7days
2016-01-12 21:02:03: within 7days
",
        // policy_keep_snapshots_27
        r"
2016-01-18 12:02:03: within 13days 23h
2016-01-12 21:08:03: within 13days 23h
2016-01-12 21:02:03: within 13days 23h
2016-01-09 21:02:03: within 13days 23h
2016-01-08 20:02:03: within 13days 23h
2016-01-07 10:02:03: within 13days 23h
2016-01-06 08:02:03: within 13days 23h
2016-01-05 09:02:03: within 13days 23h
2016-01-04 16:23:03: within 13days 23h
",
    ];

    // ---- Properties ----

    /// The period of a snapshot, computed another way (chrono's formatting).
    fn period(unit: Unit, t: &DateTime<Utc>, tz: &FixedOffset) -> String {
        let fmt = match unit {
            Unit::Last => unreachable!(),
            Unit::Hour => "%Y-%m-%d %H",
            Unit::Day => "%Y-%m-%d",
            Unit::Week => "%G-W%V",
            Unit::Month => "%Y-%m",
            Unit::Year => "%Y",
        };
        t.with_timezone(tz).format(fmt).to_string()
    }

    fn base() -> DateTime<Utc> {
        // Shortly before 2020, which has an ISO week 53.
        local(&FixedOffset::east_opt(0).unwrap(), "2019-12-20 00:00")
    }

    #[derive(Debug, Clone)]
    struct Case {
        snapshots: Vec<SnapshotMeta>,
        policy: KeepPolicy,
        tz: FixedOffset,
        now: DateTime<Utc>,
    }

    const PATHS: [&[&str]; 4] = [&["/x"], &["/y"], &["/y", "/x"], &["/x", "/y"]];
    const TAGS: [&str; 3] = ["a", "b", "c"];

    fn arb_case() -> impl Strategy<Value = Case> {
        // (seconds between possible times, how many possible times): from dense
        // (many snapshots in one hour, equal times) to sparse (years).
        let spacing = prop_oneof![
            Just((1800i64, 20i64)),
            Just((60, 2000)),
            Just((1800, 2000)),
            Just((7 * 3600, 2000)),
            Just((3 * 86_400, 2000)),
        ];
        spacing.prop_flat_map(|(step, n)| {
            let snapshots = proptest::collection::vec((0..n, 0u8..8, 0..PATHS.len()), 0..30);
            let counts = proptest::collection::vec(
                prop_oneof![2 => Just(0u32), 3 => 1u32..5, 1 => 5u32..40],
                6,
            );
            let within = prop_oneof![
                Just(None),
                (0..step * n).prop_map(|s| Some(Duration::from_secs(s as u64))),
                // Whole steps: snapshots exactly at the cut-off.
                (0..n).prop_map(move |k| Some(Duration::from_secs((k * step) as u64))),
            ];
            let tags = proptest::collection::vec(
                prop::sample::select(vec!["a", "b", "a,b", "", "zzz"]),
                0..3,
            );
            let tz = (-48i32..=56).prop_map(|q| FixedOffset::east_opt(q * 900).unwrap());
            let now = prop_oneof![3 => Just(None), 1 => (0..n).prop_map(Some)];
            (snapshots, counts, within, tags, tz, now).prop_map(
                move |(snaps, counts, within, tags, tz, now)| Case {
                    snapshots: snaps
                        .into_iter()
                        .enumerate()
                        .map(|(i, (k, mask, p))| SnapshotMeta {
                            id: format!("s{i:02}"),
                            time: base() + chrono::Duration::seconds(k * step),
                            tags: (0..3)
                                .filter(|b| mask & (1 << b) != 0)
                                .map(|b| TAGS[b].to_string())
                                .collect(),
                            paths: PATHS[p].iter().map(|s| s.to_string()).collect(),
                        })
                        .collect(),
                    policy: KeepPolicy {
                        last: counts[0],
                        hourly: counts[1],
                        daily: counts[2],
                        weekly: counts[3],
                        monthly: counts[4],
                        yearly: counts[5],
                        within,
                        tags: tags.into_iter().map(String::from).collect(),
                    },
                    tz,
                    now: match now {
                        Some(k) => base() + chrono::Duration::seconds(k * step),
                        None => base() + chrono::Duration::days(365 * 30),
                    },
                },
            )
        })
    }

    /// Whether a snapshot matches a `tags` entry, written plainly for the
    /// entries the cases use ("a", "a,b", "" for untagged).
    fn matches_entry(s: &SnapshotMeta, entry: &str) -> bool {
        match entry {
            "" => s.tags.is_empty(),
            _ => entry.split(',').all(|t| s.tags.iter().any(|x| x == t)),
        }
    }

    fn check(case: &Case) -> Result<(), TestCaseError> {
        let Case {
            snapshots,
            policy,
            tz,
            now,
        } = case;
        let decisions = apply_at(policy, snapshots, tz, *now);
        let by_id: HashMap<&str, &SnapshotMeta> =
            snapshots.iter().map(|s| (s.id.as_str(), s)).collect();

        // One decision per snapshot, newest first, ties by id.
        prop_assert_eq!(decisions.len(), snapshots.len());
        let ids: BTreeSet<&str> = decisions.iter().map(|d| d.id.as_str()).collect();
        prop_assert_eq!(ids.len(), snapshots.len());
        for w in decisions.windows(2) {
            let (a, b) = (by_id[w[0].id.as_str()], by_id[w[1].id.as_str()]);
            prop_assert!(a.time > b.time || (a.time == b.time && a.id < b.id));
        }
        for d in &decisions {
            prop_assert_eq!(d.keep, !d.reasons.is_empty());
        }

        // Groups, each newest first.
        let mut groups: BTreeMap<Vec<String>, Vec<&Decision>> = BTreeMap::new();
        for d in &decisions {
            let mut key = by_id[d.id.as_str()].paths.clone();
            key.sort();
            groups.entry(key).or_default().push(d);
        }
        let counted = [
            (policy.hourly, Unit::Hour, "hourly snapshot"),
            (policy.daily, Unit::Day, "daily snapshot"),
            (policy.weekly, Unit::Week, "weekly snapshot"),
            (policy.monthly, Unit::Month, "monthly snapshot"),
            (policy.yearly, Unit::Year, "yearly snapshot"),
        ];
        let within = policy.within.filter(|d| !d.is_zero());
        for group in groups.values() {
            let time = |d: &Decision| by_id[d.id.as_str()].time;
            let has = |d: &Decision, r: &str| d.reasons.iter().any(|x| x == r);

            // Every reason is one a rule gives.
            let mut known: BTreeSet<String> = ["last snapshot".to_string()].into();
            for (_, _, r) in counted {
                known.insert(r.to_string());
                known.insert(format!("oldest {r}"));
            }
            if let Some(d) = within {
                known.insert(within_reason(d));
            }
            for t in &policy.tags {
                known.insert(tag_reason(&tag_list(t)));
            }
            for d in group {
                for r in &d.reasons {
                    prop_assert!(known.contains(r), "unexpected reason {}", r);
                }
            }

            // last N: the min(N, size) newest.
            for (i, d) in group.iter().enumerate() {
                prop_assert_eq!(has(d, "last snapshot"), i < policy.last as usize);
            }

            // Periods: the newest snapshot of each of the N newest periods, and
            // the oldest one too when periods are left.
            for (n, unit, reason) in counted {
                let periods: Vec<String> =
                    group.iter().map(|d| period(unit, &time(d), tz)).collect();
                let mut distinct: Vec<&String> = Vec::new();
                for p in &periods {
                    if !distinct.contains(&p) {
                        distinct.push(p);
                    }
                }
                let oldest_reason = format!("oldest {reason}");
                let mut kept_periods = Vec::new();
                let mut total = 0;
                for (i, d) in group.iter().enumerate() {
                    if has(d, reason) {
                        total += 1;
                        // The newest of its period.
                        prop_assert!(i == 0 || periods[i - 1] != periods[i]);
                        kept_periods.push(&periods[i]);
                    }
                    if has(d, &oldest_reason) {
                        total += 1;
                        prop_assert!(!has(d, reason));
                        prop_assert_eq!(i, group.len() - 1);
                    }
                }
                prop_assert!(total <= n as usize);
                let want: Vec<&String> = distinct.iter().take(n as usize).copied().collect();
                prop_assert_eq!(kept_periods, want);
                let last = group.len().wrapping_sub(1);
                let oldest_extra = group.len() >= 2
                    && periods[last] == periods[last - 1]
                    && distinct.len() < n as usize;
                prop_assert_eq!(
                    group.last().is_some_and(|d| has(d, &oldest_reason)),
                    oldest_extra
                );
            }

            // within D: strictly after (newest not in the future) − D.
            if let Some(dur) = within {
                let newest = group.iter().map(|d| time(d)).filter(|t| t < now).max();
                let reason = within_reason(dur);
                for d in group {
                    let want = match newest {
                        None => true,
                        Some(n) => time(d) > n - chrono::Duration::from_std(dur).unwrap(),
                    };
                    prop_assert_eq!(has(d, &reason), want);
                }
            }

            // tags: every matching entry is a reason.
            for d in group {
                let s = by_id[d.id.as_str()];
                for entry in &policy.tags {
                    let reason = tag_reason(&tag_list(entry));
                    prop_assert_eq!(has(d, &reason), matches_entry(s, entry));
                }
            }

            // A group decided alone is decided the same.
            let alone: Vec<SnapshotMeta> =
                group.iter().map(|d| by_id[d.id.as_str()].clone()).collect();
            let alone = apply_at(policy, &alone, tz, *now);
            prop_assert_eq!(
                alone,
                group.iter().map(|d| (*d).clone()).collect::<Vec<_>>()
            );
        }

        // Only tags: exactly the tagged snapshots are kept.
        if !policy.tags.is_empty() {
            let tags_only = KeepPolicy {
                tags: policy.tags.clone(),
                ..Default::default()
            };
            for d in apply_at(&tags_only, snapshots, tz, *now) {
                let s = by_id[d.id.as_str()];
                prop_assert_eq!(d.keep, policy.tags.iter().any(|e| matches_entry(s, e)));
            }
        }

        // Idempotence: what is kept is all kept again.
        let kept: Vec<SnapshotMeta> = decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| by_id[d.id.as_str()].clone())
            .collect();
        let again = apply_at(policy, &kept, tz, *now);
        prop_assert!(again.iter().all(|d| d.keep), "{:?}", again);

        // The empty policy keeps nothing.
        if policy.is_empty() {
            prop_assert!(decisions.iter().all(|d| !d.keep));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn policy_invariants(case in arb_case()) {
            check(&case)?;
        }
    }
}
