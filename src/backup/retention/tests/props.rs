//! Properties of the policy over random snapshot sets.

use super::*;

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
        let counts =
            proptest::collection::vec(prop_oneof![2 => Just(0u32), 3 => 1u32..5, 1 => 5u32..40], 6);
        let within = prop_oneof![
            Just(None),
            (0..step * n).prop_map(|s| Some(Duration::from_secs(s as u64))),
            // Whole steps: snapshots exactly at the cut-off.
            (0..n).prop_map(move |k| Some(Duration::from_secs((k * step) as u64))),
        ];
        let tags =
            proptest::collection::vec(prop::sample::select(vec!["a", "b", "a,b", "", "zzz"]), 0..3);
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
            let periods: Vec<String> = group.iter().map(|d| period(unit, &time(d), tz)).collect();
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
        let alone: Vec<SnapshotMeta> = group.iter().map(|d| by_id[d.id.as_str()].clone()).collect();
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
