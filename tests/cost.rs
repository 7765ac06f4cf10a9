//! `cloudraid cost` as a user runs it: what it counts matches the shards in the
//! backend folders, local folders cost nothing unless the config prices them,
//! and a mount counts the requests it sends.

mod common;

use common::{assert_one_line_error, can_mount, mounted_volume, run, stderr, stdout, Env};
use serde_json::Value;
use std::path::Path;

const GIB: f64 = (1u64 << 30) as f64;

/// Shard objects under a backend folder: (bytes, count).
fn shards_in(dir: &Path) -> (u64, u64) {
    fn walk(d: &Path, acc: &mut (u64, u64)) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                walk(&e.path(), acc);
            } else {
                acc.0 += md.len();
                acc.1 += 1;
            }
        }
    }
    let mut acc = (0, 0);
    let chunks = dir.join("chunks");
    if chunks.exists() {
        walk(&chunks, &mut acc);
    }
    acc
}

fn json(args: &[&str]) -> Value {
    let o = run(args);
    assert!(o.status.success(), "{:?}: {}", args, stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn row<'a>(report: &'a Value, backend: &str) -> &'a Value {
    let rows = report["rows"].as_array().unwrap();
    let mine: Vec<&Value> = rows.iter().filter(|r| r["backend"] == backend).collect();
    assert_eq!(mine.len(), 1, "one class on {backend}: {rows:?}");
    mine[0]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

/// A volume over folders a, b, c holding a 3 MB file and a small one.
fn volume_with_files(e: &Env) -> String {
    let cfg = common::three_backend_volume(e, &[]);
    let src = e.p("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(format!("{src}/big"), common::bytes(7, 3_000_000)).unwrap();
    std::fs::write(format!("{src}/small"), b"a few bytes").unwrap();
    let o = run(&["put", "--config", &cfg, &src, "/"]);
    assert!(o.status.success(), "{}", stderr(&o));
    cfg
}

#[test]
fn a_local_volume_costs_nothing_and_counts_what_was_written() {
    let e = Env::new();
    let cfg = volume_with_files(&e);
    let r = json(&["cost", "--config", &cfg, "--json"]);
    let (mut bytes, mut objects) = (0, 0);
    for name in ["a", "b", "c"] {
        let (b, n) = shards_in(&e.base.join(name));
        assert!(n > 0, "shards on {name}");
        let x = row(&r, name);
        assert_eq!(
            (x["bytes"].as_u64(), x["objects"].as_u64()),
            (Some(b), Some(n))
        );
        assert_eq!(
            (x["provider"].as_str(), x["class"].as_str()),
            (Some("local"), Some("STANDARD"))
        );
        assert_eq!(x["monthly"], 0.0);
        bytes += b;
        objects += n;
    }
    assert_eq!(r["stored_bytes"].as_u64(), Some(bytes));
    assert_eq!(r["objects"].as_u64(), Some(objects));
    assert!(close(
        r["objects_per_gib"].as_f64().unwrap(),
        objects as f64 / (bytes as f64 / GIB)
    ));
    assert_eq!(r["monthly"], 0.0);
    assert_eq!(r["restore"]["total"], 0.0);
    assert!(r["requests"].is_null(), "unmounted: no requests counted");
    // The same chunks as `status` counts.
    let s = json(&["status", "--config", &cfg, "--json"]);
    assert_eq!(r["stored_bytes"], s["stored_bytes"]);
    assert_eq!(r["inline_chunks"], s["inline_chunks"]);
    assert_eq!(
        r["chunks"].as_u64().unwrap() + r["inline_chunks"].as_u64().unwrap(),
        s["chunks"].as_u64().unwrap()
    );
    assert_eq!(
        r["sealed_bytes"].as_u64().unwrap(),
        s["sealed_bytes"].as_u64().unwrap() - s["inline_bytes"].as_u64().unwrap()
    );
    // 2+1 over three backends: a restore reads two shards of each chunk.
    let shard_bytes = bytes / 3;
    assert_eq!(r["restore"]["bytes"].as_u64(), Some(2 * shard_bytes));
    let sealed = r["sealed_bytes"].as_u64().unwrap();
    assert_eq!(r["replication"][1]["bytes"].as_u64(), Some(3 * sealed));

    let text = stdout(&run(&["cost", "--config", &cfg]));
    assert!(
        text.contains("requests         counted by a running mount only"),
        "{text}"
    );
    assert!(text.contains("per month        $0.0000"), "{text}");
}

#[test]
fn prices_from_the_config_price_a_nas_and_pick_the_cheapest_shards() {
    let e = Env::new();
    let cfg = volume_with_files(&e);
    let base = std::fs::read_to_string(&cfg).unwrap();
    let priced = e.p("priced.toml");
    std::fs::write(
        &priced,
        format!(
            "{base}
[[price]]
provider = \"local\"
storage_gb_month = 0.5

[[price]]
backend = \"a\"
class = \"STANDARD\"
storage_gb_month = 2.0
egress_gb = 1.0
"
        ),
    )
    .unwrap();
    let r = json(&["cost", "--config", &priced, "--json"]);
    let bytes = |name| row(&r, name)["bytes"].as_u64().unwrap() as f64;
    let monthly = |name| row(&r, name)["monthly"].as_f64().unwrap();
    assert!(close(monthly("a"), bytes("a") / GIB * 2.0), "{r}");
    assert!(close(monthly("b"), bytes("b") / GIB * 0.5), "{r}");
    assert!(close(monthly("c"), bytes("c") / GIB * 0.5), "{r}");
    assert!(close(
        r["monthly"].as_f64().unwrap(),
        monthly("a") + monthly("b") + monthly("c")
    ));
    // b and c cost nothing to read: every chunk is read from them.
    assert_eq!(r["restore"]["egress"], 0.0, "{r}");
    // Two copies go to b and c, the cheapest; the third to a.
    let sealed = r["sealed_bytes"].as_u64().unwrap() as f64 / GIB;
    let two = &r["replication"][0];
    assert_eq!(two["on"], serde_json::json!(["b STANDARD", "c STANDARD"]));
    assert!(close(two["monthly"].as_f64().unwrap(), sealed * 1.0));
    assert!(close(
        r["replication"][1]["monthly"].as_f64().unwrap(),
        sealed * 3.0
    ));

    // With b's egress priced too, one shard of each chunk comes from a or b.
    std::fs::write(
        &priced,
        format!(
            "{}
[[price]]
backend = \"b\"
egress_gb = 1.0
",
            std::fs::read_to_string(&priced).unwrap()
        ),
    )
    .unwrap();
    let r = json(&["cost", "--config", &priced, "--json"]);
    let shard_bytes = row(&r, "a")["bytes"].as_u64().unwrap() as f64;
    assert!(close(
        r["restore"]["egress"].as_f64().unwrap(),
        shard_bytes / GIB
    ));

    // A price for a backend the config does not have: one line saying so.
    std::fs::write(
        &priced,
        format!("{base}\n[[price]]\nbackend = \"nas\"\nstorage_gb_month = 0.01\n"),
    )
    .unwrap();
    assert_one_line_error(
        &run(&["cost", "--config", &priced]),
        "[[price]] entry 1: backend \"nas\" is not one of this config's backends (a, b, c)",
    );
    std::fs::write(
        &priced,
        format!("{base}\n[[price]]\nprovider = \"aws\"\nstorage = 0.01\n"),
    )
    .unwrap();
    assert_one_line_error(
        &run(&["cost", "--config", &priced]),
        "unknown field `storage`",
    );
}

#[test]
fn a_mount_counts_and_prices_its_requests() {
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let (cfg, mp) = mounted_volume(&e, &[]);
    std::fs::write(format!("{mp}/f"), common::bytes(3, 2_000_000)).unwrap();
    let o = run(&["sync", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let priced = e.p("priced.toml");
    std::fs::write(
        &priced,
        format!(
            "{}\n[[price]]\nprovider = \"local\"\nput_per_1000 = 5.0\nget_per_1000 = 0.4\n",
            std::fs::read_to_string(&cfg).unwrap()
        ),
    )
    .unwrap();
    let r = json(&["cost", "--config", &priced, "--json"]);
    let reqs = r["requests"].as_array().expect("counted when mounted");
    assert_eq!(reqs.len(), 3);
    let mut want = 0.0;
    for q in reqs {
        let (put, get) = (q["put"].as_u64().unwrap(), q["get"].as_u64().unwrap());
        // Each backend got this file's shards at least.
        let (_, shards) = shards_in(&e.base.join(q["backend"].as_str().unwrap()));
        assert!(put >= shards, "{q}");
        let cost = put as f64 / 1000.0 * 5.0 + get as f64 / 1000.0 * 0.4;
        assert!(close(q["cost"].as_f64().unwrap(), cost), "{q}");
        want += cost;
    }
    assert!(close(r["requests_cost"].as_f64().unwrap(), want));
    let text = stdout(&run(&["cost", "--config", &cfg]));
    assert!(text.contains("since the mount started"), "{text}");
    assert!(run(&["umount", &mp]).status.success());
}
