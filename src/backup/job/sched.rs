//! Scheduled runs: the mount daemon runs each job that has a `schedule` when it
//! is due (`cloudraid backup daemon` does the same for a volume that is not
//! mounted, see the CLI).
//!
//! # When
//!
//! A job is due at each time of its schedule, plus a random delay of up to
//! `random_delay` chosen anew for each run (so many machines do not start at
//! once). A run missed while nothing was running the schedule (the machine off,
//! the volume not mounted) runs once when the schedule starts, never one by one:
//! it is missed when the schedule's last time before now is later than the
//! start of the job's newest run of any kind. A job that never ran is not
//! caught up (like a systemd timer with `Persistent=true` and no stamp yet): it
//! waits for its next time. The daemon sleeps at most [`MAX_NAP`] at a time and
//! compares the wall clock again, so a time passed during a suspend is run
//! within a minute of waking.
//!
//! # Stopping
//!
//! Unmounting stops the schedule; a run in progress is interrupted (as a kill
//! would: what it stored stays, the next run finishes the work) and recorded as
//! failed with the reason.

use super::config::JobSection;
use super::history;
use super::run::{self, RunRequest};
use super::when::When;
use crate::format::{JobRunRecord, Nanos, RunResult};
use crate::fs::{now_nanos, Fs};
use chrono::{DateTime, Local};
use std::sync::Arc;
use std::time::Duration;

/// The longest single sleep: a due time passed during a suspend is noticed at
/// most this long after waking.
pub const MAX_NAP: Duration = Duration::from_secs(60);

/// When a scheduled job is next due and what starts it (`"missed"` or
/// `"schedule"`). `first`: the schedule starts now (a missed run is caught up).
pub fn next_due(
    when: &When,
    last_start: Option<Nanos>,
    now: DateTime<Local>,
    first: bool,
) -> Option<(DateTime<Local>, &'static str)> {
    if first {
        if let (Some(last), Some(prev)) = (last_start, when.last_before(&now)) {
            if prev.timestamp_nanos_opt().unwrap_or(i64::MAX) > last {
                return Some((now, "missed"));
            }
        }
    }
    when.next_after(&now).map(|t| (t, "schedule"))
}

/// A delay of up to `max`, uniformly chosen.
pub fn random_delay(max: Option<Duration>) -> Duration {
    use rand::Rng;
    match max {
        Some(m) if !m.is_zero() => {
            Duration::from_millis(rand::rng().random_range(0..=m.as_millis() as u64))
        }
        _ => Duration::ZERO,
    }
}

/// The running schedule of the jobs of one mount.
pub struct JobSchedule {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl JobSchedule {
    /// Starts a schedule for each job that has one; `None` when none has.
    pub fn spawn(
        fs: Arc<Fs>,
        jobs: &[JobSection],
        env: Vec<(String, String)>,
    ) -> Option<JobSchedule> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let env = Arc::new(env);
        let tasks: Vec<_> = jobs
            .iter()
            .filter_map(|j| j.when().map(|w| (j.clone(), w)))
            .map(|(job, when)| {
                tokio::spawn(job_loop(
                    fs.clone(),
                    job,
                    when,
                    env.clone(),
                    stopped.clone(),
                ))
            })
            .collect();
        (!tasks.is_empty()).then_some(JobSchedule { stop, tasks })
    }

    /// Stops every job's schedule, interrupting a run in progress.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::error!("a backup job schedule ended abnormally: {e}");
            }
        }
    }
}

fn local(t: DateTime<Local>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

async fn job_loop(
    fs: Arc<Fs>,
    job: JobSection,
    when: When,
    env: Arc<Vec<(String, String)>>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut first = true;
    loop {
        let now = Local::now();
        let last = match history::last_run(&fs, &job.name) {
            Ok(r) => r.map(|r| r.started),
            Err(e) => {
                tracing::warn!("job {}: {e}", job.name);
                None
            }
        };
        let Some((due, trigger)) = next_due(&when, last, now, first) else {
            tracing::warn!(
                "job {}: schedule {:?} has no time left; the job runs only when asked",
                job.name,
                when.text
            );
            return;
        };
        first = false;
        let delay = random_delay(job.random_delay);
        let at = due + chrono::Duration::from_std(delay).unwrap_or_default();
        if trigger == "missed" {
            tracing::info!(
                "job {}: the run due at {} was missed: running it now",
                job.name,
                when.last_before(&now).map(local).unwrap_or_default()
            );
        } else {
            tracing::info!("job {}: next run at {}", job.name, local(at));
        }
        loop {
            let left = (at - Local::now()).to_std().unwrap_or_default();
            if left.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(left.min(MAX_NAP)) => {}
                _ = stopped.changed() => {}
            }
            if *stopped.borrow() {
                return;
            }
        }
        let started = now_nanos();
        let req = RunRequest {
            trigger,
            env: &env,
            total: 0,
        };
        let noop = |_: u64, _: u64| {};
        let out = tokio::select! {
            out = run::run(&fs, &job, &req, &noop) => out,
            _ = stopped.changed() => {
                let rec = JobRunRecord {
                    job: job.name.clone(),
                    trigger: trigger.to_string(),
                    started,
                    duration_ms: ((now_nanos() - started) / 1_000_000) as u64,
                    result: RunResult::Failed,
                    errors: vec!["interrupted by unmount; the next run finishes the work".into()],
                    ..Default::default()
                };
                tracing::warn!("job {}: run interrupted by unmount", job.name);
                if let Err(e) = history::record(&fs, &rec) {
                    tracing::error!("{e}");
                }
                return;
            }
        };
        let line = out.render();
        match out.run.result {
            RunResult::Success => tracing::info!("{}", line.trim_end()),
            RunResult::Partial | RunResult::Skipped => tracing::warn!("{}", line.trim_end()),
            RunResult::Failed => tracing::error!("{}", line.trim_end()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32, m: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(2026, 12, d, h, m, 0).unwrap()
    }

    fn nanos(t: DateTime<Local>) -> Nanos {
        t.timestamp_nanos_opt().unwrap()
    }

    #[test]
    fn a_missed_run_runs_once_at_start() {
        let w = When::parse("0 3 * * *").unwrap();
        // Last ran on the 1st at 03:00; the machine was off on the 2nd and 3rd.
        let now = at(3, 9, 0);
        assert_eq!(
            next_due(&w, Some(nanos(at(1, 3, 0))), now, true),
            Some((now, "missed"))
        );
        // Not when the schedule was already running (no catch-up loop).
        assert_eq!(
            next_due(&w, Some(nanos(at(1, 3, 0))), now, false),
            Some((at(4, 3, 0), "schedule"))
        );
        // Nothing missed: ran today at 03:00:05 (its random delay).
        assert_eq!(
            next_due(&w, Some(nanos(at(3, 3, 0)) + 5_000_000_000), now, true),
            Some((at(4, 3, 0), "schedule"))
        );
        // Never ran: waits for its time.
        assert_eq!(
            next_due(&w, None, now, true),
            Some((at(4, 3, 0), "schedule"))
        );
    }

    #[test]
    fn random_delays_stay_within_the_bound() {
        assert_eq!(random_delay(None), Duration::ZERO);
        for _ in 0..100 {
            assert!(random_delay(Some(Duration::from_secs(30))) <= Duration::from_secs(30));
        }
    }
}
