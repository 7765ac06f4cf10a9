//! Watch mode (`watch = true`): the mount daemon keeps a job's destination in
//! step with its sources as they change.
//!
//! Each source is watched recursively with inotify (the `notify` crate). Any
//! event marks the job dirty; once no event has come for `watch_delay` (2 s by
//! default), the job runs (trigger `watch`) — the same walk as `backup run`, so
//! a changed file is compared by size and time and only what changed is stored,
//! renames and deletes follow (with `mirror_deletes`), and nothing can be
//! missed between two runs: every run compares the whole source with the
//! volume. A run happens at start (what changed while nothing watched), and
//! after a watch error or an overflow of the kernel's event queue. Watch runs
//! take no snapshot (the job's scheduled or manual runs do) and are recorded in
//! the history only when they changed something or failed.

use super::config::JobSection;
use super::history;
use super::run::{self, RunRequest};
use crate::format::RunResult;
use crate::fs::Fs;
use notify::Watcher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the watcher's callback tells the job's task.
#[derive(Default)]
struct Seen {
    /// Events were lost (an overflow or an error of the watch).
    gap: AtomicBool,
    wake: tokio::sync::Notify,
}

/// The watches of one mount.
pub struct JobWatch {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl JobWatch {
    /// Starts watching each job with `watch = true`; `None` when none has.
    pub fn spawn(fs: Arc<Fs>, jobs: &[JobSection], env: Vec<(String, String)>) -> Option<JobWatch> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let env = Arc::new(env);
        let tasks: Vec<_> = jobs
            .iter()
            .filter(|j| j.watch)
            .map(|j| {
                tokio::spawn(watch_job(
                    fs.clone(),
                    j.clone(),
                    env.clone(),
                    stopped.clone(),
                ))
            })
            .collect();
        (!tasks.is_empty()).then_some(JobWatch { stop, tasks })
    }

    /// Stops every watch, interrupting a run in progress (the next run finishes it).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn watch_job(
    fs: Arc<Fs>,
    mut job: JobSection,
    env: Arc<Vec<(String, String)>>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    // Watch runs are quick syncs: the job's other runs take its snapshots.
    job.snapshot = false;
    // Events only mark the job (a flag and a wake-up, no queue): a storm of
    // events during a long run takes no memory.
    let seen = Arc::new(Seen::default());
    let mark = seen.clone();
    let handler = move |ev: notify::Result<notify::Event>| {
        // The events may have gaps (an error, an overflow): said when handled.
        let gap = match &ev {
            Ok(e) => e.need_rescan(),
            Err(_) => true,
        };
        if gap {
            mark.gap.store(true, Ordering::SeqCst);
        }
        mark.wake.notify_one();
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(
                "job {}: cannot watch its sources: {e}; it runs only on its schedule or when asked",
                job.name
            );
            return;
        }
    };
    for s in &job.sources {
        if let Err(e) = watcher.watch(s, notify::RecursiveMode::Recursive) {
            tracing::error!(
                "job {}: cannot watch {}: {e} (for many files raise fs.inotify.max_user_watches); changes there are stored by the next run",
                job.name,
                s.display()
            );
        }
    }
    tracing::info!("job {}: watching {} source(s)", job.name, job.sources.len());
    let delay = job.watch_delay();
    // At start: what changed while nothing watched.
    let mut dirty_since: Option<Instant> = Some(Instant::now() - delay);
    loop {
        let wait = match dirty_since {
            Some(t) => delay.saturating_sub(t.elapsed()),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = seen.wake.notified() => {
                if seen.gap.swap(false, Ordering::SeqCst) {
                    tracing::warn!("job {}: the watch lost events: the whole source is compared again", job.name);
                }
                // Debounce: the run waits until `delay` after the last event.
                dirty_since = Some(Instant::now());
                continue;
            }
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(wait), if dirty_since.is_some() => {}
        }
        if *stopped.borrow() {
            return;
        }
        dirty_since = None;
        let req = RunRequest {
            trigger: "watch",
            env: &env,
            total: 0,
        };
        let noop = |_: u64, _: u64| {};
        let out = tokio::select! {
            out = run::run_unrecorded(&fs, &job, &req, &noop) => out,
            _ = stopped.changed() => return,
        };
        let r = &out.run;
        let changed = r.new + r.changed + r.deleted > 0;
        if changed || r.result != RunResult::Success {
            if let Err(e) = history::record(&fs, r) {
                tracing::error!("{e}");
            }
            let line = out.render();
            match r.result {
                RunResult::Success => tracing::info!("{}", line.trim_end()),
                _ => tracing::warn!("{}", line.trim_end()),
            }
        }
    }
}
