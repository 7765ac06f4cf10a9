//! Alerts: rules in the config's `[alerts]`, checked by the daemon every
//! [`CHECK_EVERY`], each sent to the `[[alerts.notify]]` targets (a JSON POST to
//! a webhook, an email over SMTP) once when it starts and once when it clears.
//!
//! The rules and what starts and clears each (docs/SEMANTICS.md, "Alerts"):
//! - `backend_down`: a backend marked down for this long; clears when it answers.
//! - `degraded`: chunks stored with missing shards for this long; clears when
//!   none is left.
//! - `scrub_damage`: a scrub found bad shards; clears at the next clean scrub or
//!   a repair that fixed everything.
//! - `job_failed`: a backup job's run failed or was partial; clears at its next
//!   successful run.
//! - `job_missed`: a scheduled job did not start within this long of a due time
//!   (the daemon running); clears when it starts.
//! - `disk_free_below`: the state dir's disk (index and staging) has less free;
//!   clears when it has more again.
//! - `lease_lost`: this mount lost the write lease (it went read-only); clears
//!   when the daemon restarts.
//!
//! Incidents are kept by the daemon: one message when one starts, one when it
//! clears, none in between. At most `max_per_hour` messages go out in any hour;
//! the rest are logged and counted (`cloudraid_alert_messages_suppressed_total`).
//! Messages are sent in order by one task, each delivery tried again as job
//! notifications are (`backup::job::notify`), and never wait on the filesystem
//! or hold it up: a full queue drops the message with a log line.

mod message;
mod rules;

pub use message::{deliver, AlertMessage, AlertState, Incident};
pub use rules::{After, AlertTarget, AlertsSection, Floor};

use crate::backup::job::config::JobSection;
use crate::backup::job::notify::Delivery;
use crate::format::{decode_record, keys, EventRecord, Nanos, Severity};
use crate::fs::{now_nanos, Fs};
use message::cleared_text;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the rules are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How often `job_missed` is checked (it reads each scheduled job's history).
pub const MISSED_EVERY: Duration = Duration::from_secs(60);

/// What the rules see: the conditions true now, worked out by [`Watch::check`].
pub struct Watch {
    section: AlertsSection,
    jobs: Vec<JobSection>,
    started: Nanos,
    started_at: Instant,
    /// When each backend was first seen down / degraded chunks first seen.
    degraded_since: Option<Nanos>,
    /// Incidents set by events (scrub, jobs, lease) until an event clears them.
    latched: BTreeMap<(String, String), Incident>,
    /// The last event key read.
    cursor: Option<Vec<u8>>,
    /// Incidents a message was sent (or suppressed) for, not yet cleared.
    firing: BTreeMap<(String, String), Incident>,
    /// When each message of the last hour went out.
    sent: VecDeque<Instant>,
    /// The last `job_missed` check and what it found: each reads the jobs'
    /// history, and schedules are in minutes, so it runs once a minute.
    missed: Option<(Instant, Vec<Incident>)>,
}

impl Watch {
    pub fn new(fs: &Fs, section: AlertsSection, jobs: Vec<JobSection>) -> Watch {
        // Events before the daemon started were alerted by the one before it.
        let cursor = crate::meta::events::newest_key(fs.index());
        Watch {
            section,
            jobs,
            started: now_nanos(),
            started_at: Instant::now(),
            degraded_since: None,
            latched: BTreeMap::new(),
            cursor,
            firing: BTreeMap::new(),
            sent: VecDeque::new(),
            missed: None,
        }
    }

    /// Reads the events recorded since the last check: they start and clear
    /// the latched incidents.
    fn read_events(&mut self, fs: &Fs) {
        loop {
            let rows = match fs
                .index()
                .store()
                .scan(&[keys::EVENT], self.cursor.as_deref(), 256)
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("alerts: cannot read the event history: {e}");
                    return;
                }
            };
            let Some((last, _)) = rows.last() else {
                return;
            };
            self.cursor = Some(last.clone());
            for (_, v) in &rows {
                if let Ok(ev) = decode_record::<EventRecord>(v) {
                    self.event(&ev);
                }
            }
        }
    }

    fn event(&mut self, ev: &EventRecord) {
        let s = &self.section;
        let latch = |rule: &'static str, subject: &str| Incident {
            rule,
            subject: subject.to_string(),
            message: ev.message.clone(),
            since: ev.at,
        };
        match ev.kind.as_str() {
            "scrub_damage" if s.scrub_damage => {
                let i = latch("scrub_damage", "");
                self.latched.insert(i.key(), i);
            }
            "scrub_clean" => {
                self.latched.remove(&("scrub_damage".into(), String::new()));
            }
            "repair" if ev.severity == Severity::Info => {
                self.latched.remove(&("scrub_damage".into(), String::new()));
            }
            "job_run" if s.job_failed => {
                let key = ("job_failed".to_string(), ev.subject.clone());
                if matches!(ev.severity, Severity::Warning | Severity::Error) {
                    let i = latch("job_failed", &ev.subject);
                    self.latched.insert(key, i);
                } else if !ev.message.contains(" skipped") {
                    self.latched.remove(&key);
                }
            }
            "lease_lost" if s.lease_lost => {
                let i = latch("lease_lost", "");
                self.latched.insert(i.key(), i);
            }
            _ => {}
        }
    }

    /// The incidents true now.
    pub fn check(&mut self, fs: &Fs) -> Vec<Incident> {
        self.read_events(fs);
        let now = now_nanos();
        let nanos = |d: Duration| d.as_nanos().min(i64::MAX as u128) as i64;
        let mut out: Vec<Incident> = self.latched.values().cloned().collect();
        let vol = fs.volume();
        if let Some(after) = self.section.backend_down.0 {
            for (slot, h) in vol.slots.iter().zip(&vol.health) {
                let snap = h.snapshot();
                let Some(since) = snap.down_since else {
                    continue;
                };
                let since = since as i64 * 1_000_000_000;
                if now - since >= nanos(after) {
                    out.push(Incident {
                        rule: "backend_down",
                        subject: slot.name.clone(),
                        message: format!(
                            "backend {} is down: {}; reads use parity meanwhile (`cloudraid status` shows what the volume survives now)",
                            slot.name,
                            snap.last_error.unwrap_or_else(|| "it stopped answering".into())
                        ),
                        since,
                    });
                }
            }
        }
        if let Some(after) = self.section.degraded.0 {
            let any = fs
                .index()
                .store()
                .scan(&[keys::DEGRADED], None, 1)
                .map(|v| !v.is_empty())
                .unwrap_or(false);
            if !any {
                self.degraded_since = None;
            } else {
                let since = *self.degraded_since.get_or_insert(now);
                if now - since >= nanos(after) {
                    out.push(Incident {
                        rule: "degraded",
                        subject: String::new(),
                        message: "chunks are stored with fewer shards than their layout has (a backend did not answer when they were written); bring the backend back, or run `cloudraid repair`".into(),
                        since,
                    });
                }
            }
        }
        if let Some(floor) = self.section.disk_free_below.0 {
            if let Some(d) = fs.local_disk() {
                if d.free_bytes < floor {
                    out.push(Incident {
                        rule: "disk_free_below",
                        subject: d.path.clone(),
                        message: format!(
                            "the state dir's disk ({}) has {} free, under {}: writes to the volume stop when it is full; free space there or move state_dir",
                            d.path,
                            crate::config::human(d.free_bytes),
                            crate::config::human(floor)
                        ),
                        since: now,
                    });
                }
            }
        }
        if let Some(grace) = self.section.job_missed.0 {
            let fresh = self
                .missed
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < MISSED_EVERY);
            if !fresh {
                self.missed = Some((Instant::now(), self.missed_jobs(fs, grace)));
            }
            out.extend(self.missed.iter().flat_map(|(_, v)| v.iter().cloned()));
        }
        out
    }

    /// Scheduled jobs that did not start within `grace` of a due time.
    fn missed_jobs(&self, fs: &Fs, grace: Duration) -> Vec<Incident> {
        let mut out = Vec::new();
        // The daemon's schedule catches up a run missed while it was not running:
        // it gets `grace` to do so.
        if self.started_at.elapsed() < grace {
            return out;
        }
        for job in &self.jobs {
            let Some(when) = job.when() else {
                continue;
            };
            let slack = grace + job.random_delay.unwrap_or_default();
            let Ok(slack) = chrono::Duration::from_std(slack) else {
                continue;
            };
            let Some(due) = when.last_before(&(chrono::Local::now() - slack)) else {
                continue;
            };
            let due = due.timestamp_nanos_opt().unwrap_or(0);
            let last = crate::backup::job::history::last_run(fs, &job.name)
                .ok()
                .flatten()
                .map(|r| r.started);
            let missed = match last {
                Some(l) => l < due,
                // A job that never ran is not caught up: only a due time while
                // the daemon ran counts.
                None => due >= self.started,
            };
            if missed && !crate::backup::job::run::is_running(&job.name) {
                out.push(Incident {
                    rule: "job_missed",
                    subject: job.name.clone(),
                    message: format!(
                        "backup job {} did not start within {} of its scheduled time ({}); `cloudraid backup history --job {}` shows its last runs",
                        job.name,
                        humantime::format_duration(grace),
                        chrono::DateTime::from_timestamp_nanos(due)
                            .with_timezone(&chrono::Local)
                            .format("%Y-%m-%d %H:%M"),
                        job.name
                    ),
                    since: due,
                });
            }
        }
        out
    }

    /// The messages for what changed since the last check, rate-limited.
    pub fn changes(&mut self, now: Vec<Incident>, volume: &str) -> Vec<AlertMessage> {
        let mut current: BTreeMap<(String, String), Incident> = BTreeMap::new();
        for i in now {
            current.entry(i.key()).or_insert(i);
        }
        let mut out = Vec::new();
        let cleared: Vec<_> = self
            .firing
            .keys()
            .filter(|k| !current.contains_key(*k))
            .cloned()
            .collect();
        for k in cleared {
            let i = self.firing.remove(&k).expect("listed above");
            let what = cleared_text(&i);
            out.push(AlertMessage::new(AlertState::Resolved, i, volume, &what));
        }
        for (k, i) in current {
            if self.firing.contains_key(&k) {
                continue;
            }
            self.firing.insert(k, i.clone());
            out.push(AlertMessage::new(AlertState::Firing, i, volume, ""));
        }
        crate::metrics::METRICS
            .alerts_firing
            .set(self.firing.len() as i64);
        let hour = Duration::from_secs(3600);
        out.retain(|m| {
            while self.sent.front().is_some_and(|t| t.elapsed() >= hour) {
                self.sent.pop_front();
            }
            if self.sent.len() >= self.section.max_per_hour as usize {
                tracing::warn!(
                    "alert not sent: {} already went out in the last hour (max_per_hour): {}",
                    self.sent.len(),
                    m.text
                );
                crate::metrics::METRICS.alerts_suppressed.inc();
                return false;
            }
            self.sent.push_back(Instant::now());
            true
        });
        out
    }
}

/// The daemon's alerts: a checker every [`CHECK_EVERY`] and one sender.
pub struct Alerts {
    checker: tokio::task::JoinHandle<()>,
    sender: tokio::task::JoinHandle<()>,
}

impl Alerts {
    pub fn spawn(
        fs: Arc<Fs>,
        section: AlertsSection,
        jobs: Vec<JobSection>,
        env: Vec<(String, String)>,
    ) -> Alerts {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<AlertMessage>(256);
        let targets = section.notify.clone();
        let sender = tokio::spawn(async move {
            let d = Delivery::default();
            while let Some(m) = rx.recv().await {
                deliver(&targets, &m, &env, &d).await;
            }
        });
        let checker = tokio::spawn(async move {
            let volume = fs.volume().name.clone();
            let mut w = Watch::new(&fs, section, jobs);
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let fs2 = fs.clone();
                let (w2, now) = match tokio::task::spawn_blocking(move || {
                    let now = w.check(&fs2);
                    (w, now)
                })
                .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("alerts stopped: {e}");
                        return;
                    }
                };
                w = w2;
                for m in w.changes(now, &volume) {
                    if let Err(e) = tx.try_send(m) {
                        tracing::warn!("alert dropped, the sending queue is full: {e}");
                    }
                }
            }
        });
        Alerts { checker, sender }
    }

    /// Stops checking; messages already queued are given a few seconds to go out.
    pub async fn stop(self) {
        self.checker.abort();
        let _ = self.checker.await;
        let mut sender = self.sender;
        if tokio::time::timeout(Duration::from_secs(5), &mut sender)
            .await
            .is_err()
        {
            sender.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rules::DEFAULT_BACKEND_DOWN;
    use super::*;

    fn section(toml_text: &str) -> Result<AlertsSection, String> {
        toml::from_str::<AlertsSection>(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn rules_have_defaults_and_turn_off() {
        let s = section("[[notify]]\nwebhook = \"http://127.0.0.1:1/h\"\n").unwrap();
        assert_eq!(s.backend_down, After(Some(DEFAULT_BACKEND_DOWN)));
        assert_eq!(s.disk_free_below, Floor(Some(1 << 30)));
        assert!(s.scrub_damage && s.job_failed && s.lease_lost);
        s.validate().unwrap();
        let s = section(
            "backend_down = \"30s\"\ndegraded = false\ndisk_free_below = \"10GiB\"\n[[notify]]\nwebhook = \"http://x/\"\n",
        )
        .unwrap();
        assert_eq!(s.backend_down, After(Some(Duration::from_secs(30))));
        assert_eq!(s.degraded, After(None));
        assert_eq!(s.disk_free_below, Floor(Some(10 << 30)));
        let e = section("backend_down = \"soon\"\n").unwrap_err();
        assert!(e.contains("not a duration"), "{e}");
        let e = section("").unwrap().validate().unwrap_err();
        assert!(e.contains("[[alerts.notify]]"), "{e}");
        let e = section("[[notify]]\nemail = [\"a@b.org\"]\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.contains("smtp"), "{e}");
        let e = section("[[notify]]\nwebhook = \"ftp://x/secret\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.contains("http(s)") && !e.contains("secret"), "{e}");
    }

    fn incident(rule: &'static str, subject: &str) -> Incident {
        Incident {
            rule,
            subject: subject.into(),
            message: format!("{rule} {subject}"),
            since: now_nanos(),
        }
    }

    /// A watch without a volume: only `changes` is exercised.
    fn bare(max_per_hour: u32) -> Watch {
        let mut s = section("[[notify]]\nwebhook = \"http://x/\"\n").unwrap();
        s.max_per_hour = max_per_hour;
        Watch {
            section: s,
            jobs: Vec::new(),
            started: now_nanos(),
            started_at: Instant::now(),
            degraded_since: None,
            latched: BTreeMap::new(),
            cursor: None,
            firing: BTreeMap::new(),
            sent: VecDeque::new(),
            missed: None,
        }
    }

    #[test]
    fn one_message_when_an_incident_starts_and_one_when_it_clears() {
        let mut w = bare(20);
        let down = incident("backend_down", "b1");
        let m = w.changes(vec![down.clone()], "vol");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].state, AlertState::Firing);
        assert!(m[0]
            .text
            .starts_with("[FIRING] cloudraid volume vol: backend_down b1"));
        for _ in 0..5 {
            assert!(
                w.changes(vec![down.clone()], "vol").is_empty(),
                "no repeats"
            );
        }
        let other = incident("backend_down", "b2");
        let m = w.changes(vec![down.clone(), other.clone()], "vol");
        assert_eq!((m.len(), m[0].incident.subject.as_str()), (1, "b2"));
        let m = w.changes(vec![other], "vol");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].state, AlertState::Resolved);
        assert!(
            m[0].text.contains("backend b1 answers again"),
            "{}",
            m[0].text
        );
        let p = m[0].payload();
        assert_eq!(p["state"], "resolved");
        assert_eq!(p["alert"], "backend_down");
        assert_eq!(p["text"], p["content"]);
    }

    #[test]
    fn at_most_max_per_hour_messages_go_out() {
        let mut w = bare(3);
        let all: Vec<_> = (0..5)
            .map(|i| incident("job_failed", &format!("j{i}")))
            .collect();
        assert_eq!(w.changes(all.clone(), "v").len(), 3);
        // The incidents are still known: clearing them is limited too.
        assert!(w.changes(Vec::new(), "v").is_empty());
        assert_eq!(w.firing.len(), 0);
    }
}
