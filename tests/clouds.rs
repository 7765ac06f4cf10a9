//! End to end against the S3, GCS and Azure protocol servers (scripts/emulators.sh):
//! a k=2, m=1 volume over the three, mounted, with providers taken down and brought
//! back. The emulators keep nothing across a restart, so a provider that comes back
//! is also an emptied one: repair has to rebuild it.

mod common;

use common::{bin, run};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn emulators(action: &str, name: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/emulators.sh");
    let st = Command::new("bash")
        .arg(script)
        .args([action, name])
        .status()
        .unwrap();
    assert!(st.success(), "emulators.sh {action} {name} failed");
}

/// An emulator taken down (stopped or frozen) for the length of a test; brought
/// back when the guard drops, whatever happens.
struct Outage {
    name: &'static str,
    undo: &'static str,
}

impl Outage {
    /// `stop` (undone by `start`) or `freeze` (undone by `thaw`).
    fn new(action: &'static str, name: &'static str) -> Outage {
        emulators(action, name);
        let undo = if action == "freeze" { "thaw" } else { "start" };
        Outage { name, undo }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        emulators(self.undo, self.name);
    }
}

fn ready() -> Option<Vec<(String, String)>> {
    let can_mount = unsafe { libc::geteuid() } == 0 && Path::new("/dev/fuse").exists();
    match (std::env::var("CLOUDRAID_EMULATOR_BACKENDS"), can_mount) {
        (Ok(pairs), true) => Some(
            pairs
                .split_whitespace()
                .map(|p| {
                    let (n, u) = p.split_once('=').unwrap();
                    (n.to_string(), u.to_string())
                })
                .collect(),
        ),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the cloud tests: emulators (scripts/emulators.sh), root and /dev/fuse"
            );
            eprintln!("skipping: needs the emulators (scripts/emulators.sh start; eval \"$(scripts/emulators.sh env)\"), root and /dev/fuse");
            None
        }
    }
}

struct Vol {
    _dir: tempfile::TempDir,
    cfg: String,
    mp: String,
}

impl Vol {
    fn new(backends: &[(String, String)]) -> Vol {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let cfg = base.join("clouds.toml").display().to_string();
        let state = base.join("state").display().to_string();
        let mut args = vec!["init".to_string(), "--config".into(), cfg.clone()];
        args.extend(common::CHEAP_KDF.iter().map(|a| a.to_string()));
        for (n, u) in backends {
            args.push("--backend".into());
            args.push(format!("{n}={u}/e2e-{run_id}"));
        }
        for a in [
            "--data-shards",
            "2",
            "--parity-shards",
            "1",
            "--write-quorum",
            "2",
        ] {
            args.push(a.into());
        }
        for a in [
            "--chunk-size",
            "256KiB",
            "--cache-size",
            "1MiB",
            "--state-dir",
            &state,
        ] {
            args.push(a.into());
        }
        ok(bin().args(&args).output().unwrap());
        let mp = base.join("mnt");
        std::fs::create_dir(&mp).unwrap();
        let v = Vol {
            _dir: dir,
            cfg,
            mp: mp.display().to_string(),
        };
        v.mount();
        v
    }
    fn mount(&self) {
        ok(run(&["mount", "--config", &self.cfg, &self.mp]));
    }
    fn umount(&self) {
        ok(run(&["umount", &self.mp]));
    }
    /// Unmounts, appends `[[policy]]` rules to the config, mounts again.
    fn with_rules(&self, rules: &str) {
        self.umount();
        let base = std::fs::read_to_string(&self.cfg).unwrap();
        std::fs::write(&self.cfg, format!("{base}{rules}")).unwrap();
        self.mount();
    }
    /// The mount daemon's log (what a failed assertion shows).
    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("state/mount.log")).unwrap_or_default()
    }
    fn p(&self, rel: &str) -> PathBuf {
        Path::new(&self.mp).join(rel)
    }
}

impl Drop for Vol {
    fn drop(&mut self) {
        let _ = run(&["umount", &self.mp]);
    }
}

fn tree() -> Vec<(String, Vec<u8>)> {
    let sizes = [0usize, 1, 4095, 300_000, 1 << 20, (3 << 20) + 17];
    sizes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                format!("{}file-{i}", if i % 2 == 0 { "sub/" } else { "" }),
                common::bytes(i as u64 + 50, *s),
            )
        })
        .collect()
}

fn write_tree(v: &Vol, files: &[(String, Vec<u8>)]) {
    std::fs::create_dir_all(v.p("sub")).unwrap();
    for (rel, data) in files {
        std::fs::write(v.p(rel), data).unwrap();
    }
}

fn check_tree(v: &Vol, files: &[(String, Vec<u8>)]) {
    for (rel, data) in files {
        let got = std::fs::read(v.p(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(&got == data, "{rel} differs");
    }
}

/// 1. A provider stops: everything reads back, without stalling on it.
#[test]
fn a_stopped_provider_does_not_stop_reads() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(backends) = ready() else { return };
    let v = Vol::new(&backends);
    let files = tree();
    write_tree(&v, &files);
    v.umount();
    let _down = Outage::new("stop", "s3");
    v.mount();
    let t = Instant::now();
    check_tree(&v, &files);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "reads took {:?}",
        t.elapsed()
    );
    let status = ok(run(&["status", "--config", &v.cfg]));
    assert!(status.contains("DEGRADED"), "{status}");
    let s3 = status.lines().find(|l| l.starts_with("s3 ")).unwrap();
    assert!(
        s3.contains("DOWN"),
        "the mount knows s3 is down and skips it:\n{status}"
    );
    v.umount();
}

/// 2. Writes during an outage succeed; after the provider is back and repaired,
///    another provider can go down and everything still reads back.
#[test]
fn degraded_writes_then_repair_then_another_outage() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(backends) = ready() else { return };
    let v = Vol::new(&backends);
    let before = tree();
    write_tree(&v, &before);
    let during: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            (
                format!("during-{i}"),
                common::bytes(900 + i, 200_000 * (i as usize + 1)),
            )
        })
        .collect();
    {
        let _down = Outage::new("stop", "gcs");
        for (rel, data) in &during {
            std::fs::write(v.p(rel), data).unwrap();
        }
        let status = ok(run(&["status", "--config", &v.cfg]));
        assert!(status.contains("degraded chunks"), "{status}");
    }
    // gcs is back, empty: repair rebuilds its marker and every shard it should hold.
    let out = ok(run(&["repair", "--config", &v.cfg]));
    assert!(
        out.contains("wrote the missing volume marker on gcs"),
        "{out}"
    );
    ok(run(&["scrub", "--config", &v.cfg]));
    v.umount();
    let _down = Outage::new("stop", "azure");
    v.mount();
    check_tree(&v, &before);
    check_tree(&v, &during);
    v.umount();
}

/// 3. A shard overwritten with garbage in a provider: reads are right, scrub names
///    it, repair fixes it, scrub is clean again.
#[test]
fn garbage_shard_in_a_provider_is_found_and_fixed() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(backends) = ready() else { return };
    let v = Vol::new(&backends);
    let files = tree();
    write_tree(&v, &files);
    v.umount();
    // Overwrite one shard in the S3 bucket through the S3 API.
    let (_, s3_url) = backends.iter().find(|(n, _)| n == "s3").unwrap();
    let cfg_text = std::fs::read_to_string(&v.cfg).unwrap();
    let prefix = cfg_text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("url = \"{s3_url}/")))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let endpoint = std::env::var("AWS_ENDPOINT").unwrap();
    let bucket = s3_url.trim_start_matches("s3://");
    let listing = Command::new("curl")
        .args([
            "-s",
            &format!("{endpoint}/{bucket}?list-type=2&prefix={prefix}/chunks/"),
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let key = listing
        .split("<Key>")
        .nth(1)
        .and_then(|s| s.split("</Key>").next())
        .expect("a shard key");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/emulators.sh");
    let mut child = Command::new("bash")
        .arg(script)
        .args(["s3-put", key])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"garbage!").unwrap();
    drop(child.stdin.take());
    let put = child.wait().unwrap();
    assert!(put.success());
    eprintln!("overwrote {key}");
    v.mount();
    check_tree(&v, &files);
    let o = run(&["scrub", "--config", &v.cfg]);
    assert!(!o.status.success());
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let s3_line = table.lines().find(|l| l.starts_with("s3 ")).unwrap();
    assert_eq!(
        s3_line.split_whitespace().nth(3),
        Some("1"),
        "one corrupt shard on s3:\n{table}"
    );
    let out = ok(run(&["repair", "--config", &v.cfg]));
    assert!(out.contains("1 shard(s) rewritten"), "{out}");
    ok(run(&["scrub", "--config", &v.cfg]));
    v.umount();
}

/// 4. A frozen provider (accepts connections, never answers): reads still complete
///    within seconds, because late shard requests are hedged with parity shards.
#[test]
fn a_frozen_provider_is_hedged_around() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(backends) = ready() else { return };
    let v = Vol::new(&backends);
    let files = tree();
    write_tree(&v, &files);
    v.umount();
    v.mount();
    // Reads teach the mount each provider's normal latency (a request overtaken
    // while a provider's latency is unknown, as on a cold emulator, teaches
    // nothing); the 1 MiB cache makes every pass fetch again.
    for _ in 0..3 {
        check_tree(&v, &files);
    }
    let _frozen = Outage::new("freeze", "azure");
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    let t = Instant::now();
    check_tree(&v, &files);
    let took = t.elapsed();
    eprintln!("read the tree in {took:?} with azure frozen");
    assert!(
        took < Duration::from_secs(8),
        "reads took {took:?} with a frozen provider; the mount's log:\n{}",
        v.log()
    );
    drop(_frozen);
    v.umount();
}

/// Boot-time mounts get no user environment: the providers' credentials and
/// endpoints come from the config's env_file, which must be private.
#[test]
fn credentials_come_from_a_private_env_file() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(backends) = ready() else { return };
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let provider_vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            ["AWS_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .collect();
    assert!(provider_vars.len() >= 5, "{provider_vars:?}");
    // The emulators' credentials and endpoints, as an admin would write them.
    let env_file = base.join("clouds.env");
    let mut text = String::from("# credentials for the cloudraid volume\n");
    for (k, v) in &provider_vars {
        text.push_str(&format!("{k}=\"{v}\"\n"));
    }
    std::fs::write(&env_file, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Every command runs without the provider variables in its environment.
    let bare = |args: &[&str]| {
        let mut c = bin();
        for (k, _) in &provider_vars {
            c.env_remove(k);
        }
        c.args(args).output().unwrap()
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let cfg = base.join("v.toml").display().to_string();
    let state = base.join("state").display().to_string();
    let env_arg = env_file.display().to_string();
    let mut args = vec![
        "init",
        "--config",
        &cfg,
        "--env-file",
        &env_arg,
        "--state-dir",
        &state,
    ];
    args.extend_from_slice(&common::CHEAP_KDF);
    let specs: Vec<String> = backends
        .iter()
        .map(|(n, u)| format!("{n}={u}/env-{run_id}"))
        .collect();
    for s in &specs {
        args.push("--backend");
        args.push(s);
    }
    ok(bare(&args));
    assert!(std::fs::read_to_string(&cfg).unwrap().contains("env_file"));

    let local = base.join("hello.bin");
    std::fs::write(&local, common::bytes(77, 600_000)).unwrap();
    ok(bare(&[
        "put",
        "--config",
        &cfg,
        local.to_str().unwrap(),
        "/hello.bin",
    ]));
    let status = ok(bare(&["status", "--config", &cfg]));
    assert!(
        !status.contains("DEGRADED") && !status.contains("unreachable"),
        "{status}"
    );
    // Mounted by a daemon that has no provider variables either.
    let mp = base.join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let mp = mp.display().to_string();
    ok(bare(&["mount", "--config", &cfg, &mp]));
    let got = std::fs::read(Path::new(&mp).join("hello.bin"));
    let _ = run(&["umount", &mp]);
    assert!(got.unwrap() == common::bytes(77, 600_000));

    // A credentials file others can read is refused, with what to do.
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = bare(&["ls", "--config", &cfg]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("readable by others") && err.contains("chmod 600"),
        "{err}"
    );
    // So is one that belongs to another user (root may use its own or root's).
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&env_file, Some(12345), None).unwrap();
        let o = bare(&["ls", "--config", &cfg]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("belongs to user 12345") && err.contains("chown"),
            "{err}"
        );
    }
}

/// The objects under `chunks/` of the volume's backend `name` (its URL read
/// from the volume's config), as (key, size) through the store layer.
fn shard_keys(v: &Vol, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(&v.cfg).unwrap();
    let at = text.find(&format!("name = \"{name}\"")).unwrap();
    let url = text[at..]
        .lines()
        .find_map(|l| l.strip_prefix("url = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let b = cloudraid::store::open_backend(&url, &Default::default(), &Default::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut keys: Vec<String> = rt
        .block_on(cloudraid::store::Backend::list(&b, "chunks/"))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    keys
}

/// 6. Placement rules over three providers: each file's shards land on the
///    providers its rule lists, in the class it names (seen in S3's own
///    listing), and a rule that would put both copies in one failure domain
///    stops the mount with one line.
#[test]
fn rules_place_each_file_on_its_providers_in_its_class() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(backends) = ready() else { return };
    let v = Vol::new(&backends);
    let rules = r#"
[[policy]]
name = "text"
match = { extensions = ["txt"] }
layout = "replicate:2"
backends = ["s3", "gcs"]
storage_class = { s3 = "STANDARD_IA" }

[[policy]]
name = "photos"
match = { extensions = ["jpg"] }
layout = "replicate:2"
backends = ["azure", "s3"]
storage_class = { azure = "Cool" }

[[policy]]
name = "default"
"#;
    v.with_rules(rules);
    let files = [
        ("notes.txt", common::bytes(61, 600_000)),
        ("photo.jpg", common::bytes(62, 600_000)),
        ("data.bin", common::bytes(63, 600_000)),
    ];
    for (n, d) in &files {
        std::fs::write(v.p(n), d).unwrap();
    }
    let keys = |b: &str, tag: &str| -> Vec<String> {
        shard_keys(&v, b)
            .into_iter()
            .filter(|k| k.contains(tag))
            .collect()
    };
    // Two copies of each text chunk: shard 0 on s3, shard 1 on gcs; photos:
    // shard 0 on azure, shard 1 on s3; the rest 2+1 over all three.
    let (s3_0, s3_1) = (keys("s3", ".1-1.0"), keys("s3", ".1-1.1"));
    let (gcs_1, az_0) = (keys("gcs", ".1-1.1"), keys("azure", ".1-1.0"));
    assert!(
        !s3_0.is_empty() && s3_0.len() == gcs_1.len(),
        "{s3_0:?} {gcs_1:?}"
    );
    assert!(
        !s3_1.is_empty() && s3_1.len() == az_0.len(),
        "{s3_1:?} {az_0:?}"
    );
    assert!(keys("gcs", ".1-1.0").is_empty() && keys("azure", ".1-1.1").is_empty());
    for b in ["s3", "gcs", "azure"] {
        assert!(
            !keys(b, ".2-1.").is_empty(),
            "the default rule uses {b} too"
        );
    }
    // The classes, as S3 lists them.
    let endpoint = std::env::var("AWS_ENDPOINT").unwrap();
    let text = std::fs::read_to_string(&v.cfg).unwrap();
    let s3_url = backends.iter().find(|(n, _)| n == "s3").unwrap().1.clone();
    let bucket = s3_url.trim_start_matches("s3://");
    let prefix = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("url = \"{s3_url}/")))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let listing = String::from_utf8_lossy(
        &Command::new("curl")
            .args([
                "-s",
                &format!("{endpoint}/{bucket}?list-type=2&prefix={prefix}/chunks/"),
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    let mut infrequent = 0;
    for entry in listing.split("<Contents>").skip(1) {
        let key = entry
            .split("<Key>")
            .nth(1)
            .and_then(|s| s.split("</Key>").next())
            .unwrap();
        let class = entry
            .split("<StorageClass>")
            .nth(1)
            .and_then(|s| s.split("</StorageClass>").next())
            .unwrap_or("STANDARD");
        let want = if key.contains(".1-1.0") {
            "STANDARD_IA"
        } else {
            "STANDARD"
        };
        assert_eq!(class, want, "{key}");
        infrequent += usize::from(class == "STANDARD_IA");
    }
    assert_eq!(
        infrequent,
        s3_0.len(),
        "every text shard on s3 is listed STANDARD_IA"
    );
    // A policy change applied live: the default rule becomes two copies on gcs
    // and azure while a reader keeps reading data.bin from the providers (the
    // kernel's page cache dropped each time; the mount's cache is 1 MiB).
    let changed = std::fs::read_to_string(&v.cfg).unwrap().replace(
        "name = \"default\"\n",
        "name = \"default\"\nlayout = \"replicate:2\"\nbackends = [\"gcs\", \"azure\"]\n",
    );
    std::fs::write(&v.cfg, changed).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, path, data) = (stop.clone(), v.p("data.bin"), files[2].1.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
                assert!(
                    std::fs::read(&path).unwrap() == data,
                    "a read saw other bytes"
                );
                reads += 1;
            }
            reads
        })
    };
    let applied = run(&["policy", "apply", "--config", &v.cfg]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader
        .join()
        .expect("the reader failed while the shards moved");
    ok(applied);
    assert!(reads > 0);
    for b in ["s3", "gcs", "azure"] {
        assert!(keys(b, ".2-1.").is_empty(), "{b} still holds 2+1 shards");
    }
    assert!(!keys("gcs", ".1-1.0").is_empty() && !keys("azure", ".1-1.1").is_empty());
    v.umount();
    v.mount();
    check_tree(
        &v,
        &files
            .iter()
            .map(|(n, d)| (n.to_string(), d.clone()))
            .collect::<Vec<_>>(),
    );
    v.umount();
    // s3 and gcs in one region: two copies there would be lost together.
    let same_region = std::fs::read_to_string(&v.cfg)
        .unwrap()
        .replace("name = \"s3\"\n", "name = \"s3\"\ndomain = \"region-1\"\n")
        .replace(
            "name = \"gcs\"\n",
            "name = \"gcs\"\ndomain = \"region-1\"\n",
        );
    std::fs::write(&v.cfg, same_region).unwrap();
    let o = run(&["mount", "--config", &v.cfg, &v.mp]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("[[policy]] \"text\"") && err.contains("region-1"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// 7. Files whose every shard is in DEEP_ARCHIVE (S3) or Archive (Azure):
///    `get` fails with one line saying a thaw was requested, and works once
///    moto/Azurite have thawed (at once); `thaw` asks for the rest; through
///    the mount a read fails with EAGAIN and the log names the file.
#[test]
fn archived_files_are_thawed_on_read_and_by_thaw() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(backends) = ready() else { return };
    let v = Vol::new(&backends);
    let rules = r#"
[[policy]]
name = "cold"
match = { extensions = ["cold"] }
layout = "replicate:2"
backends = ["s3", "azure"]
storage_class = { s3 = "DEEP_ARCHIVE", azure = "Archive" }
allow_archive_only = true

[[policy]]
name = "default"
"#;
    v.with_rules(rules);
    let files = [
        ("a.cold", common::bytes(71, 600_000)),
        ("b.cold", common::bytes(72, 300_000)),
        ("c.cold", common::bytes(73, 300_000)),
        ("plain.bin", common::bytes(74, 300_000)),
    ];
    for (n, d) in &files {
        std::fs::write(v.p(n), d).unwrap();
    }
    v.umount();
    let out = tempfile::tempdir().unwrap();
    let get = |name: &str| {
        let dest = out.path().join(name);
        let o = run(&[
            "get",
            "--config",
            &v.cfg,
            &format!("/{name}"),
            dest.to_str().unwrap(),
        ]);
        (o, dest)
    };
    // Not archived: read at once.
    let (o, dest) = get("plain.bin");
    ok(o);
    assert!(std::fs::read(dest).unwrap() == files[3].1);
    // Archived: the read asks for the thaw and says so in one line.
    let (o, _) = get("a.cold");
    common::assert_one_line_error(&o, "/a.cold is in an archive class; a thaw was requested");
    // moto thaws at once: the next get reads it.
    let (o, dest) = get("a.cold");
    ok(o);
    assert!(std::fs::read(dest).unwrap() == files[0].1);
    // `thaw` asks for b.cold (and c.cold) and finds a.cold thawed.
    let o = run(&["thaw", "--config", &v.cfg, "/b.cold", "/a.cold"]);
    let text = ok(o);
    // One shard of each chunk (k = 1): the S3 copy, which thaws faster.
    assert!(
        text.contains("/b.cold: thaw requested for") && text.contains("expected in up to 12 hours"),
        "{text}"
    );
    assert!(text.contains("/a.cold: thawed: readable now"), "{text}");
    assert!(
        text.contains("2 file(s): 0 readable without a thaw, 2 in an archive class;")
            && text.contains("(standard tier, thawed copies kept 7 days)"),
        "{text}"
    );
    let (o, dest) = get("b.cold");
    ok(o);
    assert!(std::fs::read(dest).unwrap() == files[1].1);
    // Through the mount: the read fails with EAGAIN and logs one line naming
    // the file. (moto thaws at once, and the kernel reads a page again after
    // its readahead failed: the read may well succeed by then.)
    v.mount();
    match std::fs::read(v.p("c.cold")) {
        Ok(d) => assert!(d == files[2].1, "c.cold differs"),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "{e}"),
    }
    let log = v.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("/c.cold is in an archive class; a thaw was requested"))
            .count(),
        1,
        "{log}"
    );
    assert!(std::fs::read(v.p("c.cold")).unwrap() == files[2].1);
    // Thawed files read through the mount too; `thaw` through the daemon says so.
    let o = run(&["thaw", "--config", &v.cfg, "--json", "/"]);
    let r: serde_json::Value = serde_json::from_str(&ok(o)).unwrap();
    assert_eq!(r["files"], 4, "{r}");
    assert_eq!(r["instant"], 1, "{r}");
    assert_eq!(r["requested"], 0, "{r}");
}
