//! Alerts as an admin gets them: a mount with `[alerts]` sends exactly one
//! message when a backend goes down and one when it comes back, to a webhook
//! (a small HTTP receiver here) and by email (the SMTP sink of
//! `scripts/smtp-sink.sh`); a broken `[alerts]` is one clear error line.

mod common;

use common::receiver::{sink, Receiver};
use common::{assert_one_line_error, can_mount, run, three_backend_volume, Env};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The webhook messages of rule `alert` so far.
fn hooks(rx: &Receiver, alert: &str) -> Vec<Value> {
    rx.requests()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .filter(|v| v["alert"] == alert)
        .collect()
}

/// The emails the sink kept for `to`.
fn mails(dir: &std::path::Path, to: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            if v["rcpt_tos"].as_array().unwrap().iter().any(|r| r == to) {
                out.push(v);
            }
        }
    }
    out.sort_by_key(|v| v["subject"].as_str().unwrap().starts_with("[RESOLVED]"));
    out
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_backend_going_down_and_back_sends_one_message_each_way() {
    if !can_mount() {
        return;
    }
    let smtp = sink();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rx = rt.block_on(Receiver::start(&[]));
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let to = format!("ops-{}@example.org", std::process::id());
    let mut c = std::fs::read_to_string(&cfg).unwrap();
    c.push_str(&format!(
        "\n[alerts]\nbackend_down = \"1s\"\ndegraded = false\ndisk_free_below = false\n\n[[alerts.notify]]\nwebhook = \"{}\"\n",
        rx.url()
    ));
    if let Some((addr, _)) = &smtp {
        c.push_str(&format!(
            "\n[[alerts.notify]]\nemail = [\"{to}\"]\nsmtp = \"smtp://{addr}\"\n"
        ));
    }
    std::fs::write(&cfg, c).unwrap();
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();
    // The daemon logs JSON lines, as a log shipper reads them.
    common::ok(&["mount", "--log-format", "json", "--config", &cfg, &mp]);

    std::fs::rename(e.p("a"), e.p("a.away")).unwrap();
    std::fs::write(format!("{mp}/during"), common::bytes(1, 1 << 20)).unwrap();
    wait_until("the backend_down webhook", Duration::from_secs(40), || {
        !hooks(&rx, "backend_down").is_empty()
    });
    let h = hooks(&rx, "backend_down");
    assert_eq!(h[0]["state"], "firing");
    assert_eq!(h[0]["subject"], "a");
    let text = h[0]["text"].as_str().unwrap();
    assert!(text.starts_with("[FIRING] cloudraid volume "), "{text}");
    assert!(text.contains("backend a is down"), "{text}");
    assert_eq!(
        h[0]["text"], h[0]["content"],
        "Slack and Discord read one line"
    );

    std::fs::rename(e.p("a.away"), e.p("a")).unwrap();
    wait_until("the resolved webhook", Duration::from_secs(40), || {
        hooks(&rx, "backend_down").len() >= 2
    });
    // Nothing more arrives for the same incident.
    std::thread::sleep(Duration::from_secs(6));
    let h = hooks(&rx, "backend_down");
    assert_eq!(h.len(), 2, "one message each way: {h:?}");
    assert_eq!(h[1]["state"], "resolved");
    assert!(
        h[1]["text"]
            .as_str()
            .unwrap()
            .contains("backend a answers again"),
        "{}",
        h[1]["text"]
    );
    if let Some((_, dir)) = &smtp {
        wait_until("two emails", Duration::from_secs(20), || {
            mails(dir, &to).len() >= 2
        });
        let m = mails(dir, &to);
        assert_eq!(m.len(), 2, "{m:?}");
        let subject = |i: usize| m[i]["subject"].as_str().unwrap().to_string();
        assert!(subject(0).starts_with("[FIRING]") && subject(0).contains("backend a is down"));
        assert!(
            subject(1).starts_with("[RESOLVED]") && subject(1).contains("backend a answers again")
        );
        assert!(m[0]["body"]
            .as_str()
            .unwrap()
            .contains("Alert:   backend_down"));
    }
    common::ok(&["umount", &mp]);
    let log = std::fs::read_to_string(e.p("state/mount.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{err}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "INFO"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("alert sent: webhook"))),
        "{log}"
    );
}

#[test]
fn a_broken_alerts_section_is_one_clear_error() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let base = std::fs::read_to_string(&cfg).unwrap();
    for (section, says) in [
        ("[alerts]\n", "has no [[alerts.notify]]"),
        (
            "[alerts]\nbackend_down = \"soon\"\n[[alerts.notify]]\nwebhook = \"http://127.0.0.1:9/h\"\n",
            "not a duration",
        ),
        (
            "[alerts]\n[[alerts.notify]]\nemail = [\"ops@example.org\"]\n",
            "no smtp server",
        ),
    ] {
        std::fs::write(&cfg, format!("{base}\n{section}")).unwrap();
        assert_one_line_error(&run(&["status", "--config", &cfg]), says);
    }
}

#[test]
fn a_failed_delivery_is_tried_again_then_reported_and_the_next_goes_out() {
    use cloudraid::backup::job::notify::Delivery;
    use cloudraid::front::alerts::{deliver, AlertTarget};
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The receiver fails three times (every try of the first message), then takes.
    let rx = rt.block_on(Receiver::start(&[503, 503, 503]));
    let targets = vec![AlertTarget {
        webhook: Some(rx.url()),
        ..Default::default()
    }];
    let d = Delivery {
        timeout: Duration::from_secs(5),
        tries: 3,
        backoff: Duration::from_millis(10),
    };
    let section: cloudraid::front::alerts::AlertsSection = toml::from_str(&format!(
        "backend_down = \"0s\"\n[[notify]]\nwebhook = \"{}\"\n",
        rx.url()
    ))
    .unwrap();
    let message = |subject: &str| cloudraid::front::alerts::AlertMessage {
        state: cloudraid::front::alerts::AlertState::Firing,
        incident: cloudraid::front::alerts::Incident {
            rule: "backend_down",
            subject: subject.into(),
            message: format!("backend {subject} is down"),
            since: 0,
        },
        volume: "v".into(),
        text: format!("[FIRING] cloudraid volume v: backend {subject} is down"),
    };
    assert_eq!(section.notify, targets);
    let failed = rt.block_on(deliver(&targets, &message("a"), &[], &d));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("503") && failed[0].contains("after 3 tries"),
        "{}",
        failed[0]
    );
    assert!(
        !failed[0].contains("SECRETTOKEN"),
        "the webhook's token is not shown: {}",
        failed[0]
    );
    let failed = rt.block_on(deliver(&targets, &message("b"), &[], &d));
    assert!(failed.is_empty(), "{failed:?}");
    let got = rx.requests();
    assert_eq!(got.len(), 4);
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [503, 503, 503, 200]
    );
}
