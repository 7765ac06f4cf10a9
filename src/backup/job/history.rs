//! The history of backup runs: one `JobRunRecord` per run in the index (so the
//! metadata log carries it and `recover` brings it back).

use crate::format::{decode_record, encode_record, keys, JobRunRecord, Nanos, RunResult, Severity};
use crate::fs::Fs;
use crate::meta::Batch;

/// At most this many error lines are kept with a run; the rest are counted.
pub const MAX_ERRORS: usize = 100;

/// Keeps `errors` to [`MAX_ERRORS`] lines, the last saying how many were left out.
pub fn cap_errors(mut errors: Vec<String>) -> Vec<String> {
    if errors.len() > MAX_ERRORS {
        let rest = errors.len() - (MAX_ERRORS - 1);
        errors.truncate(MAX_ERRORS - 1);
        errors.push(format!("... and {rest} more"));
    }
    errors
}

/// Records a run (replacing the record of the same job and start, if any).
pub fn record(fs: &Fs, run: &JobRunRecord) -> Result<(), String> {
    let mut rec = run.clone();
    rec.errors = cap_errors(rec.errors);
    let mut b = Batch::default();
    b.put(keys::job_run(&rec.job, rec.started), encode_record(&rec));
    fs.index()
        .apply(b)
        .map_err(|e| format!("cannot record the run of job {} in the index: {e}", rec.job))?;
    observe(&rec);
    let severity = match rec.result {
        RunResult::Success | RunResult::Skipped => Severity::Info,
        RunResult::Partial => Severity::Warning,
        RunResult::Failed => Severity::Error,
    };
    let first_error = rec
        .errors
        .first()
        .map(|e| format!("; {e}"))
        .unwrap_or_default();
    crate::meta::events::record(
        fs.index(),
        "job_run",
        severity,
        &rec.job,
        &format!(
            "backup job {} ({}) {}: {} new, {} changed, {} deleted{first_error}",
            rec.job,
            rec.trigger,
            rec.result.name(),
            rec.new,
            rec.changed,
            rec.deleted
        ),
    );
    Ok(())
}

/// The job metrics of a run just recorded.
fn observe(rec: &JobRunRecord) {
    let m = &crate::metrics::METRICS;
    let job = crate::metrics::JobLabel {
        job: rec.job.clone(),
    };
    m.job_runs
        .get_or_create(&crate::metrics::JobResult {
            job: rec.job.clone(),
            result: rec.result.name(),
        })
        .inc();
    m.job_seconds
        .get_or_create(&job)
        .observe(rec.duration_ms as f64 / 1000.0);
    let ended = rec.started / 1_000_000_000 + (rec.duration_ms / 1000) as i64;
    m.job_last_run.get_or_create(&job).set(ended);
    if rec.result == RunResult::Success {
        m.job_last_success.get_or_create(&job).set(ended);
    }
}

/// The runs of `job` (every job's when `None`), oldest first (by job, then start).
pub fn runs(fs: &Fs, job: Option<&str>) -> Result<Vec<JobRunRecord>, String> {
    let prefix = match job {
        Some(j) => keys::job_runs(j),
        None => vec![keys::JOB_RUN],
    };
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = fs
            .index()
            .store()
            .scan(&prefix, after.as_deref(), 1024)
            .map_err(|e| format!("cannot read the backup history: {e}"))?;
        let Some((last, _)) = rows.last() else {
            break;
        };
        after = Some(last.clone());
        for (_, v) in &rows {
            out.push(decode_record::<JobRunRecord>(v).map_err(|e| format!("backup history: {e}"))?);
        }
    }
    Ok(out)
}

/// One job as `backup list` and `GET /api/v1/jobs` show it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct JobSummary {
    pub job: String,
    pub schedule: Option<String>,
    pub watch: bool,
    /// Local time, `YYYY-MM-DD HH:MM`.
    pub next_run: Option<String>,
    /// Local time of the newest run's start, `YYYY-MM-DD HH:MM:SS`.
    pub last_run: Option<String>,
    pub last_result: Option<String>,
    pub sources: Vec<std::path::PathBuf>,
    pub destination: String,
}

/// Each of `jobs` with its next run and its newest run among `runs`.
pub fn summaries(jobs: &[super::config::JobSection], runs: &[JobRunRecord]) -> Vec<JobSummary> {
    use chrono::{DateTime, Local};
    let now = Local::now();
    jobs.iter()
        .map(|j| {
            let last = runs.iter().rev().find(|r| r.job == j.name);
            JobSummary {
                job: j.name.clone(),
                schedule: j.schedule.as_ref().map(|s| s.0.clone()),
                watch: j.watch,
                next_run: j
                    .when()
                    .and_then(|w| w.next_after(&now))
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string()),
                last_run: last.map(|r| {
                    DateTime::from_timestamp_nanos(r.started)
                        .with_timezone(&Local)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                }),
                last_result: last.map(|r| r.result.name().to_string()),
                sources: j.sources.clone(),
                destination: j.destination.clone(),
            }
        })
        .collect()
}

/// The newest run of `job`, if it ever ran.
pub fn last_run(fs: &Fs, job: &str) -> Result<Option<JobRunRecord>, String> {
    // Runs are few per job (one a day for years is a few thousand): a scan is enough.
    Ok(runs(fs, Some(job))?.pop())
}

/// The start of the newest run of `job` that its schedule started (or caught up).
pub fn last_scheduled_start(fs: &Fs, job: &str) -> Result<Option<Nanos>, String> {
    Ok(runs(fs, Some(job))?
        .into_iter()
        .rev()
        .find(|r| r.trigger == "schedule" || r.trigger == "missed")
        .map(|r| r.started))
}
