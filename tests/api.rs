//! The REST API as scripts use it: `cloudraid serve` over a volume that is not
//! mounted and the mount daemon with `[api] listen`; tokens made with `cloudraid
//! token`, refused when missing, revoked or too weak; uploads and downloads
//! (Range, HEAD, ETag) checked byte for byte; paths that try to leave the tree.

mod common;

use common::{
    assert_one_line_error, bin, can_mount, free_port, ok, run, stderr, three_backend_volume, Env,
};
use sha2::Digest;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Adds `[api] listen` on a free loopback port; returns the base URL.
fn enable_api(cfg: &str) -> String {
    let port = free_port();
    let mut s = std::fs::read_to_string(cfg).unwrap();
    s.push_str(&format!("\n[api]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(cfg, s).unwrap();
    format!("http://127.0.0.1:{port}")
}

/// A token's secret: the last line of `token create`.
fn token(cfg: &str, name: &str, role: &str) -> String {
    let out = ok(&[
        "token", "create", "--config", cfg, "--name", name, "--role", role,
    ]);
    let last = out.lines().last().unwrap().trim().to_string();
    assert!(last.starts_with("crd_") && last.len() > 40, "{out}");
    last
}

/// `cloudraid serve`, stopped (SIGTERM) when dropped.
struct Serve(Child);

impl Serve {
    fn start(cfg: &str, url: &str) -> Serve {
        let child = bin()
            .args(["serve", "--config", cfg])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Serve(child);
        wait_healthy(url);
        s
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

fn wait_healthy(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let rt = rt();
    let c = client();
    loop {
        let up = rt.block_on(async {
            matches!(c.get(format!("{url}/healthz")).send().await, Ok(r) if r.status() == 200)
        });
        if up {
            return;
        }
        assert!(Instant::now() < deadline, "the API at {url} never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One request: (status, headers, body).
fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    rt().block_on(async {
        let c = client();
        let mut r = c.request(method.parse().unwrap(), url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let h = resp.headers().clone();
        let b = resp.bytes().await.unwrap().to_vec();
        (status, h, b)
    })
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

/// The value of one sample (name and labels as written) in a metrics page.
fn metric(page: &str, sample: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{page}"))
        .trim()
        .parse()
        .unwrap()
}

fn error_code(b: &[u8]) -> String {
    json(b)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn serve_answers_with_tokens_and_files_round_trip() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &["--chunk-size", "256KiB"]);
    let url = enable_api(&cfg);
    // Metrics for a Prometheus that has no token.
    let mut c = std::fs::read_to_string(&cfg).unwrap();
    c.push_str("metrics_public = true\n");
    std::fs::write(&cfg, c).unwrap();
    let reader = token(&cfg, "dash", "read");
    let writer = token(&cfg, "script", "write");
    let list = ok(&["token", "list", "--config", &cfg]);
    assert!(list.contains("dash") && list.contains("read"), "{list}");
    assert!(list.contains("script") && list.contains("write"), "{list}");
    assert!(!list.contains(&reader) && !list.contains(&writer), "{list}");
    // A name is taken once.
    assert_one_line_error(
        &run(&[
            "token", "create", "--config", &cfg, "--name", "dash", "--role", "admin",
        ]),
        "exists",
    );
    let mut c = std::fs::read_to_string(&cfg).unwrap();
    c.push_str(&format!(
        "\n[[job]]\nname = \"nightly\"\nsources = [{:?}]\ndestination = \"/backups\"\n",
        e.base.join("src")
    ));
    std::fs::write(&cfg, c).unwrap();
    let _s = Serve::start(&cfg, &url);

    // Health needs no token; everything else does.
    let (st, _, b) = call("GET", &format!("{url}/healthz"), None, &[], None);
    assert_eq!((st, json(&b)["ok"].clone()), (200, serde_json::json!(true)));
    let (st, _, b) = call("GET", &format!("{url}/api/v1/status"), None, &[], None);
    assert_eq!((st, error_code(&b)), (401, "unauthorized".into()));
    let (st, _, b) = call("GET", &format!("{url}/metrics"), None, &[], None);
    assert_eq!(st, 200, "metrics_public = true: no token needed");
    let m = String::from_utf8(b).unwrap();
    assert!(
        m.contains("cloudraid_backend_requests_total{"),
        "serve counts backend requests: {m}"
    );
    assert_eq!(metric(&m, "cloudraid_volume_files"), 0.0);
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/status"),
        Some("crd_0000"),
        &[],
        None,
    );
    assert_eq!((st, error_code(&b)), (401, "unauthorized".into()));
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/status"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let s = json(&b);
    assert_eq!(s["data_shards"], 2, "{s}");
    assert_eq!(s["backends"].as_array().unwrap().len(), 3, "{s}");

    // Upload 3 MB (several chunks) into a folder that does not exist yet.
    let data = common::bytes(7, 3_000_000);
    let f = format!("{url}/api/v1/files/docs/report.pdf");
    // (A small body: a refused upload is answered before its body is read.)
    let (st, _, b) = call("PUT", &f, Some(&reader), &[], Some(b"x".to_vec()));
    assert_eq!((st, error_code(&b)), (403, "forbidden".into()));
    let (st, _, b) = call("PUT", &f, Some(&writer), &[], Some(data.clone()));
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["size"], 3_000_000);

    // Download: whole, HEAD, ranges, conditional.
    let (st, h, b) = call("GET", &f, Some(&reader), &[], None);
    assert_eq!(st, 200);
    assert!(b == data, "the download differs from the upload");
    assert_eq!(h["content-length"], "3000000");
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(h["accept-ranges"], "bytes");
    assert!(h.contains_key("last-modified"));
    let tag = h["etag"].to_str().unwrap().to_string();
    let (st, h, b) = call("HEAD", &f, Some(&reader), &[], None);
    assert_eq!(
        (st, h["content-length"].to_str().unwrap(), b.len()),
        (200, "3000000", 0)
    );
    let (st, h, b) = call(
        "GET",
        &f,
        Some(&reader),
        &[("Range", "bytes=1000000-1000099")],
        None,
    );
    assert_eq!(st, 206);
    assert_eq!(h["content-range"], "bytes 1000000-1000099/3000000");
    assert_eq!(b, data[1_000_000..1_000_100]);
    let (st, _, b) = call("GET", &f, Some(&reader), &[("Range", "bytes=-10")], None);
    assert_eq!((st, b.as_slice()), (206, &data[data.len() - 10..]));
    let (st, _, b) = call(
        "GET",
        &f,
        Some(&reader),
        &[("Range", "bytes=262000-")],
        None,
    );
    assert_eq!((st, b.as_slice()), (206, &data[262_000..]));
    let (st, h, _) = call(
        "GET",
        &f,
        Some(&reader),
        &[("Range", "bytes=3000000-")],
        None,
    );
    assert_eq!(
        (st, h["content-range"].to_str().unwrap()),
        (416, "bytes */3000000")
    );
    let (st, _, b) = call("GET", &f, Some(&reader), &[("If-None-Match", &tag)], None);
    assert_eq!((st, b.len()), (304, 0));
    // A range of an older version (If-Range) gives the whole file.
    let (st, _, b) = call(
        "GET",
        &f,
        Some(&reader),
        &[("Range", "bytes=0-9"), ("If-Range", "\"old\"")],
        None,
    );
    assert_eq!((st, b.len()), (200, 3_000_000));

    // Replacing keeps one file with the new bytes; the listing shows it.
    let (st, _, _) = call("PUT", &f, Some(&writer), &[], Some(b"short".to_vec()));
    assert_eq!(st, 200);
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/files/docs"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(st, 200);
    let l = json(&b);
    let names: Vec<&str> = l["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["report.pdf"], "{l}");
    assert_eq!(l["entries"][0]["size"], 5);
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/files"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(json(&b)["entries"][0]["name"], "docs");

    // Folders, deletes and their refusals.
    let (st, _, _) = call(
        "POST",
        &format!("{url}/api/v1/dirs/docs/new/deeper"),
        Some(&writer),
        &[],
        None,
    );
    assert_eq!(st, 201);
    let (st, _, b) = call(
        "DELETE",
        &format!("{url}/api/v1/files/docs"),
        Some(&writer),
        &[],
        None,
    );
    assert_eq!((st, error_code(&b)), (409, "is_directory".into()));
    assert!(String::from_utf8_lossy(&b).contains("?recursive=true"));
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/files/nothing-here"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!((st, error_code(&b)), (404, "not_found".into()));

    // Paths that try to leave the volume's tree.
    for bad in [
        "..%2F..%2Fetc%2Fpasswd",
        "docs/..%2F..%2Fx",
        "%2Fetc%2Fpasswd",
        "a%00b",
    ] {
        let (st, _, b) = call(
            "GET",
            &format!("{url}/api/v1/files/{bad}"),
            Some(&reader),
            &[],
            None,
        );
        assert_eq!((st, error_code(&b)), (400, "bad_path".into()), "{bad}");
    }

    // A revoked token is refused at once.
    ok(&["token", "revoke", "--config", &cfg, "script"]);
    let (st, _, _) = call(
        "DELETE",
        &format!("{url}/api/v1/files/docs?recursive=true"),
        Some(&writer),
        &[],
        None,
    );
    assert_eq!(st, 401);
    let admin = token(&cfg, "root", "admin");
    let (st, _, b) = call(
        "DELETE",
        &format!("{url}/api/v1/files/docs?recursive=true"),
        Some(&admin),
        &[],
        None,
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["files"], 1);
    // Backup jobs and snapshots, through the same operations as the CLI.
    let src = e.base.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("notes.txt"), b"from a job").unwrap();
    let (st, _, b) = call(
        "POST",
        &format!("{url}/api/v1/jobs/nightly/run"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!((st, error_code(&b)), (403, "forbidden".into()));
    let (st, _, b) = call(
        "POST",
        &format!("{url}/api/v1/jobs/nightly/run"),
        Some(&admin),
        &[],
        None,
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let r = json(&b);
    assert_eq!(
        (r["run"]["result"].as_str(), r["run"]["new"].as_u64()),
        (Some("success"), Some(1)),
        "{r}"
    );
    let (st, _, b) = call(
        "POST",
        &format!("{url}/api/v1/jobs/weekly/run"),
        Some(&admin),
        &[],
        None,
    );
    assert_eq!((st, error_code(&b)), (404, "not_found".into()));
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/jobs/nightly/history"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(st, 200);
    let h = json(&b);
    assert_eq!(h.as_array().unwrap().len(), 1, "{h}");
    assert_eq!(h[0]["trigger"], "api");
    let (st, _, b) = call(
        "POST",
        &format!("{url}/api/v1/snapshots"),
        Some(&admin),
        &[],
        Some(br#"{"tags":["web"]}"#.to_vec()),
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/snapshots"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(st, 200);
    let tags: Vec<String> = json(&b)["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tags"][0].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(tags, ["nightly", "web"]);
    let (st, _, b) = call(
        "POST",
        &format!("{url}/api/v1/snapshots"),
        Some(&admin),
        &[],
        Some(b"{nope".to_vec()),
    );
    assert_eq!((st, error_code(&b)), (400, "bad_request".into()));

    // The event history: every token made and revoked, `since` checked.
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/events?since=1h"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let kinds: Vec<String> = json(&b)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e["kind"].as_str().unwrap() {
            // Named by their random ids.
            k @ "snapshot_created" => k.to_string(),
            k => format!("{k} {}", e["subject"].as_str().unwrap()),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "token_created dash",
            "token_created script",
            "token_revoked script",
            "token_created root",
            "snapshot_created",
            "job_run nightly",
            "snapshot_created",
        ]
    );
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/events?since=soon"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!((st, error_code(&b)), (400, "bad_request".into()));
    drop(_s);
    // The server is gone: the volume is as the API left it.
    let ls = ok(&["ls", "--config", &cfg, "/"]);
    assert!(!ls.contains("docs"), "{ls}");
}

#[test]
fn the_mount_daemon_serves_the_api_and_bad_listen_addresses_are_refused() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let url = enable_api(&cfg);
    if can_mount() {
        let mp = e.p("mnt");
        std::fs::create_dir(&mp).unwrap();
        ok(&["mount", "--config", &cfg, &mp]);
        wait_healthy(&url);
        // A token made while mounted goes through the daemon.
        let t = token(&cfg, "m", "read");
        std::fs::write(format!("{mp}/hello.txt"), b"written through the mount").unwrap();
        let (st, h, b) = call(
            "GET",
            &format!("{url}/api/v1/files/hello.txt"),
            Some(&t),
            &[],
            None,
        );
        assert_eq!((st, b.as_slice()), (200, &b"written through the mount"[..]));
        assert_eq!(h["content-type"], "text/plain");
        let (st, _, b) = call("GET", &format!("{url}/api/v1/status"), Some(&t), &[], None);
        assert_eq!(st, 200);
        assert_eq!(json(&b)["mountpoint"], mp.as_str());
        // Prometheus metrics of what the mount did, with a token only.
        let (st, _, b) = call("GET", &format!("{url}/metrics"), None, &[], None);
        assert_eq!((st, error_code(&b).as_str()), (401, "unauthorized"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(format!("{mp}/more.bin")).unwrap();
            f.write_all(&vec![7u8; 300_000]).unwrap();
            f.sync_all().unwrap();
        }
        let (st, h, b) = call("GET", &format!("{url}/metrics"), Some(&t), &[], None);
        assert_eq!(st, 200);
        assert!(h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let m = String::from_utf8(b).unwrap();
        let names: Vec<String> =
            json(&call("GET", &format!("{url}/api/v1/status"), Some(&t), &[], None).2)["backends"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["name"].as_str().unwrap().to_string())
                .collect();
        assert_eq!(names.len(), 3);
        for n in &names {
            assert!(
                metric(
                    &m,
                    &format!("cloudraid_backend_requests_total{{backend=\"{n}\",op=\"put\"}}")
                ) >= 1.0,
                "{m}"
            );
            assert_eq!(
                metric(&m, &format!("cloudraid_backend_up{{backend=\"{n}\"}}")),
                1.0
            );
            assert!(
                metric(&m, &format!("cloudraid_backend_shards{{backend=\"{n}\"}}")) >= 1.0,
                "{m}"
            );
        }
        assert_eq!(metric(&m, "cloudraid_volume_files"), 2.0, "{m}");
        assert!(metric(&m, "cloudraid_volume_logical_bytes") >= 300_000.0);
        assert!(
            metric(
                &m,
                "cloudraid_fuse_operation_duration_seconds_count{op=\"write\"}"
            ) >= 1.0,
            "{m}"
        );
        assert!(
            metric(
                &m,
                "cloudraid_fuse_operation_duration_seconds_count{op=\"create\"}"
            ) >= 1.0
        );
        assert_eq!(metric(&m, "cloudraid_volume_degraded_chunks"), 0.0);
        // serve refuses while the daemon has the volume.
        assert_one_line_error(&run(&["serve", "--config", &cfg]), "already open");
        ok(&["umount", &mp]);
    }
    // serve without [api] says what to add.
    let e2 = Env::new();
    let cfg2 = three_backend_volume(&e2, &[]);
    let o = run(&["serve", "--config", &cfg2]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("listen = \"127.0.0.1:7878\""),
        "{}",
        stderr(&o)
    );
    // A public address without TLS is refused when the config is loaded.
    let mut s = std::fs::read_to_string(&cfg2).unwrap();
    s.push_str("\n[api]\nlisten = \"0.0.0.0:7878\"\n");
    std::fs::write(&cfg2, s).unwrap();
    assert_one_line_error(
        &run(&["status", "--config", &cfg2]),
        "not a loopback address",
    );
}

/// The events of a Server-Sent Events body: (event, data as JSON).
fn sse_events(body: &[u8]) -> Vec<(String, serde_json::Value)> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut event = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim());
            }
        }
        if !event.is_empty() {
            out.push((event, json(data.as_bytes())));
        }
    }
    out
}

#[test]
fn snapshots_browse_and_restore_tasks_stream_and_the_openapi_document_is_true() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let url = enable_api(&cfg);
    let admin = token(&cfg, "admin", "admin");
    let reader = token(&cfg, "reader", "read");
    let _s = Serve::start(&cfg, &url);
    let body: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let put = |path: &str, b: Vec<u8>| {
        call(
            "PUT",
            &format!("{url}/api/v1/files/{path}"),
            Some(&admin),
            &[],
            Some(b),
        )
        .0
    };
    assert_eq!(put("docs/report.bin", body.clone()), 201);
    assert_eq!(put("docs/notes.txt", b"first".to_vec()), 201);

    // Backends (with their domain), cost, one entry.
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/backends"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(st, 200);
    let bs = json(&b)["backends"].as_array().unwrap().clone();
    assert_eq!(bs.len(), 3);
    assert!(bs
        .iter()
        .all(|b| b["reachable"] == true && b.get("domain").is_some()));
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/cost"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    // The same priced report as `cloudraid cost --json` (through the daemon).
    let cli: serde_json::Value =
        serde_json::from_str(&ok(&["cost", "--config", &cfg, "--json"])).unwrap();
    assert_eq!(json(&b), cli);
    assert!(json(&b)["monthly"].is_number(), "{}", json(&b));
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/stat/docs"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!((st, json(&b)["kind"].clone()), (200, "Dir".into()));
    let (_, _, b) = call(
        "GET",
        &format!("{url}/api/v1/stat/docs/report.bin"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(json(&b)["size"], 700_000);
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/stat/docs/nothing"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!((st, error_code(&b).as_str()), (404, "not_found"));

    // A snapshot, browsed and downloaded from after the live file changed.
    let (st, _, b) = call(
        "POST",
        &format!("{url}/api/v1/snapshots"),
        Some(&admin),
        &[],
        None,
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(put("docs/notes.txt", b"second".to_vec()), 200);
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/snapshots/latest/files/docs"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(st, 200);
    let l = json(&b);
    assert_eq!(l["path"], "/docs");
    let mut names: Vec<&str> = l["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["notes.txt", "report.bin"]);
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/snapshots/latest/files/docs/notes.txt"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!((st, b.as_slice()), (200, &b"first"[..]));
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/snapshots/latest/files/docs/report.bin"),
        Some(&reader),
        &[("Range", "bytes=100-199")],
        None,
    );
    assert_eq!((st, b.as_slice()), (206, &body[100..200]));
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/snapshots/abcd/files"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!((st, error_code(&b).as_str()), (404, "not_found"));
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/snapshots/latest/files/docs/..%2F..%2Fetc"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!((st, error_code(&b).as_str()), (400, "bad_path"));

    // Restore into the live tree: refused over the live file, then with overwrite.
    let restore = |token: &str, overwrite: bool| {
        let body = serde_json::json!({"paths": ["docs/notes.txt"], "overwrite": overwrite});
        call(
            "POST",
            &format!("{url}/api/v1/snapshots/latest/restore"),
            Some(token),
            &[],
            Some(body.to_string().into_bytes()),
        )
    };
    let (st, _, b) = restore(&reader, false);
    assert_eq!((st, error_code(&b).as_str()), (403, "forbidden"));
    let (st, _, b) = restore(&admin, false);
    assert_eq!((st, error_code(&b).as_str()), (409, "exists"));
    assert!(
        json(&b)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"overwrite\": true"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    let (st, _, b) = restore(&admin, true);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let (_, _, b) = call(
        "GET",
        &format!("{url}/api/v1/files/docs/notes.txt"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(b, b"first");

    // A scrub as a task: streamed to its end, then polled.
    let (st, _, b) = call(
        "POST",
        &format!("{url}/api/v1/tasks"),
        Some(&reader),
        &[],
        Some(br#"{"kind":"scrub"}"#.to_vec()),
    );
    assert_eq!((st, error_code(&b).as_str()), (403, "forbidden"));
    let (st, _, b) = call(
        "POST",
        &format!("{url}/api/v1/tasks"),
        Some(&admin),
        &[],
        Some(br#"{"kind":"defrag"}"#.to_vec()),
    );
    assert_eq!((st, error_code(&b).as_str()), (400, "bad_request"));
    let (st, _, b) = call(
        "POST",
        &format!("{url}/api/v1/tasks"),
        Some(&admin),
        &[],
        Some(br#"{"kind":"scrub"}"#.to_vec()),
    );
    assert_eq!(st, 202);
    let id = json(&b)["id"].as_str().unwrap().to_string();
    let (st, h, b) = call(
        "GET",
        &format!("{url}/api/v1/tasks/{id}/events"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(st, 200);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let evs = sse_events(&b);
    let (last, task) = evs.last().unwrap();
    assert_eq!(last, "end", "{evs:?}");
    assert_eq!(task["state"], "done");
    assert_eq!(
        task["result"]["chunks_checked"],
        task["result"]["chunks_total"]
    );
    assert!(task["result"]["chunks_total"].as_u64().unwrap() >= 1);
    let (_, _, b) = call(
        "GET",
        &format!("{url}/api/v1/tasks/{id}"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(json(&b)["state"], "done");
    let (_, _, b) = call(
        "GET",
        &format!("{url}/api/v1/tasks"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(json(&b)["tasks"][0]["id"], id.as_str());
    let (st, _, _) = call(
        "GET",
        &format!("{url}/api/v1/tasks/nope"),
        Some(&reader),
        &[],
        None,
    );
    assert_eq!(st, 404);
    // A repair: polled until done.
    let (st, _, b) = call(
        "POST",
        &format!("{url}/api/v1/tasks"),
        Some(&admin),
        &[],
        Some(br#"{"kind":"repair"}"#.to_vec()),
    );
    assert_eq!(st, 202);
    let id = json(&b)["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, b) = call(
            "GET",
            &format!("{url}/api/v1/tasks/{id}"),
            Some(&reader),
            &[],
            None,
        );
        let t = json(&b);
        if t["state"] != "running" {
            assert_eq!(t["state"], "done", "{t}");
            assert_eq!(t["result"]["shards_rewritten"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "{t}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The dashboard's session: a cookie, and changes need X-Requested-With.
    let (st, h, _) = call(
        "POST",
        &format!("{url}/api/v1/session"),
        None,
        &[("Content-Type", "application/json")],
        Some(format!("{{\"token\":\"{admin}\"}}").into_bytes()),
    );
    assert_eq!(st, 200);
    let cookie = h["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let jar = cookie.split(';').next().unwrap().to_string();
    let (st, _, b) = call(
        "GET",
        &format!("{url}/api/v1/session"),
        None,
        &[("Cookie", &jar)],
        None,
    );
    assert_eq!((st, json(&b)["role"].clone()), (200, "admin".into()));
    let (st, _, b) = call(
        "PUT",
        &format!("{url}/api/v1/files/docs/c.txt"),
        None,
        &[("Cookie", &jar)],
        Some(b"x".to_vec()),
    );
    assert_eq!(
        (st, error_code(&b).as_str()),
        (403, "forbidden"),
        "a cross-site form cannot add the header"
    );
    let (st, _, _) = call(
        "PUT",
        &format!("{url}/api/v1/files/docs/c.txt"),
        None,
        &[("Cookie", &jar), ("X-Requested-With", "cloudraid")],
        Some(b"x".to_vec()),
    );
    assert_eq!(st, 201);
    let (st, _, b) = call(
        "POST",
        &format!("{url}/api/v1/session"),
        None,
        &[],
        Some(br#"{"token":"crd_nope"}"#.to_vec()),
    );
    assert_eq!((st, error_code(&b).as_str()), (401, "unauthorized"));

    // JSON bodies are bounded (an upload's body is the file: streamed, not).
    let (st, _, _) = call(
        "POST",
        &format!("{url}/api/v1/snapshots"),
        Some(&admin),
        &[],
        Some(vec![b' '; 3 << 20]),
    );
    assert_eq!(st, 413);
    // Headers are bounded.
    let big = "x".repeat(1 << 20);
    let (st, _, _) = call(
        "GET",
        &format!("{url}/healthz"),
        None,
        &[("X-Big", &big)],
        None,
    );
    assert_eq!(st, 431);

    // Every path of the OpenAPI document is served (no `no_route`), with the
    // methods it lists.
    let (st, _, b) = call("GET", &format!("{url}/api/openapi.json"), None, &[], None);
    assert_eq!(st, 200);
    let doc = json(&b);
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{path}", "docs")
            .replace("{id}", "latest")
            .replace("{job}", "nightly")
            .replace("{name}", "app.js");
        for method in ops.as_object().unwrap().keys() {
            // Only what cannot change anything is sent for real.
            if !["get", "head"].contains(&method.as_str()) || concrete.ends_with("/events") {
                continue;
            }
            let (st, _, b) = call(
                &method.to_uppercase(),
                &format!("{url}{concrete}"),
                Some(&admin),
                &[],
                None,
            );
            assert!(
                st != 405 && !(st == 404 && error_code(&b) == "no_route"),
                "{method} {path}: {st}"
            );
        }
    }
}

#[test]
fn https_with_the_configured_certificate_and_clear_errors_for_bad_ones() {
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let base = std::fs::read_to_string(&cfg).unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    std::fs::write(e.p("cert.pem"), &cert_pem).unwrap();
    std::fs::write(e.p("key.pem"), &key_pem).unwrap();
    std::fs::write(e.p("garbage.pem"), "not a certificate\n").unwrap();
    let with = |api: &str| std::fs::write(&cfg, format!("{base}\n[api]\n{api}")).unwrap();

    // Half a pair, and a public address without TLS, are refused at load.
    with(&format!(
        "listen = \"127.0.0.1:1\"\ntls_cert = {:?}\n",
        e.p("cert.pem")
    ));
    assert_one_line_error(&run(&["status", "--config", &cfg]), "no tls_key");
    // With TLS, a public address is allowed.
    with(&format!(
        "listen = \"0.0.0.0:1\"\ntls_cert = {:?}\ntls_key = {:?}\n",
        e.p("cert.pem"),
        e.p("key.pem")
    ));
    ok(&["status", "--config", &cfg]);
    // A file that holds no certificate stops serve with its reason.
    with(&format!(
        "listen = \"127.0.0.1:{}\"\ntls_cert = {:?}\ntls_key = {:?}\n",
        free_port(),
        e.p("garbage.pem"),
        e.p("key.pem")
    ));
    assert_one_line_error(&run(&["serve", "--config", &cfg]), "holds no certificate");

    let port = free_port();
    with(&format!(
        "listen = \"127.0.0.1:{port}\"\ntls_cert = {:?}\ntls_key = {:?}\n",
        e.p("cert.pem"),
        e.p("key.pem")
    ));
    let t = token(&cfg, "tls", "read");
    let _s = bin()
        .args(["serve", "--config", &cfg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Serve)
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let rt = rt();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let r = rt.block_on(async {
            client
                .get(format!("https://127.0.0.1:{port}/api/v1/status"))
                .bearer_auth(&t)
                .send()
                .await
        });
        match r {
            Ok(r) => break r.status().as_u16(),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("no HTTPS answer: {e}"),
        }
    };
    assert_eq!(status, 200);
    // Plain HTTP to the same port gets no answer from the API.
    let plain = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .timeout(Duration::from_secs(15))
            .send()
            .await
    });
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "HTTP answered on the HTTPS port"
    );
}

/// Peak resident memory of process `pid` (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// A 1 GiB upload, sent as it is generated (chunked, no length), is stored
/// while it streams: the server's peak memory stays far below the file's size,
/// and the download gives the same bytes back.
#[test]
fn a_1_gib_upload_streams_through_bounded_memory() {
    use futures::StreamExt;
    const MIB: usize = 1 << 20;
    const TOTAL: usize = 1024 * MIB;
    let e = Env::new();
    let cfg = three_backend_volume(&e, &[]);
    let url = enable_api(&cfg);
    let t = token(&cfg, "big", "write");
    let s = Serve::start(&cfg, &url);
    let pid = s.0.id();
    let before = peak_rss(pid);
    // Block i: distinct bytes (nothing deduplicates), the same again on download.
    let block = |i: usize| common::bytes(i as u64, MIB);
    let f = format!("{url}/api/v1/files/big.bin");
    let (status, digest_up) = rt().block_on(async {
        let body = futures::stream::iter(0..TOTAL / MIB)
            .map(move |i| Ok::<Vec<u8>, std::io::Error>(block(i)));
        let r = client()
            .put(&f)
            .bearer_auth(&t)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let b = r.bytes().await.unwrap();
        assert_eq!(
            json(&b)["size"],
            TOTAL as u64,
            "{}",
            String::from_utf8_lossy(&b)
        );
        let mut h = sha2::Sha256::new();
        for i in 0..TOTAL / MIB {
            sha2::Digest::update(&mut h, block(i));
        }
        (st, sha2::Digest::finalize(h))
    });
    assert_eq!(status, 201);
    let peak = peak_rss(pid);
    eprintln!(
        "server peak RSS {} MiB (before the upload {} MiB)",
        peak >> 20,
        before >> 20
    );
    assert!(
        peak < 400 * MIB as u64,
        "the server's peak memory reached {} MiB for a 1 GiB upload (from {} MiB)",
        peak >> 20,
        before >> 20
    );
    // Downloaded back in a stream, compared by hash.
    let digest_down = rt().block_on(async {
        let r = client().get(&f).bearer_auth(&t).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.content_length(), Some(TOTAL as u64));
        let mut h = sha2::Sha256::new();
        let mut s = r.bytes_stream();
        let mut n = 0;
        while let Some(b) = s.next().await {
            let b = b.unwrap();
            n += b.len();
            sha2::Digest::update(&mut h, &b);
        }
        assert_eq!(n, TOTAL);
        sha2::Digest::finalize(h)
    });
    assert_eq!(
        digest_up, digest_down,
        "the download differs from the upload"
    );
    drop(s);
}
