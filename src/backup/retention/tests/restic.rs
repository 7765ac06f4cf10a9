//! restic's own policy test: its snapshots and expected results.

use super::*;

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
