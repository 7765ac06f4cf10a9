//! The web dashboard in a real browser: headless Chromium driven by Selenium
//! (tests/browser/dashboard.py) against `cloudraid serve` over a volume of two
//! folders and a private S3 emulator (moto), which the script stops half-way to
//! see the overview turn amber and name it. The script logs in, browses,
//! downloads and uploads files (picker and drag-and-drop), deletes, takes,
//! browses and restores snapshots, runs a job, scrubs and repairs, and saves a
//! screenshot of each page (into CLOUDRAID_SCREENSHOTS when set). It also
//! stops the server for a while: the overview must say so, not spin.
//!
//! Needs `scripts/browser.sh install; eval "$(scripts/browser.sh env)"`, and
//! moto from `scripts/emulators.sh start s3` (without it, a folder backend is
//! moved away instead). Skipped without the browser, except under CI.

mod common;

use common::{bin, free_port, stderr, stdout, Env, CHEAP_KDF};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The browser tools `scripts/browser.sh env` names: (python, chromedriver, chromium).
fn browser() -> Option<(String, String, String)> {
    match (
        std::env::var("CLOUDRAID_TEST_PYTHON"),
        std::env::var("CLOUDRAID_TEST_CHROMEDRIVER"),
        std::env::var("CLOUDRAID_TEST_CHROMIUM"),
    ) {
        (Ok(p), Ok(d), Ok(c)) => Some((p, d, c)),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the browser test: scripts/browser.sh install; eval \"$(scripts/browser.sh env)\""
            );
            eprintln!("skipped: no browser (scripts/browser.sh install; eval \"$(scripts/browser.sh env)\")");
            None
        }
    }
}

/// moto's server as `scripts/emulators.sh` installs it, if it is there.
fn moto_server() -> Option<PathBuf> {
    let root = match std::env::var_os("CLOUDRAID_EMULATOR_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            cache.join("cloudraid-emulators")
        }
    };
    let p = root.join("venv/bin/moto_server");
    p.exists().then_some(p)
}

/// One plain HTTP/1.1 request; the status code, or None when nothing answers.
fn http(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn wait_answers(port: u16, path: &str, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(port, "GET", path).is_none() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited at start: {st}");
        }
        assert!(Instant::now() < deadline, "{what} never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process of the test's, stopped (SIGTERM, then waited for) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // (SIGCONT first: the script stops the server for a while.)
        unsafe { libc::kill(self.0.id() as i32, libc::SIGCONT) };
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// The binary with the emulator's S3 settings in its environment.
fn cmd(s3: &[(&str, String)]) -> Command {
    let mut c = bin();
    for (k, v) in s3 {
        c.env(k, v);
    }
    c
}

fn must(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{c:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

fn token(s3: &[(&str, String)], cfg: &str, name: &str, role: &str) -> String {
    let out = must(cmd(s3).args([
        "token", "create", "--config", cfg, "--name", name, "--role", role,
    ]));
    let t = out.lines().last().unwrap().trim().to_string();
    assert!(t.starts_with("crd_"), "{out}");
    t
}

/// The provider the script takes down, and how.
enum Outage {
    /// The S3 emulator: the script kills this process.
    Kill(Proc),
    /// A folder backend: the script renames it away.
    Move(PathBuf),
}

#[test]
fn dashboard_in_a_real_browser() {
    let Some((python, driver, chromium)) = browser() else {
        return;
    };
    let e = Env::new();
    let p = |rel: &str| e.p(rel);

    // The third provider: a private moto server when there is one (CI has it).
    let moto = moto_server();
    assert!(
        moto.is_some() || std::env::var_os("CI").is_none(),
        "CI must have moto for the browser test: scripts/emulators.sh start s3"
    );
    let mut s3: Vec<(&str, String)> = Vec::new();
    let (third, outage) = match moto {
        Some(moto) => {
            let port = free_port();
            let mut child = Command::new(moto)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            wait_answers(port, "/", "moto_server", &mut child);
            assert_eq!(http(port, "PUT", "/dashboard"), Some(200), "bucket");
            s3 = vec![
                ("AWS_ENDPOINT", format!("http://127.0.0.1:{port}")),
                ("AWS_ALLOW_HTTP", "true".into()),
                ("AWS_REGION", "us-east-1".into()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ];
            (
                "s3=s3://dashboard/volume".to_string(),
                Outage::Kill(Proc(child)),
            )
        }
        None => {
            eprintln!("moto is not installed (scripts/emulators.sh start s3): folder backend c is moved away instead");
            (e.backend("c"), Outage::Move(e.base.join("c")))
        }
    };
    let down_name = third.split('=').next().unwrap().to_string();

    let cfg = p("v.toml");
    let (a, b, state) = (e.backend("a"), e.backend("b"), p("state"));
    let mut init = cmd(&s3);
    init.args(["init", "--config", &cfg])
        .args(CHEAP_KDF)
        .args(["--backend", &a, "--backend", &b, "--backend", &third])
        .args(["--state-dir", &state]);
    must(&mut init);

    // A backup job (its `before` hook makes a run last long enough to be seen
    // running), and the API on a free port.
    let src = e.base.join("src");
    std::fs::create_dir_all(src.join("photos")).unwrap();
    std::fs::write(src.join("photos/cat.jpg"), common::bytes(3, 150_000)).unwrap();
    std::fs::write(src.join("todo.txt"), b"water the plants\n").unwrap();
    let port = free_port();
    let mut c = std::fs::read_to_string(&cfg).unwrap();
    c.push_str(&format!(
        "\n[[job]]\nname = \"nightly\"\nsources = [{src:?}]\ndestination = \"/backups/nightly\"\nschedule = \"0 3 * * *\"\nbefore = \"sleep 2\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    std::fs::write(&cfg, c).unwrap();
    let admin = token(&s3, &cfg, "browser", "admin");
    let reader = token(&s3, &cfg, "viewer", "read");

    let mut serve = cmd(&s3)
        .args(["serve", "--config", &cfg])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(p("serve.log")).unwrap())
        .spawn()
        .unwrap();
    wait_answers(port, "/healthz", "cloudraid serve", &mut serve);
    let serve = Proc(serve);

    let work = e.base.join("browser");
    std::fs::create_dir_all(&work).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    let mut run = Command::new(&python);
    run.arg(&script)
        .env("CLOUDRAID_TEST_CHROMEDRIVER", &driver)
        .env("CLOUDRAID_TEST_CHROMIUM", &chromium)
        .env("DASH_URL", format!("http://127.0.0.1:{port}"))
        .env("DASH_ADMIN_TOKEN", &admin)
        .env("DASH_READ_TOKEN", &reader)
        .env("DASH_WORK", &work)
        .env("DASH_JOB", "nightly")
        .env("DASH_DOWN_BACKEND", &down_name)
        .env("DASH_SERVE_PID", serve.0.id().to_string())
        .env("PYTHONUNBUFFERED", "1");
    match &outage {
        Outage::Kill(p) => run.env("DASH_DOWN_PID", p.0.id().to_string()),
        Outage::Move(dir) => run.env("DASH_DOWN_DIR", dir),
    };
    if let Some(dir) = std::env::var_os("CLOUDRAID_SCREENSHOTS") {
        run.env("DASH_SCREENSHOTS", dir);
    }
    let started = Instant::now();
    let o = run.output().unwrap();
    println!("{}", stdout(&o));
    eprintln!("{}", stderr(&o));
    println!("browser script: {:.1} s", started.elapsed().as_secs_f64());
    if !o.status.success() {
        let log = std::fs::read_to_string(p("serve.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("serve.log (last lines, newest first):\n{}", tail.join("\n"));
    }
    assert!(
        o.status.success(),
        "the browser script failed: {}",
        o.status
    );
    assert!(
        stdout(&o).contains("dashboard: every check passed"),
        "the script did not finish its checks"
    );
    drop(outage);
    drop(serve);
}
