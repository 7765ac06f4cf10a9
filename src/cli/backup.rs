//! `cloudraid backup`: the backup jobs of a volume's config ([[job]]).

use super::args::BackupCmd;
use super::{absolute, on_volume, print_report, EXIT};
use chrono::{DateTime, Local};
use cloudraid::backup::job::config::JobSection;
use cloudraid::backup::job::run::{Plan, RunOutcome};
use cloudraid::backup::job::sched;
use cloudraid::config::{human, Config};
use cloudraid::format::{JobRunRecord, Nanos, RunResult};
use cloudraid::front::control::Request;
use std::path::Path;
use std::sync::atomic::Ordering;

pub fn run_backup(cmd: BackupCmd) -> Result<(), String> {
    match cmd {
        BackupCmd::Run {
            config,
            job,
            dry_run,
            json,
        } => run_job(&config, &job, dry_run, json, "manual"),
        BackupCmd::List { config, json } => list(&config, json),
        BackupCmd::History { config, job, json } => {
            let cfg = Config::load(&config)?;
            let runs = history(&config, job.clone())?;
            if json {
                return print_report(&runs, true, |_| String::new());
            }
            if runs.is_empty() {
                match &job {
                    Some(j) => {
                        cfg.job(j)?;
                        println!(
                            "job {j} has not run yet (`cloudraid backup run --config {} {j}`)",
                            config.display()
                        );
                    }
                    None => println!("no backup job has run yet"),
                }
                return Ok(());
            }
            print!("{}", render_history(&runs));
            Ok(())
        }
        BackupCmd::InstallTimer { config, job, dir } => install_timer(&config, &job, &dir),
        BackupCmd::Daemon { config } => daemon(&config),
    }
}

/// `backup run`: the plan, then the run (or only the plan with `dry_run`).
fn run_job(
    config: &Path,
    name: &str,
    dry_run: bool,
    json: bool,
    trigger: &str,
) -> Result<(), String> {
    // The job is checked here first: an unknown name is said without opening anything.
    let cfg = Config::load(config)?;
    let job = cfg.job(name)?;
    let abs = absolute(config)?;
    if dry_run {
        let req = Request::BackupPlan {
            config: abs,
            job: name.to_string(),
            thorough: true,
        };
        return on_volume(config, req, true, Some("planning"), |p: Plan| {
            print_report(&p, json, Plan::render)
        });
    }
    let mut total = 0;
    if !json {
        let req = Request::BackupPlan {
            config: abs.clone(),
            job: name.to_string(),
            thorough: false,
        };
        // A plan that cannot be made (a missing source) is the run's error too:
        // the run says it and records it.
        let _ = on_volume(config, req, true, None, |p: Plan| {
            print!("{}", p.render());
            total = p.bytes;
            Ok(())
        });
    }
    let req = Request::BackupRun {
        config: abs,
        job: name.to_string(),
        total,
        trigger: Some(trigger.to_string()),
    };
    let label = format!("backup {}", job.name);
    on_volume(config, req, false, Some(&label), |o: RunOutcome| {
        print_report(&o, json, RunOutcome::render)?;
        match o.run.result {
            RunResult::Success => Ok(()),
            RunResult::Partial => {
                EXIT.store(3, Ordering::SeqCst);
                Ok(())
            }
            RunResult::Failed | RunResult::Skipped => Err(format!(
                "job {} {}: {}",
                o.run.job,
                o.run.result.name(),
                o.run
                    .errors
                    .first()
                    .map(String::as_str)
                    .unwrap_or("see above")
            )),
        }
    })
}

/// The runs of `job` (every job's), from the index.
fn history(config: &Path, job: Option<String>) -> Result<Vec<JobRunRecord>, String> {
    let mut out = Vec::new();
    on_volume(
        config,
        Request::BackupHistory { job },
        true,
        None,
        |r: Vec<JobRunRecord>| {
            out = r;
            Ok(())
        },
    )?;
    Ok(out)
}

fn local(t: Nanos) -> String {
    DateTime::from_timestamp_nanos(t)
        .with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn secs(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
    }
}

fn render_history(runs: &[JobRunRecord]) -> String {
    let mut s = format!(
        "{:<19}  {:<12}  {:<8}  {:>8}  {:>7}  {:>7}  {:>7}  {:>9}  {:>9}  {:<8}  {}\n",
        "STARTED",
        "JOB",
        "TRIGGER",
        "DURATION",
        "NEW",
        "CHANGED",
        "DELETED",
        "STORED",
        "UPLOADED",
        "RESULT",
        "SNAPSHOT"
    );
    for r in runs {
        s.push_str(&format!(
            "{:<19}  {:<12}  {:<8}  {:>8}  {:>7}  {:>7}  {:>7}  {:>9}  {:>9}  {:<8}  {}\n",
            local(r.started),
            r.job,
            r.trigger,
            secs(r.duration_ms),
            r.new,
            r.changed,
            r.deleted,
            human(r.bytes),
            human(r.uploaded_bytes),
            r.result.name(),
            r.snapshot.as_deref().unwrap_or("-")
        ));
        for e in &r.errors {
            s.push_str(&format!("    error: {e}\n"));
        }
    }
    s
}

/// `backup list`: each job with its schedule, next run and last result.
fn list(config: &Path, json: bool) -> Result<(), String> {
    let cfg = Config::load(config)?;
    if cfg.jobs.is_empty() {
        println!(
            "{} has no backup job: add a [[job]] (see README \"Backup jobs\")",
            config.display()
        );
        return Ok(());
    }
    let runs = history(config, None)?;
    let lines = cloudraid::backup::job::history::summaries(&cfg.jobs, &runs);
    if json {
        return print_report(&lines, true, |_| String::new());
    }
    println!(
        "{:<12}  {:<16}  {:<16}  {:<19}  {:<8}  DESTINATION",
        "JOB", "SCHEDULE", "NEXT RUN", "LAST RUN", "RESULT"
    );
    for l in lines {
        let sched = match (&l.schedule, l.watch) {
            (Some(s), true) => format!("{s} + watch"),
            (Some(s), false) => s.clone(),
            (None, true) => "watch".into(),
            (None, false) => "when asked".into(),
        };
        println!(
            "{:<12}  {:<16}  {:<16}  {:<19}  {:<8}  {}",
            l.job,
            sched,
            l.next_run.as_deref().unwrap_or("-"),
            l.last_run.as_deref().unwrap_or("never"),
            l.last_result.as_deref().unwrap_or("-"),
            l.destination
        );
    }
    Ok(())
}

/// The unit files of `backup install-timer`: (service, timer).
pub fn timer_units(
    job: &JobSection,
    exe: &Path,
    config: &Path,
    key_file: Option<&Path>,
) -> Result<(String, String), String> {
    let when = job.when().ok_or_else(|| {
        format!(
            "job {} has no schedule: add schedule = \"0 3 * * *\" (or a systemd calendar string) to its [[job]]",
            job.name
        )
    })?;
    let calendar = when.on_calendar()?;
    let quote = |p: &Path| {
        let s = p.display().to_string();
        if s.contains([' ', '"', '\\']) {
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        } else {
            s
        }
    };
    let key = key_file
        .map(|k| format!(" --key-file {}", quote(k)))
        .unwrap_or_default();
    let service = format!(
        "# Written by `cloudraid backup install-timer`: runs backup job {name}.\n\
         [Unit]\n\
         Description=cloudraid backup job {name}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={exe}{key} backup run --config {config} {name}\n\
         Nice=10\n\
         IOSchedulingClass=idle\n",
        name = job.name,
        exe = quote(exe),
        config = quote(config),
    );
    let delay = job
        .random_delay
        .map(|d| format!("RandomizedDelaySec={}\n", d.as_secs()))
        .unwrap_or_default();
    let timer = format!(
        "# Written by `cloudraid backup install-timer`: the schedule of backup job {name}.\n\
         [Unit]\n\
         Description=cloudraid backup job {name} ({text})\n\
         \n\
         [Timer]\n\
         OnCalendar={calendar}\n\
         Persistent=true\n\
         {delay}\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        name = job.name,
        text = when.text.trim(),
    );
    Ok((service, timer))
}

fn install_timer(config: &Path, name: &str, dir: &Path) -> Result<(), String> {
    let cfg = Config::load(config)?;
    let job = cfg.job(name)?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let key = super::KEYS.get().and_then(|k| k.key_file.clone());
    let key = key.map(|k| absolute(&k)).transpose()?;
    let (service, timer) = timer_units(job, &exe, &absolute(config)?, key.as_deref())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let unit = format!("cloudraid-backup-{name}");
    for (ext, text) in [("service", &service), ("timer", &timer)] {
        let p = dir.join(format!("{unit}.{ext}"));
        std::fs::write(&p, text).map_err(|e| {
            format!(
                "cannot write {}: {e} (run as root, or give --dir)",
                p.display()
            )
        })?;
        println!("wrote {}", p.display());
    }
    println!("enable it with: systemctl daemon-reload && systemctl enable --now {unit}.timer");
    if job.schedule.is_some() {
        println!("note: while the volume is mounted, the mount daemon runs this schedule too; a run that finds the job running is skipped");
    }
    Ok(())
}

/// `backup daemon`: each scheduled job run when due, as `backup run` would.
fn daemon(config: &Path) -> Result<(), String> {
    let cfg = Config::load(config)?;
    let scheduled: Vec<&JobSection> = cfg.jobs.iter().filter(|j| j.schedule.is_some()).collect();
    if scheduled.is_empty() {
        return Err(format!(
            "{}: no [[job]] has a schedule: add schedule = \"0 3 * * *\" to one, or run jobs with `cloudraid backup run`",
            config.display()
        ));
    }
    let names: Vec<String> = scheduled.iter().map(|j| j.name.clone()).collect();
    eprintln!(
        "cloudraid: backup daemon: running the schedules of {}",
        names.join(", ")
    );
    let runs = history(config, None)?;
    let mut first = true;
    loop {
        let cfg = Config::load(config)?;
        let now = Local::now();
        let mut due: Vec<(DateTime<Local>, String, &'static str)> = Vec::new();
        for j in cfg.jobs.iter().filter(|j| j.schedule.is_some()) {
            let when = j.when().expect("has a schedule");
            let last = runs
                .iter()
                .rev()
                .find(|r| r.job == j.name)
                .map(|r| r.started);
            if let Some((t, trigger)) = sched::next_due(&when, last, now, first) {
                let t = t + chrono::Duration::from_std(sched::random_delay(j.random_delay))
                    .unwrap_or_default();
                due.push((t, j.name.clone(), trigger));
            }
        }
        first = false;
        due.sort();
        let Some((at, name, trigger)) = due.into_iter().next() else {
            return Err("no schedule has a time left".into());
        };
        eprintln!(
            "cloudraid: next run: job {name} at {}",
            at.format("%Y-%m-%d %H:%M:%S")
        );
        loop {
            let left = (at - Local::now()).to_std().unwrap_or_default();
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(sched::MAX_NAP));
        }
        if let Err(e) = run_job(config, &name, false, false, trigger) {
            eprintln!("cloudraid: error: {e}");
        }
        EXIT.store(0, Ordering::SeqCst);
    }
}
