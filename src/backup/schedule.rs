//! Scheduled snapshots: the mount daemon takes a snapshot of the whole tree every
//! `[snapshots] every`, tagged `scheduled` (origin `schedule`), and after each
//! applies the config's `keep_*` rules to the snapshots tagged `scheduled` only:
//! snapshots taken by hand or by a job are never removed by the schedule.
//!
//! # When
//!
//! The next snapshot is due `every` after the newest snapshot the schedule took,
//! as the index records it (so the schedule carries over unmounts and restarts).
//! A volume with no scheduled snapshot yet gets one as soon as it is mounted.
//! Times missed while the volume was not mounted or the machine was asleep are
//! taken once, at the next mount or wake-up, never one by one; the next one is
//! then due `every` after the one taken. The daemon sleeps at most [`MAX_NAP`] at
//! a time and computes the wait again from the wall clock (timers do not run
//! while the machine is suspended), so a snapshot missed during a suspend is taken
//! within [`MAX_NAP`] of waking up. A clock set back never makes it wait longer
//! than `every`.
//!
//! # Failures
//!
//! A snapshot needs no backend (it is written to the local index and replicated
//! by the metadata log when the backends answer), so an outage does not stop the
//! schedule. A failure (the state dir's disk full, the mount fenced read-only
//! after a takeover of its write lease) is logged and tried again `every` later;
//! a failed retention is logged and tried again after the next snapshot. Neither
//! stops the daemon. A read-only mount takes no scheduled snapshot (the daemon
//! does not start the schedule).
//!
//! The pure part ([`next_wait`], [`last_scheduled`]) takes its times as
//! arguments and is unit-tested with explicit times.

use super::forget::{forget, ForgetRequest};
use super::retention::KeepPolicy;
use crate::config::SnapshotsSection;
use crate::format::{Nanos, SnapshotRecord};
use crate::fs::snapshot::NewSnapshot;
use crate::fs::{now_nanos, Fs};
use std::sync::Arc;
use std::time::Duration;

/// The `origin` of the snapshots the schedule takes.
pub const ORIGIN: &str = "schedule";
/// The tag of the snapshots the schedule takes; its retention considers only these.
pub const TAG: &str = "scheduled";
/// The longest single sleep of the schedule: a due time passed during a suspend
/// is noticed at most this long after waking up.
pub const MAX_NAP: Duration = Duration::from_secs(60);

/// What the daemon runs: a snapshot every `every`, then `policy` (when it has a rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub every: Duration,
    pub policy: KeepPolicy,
}

impl Schedule {
    /// The schedule of a `[snapshots]` table; `None` without `every`.
    pub fn of(section: &SnapshotsSection) -> Option<Schedule> {
        Some(Schedule {
            every: section.every?,
            policy: section.policy(),
        })
    }

    /// "every 1h, keeping last 24, daily 7 of the scheduled snapshots" (for the log).
    pub fn describe(&self) -> String {
        let keep = if self.policy.is_empty() {
            "keeping every scheduled snapshot (no keep_* rule)".to_string()
        } else {
            format!(
                "keeping {} of the scheduled snapshots",
                self.policy.describe()
            )
        };
        format!("every {}, {keep}", humantime::format_duration(self.every))
    }
}

/// The time of the newest snapshot the schedule took, among `snaps`.
pub fn last_scheduled<'a>(snaps: impl IntoIterator<Item = &'a SnapshotRecord>) -> Option<Nanos> {
    newest_of(snaps.into_iter().map(|r| (r.origin.as_str(), r.time)))
}

/// The newest time of origin [`ORIGIN`] among (origin, time) pairs.
fn newest_of<'a>(snaps: impl IntoIterator<Item = (&'a str, Nanos)>) -> Option<Nanos> {
    snaps
        .into_iter()
        .filter(|(origin, _)| *origin == ORIGIN)
        .map(|(_, t)| t)
        .max()
}

/// How long to wait, at `now`, before the next scheduled snapshot, when the last
/// one (taken or attempted) was at `last` (all times in ns since the epoch): zero
/// when none was ever taken or when it is due or overdue (however many times
/// were missed: one snapshot makes up for all of them). Never more than `every`,
/// even when `last` is in the future (the clock was set back).
pub fn next_wait(every: Duration, last: Option<Nanos>, now: Nanos) -> Duration {
    let Some(last) = last else {
        return Duration::ZERO;
    };
    let every_ns = i64::try_from(every.as_nanos()).unwrap_or(i64::MAX);
    let due = last.saturating_add(every_ns);
    if due <= now {
        return Duration::ZERO;
    }
    Duration::from_nanos(due.saturating_sub(now) as u64).min(every)
}

/// The schedule running in the mount daemon.
pub struct ScheduleTask {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ScheduleTask {
    /// Starts taking snapshots on `fs` by `schedule` (in the current runtime).
    pub fn spawn(fs: Arc<Fs>, schedule: Schedule) -> ScheduleTask {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run(fs, schedule, stopped));
        ScheduleTask { stop, task }
    }

    /// Stops the schedule: a snapshot (and its retention) being taken is
    /// finished first.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!("the snapshot schedule ended abnormally: {e}");
        }
    }
}

fn local_time(t: Nanos) -> String {
    chrono::DateTime::from_timestamp_nanos(t)
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// "2026-12-02 10:00:00 (in 59m 58s)".
fn when(now: Nanos, wait: Duration) -> String {
    format!(
        "{} (in {})",
        local_time(now.saturating_add(i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX))),
        humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)))
    )
}

async fn run(fs: Arc<Fs>, schedule: Schedule, mut stopped: tokio::sync::watch::Receiver<bool>) {
    // The last attempt of this daemon, taken or failed: the next one is `every`
    // after it whatever the index says (a failure, or a retention that removed
    // the new snapshot, never makes the schedule spin).
    let mut attempted: Option<Nanos> = None;
    let mut announced = false;
    loop {
        let now = now_nanos();
        let in_index = match fs.index().snapshots() {
            Ok(s) => last_scheduled(s.iter().map(|(_, r)| r)),
            Err(e) => {
                tracing::warn!("snapshot schedule: cannot read the snapshots: {e}");
                attempted = attempted.or(Some(now));
                None
            }
        };
        let last = in_index.max(attempted);
        let wait = next_wait(schedule.every, last, now);
        if !announced {
            announced = true;
            let next = match (in_index, wait.is_zero()) {
                (_, false) => format!("next one at {}", when(now, wait)),
                (None, true) => "none taken yet: taking one now".to_string(),
                (Some(t), true) => format!(
                    "the last one is from {}: taking one now (times missed meanwhile are not made up one by one)",
                    local_time(t)
                ),
            };
            tracing::info!("snapshot schedule: {}; {next}", schedule.describe());
        }
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait.min(MAX_NAP)) => continue,
                _ = stopped.changed() => return,
            }
        }
        if *stopped.borrow() {
            return;
        }
        attempted = Some(now_nanos());
        let line = take(&fs, &schedule).await;
        let next = when(now_nanos(), schedule.every);
        match line {
            Ok(line) => tracing::info!("{line}; next one at {next}"),
            Err(line) => tracing::warn!("{line}; next attempt at {next}"),
        }
    }
}

/// Takes one scheduled snapshot and applies the retention: the line to log.
async fn take(fs: &Fs, schedule: &Schedule) -> Result<String, String> {
    let new = NewSnapshot {
        tags: vec![TAG.into()],
        paths: Vec::new(),
        origin: ORIGIN.into(),
    };
    let info = fs
        .create_snapshot(new)
        .await
        .map_err(|e| format!("scheduled snapshot failed: {e}"))?;
    let mut line = format!(
        "scheduled snapshot {} taken: {} files, {} ({} new)",
        info.id,
        info.files,
        crate::config::human(info.bytes),
        crate::config::human(info.added_bytes)
    );
    if schedule.policy.is_empty() {
        return Ok(line);
    }
    let req = ForgetRequest {
        policy: schedule.policy.clone(),
        only_tags: vec![TAG.into()],
        dry_run: false,
        prune: false,
    };
    match forget(fs, &req).await {
        Ok(r) => {
            let gone: Vec<&str> = r
                .snapshots
                .iter()
                .filter(|s| !s.keep)
                .map(|s| s.id.as_str())
                .collect();
            line.push_str(&format!(
                "; retention ({}): {} kept, {}",
                schedule.policy.describe(),
                r.kept,
                if gone.is_empty() {
                    "none removed".to_string()
                } else {
                    format!(
                        "removed {} (freeing {})",
                        gone.join(" "),
                        crate::config::human(r.freed.bytes)
                    )
                }
            ));
            Ok(line)
        }
        Err(e) => Err(format!(
            "{line}; retention ({}) failed: {e} (tried again after the next snapshot)",
            schedule.policy.describe()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const HOUR: Duration = Duration::from_secs(3600);
    /// 2026-12-02 08:00:00 UTC, in ns.
    const T0: i64 = 1_796_198_400 * S;

    #[test]
    fn the_first_snapshot_is_taken_at_once() {
        assert_eq!(next_wait(HOUR, None, T0), Duration::ZERO);
    }

    #[test]
    fn the_next_one_is_due_every_after_the_last() {
        assert_eq!(next_wait(HOUR, Some(T0), T0), HOUR);
        assert_eq!(
            next_wait(HOUR, Some(T0), T0 + 600 * S),
            Duration::from_secs(3000)
        );
        assert_eq!(next_wait(HOUR, Some(T0), T0 + 3600 * S), Duration::ZERO);
        assert_eq!(
            next_wait(Duration::from_secs(1), Some(T0), T0 + S / 4),
            Duration::from_millis(750)
        );
    }

    #[test]
    fn missed_times_are_taken_once_then_every_after_that_one() {
        // Unmounted (or asleep) from 08:00 to 13:20: five times were missed.
        let back = T0 + (5 * 3600 + 1200) * S;
        assert_eq!(next_wait(HOUR, Some(T0), back), Duration::ZERO);
        // One is taken at 13:20; the next is due at 14:20, not at once to make up
        // for the others, and not at 14:00 (the old grid).
        let taken = back + S / 10;
        assert_eq!(
            next_wait(HOUR, Some(taken), taken + S),
            HOUR - Duration::from_secs(1)
        );
        assert_eq!(
            next_wait(HOUR, Some(taken), taken + 3600 * S),
            Duration::ZERO
        );
    }

    #[test]
    fn a_clock_set_back_never_waits_more_than_every() {
        // The last snapshot is dated two days ahead of the clock.
        assert_eq!(next_wait(HOUR, Some(T0 + 48 * 3600 * S), T0), HOUR);
    }

    #[test]
    fn huge_intervals_do_not_overflow() {
        let century = Duration::from_secs(100 * 365 * 86400);
        assert_eq!(
            next_wait(century, Some(T0), T0 + S),
            century - Duration::from_secs(1)
        );
        // Past the year 2262 (the end of 64-bit nanoseconds): waits until then.
        let wait = next_wait(Duration::MAX, Some(T0), T0 + S);
        assert!(wait > 2 * century, "{wait:?}");
    }

    #[test]
    fn only_the_schedules_own_snapshots_set_its_time() {
        let snaps = [
            (ORIGIN, T0),
            ("cli", T0 + 7200 * S),
            (ORIGIN, T0 + 3600 * S),
            (ORIGIN, T0 + 100 * S),
        ];
        assert_eq!(newest_of(snaps), Some(T0 + 3600 * S));
        assert_eq!(newest_of([("cli", T0)]), None);
        assert_eq!(newest_of([]), None);
    }

    #[test]
    fn the_config_gives_the_schedule() {
        let s: SnapshotsSection = toml::from_str("every = \"2h\"\nkeep_last = 3\n").unwrap();
        let sched = Schedule::of(&s).unwrap();
        assert_eq!(sched.every, 2 * HOUR);
        assert_eq!(sched.policy.last, 3);
        assert_eq!(
            sched.describe(),
            "every 2h, keeping last 3 of the scheduled snapshots"
        );
        assert_eq!(Schedule::of(&SnapshotsSection::default()), None);
    }
}
