//! The event history as an admin reads it (`cloudraid events`, `GET
//! /api/v1/events`): snapshots, backup job runs, scrubs; a backend going away
//! and coming back, and the degraded writes in between, seen by the mount
//! daemon; `--since`; the history kept through `recover`.

mod common;

use common::{assert_one_line_error, can_mount, ok, run, three_backend_volume, Env};
use std::time::{Duration, Instant};

fn events(cfg: &str) -> Vec<serde_json::Value> {
    let out = ok(&["events", "--config", cfg, "--json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap_or_else(|e| panic!("{e}: {out}"))
        .as_array()
        .unwrap()
        .clone()
}

fn kinds(ev: &[serde_json::Value]) -> Vec<String> {
    ev.iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn operations_leave_events_that_survive_recover() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    assert_eq!(ok(&["events", "--config", &cfg]), "no events\n");
    let src = e.base.join("docs");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    let mut s = std::fs::read_to_string(&cfg).unwrap();
    s.push_str(&format!(
        "\n[[job]]\nname = \"nightly\"\nsources = [{src:?}]\ndestination = \"/b\"\n"
    ));
    std::fs::write(&cfg, s).unwrap();
    ok(&["backup", "run", "--config", &cfg, "nightly"]);
    // A scrub without a mount holds no write lease: its event reaches the
    // backends with the next change (the snapshot).
    ok(&["scrub", "--config", &cfg]);
    ok(&["snapshot", "create", "--config", &cfg, "--tag", "manual"]);
    let ev = events(&cfg);
    let k = kinds(&ev);
    // The job's run (with its own snapshot), the scrub, the manual snapshot.
    assert_eq!(
        k,
        [
            "snapshot_created",
            "job_run",
            "scrub_clean",
            "snapshot_created"
        ],
        "{ev:?}"
    );
    let job = &ev[1];
    assert_eq!(job["subject"], "nightly");
    assert_eq!(job["severity"], "info");
    assert!(
        job["message"].as_str().unwrap().contains("success"),
        "{job}"
    );
    // Text: one line each, oldest first.
    let text = ok(&["events", "--config", &cfg]);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.lines().nth(1).unwrap().contains("job_run"), "{text}");
    // --since: a duration back from now, or a time.
    assert_eq!(
        ok(&["events", "--config", &cfg, "--since", "1h"])
            .lines()
            .count(),
        4
    );
    assert_eq!(
        ok(&["events", "--config", &cfg, "--since", "2100-01-01"]),
        "no events\n"
    );
    assert_one_line_error(
        &run(&["events", "--config", &cfg, "--since", "yesterday-ish"]),
        "--since",
    );
    // The history is in the metadata log: a new machine gets it back.
    ok(&["sync", "--config", &cfg]);
    std::fs::remove_dir_all(e.p("state")).unwrap();
    ok(&["recover", "--config", &cfg]);
    assert_eq!(kinds(&events(&cfg)), k);
}

fn wait_for(cfg: &str, kind: &str, limit: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + limit;
    loop {
        let ev = events(cfg);
        if ev.iter().any(|e| e["kind"] == kind) {
            return ev;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} event after {limit:?}: {ev:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_daemon_records_a_backend_going_down_and_coming_back() {
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let (cfg, mp) = common::mounted_volume(&e, &[]);
    std::fs::rename(e.p("a"), e.p("a.away")).unwrap();
    // A write with a backend away stores 2 of 3 shards: degraded.
    std::fs::write(format!("{mp}/during"), common::bytes(1, 3 << 20)).unwrap();
    let ev = wait_for(&cfg, "backend_down", Duration::from_secs(30));
    let down = ev.iter().find(|e| e["kind"] == "backend_down").unwrap();
    assert_eq!(
        (down["subject"].as_str(), down["severity"].as_str()),
        (Some("a"), Some("error"))
    );
    wait_for(&cfg, "degraded", Duration::from_secs(10));
    std::fs::rename(e.p("a.away"), e.p("a")).unwrap();
    wait_for(&cfg, "backend_up", Duration::from_secs(30));
    let ev = wait_for(&cfg, "degraded_cleared", Duration::from_secs(60));
    // One event per change: down once, up once.
    let k = kinds(&ev);
    assert_eq!(
        k.iter().filter(|k| *k == "backend_down").count(),
        1,
        "{k:?}"
    );
    assert_eq!(k.iter().filter(|k| *k == "backend_up").count(), 1, "{k:?}");
    ok(&["umount", &mp]);
}
