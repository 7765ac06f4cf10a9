//! Notifications after a backup run: webhooks against a small HTTP receiver in
//! the test, emails against the SMTP sink of `scripts/smtp-sink.sh` (skipped
//! without it, except in CI).

use cloudraid::backup::job::config::JobSection;
use cloudraid::backup::job::notify::{send_all, send_all_with, summary, Delivery};
use cloudraid::format::{JobRunRecord, RunResult};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

mod common;
use common::receiver::{sink, Receiver, Request};

/// Short timeouts and pauses, so failures are quick.
fn quick() -> Delivery {
    Delivery {
        timeout: Duration::from_secs(2),
        tries: 3,
        backoff: Duration::from_millis(20),
    }
}

fn job(name: &str, notify: &str) -> JobSection {
    let text = format!(
        "name = \"{name}\"\ndestination = \"/backups/{name}\"\nsources = [\"/srv/data\"]\n{notify}"
    );
    let job: JobSection = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    job.validate().unwrap();
    job
}

fn run(name: &str, result: RunResult) -> JobRunRecord {
    JobRunRecord {
        job: name.into(),
        trigger: "manual".into(),
        started: 1_767_236_400_000_000_000, // 2026-01-01T03:00:00Z
        duration_ms: 12_345,
        result,
        new: 10,
        changed: 2,
        deleted: 1,
        unchanged: 1234,
        bytes: 7 << 20,
        uploaded_bytes: 5_347_738,
        databases: 1,
        snapshot: (result != RunResult::Failed).then(|| "1a2b3c4d".into()),
        errors: if result == RunResult::Success {
            Vec::new()
        } else {
            vec![
                "/srv/data/a.db: permission denied".into(),
                "/srv/data/b: changed while read".into(),
            ]
        },
    }
}

fn webhook_job(name: &str, url: &str, on: &str) -> JobSection {
    job(name, &format!("[[notify]]\n{on}\nwebhook = \"{url}\"\n"))
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn webhook_gets_the_summary_and_the_record_as_json() {
    let rx = Receiver::start(&[]).await;
    let j = webhook_job("nightly", &rx.url(), "on = [\"success\"]");
    let r = run("nightly", RunResult::Success);
    // As a backup run sends it: in a task of its own.
    let (job2, run2) = (j.clone(), r.clone());
    let lines = tokio::spawn(async move { send_all(&job2, &run2, &[]).await })
        .await
        .unwrap();
    assert!(lines.is_empty(), "{lines:?}");
    let got = rx.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    let q = &got[0];
    assert_eq!(q.method, "POST");
    assert_eq!(q.path, "/services/T0001/B0002/SECRETTOKEN");
    assert_eq!(q.headers["content-type"], "application/json");
    let v: Value = serde_json::from_slice(&q.body).unwrap();
    let text = summary(&r);
    assert_eq!(
        text,
        "cloudraid backup nightly: success in 12.3 s — 10 new, 2 changed, 1 deleted, 1 234 unchanged, 5.1 MiB uploaded, 1 database, snapshot 1a2b3c4d"
    );
    assert_eq!(v["text"], text);
    assert_eq!(v["content"], text);
    assert_eq!(v["job"], "nightly");
    assert_eq!(v["trigger"], "manual");
    assert_eq!(v["result"], "success");
    assert_eq!(v["started"], "2026-01-01T03:00:00Z");
    assert_eq!(v["duration_ms"], 12_345);
    for (k, n) in [
        ("new", 10),
        ("changed", 2),
        ("deleted", 1),
        ("unchanged", 1234),
        ("bytes", 7 << 20),
        ("uploaded_bytes", 5_347_738),
        ("databases", 1),
    ] {
        assert_eq!(v[k], n, "{k}");
    }
    assert_eq!(v["snapshot"], "1a2b3c4d");
    assert_eq!(v["errors"], serde_json::json!([]));
    assert!(v["host"].as_str().is_some_and(|h| !h.is_empty()));
}

#[tokio::test]
async fn a_failed_run_sends_its_errors() {
    let rx = Receiver::start(&[]).await;
    let j = webhook_job("nightly", &rx.url(), "");
    let r = run("nightly", RunResult::Failed);
    assert!(send_all_with(&j, &r, &[], &quick()).await.is_empty());
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    let v: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(v["result"], "failed");
    assert_eq!(v["snapshot"], Value::Null);
    assert_eq!(v["errors"], serde_json::json!(r.errors));
    let text = v["text"].as_str().unwrap();
    assert!(
        text.starts_with("cloudraid backup nightly: failed in 12.3 s — "),
        "{text}"
    );
    assert!(
        text.ends_with("; 2 errors, first: /srv/data/a.db: permission denied"),
        "{text}"
    );
}

#[tokio::test]
async fn a_server_error_is_tried_again_and_the_message_arrives_once() {
    let rx = Receiver::start(&[500]).await;
    let j = webhook_job("nightly", &rx.url(), "on = [\"success\"]");
    let lines = send_all_with(&j, &run("nightly", RunResult::Success), &[], &quick()).await;
    assert!(lines.is_empty(), "{lines:?}");
    let answered: Vec<u16> = rx.requests().iter().map(|q| q.answered).collect();
    assert_eq!(answered, [500, 200]);
    let bodies: Vec<Vec<u8>> = rx.requests().into_iter().map(|q| q.body).collect();
    assert_eq!(bodies[0], bodies[1], "the same message each try");
}

#[tokio::test]
async fn a_server_that_keeps_failing_gives_a_line_without_the_token() {
    let rx = Receiver::start(&[503, 503, 503, 503]).await;
    let j = webhook_job("nightly", &rx.url(), "on = [\"success\"]");
    let lines = send_all_with(&j, &run("nightly", RunResult::Success), &[], &quick()).await;
    assert_eq!(rx.requests().len(), 3, "3 tries");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert!(
        l.starts_with(&format!(
            "job nightly: webhook http://127.0.0.1:{}/… not delivered: the server answered 503",
            rx.port
        )),
        "{l}"
    );
    assert!(l.contains("(after 3 tries)"), "{l}");
    assert!(!l.contains("SECRETTOKEN") && !l.contains("T0001"), "{l}");
}

#[tokio::test]
async fn a_client_error_is_not_tried_again() {
    let rx = Receiver::start(&[404]).await;
    let j = webhook_job("nightly", &rx.url(), "on = [\"success\"]");
    let lines = send_all_with(&j, &run("nightly", RunResult::Success), &[], &quick()).await;
    assert_eq!(rx.requests().len(), 1, "not tried again");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert!(l.contains("answered 404 Not Found (no_service)"), "{l}");
    assert!(l.contains("wrong, revoked or expired"), "{l}");
    assert!(!l.contains("tries"), "{l}");
    assert!(!l.contains("SECRETTOKEN"), "{l}");
}

#[tokio::test]
async fn an_unreachable_webhook_gives_a_line_and_returns() {
    let port = closed_port().await;
    let url = format!("http://127.0.0.1:{port}/hook/SECRETTOKEN?key=SECRETKEY");
    let j = webhook_job("nightly", &url, "on = [\"success\"]");
    let t = Instant::now();
    let lines = send_all_with(&j, &run("nightly", RunResult::Success), &[], &quick()).await;
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert!(
        l.starts_with(&format!(
            "job nightly: webhook http://127.0.0.1:{port}/… not delivered: "
        )),
        "{l}"
    );
    assert!(l.contains("(after 3 tries)"), "{l}");
    assert!(l.contains("check the webhook URL's host"), "{l}");
    assert!(!l.contains("SECRET"), "{l}");

    // A server that takes the connection and never answers: cut at the timeout.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook/SECRETTOKEN",
        silent.local_addr().unwrap().port()
    );
    let j = webhook_job("nightly", &url, "on = [\"success\"]");
    let d = Delivery {
        timeout: Duration::from_millis(300),
        ..quick()
    };
    let t = Instant::now();
    let lines = send_all_with(&j, &run("nightly", RunResult::Success), &[], &d).await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("timed out") || lines[0].contains("no answer within"),
        "{lines:?}"
    );
    assert!(!lines[0].contains("SECRET"), "{lines:?}");
    drop(silent);
}

#[tokio::test]
async fn only_the_results_in_on_are_sent() {
    let rx = Receiver::start(&[]).await;
    let only_failure = webhook_job("nightly", &rx.url(), "on = [\"failure\"]");
    let default_on = webhook_job("nightly", &rx.url(), "");
    let sent = |j: &JobSection, result| {
        let j = j.clone();
        let rx_len = rx.requests().len();
        let got = rx.got.clone();
        async move {
            let lines = send_all_with(&j, &run("nightly", result), &[], &quick()).await;
            assert!(lines.is_empty(), "{lines:?}");
            let after: Vec<Request> = got.lock().unwrap()[rx_len..].to_vec();
            after
                .iter()
                .map(|q| {
                    serde_json::from_slice::<Value>(&q.body).unwrap()["result"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect::<Vec<String>>()
        }
    };
    assert!(sent(&only_failure, RunResult::Success).await.is_empty());
    assert!(sent(&only_failure, RunResult::Partial).await.is_empty());
    assert_eq!(sent(&only_failure, RunResult::Failed).await, ["failed"]);
    assert_eq!(sent(&only_failure, RunResult::Skipped).await, ["skipped"]);
    // Default: partial and failure.
    assert!(sent(&default_on, RunResult::Success).await.is_empty());
    assert_eq!(sent(&default_on, RunResult::Partial).await, ["partial"]);
    assert_eq!(sent(&default_on, RunResult::Failed).await, ["failed"]);
    // Two tables: each sends on its own results.
    let two = job(
        "nightly",
        &format!(
            "[[notify]]\non = [\"success\"]\nwebhook = \"{0}\"\n[[notify]]\non = [\"success\", \"failure\"]\nwebhook = \"{0}\"\n",
            rx.url()
        ),
    );
    assert_eq!(sent(&two, RunResult::Success).await, ["success", "success"]);
    assert_eq!(sent(&two, RunResult::Failed).await, ["failed"]);
}

/// The SMTP sink's address and mail folder, or None (skipped) when it was not
/// started; CI must run these tests.
/// The messages the sink kept whose subject names `job`.
fn kept(dir: &std::path::Path, job: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            if v["subject"]
                .as_str()
                .is_some_and(|s| s.contains(&format!("backup {job}:")))
            {
                out.push(v);
            }
        }
    }
    out
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn email_job(name: &str, smtp: &str) -> JobSection {
    job(
        name,
        &format!(
            "[[notify]]\non = [\"success\", \"partial\"]\nemail = [\"ops@example.org\", \"Second Admin <second@example.org>\"]\nfrom = \"Backups <backups@example.org>\"\nsmtp = \"smtp://{smtp}\"\n"
        ),
    )
}

#[tokio::test]
async fn email_arrives_with_sender_recipients_subject_and_counters() {
    let Some((addr, dir)) = sink() else { return };
    let name = unique("mail");
    let j = email_job(&name, &addr);
    let r = run(&name, RunResult::Partial);
    let lines = send_all(&j, &r, &[]).await;
    assert!(lines.is_empty(), "{lines:?}");
    let got = kept(&dir, &name);
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m["mail_from"], "backups@example.org");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["ops@example.org", "second@example.org"])
    );
    assert_eq!(m["from"], "Backups <backups@example.org>");
    assert_eq!(
        m["to"],
        "ops@example.org, Second Admin <second@example.org>"
    );
    assert_eq!(m["subject"], summary(&r));
    assert!(m["subject"]
        .as_str()
        .unwrap()
        .contains("partial in 12.3 s — 10 new"));
    assert_eq!(m["auth_user"], Value::Null);
    assert!(m["date"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(m["message_id"].as_str().is_some_and(|d| d.starts_with('<')));
    let body = m["body"].as_str().unwrap().replace("\r\n", "\n");
    assert!(body.starts_with(&summary(&r)), "{body}");
    for line in [
        &format!("Job:       {name}"),
        "Result:    partial",
        "Trigger:   manual",
        "New:       10",
        "Changed:   2",
        "Deleted:   1",
        "Unchanged: 1 234",
        "Databases: 1",
        "Stored:    7.0 MiB (7 340 032 bytes)",
        "Uploaded:  5.1 MiB (5 347 738 bytes)",
        "Snapshot:  1a2b3c4d",
        "Errors (2):",
        "  - /srv/data/a.db: permission denied",
        "  - /srv/data/b: changed while read",
    ] {
        assert!(body.contains(line), "{line:?} in:\n{body}");
    }
    // Not sent for a result that is not in `on`.
    let lines = send_all(&j, &run(&name, RunResult::Failed), &[]).await;
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(kept(&dir, &name).len(), 1);
}

#[tokio::test]
async fn email_logs_in_with_the_env_file_credentials() {
    let Some((addr, dir)) = sink() else { return };
    let env = |user: &str, pw: &str| {
        vec![
            ("SMTP_USERNAME".to_string(), user.to_string()),
            ("SMTP_PASSWORD".to_string(), pw.to_string()),
        ]
    };
    let name = unique("login");
    let j = email_job(&name, &addr);
    let r = run(&name, RunResult::Success);
    let lines = send_all_with(&j, &r, &env("backup-user", "cloudraid-sink"), &quick()).await;
    assert!(lines.is_empty(), "{lines:?}");
    let got = kept(&dir, &name);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["auth_user"], "backup-user");

    // A refused login: one line, not tried again, nothing sent.
    let name = unique("badlogin");
    let j = email_job(&name, &addr);
    let t = Instant::now();
    let lines = send_all_with(
        &j,
        &run(&name, RunResult::Success),
        &env("backup-user", "wrong-password"),
        &Delivery {
            backoff: Duration::from_secs(5),
            ..quick()
        },
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(4), "not retried");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert!(
        l.starts_with(&format!(
            "job {name}: email to ops@example.org, Second Admin <second@example.org> not delivered: smtp://{addr}: "
        )),
        "{l}"
    );
    assert!(l.contains("535"), "{l}");
    assert!(
        l.contains("check SMTP_USERNAME and SMTP_PASSWORD in the env file"),
        "{l}"
    );
    assert!(!l.contains("wrong-password"), "{l}");
    assert!(kept(&dir, &name).is_empty());
}

#[tokio::test]
async fn an_unreachable_smtp_server_gives_a_line_and_returns() {
    let port = closed_port().await;
    let name = "nightly";
    let j = email_job(name, &format!("127.0.0.1:{port}"));
    let t = Instant::now();
    let lines = send_all_with(&j, &run(name, RunResult::Success), &[], &quick()).await;
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert!(
        l.contains(&format!("not delivered: smtp://127.0.0.1:{port}: ")),
        "{l}"
    );
    assert!(l.contains("(after 3 tries)"), "{l}");
    assert!(
        l.contains(&format!(
            "check smtp = \"smtp://127.0.0.1:{port}\" (host and port)"
        )),
        "{l}"
    );
}

#[tokio::test]
async fn a_webhook_and_an_email_go_out_together() {
    let rx = Receiver::start(&[]).await;
    let port = closed_port().await;
    let name = "both";
    let j = job(
        name,
        &format!(
            "[[notify]]\non = [\"failure\"]\nemail = [\"ops@example.org\"]\nfrom = \"b@example.org\"\nsmtp = \"smtp://127.0.0.1:{port}\"\n[[notify]]\non = [\"failure\"]\nwebhook = \"{}\"\n",
            rx.url()
        ),
    );
    let lines = send_all_with(&j, &run(name, RunResult::Skipped), &[], &quick()).await;
    // The email fails, the webhook is delivered all the same.
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("job both: email to ops@example.org not delivered"));
    assert_eq!(rx.requests().len(), 1);
}
