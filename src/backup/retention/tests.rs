//! Tests of the retention policy: each rule, restic's own cases, and properties.

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
    let p: KeepPolicy = toml::from_str("daily = 7\nwithin = \"2days\"\ntags = [\"keep\"]").unwrap();
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
mod props;
mod restic;
