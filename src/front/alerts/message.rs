//! What an alert says (one line, a webhook's JSON, an email's body) and its
//! delivery to every target, through the job notifications' webhook and SMTP code.

use super::rules::AlertTarget;
use crate::backup::job::notify::{self, Delivery};
use crate::format::Nanos;
use crate::fs::now_nanos;
use serde::Serialize;
use std::time::Duration;

/// Whether a message says an incident started or cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// An incident: one rule, one subject (a backend, a job, or none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    pub rule: &'static str,
    pub subject: String,
    /// One line: what is wrong and what to do.
    pub message: String,
    /// When the condition began (nanoseconds since the epoch).
    pub since: Nanos,
}

impl Incident {
    pub(super) fn key(&self) -> (String, String) {
        (self.rule.to_string(), self.subject.clone())
    }
}

/// One message to send.
#[derive(Clone, Debug)]
pub struct AlertMessage {
    pub state: AlertState,
    pub incident: Incident,
    pub volume: String,
    /// One line: `[FIRING] ...` or `[RESOLVED] ...`.
    pub text: String,
}

impl AlertMessage {
    pub(super) fn new(
        state: AlertState,
        incident: Incident,
        volume: &str,
        cleared: &str,
    ) -> AlertMessage {
        let text = match state {
            AlertState::Firing => {
                format!("[FIRING] cloudraid volume {volume}: {}", incident.message)
            }
            AlertState::Resolved => {
                let lasted = Duration::from_secs(
                    ((now_nanos() - incident.since).max(0) / 1_000_000_000) as u64,
                );
                format!(
                    "[RESOLVED] cloudraid volume {volume}: {cleared} (after {})",
                    humantime::format_duration(lasted)
                )
            }
        };
        AlertMessage {
            state,
            incident,
            volume: volume.to_string(),
            text,
        }
    }

    /// The webhook's JSON.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::json!({
            "text": self.text,
            "content": self.text,
            "state": self.state,
            "alert": self.incident.rule,
            "subject": self.incident.subject,
            "message": self.incident.message,
            "since": chrono::DateTime::from_timestamp_nanos(self.incident.since).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "volume": self.volume,
            "host": crate::meta::lease::hostname(),
        })
    }

    /// The email's body.
    pub fn body(&self) -> String {
        let since = chrono::DateTime::from_timestamp_nanos(self.incident.since)
            .with_timezone(&chrono::Local)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        format!(
            "{}\n\nAlert:   {}\nSubject: {}\nState:   {}\nSince:   {since}\nVolume:  {}\nHost:    {}\n\n{}\n",
            self.text,
            self.incident.rule,
            if self.incident.subject.is_empty() { "-" } else { &self.incident.subject },
            match self.state {
                AlertState::Firing => "firing",
                AlertState::Resolved => "resolved",
            },
            self.volume,
            crate::meta::lease::hostname(),
            self.incident.message
        )
    }
}

/// What a resolved message says cleared.
pub(super) fn cleared_text(i: &Incident) -> String {
    match i.rule {
        "backend_down" => format!("backend {} answers again", i.subject),
        "degraded" => "every chunk has all its shards again".into(),
        "scrub_damage" => {
            "the damage a scrub found is repaired (a later scrub or repair found the volume whole)"
                .into()
        }
        "job_failed" => format!("backup job {} succeeded again", i.subject),
        "job_missed" => format!("backup job {} started", i.subject),
        "disk_free_below" => format!("the state dir's disk ({}) has room again", i.subject),
        "lease_lost" => "the daemon was restarted".into(),
        other => format!("{other} cleared"),
    }
}

/// Sends `m` to every target at once; returns one line per failed delivery.
pub async fn deliver(
    targets: &[AlertTarget],
    m: &AlertMessage,
    env: &[(String, String)],
    d: &Delivery,
) -> Vec<String> {
    let sends = targets.iter().flat_map(|t| {
        let mut v: Vec<futures::future::BoxFuture<'_, (String, Result<(), String>)>> = Vec::new();
        if let Some(url) = &t.webhook {
            let what = format!("webhook {}", notify::redact_url(url));
            let payload = m.payload();
            v.push(Box::pin(async move {
                (what, notify::post_json(url, payload, d).await)
            }));
        }
        if !t.email.is_empty() {
            let what = format!("email to {}", t.email.join(", "));
            v.push(Box::pin(async move {
                let r = notify::send_mail(
                    &t.email,
                    t.from.as_deref(),
                    t.smtp.as_deref(),
                    "[[alerts.notify]]",
                    m.text.clone(),
                    m.body(),
                    env,
                    d,
                )
                .await;
                (what, r)
            }));
        }
        v
    });
    let results = futures::future::join_all(sends).await;
    let mut failed = Vec::new();
    for (what, r) in results {
        match r {
            Ok(()) => {
                crate::metrics::METRICS.alerts_sent.inc();
                tracing::info!("alert sent: {what}: {}", m.text);
            }
            Err(e) => {
                crate::metrics::METRICS.alerts_failed.inc();
                let line = format!("alert not delivered: {what}: {e}");
                tracing::warn!("{line}");
                failed.push(line);
            }
        }
    }
    failed
}
