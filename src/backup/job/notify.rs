//! Notifications after each run of a backup job (`[[job.notify]]`): a JSON POST
//! to a webhook (Slack, Discord, or anything that takes JSON) and an email over
//! SMTP, each sent when the run's result is in the section's `on`.
//!
//! A notification that cannot be delivered never fails the backup: it is tried
//! again on connection errors, timeouts and server errors, then logged and
//! returned as one line saying what failed and what to do. Webhook URLs often
//! hold a token in their path, so they are shown as `scheme://host/…` only.

use super::config::{JobSection, NotifyOn};
use crate::format::{JobRunRecord, RunResult};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::future::Future;
use std::time::Duration;

/// The longest one try of a delivery may take (connecting, sending, the answer).
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Tries of one delivery, the first included.
pub const TRIES: u32 = 3;
/// The pause after the first failed try; doubled after each further one.
pub const BACKOFF: Duration = Duration::from_secs(2);

/// The longest error line kept in a summary (Discord takes 2000 characters).
const SUMMARY_ERROR_CHARS: usize = 300;

/// How hard each delivery tries. [`send_all`] uses [`Delivery::default`]; tests
/// use shorter timeouts and pauses through [`send_all_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The longest one try may take.
    pub timeout: Duration,
    /// Tries in all (0 counts as 1).
    pub tries: u32,
    /// The pause after the first failed try, doubled after each further one.
    pub backoff: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            timeout: TIMEOUT,
            tries: TRIES,
            backoff: BACKOFF,
        }
    }
}

/// The `on` value a run's result is sent for: a skipped run is a failure.
pub fn notify_on(result: RunResult) -> NotifyOn {
    match result {
        RunResult::Success => NotifyOn::Success,
        RunResult::Partial => NotifyOn::Partial,
        RunResult::Failed | RunResult::Skipped => NotifyOn::Failure,
    }
}

/// Sends every notification of `job` whose `on` includes the run's result
/// (webhooks and emails at once) and returns one line per delivery that failed.
/// `env` is the volume's env file (`SMTP_USERNAME`, `SMTP_PASSWORD`). Never
/// fails and never panics: the backup's result does not depend on it.
pub async fn send_all(
    job: &JobSection,
    run: &JobRunRecord,
    env: &[(String, String)],
) -> Vec<String> {
    send_all_with(job, run, env, &Delivery::default()).await
}

/// [`send_all`] with its timeout, tries and back-off given.
pub async fn send_all_with(
    job: &JobSection,
    run: &JobRunRecord,
    env: &[(String, String)],
    delivery: &Delivery,
) -> Vec<String> {
    let on = notify_on(run.result);
    let mut sends: Vec<(String, BoxFuture<'_, Result<(), String>>)> = Vec::new();
    for n in job.notify.iter().filter(|n| n.on.contains(&on)) {
        if let Some(url) = &n.webhook {
            sends.push((
                format!("webhook {}", redact_url(url)),
                post_json(url, webhook_payload(run), delivery).boxed(),
            ));
        }
        if !n.email.is_empty() {
            sends.push((
                format!("email to {}", n.email.join(", ")),
                send_mail(
                    &n.email,
                    n.from.as_deref(),
                    n.smtp.as_deref(),
                    "[[job.notify]]",
                    summary(run),
                    email_body(run),
                    env,
                    delivery,
                )
                .boxed(),
            ));
        }
    }
    let job_name = &run.job;
    let results = futures::future::join_all(sends.into_iter().map(|(what, send)| async move {
        match std::panic::AssertUnwindSafe(send).catch_unwind().await {
            Ok(Ok(())) => {
                tracing::info!(job = %job_name, "notification sent: {what}");
                None
            }
            Ok(Err(e)) => {
                let line = format!("job {job_name}: {what} not delivered: {e}");
                tracing::warn!("{line}");
                Some(line)
            }
            Err(_) => {
                let line = format!(
                    "job {job_name}: {what} not delivered: internal error (a bug in cloudraid, please report it); the backup itself is not affected"
                );
                tracing::error!("{line}");
                Some(line)
            }
        }
    }))
    .await;
    results.into_iter().flatten().collect()
}

/// One line about a run: what it did, its snapshot and its first error.
pub fn summary(run: &JobRunRecord) -> String {
    let mut s = format!(
        "cloudraid backup {}: {} in {} — {} new, {} changed, {} deleted, {} unchanged, {} uploaded",
        run.job,
        run.result.name(),
        duration(run.duration_ms),
        grouped(run.new),
        grouped(run.changed),
        grouped(run.deleted),
        grouped(run.unchanged),
        crate::config::human(run.uploaded_bytes),
    );
    if run.databases > 0 {
        let plural = if run.databases == 1 { "" } else { "s" };
        s.push_str(&format!(", {} database{plural}", grouped(run.databases)));
    }
    if let Some(snap) = &run.snapshot {
        s.push_str(&format!(", snapshot {snap}"));
    }
    if let Some(first) = run.errors.first() {
        let first = one_line(first, SUMMARY_ERROR_CHARS);
        if run.errors.len() == 1 {
            s.push_str(&format!("; error: {first}"));
        } else {
            s.push_str(&format!("; {} errors, first: {first}", run.errors.len()));
        }
    }
    s
}

/// The webhook's JSON: `text` (Slack) and `content` (Discord) hold the summary;
/// the other fields are the run's record.
pub fn webhook_payload(run: &JobRunRecord) -> serde_json::Value {
    let text = summary(run);
    serde_json::json!({
        "text": text,
        "content": text,
        "job": run.job,
        "trigger": run.trigger,
        "result": run.result.name(),
        "started": rfc3339_utc(run.started),
        "duration_ms": run.duration_ms,
        "new": run.new,
        "changed": run.changed,
        "deleted": run.deleted,
        "unchanged": run.unchanged,
        "bytes": run.bytes,
        "uploaded_bytes": run.uploaded_bytes,
        "databases": run.databases,
        "snapshot": run.snapshot,
        "errors": run.errors,
        "host": crate::meta::lease::hostname(),
    })
}

/// The email's text: the summary, every counter, every error.
pub fn email_body(run: &JobRunRecord) -> String {
    let started = chrono::DateTime::from_timestamp_nanos(run.started)
        .with_timezone(&chrono::Local)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let bytes = |n: u64| format!("{} ({} bytes)", crate::config::human(n), grouped(n));
    let mut s = format!("{}\n\n", summary(run));
    let rows = [
        ("Job", run.job.clone()),
        ("Result", run.result.name().to_string()),
        ("Trigger", run.trigger.clone()),
        ("Started", started),
        ("Duration", duration(run.duration_ms)),
        ("New", grouped(run.new)),
        ("Changed", grouped(run.changed)),
        ("Deleted", grouped(run.deleted)),
        ("Unchanged", grouped(run.unchanged)),
        ("Databases", grouped(run.databases)),
        ("Stored", bytes(run.bytes)),
        ("Uploaded", bytes(run.uploaded_bytes)),
        (
            "Snapshot",
            run.snapshot.clone().unwrap_or_else(|| "none".into()),
        ),
        ("Host", crate::meta::lease::hostname()),
    ];
    for (k, v) in rows {
        s.push_str(&format!("{:<11}{v}\n", format!("{k}:")));
    }
    if !run.errors.is_empty() {
        s.push_str(&format!("\nErrors ({}):\n", run.errors.len()));
        for e in &run.errors {
            s.push_str(&format!("  - {}\n", one_line(e, usize::MAX)));
        }
    }
    s
}

/// A URL as it may be shown: scheme, host and port; the path and query (where
/// webhooks keep their token) and any user or password left out.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = match u.host_str() {
                Some(h) => h.to_string(),
                None => return format!("{}:…", u.scheme()),
            };
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if (u.path().is_empty() || u.path() == "/") && u.query().is_none() {
                ""
            } else {
                "/…"
            };
            format!("{}://{host}{port}{rest}", u.scheme())
        }
        Err(_) => "(a URL that does not parse)".into(),
    }
}

/// Why one try failed, and whether another may do better.
struct Failure {
    message: String,
    hint: String,
    retry: bool,
}

/// Runs `attempt` up to `d.tries` times, each within `d.timeout`, pausing
/// `d.backoff` (doubled each time) after a failure that may pass.
async fn with_retries<F, Fut>(d: &Delivery, what: &str, mut attempt: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let tries = d.tries.max(1);
    let mut pause = d.backoff;
    for i in 1..=tries {
        let f = match tokio::time::timeout(d.timeout, attempt()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(f)) => f,
            Err(_) => Failure {
                message: format!(
                    "no answer within {}",
                    duration(d.timeout.as_millis() as u64)
                ),
                hint: "check that the server is up and reachable from this machine".into(),
                retry: true,
            },
        };
        if !f.retry {
            return Err(format!("{}; {}", f.message, f.hint));
        }
        if i == tries {
            let after = if tries == 1 {
                String::new()
            } else {
                format!(" (after {tries} tries)")
            };
            return Err(format!("{}{after}; {}", f.message, f.hint));
        }
        tracing::warn!(
            "{what}: try {i} of {tries} failed ({}); trying again in {}",
            f.message,
            duration(pause.as_millis() as u64)
        );
        tokio::time::sleep(pause).await;
        pause = pause.saturating_mul(2);
    }
    unreachable!("the last try returns")
}

/// rustls on ring for reqwest and lettre, as for the cloud clients.
fn install_tls_provider() {
    static TLS: std::sync::Once = std::sync::Once::new();
    TLS.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// POSTs `payload` to the webhook `url`: tried again on connection errors,
/// timeouts and server errors; the URL's path and query are never shown.
pub async fn post_json(url: &str, payload: serde_json::Value, d: &Delivery) -> Result<(), String> {
    install_tls_provider();
    let shown = redact_url(url);
    // Whatever an error says, the token in the URL's path is not repeated.
    let hide = |s: String| {
        let mut s = s.replace(url, &shown);
        if let Ok(u) = url::Url::parse(url) {
            if u.path().len() > 1 {
                s = s.replace(u.path(), "/…");
            }
            if let Some(q) = u.query() {
                s = s.replace(q, "…");
            }
        }
        s
    };
    let body =
        serde_json::to_vec(&payload).map_err(|e| format!("cannot encode the message: {e}"))?;
    let client = reqwest::Client::builder()
        .timeout(d.timeout)
        .connect_timeout(d.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cloudraid/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| hide(format!("cannot set up HTTP: {}", chain(&e.without_url()))))?;
    with_retries(d, &format!("webhook {shown}"), || async {
        let resp = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .map_err(|e| {
                let builder = e.is_builder();
                let timeout = e.is_timeout();
                Failure {
                    message: hide(chain(&e.without_url())),
                    hint: if builder {
                        "check the webhook URL in the config".into()
                    } else if timeout {
                        "check that the service is up and reachable from this machine".into()
                    } else {
                        "check the webhook URL's host and this machine's network".into()
                    },
                    retry: !builder,
                }
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = match resp.text().await {
            Ok(t) if !t.trim().is_empty() => format!(" ({})", one_line(&t, 200)),
            _ => String::new(),
        };
        let message = hide(format!("the server answered {status}{text}"));
        let (hint, retry) = match status.as_u16() {
            500..=599 => ("the service is failing; check its status if this repeats", true),
            429 => ("the service limits how often it is called; check its status if this repeats", true),
            401 | 403 | 404 | 410 => ("the webhook URL is wrong, revoked or expired: make a new one and put it in the config", false),
            300..=399 => ("the URL redirects elsewhere: put the URL it leads to in the config", false),
            _ => ("the service refused the message: check that the URL is a webhook that takes JSON", false),
        };
        Err(Failure {
            message,
            hint: hint.into(),
            retry,
        })
    })
    .await
}

/// How the connection to the SMTP server is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://` with a password to a server that is not this machine: STARTTLS,
    /// and nothing is sent if the server does not offer it.
    Required,
    /// `smtp://` otherwise: STARTTLS when the server offers it.
    Opportunistic,
}

/// Where email goes: `smtp://host[:587]` or `smtps://host[:465]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpServer {
    pub implicit_tls: bool,
    pub host: String,
    pub port: u16,
    pub loopback: bool,
    /// A user and password written in the URL (the env file's win).
    pub user: Option<(String, String)>,
}

impl SmtpServer {
    pub fn parse(s: &str) -> Result<SmtpServer, String> {
        let bad = || {
            format!(
                "smtp = {:?} is not smtp://host:port or smtps://host:port; fix it in the config",
                redact_url(s)
            )
        };
        let u = url::Url::parse(s).map_err(|_| bad())?;
        let implicit_tls = match u.scheme() {
            "smtp" => false,
            "smtps" => true,
            _ => return Err(bad()),
        };
        let (host, loopback) = match u.host() {
            // smtp:// is not a scheme the URL standard knows: its IPv4 hosts come as names.
            Some(url::Host::Domain(d)) => (
                d.to_string(),
                match d.parse::<std::net::Ipv4Addr>() {
                    Ok(a) => a.is_loopback(),
                    Err(_) => {
                        let d = d.to_ascii_lowercase();
                        d == "localhost" || d.ends_with(".localhost")
                    }
                },
            ),
            Some(url::Host::Ipv4(a)) => (a.to_string(), a.is_loopback()),
            Some(url::Host::Ipv6(a)) => (a.to_string(), a.is_loopback()),
            None => return Err(bad()),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let port = u.port().unwrap_or(if implicit_tls { 465 } else { 587 });
        let decode = |v: &str| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = (!u.username().is_empty())
            .then(|| (decode(u.username()), decode(u.password().unwrap_or(""))));
        Ok(SmtpServer {
            implicit_tls,
            host,
            port,
            loopback,
            user,
        })
    }

    /// How the connection is secured, with or without a password to send.
    pub fn tls(&self, with_credentials: bool) -> SmtpTls {
        if self.implicit_tls {
            SmtpTls::Implicit
        } else if with_credentials && !self.loopback {
            SmtpTls::Required
        } else {
            SmtpTls::Opportunistic
        }
    }

    /// The server as it may be shown (no user or password).
    pub fn shown(&self) -> String {
        let scheme = if self.implicit_tls { "smtps" } else { "smtp" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The SMTP user and password: `SMTP_USERNAME` and `SMTP_PASSWORD` from the env
/// file, else those written in the smtp URL.
fn smtp_credentials(
    env: &[(String, String)],
    server: &SmtpServer,
) -> Result<Option<(String, String)>, String> {
    let get = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    match (get("SMTP_USERNAME"), get("SMTP_PASSWORD")) {
        (Some(u), Some(p)) => Ok(Some((u, p))),
        (Some(_), None) => Err("SMTP_USERNAME is set in the env file but SMTP_PASSWORD is not; add it (or remove both if the server needs no login)".into()),
        (None, Some(_)) => Err("SMTP_PASSWORD is set in the env file but SMTP_USERNAME is not; add it (or remove both if the server needs no login)".into()),
        (None, None) => Ok(server.user.clone()),
    }
}

/// An email to every address of `to`, from `from` (else cloudraid@host).
fn email_message(
    to: &[String],
    from: Option<&str>,
    subject: String,
    body: String,
) -> Result<lettre::Message, String> {
    use lettre::message::{header::ContentType, Mailbox};
    let host = crate::meta::lease::hostname();
    let from = match from {
        Some(f) => f.parse::<Mailbox>().map_err(|e| {
            format!("from = {f:?} is not an email address ({e}); fix it in the config")
        })?,
        None => format!("cloudraid@{host}")
            .parse::<Mailbox>()
            .or_else(|_| "cloudraid@localhost".parse::<Mailbox>())
            .map_err(|e| format!("no sender address could be made ({e}); set from = \"cloudraid@your.domain\" in the config"))?,
    };
    let mut b = lettre::Message::builder()
        .from(from)
        .subject(subject)
        .message_id(Some(format!("<{}@{host}>", uuid::Uuid::new_v4().simple())))
        .user_agent(concat!("cloudraid/", env!("CARGO_PKG_VERSION")).to_string())
        .header(ContentType::TEXT_PLAIN);
    for to in to {
        let mb = to.parse::<Mailbox>().map_err(|e| {
            format!("email = {to:?} is not an email address ({e}); fix it in the config")
        })?;
        b = b.to(mb);
    }
    b.body(body)
        .map_err(|e| format!("cannot build the email: {e}"))
}

/// Emails `subject` and `body` to `to` through `smtp` (`section` names where
/// the config sets it, for the message when it is missing).
#[allow(clippy::too_many_arguments)]
pub async fn send_mail(
    to: &[String],
    from: Option<&str>,
    smtp: Option<&str>,
    section: &str,
    subject: String,
    body: String,
    env: &[(String, String)],
    d: &Delivery,
) -> Result<(), String> {
    let Some(smtp) = smtp else {
        return Err(format!(
            "no smtp server: add smtp = \"smtp://host:587\" to this {section}"
        ));
    };
    let message = email_message(to, from, subject, body)?;
    send_email(&SmtpServer::parse(smtp)?, message, env, d).await
}

/// Sends `message` through `server`.
async fn send_email(
    server: &SmtpServer,
    message: lettre::Message,
    env: &[(String, String)],
    d: &Delivery,
) -> Result<(), String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::transport::smtp::extension::ClientId;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    install_tls_provider();
    let credentials = smtp_credentials(env, server)?;
    let shown = server.shown();
    let mode = server.tls(credentials.is_some());
    // A server on this machine is reached without leaving it: its certificate
    // (often a self-signed one, as a local Postfix has) is not checked.
    let params = TlsParameters::builder(server.host.clone())
        .dangerous_accept_invalid_certs(server.loopback)
        .build();
    let tls = match (mode, params) {
        (SmtpTls::Implicit, Ok(p)) => Tls::Wrapper(p),
        (SmtpTls::Required, Ok(p)) => Tls::Required(p),
        (SmtpTls::Opportunistic, Ok(p)) => Tls::Opportunistic(p),
        (SmtpTls::Opportunistic, Err(e)) => {
            tracing::warn!("{shown}: TLS cannot be set up ({}); sending without STARTTLS", chain(&e));
            Tls::None
        }
        (_, Err(e)) => {
            return Err(format!(
                "{shown}: TLS cannot be set up ({}); check the system's CA certificates (package ca-certificates)",
                chain(&e)
            ))
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host.clone())
        .port(server.port)
        .tls(tls)
        .timeout(Some(d.timeout))
        .hello_name(ClientId::Domain(crate::meta::lease::hostname()));
    if let Some((user, password)) = credentials {
        builder = builder.credentials(Credentials::new(user, password));
    }
    let transport = builder.build();
    with_retries(d, &format!("email via {shown}"), || async {
        transport
            .send(message.clone())
            .await
            .map(drop)
            .map_err(|e| smtp_failure(&shown, mode, &e))
    })
    .await
}

fn smtp_failure(shown: &str, mode: SmtpTls, e: &lettre::transport::smtp::Error) -> Failure {
    let text = chain(e);
    let code = e.status().map(|c| c.to_string());
    let (hint, retry): (String, bool) = if e.is_permanent() {
        match code.as_deref() {
            Some("530" | "534" | "535" | "538") => (
                "check SMTP_USERNAME and SMTP_PASSWORD in the env file".into(),
                false,
            ),
            _ => (
                "the server refused the message: check from, the email addresses, and that the server accepts mail from this sender".into(),
                false,
            ),
        }
    } else if e.is_transient() {
        (
            "the server is busy or failing; check it if this repeats".into(),
            true,
        )
    } else if e.is_client() {
        let hint = if text.contains("STARTTLS") && mode == SmtpTls::Required {
            "the server does not offer STARTTLS, and the password is not sent in clear: use smtps://host:465 or a server that offers STARTTLS".into()
        } else if text.contains("authentication mechanism") {
            "the server offers no login this client knows (PLAIN, LOGIN, XOAUTH2): remove SMTP_USERNAME/SMTP_PASSWORD if it needs none".into()
        } else if text.contains("8BITMIME") || text.contains("SMTPUTF8") {
            "an address has non-ASCII characters the server does not take: use ASCII addresses"
                .into()
        } else {
            format!("check smtp = \"{shown}\" in the config")
        };
        (hint, false)
    } else if e.is_tls() {
        (
            "TLS failed: smtps:// is TLS from the start (usually port 465), smtp:// starts plain then STARTTLS (usually 587)".into(),
            false,
        )
    } else {
        (
            format!("check smtp = \"{shown}\" (host and port) and that this machine can reach it"),
            true,
        )
    };
    Failure {
        message: format!("{shown}: {text}"),
        hint,
        retry,
    }
}

/// An error and its sources, each said once.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        let t = c.to_string();
        if !t.is_empty() && !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        source = c.source();
    }
    s
}

/// `text` on one line (control characters as spaces), cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// `1234567` as `1 234 567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut s = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            s.push(' ');
        }
        s.push(c);
    }
    s
}

/// `12.3 s`, `4 min 5 s`, `2 h 3 min`.
fn duration(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000)
    } else {
        format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000)
    }
}

fn rfc3339_utc(ns: crate::format::Nanos) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::job::config::NotifySection;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn record() -> JobRunRecord {
        JobRunRecord {
            job: "nightly".into(),
            trigger: "schedule".into(),
            started: 1_767_236_400_000_000_000, // 2026-01-01T03:00:00Z
            duration_ms: 12_345,
            result: RunResult::Success,
            new: 10,
            changed: 2,
            deleted: 0,
            unchanged: 1234,
            bytes: 12 << 20,
            uploaded_bytes: 5_347_738,
            databases: 0,
            snapshot: Some("1a2b3c4d".into()),
            errors: Vec::new(),
        }
    }

    #[test]
    fn skipped_and_failed_runs_are_failures() {
        assert_eq!(notify_on(RunResult::Success), NotifyOn::Success);
        assert_eq!(notify_on(RunResult::Partial), NotifyOn::Partial);
        assert_eq!(notify_on(RunResult::Failed), NotifyOn::Failure);
        assert_eq!(notify_on(RunResult::Skipped), NotifyOn::Failure);
    }

    #[test]
    fn summary_is_one_line_with_counters_snapshot_and_first_error() {
        assert_eq!(
            summary(&record()),
            "cloudraid backup nightly: success in 12.3 s — 10 new, 2 changed, 0 deleted, 1 234 unchanged, 5.1 MiB uploaded, snapshot 1a2b3c4d"
        );
        let mut r = record();
        r.result = RunResult::Failed;
        r.snapshot = None;
        r.databases = 2;
        r.duration_ms = 3_723_000;
        r.errors = vec!["/src/a: permission\ndenied".into()];
        assert_eq!(
            summary(&r),
            "cloudraid backup nightly: failed in 1 h 2 min — 10 new, 2 changed, 0 deleted, 1 234 unchanged, 5.1 MiB uploaded, 2 databases; error: /src/a: permission denied"
        );
        r.errors.push("second".into());
        r.errors[0] = "x".repeat(1000);
        let s = summary(&r);
        assert!(s.contains("; 2 errors, first: xxx"), "{s}");
        assert!(s.ends_with('…'), "{s}");
        assert!(!s.contains("second"));
        assert!(s.chars().count() < 600, "{}", s.len());
    }

    #[test]
    fn numbers_and_durations_read_easily() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1 000");
        assert_eq!(grouped(1_234_567), "1 234 567");
        assert_eq!(duration(0), "0.0 s");
        assert_eq!(duration(59_999), "60.0 s");
        assert_eq!(duration(245_000), "4 min 5 s");
        assert_eq!(duration(7_380_000), "2 h 3 min");
    }

    #[test]
    fn urls_are_shown_without_path_query_or_user() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T000/B000/SECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_url("http://user:pw@127.0.0.1:8080/?token=SECRET"),
            "http://127.0.0.1:8080/…"
        );
        assert_eq!(redact_url("https://example.org/"), "https://example.org");
        assert!(!redact_url("not a url SECRET").contains("SECRET"));
    }

    #[test]
    fn smtp_urls_choose_port_and_tls() {
        let s = SmtpServer::parse("smtp://mail.example.org").unwrap();
        assert_eq!((s.port, s.loopback, s.implicit_tls), (587, false, false));
        assert_eq!(s.tls(false), SmtpTls::Opportunistic);
        assert_eq!(s.tls(true), SmtpTls::Required);
        let s = SmtpServer::parse("smtps://mail.example.org").unwrap();
        assert_eq!(s.port, 465);
        assert_eq!(s.tls(false), SmtpTls::Implicit);
        assert_eq!(s.tls(true), SmtpTls::Implicit);
        for local in [
            "smtp://127.0.0.1:2525",
            "smtp://localhost:25",
            "smtp://[::1]:25",
        ] {
            let s = SmtpServer::parse(local).unwrap();
            assert!(s.loopback, "{local}");
            assert_eq!(s.tls(true), SmtpTls::Opportunistic, "{local}");
        }
        assert_eq!(
            SmtpServer::parse("smtp://[::1]:25").unwrap().shown(),
            "smtp://[::1]:25"
        );
        let s = SmtpServer::parse("smtp://me%40x.org:p%20w@10.0.0.1:25").unwrap();
        assert_eq!(s.user, Some(("me@x.org".into(), "p w".into())));
        assert!(!s.loopback);
        assert_eq!(s.shown(), "smtp://10.0.0.1:25");
        for bad in [
            "http://mail.example.org",
            "smtp:mail",
            "mail.example.org:25",
        ] {
            let e = SmtpServer::parse(bad).unwrap_err();
            assert!(e.contains("smtp://host:port"), "{bad}: {e}");
        }
    }

    #[test]
    fn smtp_credentials_come_from_the_env_file_first() {
        let url = SmtpServer::parse("smtp://u:p@mail.example.org").unwrap();
        let none = SmtpServer::parse("smtp://mail.example.org").unwrap();
        let env = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let both = env(&[("SMTP_USERNAME", "a"), ("SMTP_PASSWORD", "b")]);
        assert_eq!(
            smtp_credentials(&both, &url).unwrap(),
            Some(("a".into(), "b".into()))
        );
        assert_eq!(
            smtp_credentials(&[], &url).unwrap(),
            Some(("u".into(), "p".into()))
        );
        assert_eq!(smtp_credentials(&[], &none).unwrap(), None);
        let half = env(&[("SMTP_USERNAME", "a")]);
        let e = smtp_credentials(&half, &none).unwrap_err();
        assert!(e.contains("SMTP_PASSWORD is not"), "{e}");
    }

    #[test]
    fn email_has_sender_recipients_summary_and_every_counter() {
        let mut n = NotifySection {
            on: vec![NotifyOn::Success],
            webhook: None,
            email: vec!["a@example.org".into(), "B <b@example.org>".into()],
            from: None,
            smtp: Some("smtp://127.0.0.1:25".into()),
        };
        let mut r = record();
        r.result = RunResult::Partial;
        r.errors = vec!["/src/a: gone".into(), "/src/b: locked".into()];
        let m = email_message(&n.email, n.from.as_deref(), summary(&r), email_body(&r)).unwrap();
        let host = crate::meta::lease::hostname();
        let from = m.envelope().from().unwrap().to_string();
        assert!(
            from == format!("cloudraid@{host}") || from == "cloudraid@localhost",
            "{from}"
        );
        let to: Vec<String> = m.envelope().to().iter().map(|a| a.to_string()).collect();
        assert_eq!(to, ["a@example.org", "b@example.org"]);
        let body = email_body(&r);
        assert!(body.starts_with(&summary(&r)), "{body}");
        for line in [
            "Result:    partial",
            "New:       10",
            "Unchanged: 1 234",
            "Uploaded:  5.1 MiB (5 347 738 bytes)",
            "Snapshot:  1a2b3c4d",
            "Errors (2):",
            "  - /src/b: locked",
        ] {
            assert!(body.contains(line), "{line:?} in:\n{body}");
        }
        n.from = Some("not an address".into());
        let e =
            email_message(&n.email, n.from.as_deref(), summary(&r), email_body(&r)).unwrap_err();
        assert!(e.contains("from = \"not an address\""), "{e}");
        n.from = Some("Backups <backup@example.org>".into());
        n.email.push("nobody".into());
        let e =
            email_message(&n.email, n.from.as_deref(), summary(&r), email_body(&r)).unwrap_err();
        assert!(e.contains("email = \"nobody\""), "{e}");
    }

    #[test]
    fn webhook_payload_carries_the_record() {
        let mut r = record();
        r.errors = vec!["e1".into()];
        let p = webhook_payload(&r);
        assert_eq!(p["text"], summary(&r));
        assert_eq!(p["content"], summary(&r));
        assert_eq!(p["job"], "nightly");
        assert_eq!(p["trigger"], "schedule");
        assert_eq!(p["result"], "success");
        assert_eq!(p["started"], "2026-01-01T03:00:00Z");
        assert_eq!(p["duration_ms"], 12_345);
        assert_eq!(p["unchanged"], 1234);
        assert_eq!(p["uploaded_bytes"], 5_347_738);
        assert_eq!(p["snapshot"], "1a2b3c4d");
        assert_eq!(p["errors"], serde_json::json!(["e1"]));
    }

    fn quick() -> Delivery {
        Delivery {
            timeout: Duration::from_millis(200),
            tries: 3,
            backoff: Duration::from_millis(10),
        }
    }

    #[tokio::test]
    async fn retries_stop_at_success_at_a_final_error_or_after_the_last_try() {
        let n = AtomicU32::new(0);
        let r = with_retries(&quick(), "t", || async {
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(Failure {
                    message: "down".into(),
                    hint: "wait".into(),
                    retry: true,
                })
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!((r, n.load(Ordering::SeqCst)), (Ok(()), 2));

        let n = AtomicU32::new(0);
        let r = with_retries(&quick(), "t", || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(Failure {
                message: "refused".into(),
                hint: "fix it".into(),
                retry: false,
            })
        })
        .await;
        assert_eq!(
            (r, n.load(Ordering::SeqCst)),
            (Err("refused; fix it".into()), 1)
        );

        // A try that never ends is cut at the timeout and tried again.
        let n = AtomicU32::new(0);
        let t = std::time::Instant::now();
        let r = with_retries(&quick(), "t", || async {
            n.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<(), Failure>>().await
        })
        .await;
        let e = r.unwrap_err();
        assert!(
            e.starts_with("no answer within 0.2 s (after 3 tries)"),
            "{e}"
        );
        assert_eq!(n.load(Ordering::SeqCst), 3);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    /// A plain SMTP server without STARTTLS that takes every message; returns
    /// its port and the commands it received.
    async fn plain_smtp() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"220 plain ESMTP\r\n").await;
                    let mut in_data = false;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if in_data {
                            if line == "." {
                                in_data = false;
                                let _ = w.write_all(b"250 kept\r\n").await;
                            }
                            continue;
                        }
                        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                        log.lock().unwrap().push(verb.clone());
                        let answer: &[u8] = match verb.as_str() {
                            "EHLO" => b"250-plain\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n",
                            "AUTH" => b"235 ok\r\n",
                            "DATA" => {
                                in_data = true;
                                b"354 go on\r\n"
                            }
                            "QUIT" => {
                                let _ = w.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 ok\r\n",
                        };
                        let _ = w.write_all(answer).await;
                    }
                });
            }
        });
        (port, seen)
    }

    #[tokio::test]
    async fn a_password_is_not_sent_in_clear_to_a_server_elsewhere() {
        let (port, seen) = plain_smtp().await;
        let n = NotifySection {
            on: vec![NotifyOn::Success],
            webhook: None,
            email: vec!["a@example.org".into()],
            from: Some("b@example.org".into()),
            smtp: Some(format!("smtp://127.0.0.1:{port}")),
        };
        let login = [
            ("SMTP_USERNAME".to_string(), "u".to_string()),
            ("SMTP_PASSWORD".to_string(), "secret".to_string()),
        ];
        let local = SmtpServer::parse(n.smtp.as_deref().unwrap()).unwrap();
        let msg = |n: &NotifySection| {
            email_message(
                &n.email,
                n.from.as_deref(),
                summary(&record()),
                email_body(&record()),
            )
            .unwrap()
        };
        // On this machine, STARTTLS is used if offered: without it the login goes plain.
        send_email(&local, msg(&n), &login, &quick()).await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            ["EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]
        );
        // The same server taken for one elsewhere: STARTTLS is required to log in.
        seen.lock().unwrap().clear();
        let elsewhere = SmtpServer {
            loopback: false,
            ..local
        };
        let e = send_email(&elsewhere, msg(&n), &login, &quick())
            .await
            .unwrap_err();
        assert!(e.contains("STARTTLS is not supported"), "{e}");
        assert!(e.contains("use smtps://host:465"), "{e}");
        assert!(!e.contains("tries"), "not tried again: {e}");
        assert_eq!(*seen.lock().unwrap(), ["EHLO"], "no AUTH, no MAIL");
        // Without a password there is nothing to protect: sent, in clear.
        seen.lock().unwrap().clear();
        send_email(&elsewhere, msg(&n), &[], &quick())
            .await
            .unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
        );
    }

    #[tokio::test]
    async fn a_section_that_cannot_send_gives_a_line_and_others_still_go() {
        let mut job: JobSection = toml::from_str(
            r#"
            name = "j"
            destination = "/b"
            sources = ["/src"]
            [[notify]]
            on = ["success"]
            email = ["a@example.org"]
            from = "x@example.org"
            [[notify]]
            on = ["failure"]
            email = ["a@example.org"]
            from = "x@example.org"
            "#,
        )
        .unwrap();
        let r = record();
        let lines = send_all_with(&job, &r, &[], &quick()).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0]
                .starts_with("job nightly: email to a@example.org not delivered: no smtp server"),
            "{lines:?}"
        );
        job.notify.clear();
        assert!(send_all_with(&job, &r, &[], &quick()).await.is_empty());
    }
}
