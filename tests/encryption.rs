//! Encryption as its users meet it: no plaintext (data or names) on any backend,
//! wrong or damaged keys fail at once and change nothing, altered or swapped
//! shards are read around and never give wrong bytes, passwd, key files, and a
//! volume without encryption.

mod common;

use common::{assert_one_line_error, bin, can_mount, ok, run, stderr, stdout, Env};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A volume over folders a, b, c (k=2, m=1), chunks around 256 KiB.
fn volume(e: &Env, extra: &[&str]) -> String {
    let mut args = vec!["--chunk-size", "256KiB"];
    args.extend_from_slice(extra);
    common::three_backend_volume(e, &args)
}

/// Every object of every backend folder, as (path, bytes).
fn all_objects(e: &Env) -> Vec<(PathBuf, Vec<u8>)> {
    ["a", "b", "c"]
        .iter()
        .flat_map(|b| files_under(&e.base.join(b)))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Writes `marker` as the volume marker of every backend folder.
fn write_markers(e: &Env, marker: &serde_json::Value) {
    for b in ["a", "b", "c"] {
        std::fs::write(
            e.base.join(b).join("cloudraid.volume"),
            serde_json::to_vec(marker).unwrap(),
        )
        .unwrap();
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_plaintext_reaches_any_backend() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Env::new();
    let cfg = volume(&e, &[]);
    const CONTENT: &[u8] = b"CONTENT-MARKER-7f3a9c";
    const NAME: &str = "NAME-MARKER-b41d06";
    // Files full of the marker (compressible: compression must not leak it
    // either), under names with the other marker, in a directory named by it.
    let src = e.base.join("src");
    std::fs::create_dir_all(src.join(format!("dir-{NAME}"))).unwrap();
    let text = CONTENT.repeat(40_000);
    std::fs::write(src.join(format!("dir-{NAME}/{NAME}.txt")), &text).unwrap();
    std::fs::write(src.join(format!("small-{NAME}")), CONTENT).unwrap();
    std::os::unix::fs::symlink(format!("target-{NAME}"), src.join(format!("link-{NAME}"))).unwrap();
    ok(&["put", "--config", &cfg, src.to_str().unwrap(), "/"]);
    // And through the mount, with an extended attribute.
    if can_mount() {
        let mp = e.p("mnt");
        std::fs::create_dir(&mp).unwrap();
        ok(&["mount", "--config", &cfg, &mp]);
        let f = Path::new(&mp).join(format!("mounted-{NAME}"));
        std::fs::write(&f, &text).unwrap();
        let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
        let (k, v) = (
            std::ffi::CString::new(format!("user.{NAME}")).unwrap(),
            CONTENT,
        );
        // SAFETY: valid C strings and buffer.
        let r = unsafe { libc::setxattr(c.as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
        ok(&["umount", &mp]);
    }
    let objects = all_objects(&e);
    assert!(
        objects
            .iter()
            .any(|(p, _)| p.to_string_lossy().contains("meta/")),
        "the metadata log is on the backends"
    );
    for (p, bytes) in &objects {
        let key = p.to_string_lossy();
        assert!(
            !key.contains(NAME),
            "a name leaks into an object key: {key}"
        );
        assert!(!contains(bytes, CONTENT), "file content in {key}");
        assert!(!contains(bytes, NAME.as_bytes()), "a name in {key}");
    }
    // What was stored reads back.
    let back = e.base.join("back");
    ok(&["get", "--config", &cfg, "/", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(back.join(format!("src/dir-{NAME}/{NAME}.txt"))).unwrap(),
        text
    );
}

#[test]
fn wrong_or_missing_keys_fail_at_once_and_change_nothing() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Env::new();
    let cfg = volume(&e, &[]);
    let local = e.base.join("f");
    std::fs::write(&local, common::bytes(1, 300_000)).unwrap();
    ok(&["put", "--config", &cfg, local.to_str().unwrap(), "/f"]);
    let before = all_objects(&e);
    let with = |pass: &str, args: &[&str]| {
        bin()
            .env("CLOUDRAID_PASSPHRASE", pass)
            .args(args)
            .output()
            .unwrap()
    };
    let t = std::time::Instant::now();
    let o = with(
        "not the passphrase",
        &["put", "--config", &cfg, local.to_str().unwrap(), "/g"],
    );
    assert_one_line_error(&o, "wrong passphrase");
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    let o = with(
        "not the passphrase",
        &["get", "--config", &cfg, "/f", e.p("out").as_str()],
    );
    assert_one_line_error(&o, "wrong passphrase");
    assert!(!Path::new(&e.p("out")).exists());
    let o = bin()
        .env_remove("CLOUDRAID_PASSPHRASE")
        .args(["get", "--config", &cfg, "/f", &e.p("out")])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_one_line_error(&o, "is encrypted: give its passphrase");
    assert_eq!(all_objects(&e), before, "nothing on the backends changed");
    // Listing and scrubbing need no key (they read the index and stored bytes).
    let o = bin()
        .env_remove("CLOUDRAID_PASSPHRASE")
        .args(["ls", "--config", &cfg, "/"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = bin()
        .env_remove("CLOUDRAID_PASSPHRASE")
        .args(["scrub", "--config", &cfg])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // A wrong one does not stop a scrub either: it says so and goes on.
    let o = with("not the passphrase", &["scrub", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("going on without the key"),
        "{}",
        stderr(&o)
    );
    if can_mount() {
        let mp = e.p("mnt");
        std::fs::create_dir(&mp).unwrap();
        let o = with("nope", &["mount", "--config", &cfg, &mp]);
        assert_one_line_error(&o, "wrong passphrase");
        assert!(common::mounted_type(&mp).is_none());
    }

    // Damaged key material in one marker: another backend's copy unlocks. First
    // altered in place (same length, still hex: it only fails to decrypt)...
    let marker_a = e.base.join("a/cloudraid.volume");
    let good = std::fs::read_to_string(&marker_a).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&good).unwrap();
    let wrapped = m["encryption"]["slots"][0]["wrapped"]
        .as_str()
        .unwrap()
        .to_string();
    let flipped: String = wrapped
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 40 {
                if c == '0' {
                    '1'
                } else {
                    '0'
                }
            } else {
                c
            }
        })
        .collect();
    let mut altered = m.clone();
    altered["encryption"]["slots"][0]["wrapped"] = serde_json::Value::String(flipped);
    std::fs::write(&marker_a, serde_json::to_vec(&altered).unwrap()).unwrap();
    ok(&["get", "--config", &cfg, "/f", &e.p("back0")]);
    // ... then cut short.
    m["encryption"]["slots"][0]["wrapped"] = serde_json::Value::String(wrapped[..30].to_string());
    std::fs::write(&marker_a, serde_json::to_vec(&m).unwrap()).unwrap();
    let back = e.p("back");
    ok(&["get", "--config", &cfg, "/f", &back]);
    assert_eq!(std::fs::read(&back).unwrap(), common::bytes(1, 300_000));
    // Damaged everywhere: a clear error, never a wrong key.
    write_markers(&e, &m);
    let o = run(&["get", "--config", &cfg, "/f", &e.p("back2")]);
    assert_one_line_error(&o, "key material in its marker is damaged");
    // A marker asking for an absurd key derivation cost is damaged, not obeyed.
    let mut costly = serde_json::from_str::<serde_json::Value>(&good).unwrap();
    costly["encryption"]["slots"][0]["cost"]["m_cost_kib"] = serde_json::json!(1u64 << 31);
    write_markers(&e, &costly);
    let o = run(&["get", "--config", &cfg, "/f", &e.p("back2")]);
    assert_one_line_error(&o, "Argon2 cost");
    // A marker saying the volume is not encrypted is not believed.
    m.as_object_mut().unwrap().remove("encryption");
    write_markers(&e, &m);
    let o = run(&["get", "--config", &cfg, "/f", &e.p("back3")]);
    assert_one_line_error(&o, "markers hold no keys");
    for b in ["a", "b", "c"] {
        std::fs::write(e.base.join(b).join("cloudraid.volume"), &good).unwrap();
    }
    ok(&["get", "--config", &cfg, "/f", &e.p("back4")]);
}

#[test]
fn altered_and_swapped_shards_are_read_around_never_returned() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Env::new();
    let cfg = volume(&e, &[]);
    let a = e.base.join("a.bin");
    let b = e.base.join("b.bin");
    std::fs::write(&a, common::bytes(2, 60_000)).unwrap();
    std::fs::write(&b, common::bytes(3, 60_000)).unwrap();
    ok(&["put", "--config", &cfg, a.to_str().unwrap(), "/a"]);
    ok(&["put", "--config", &cfg, b.to_str().unwrap(), "/b"]);
    let shards: Vec<PathBuf> = all_objects(&e)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.to_string_lossy().contains("/chunks/"))
        .collect();
    // One chunk each (60 KB is below the 64 KiB minimum chunk), 3 shards each.
    assert_eq!(shards.len(), 6, "{shards:?}");
    let chunk_of = |p: &Path| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .split('.')
            .next()
            .unwrap()
            .to_string()
    };
    let mut ids: Vec<String> = shards.iter().map(|p| chunk_of(p)).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2);
    let of = |id: &str, i: usize| {
        shards
            .iter()
            .find(|p| chunk_of(p) == id && p.to_string_lossy().ends_with(&format!(".{i}")))
            .unwrap()
            .clone()
    };
    // Shard 0 of the first chunk: payload altered and its checksums recomputed,
    // so only the encryption can tell.
    let victim = of(&ids[0], 0);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0xff;
    let payload_crc = crc32fast::hash(&bytes[80..]);
    bytes[72..76].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes[..76]);
    bytes[76..80].copy_from_slice(&header_crc.to_le_bytes());
    std::fs::write(&victim, &bytes).unwrap();
    // Scrub sees that the chunk's shards disagree without the key; with it (m = 1
    // here), it names the altered shard, and repair rewrites it.
    let o = bin()
        .env_remove("CLOUDRAID_PASSPHRASE")
        .args(["scrub", "--config", &cfg])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stdout(&o).contains("its shards disagree"), "{}", stdout(&o));
    let o = run(&["scrub", "--config", &cfg]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains(&format!("shard 0 of chunk {}: altered", &ids[0][..16])),
        "{}",
        stdout(&o)
    );
    ok(&["repair", "--config", &cfg]);
    assert_ne!(std::fs::read(&victim).unwrap(), bytes, "rewritten");
    ok(&["scrub", "--config", &cfg]);
    std::fs::write(&victim, &bytes).unwrap();
    // Shard 1 of the second chunk replaced by shard 1 of the first, header
    // rewritten to name the second chunk: it passes every check but the key's.
    let mut swapped = std::fs::read(of(&ids[0], 1)).unwrap();
    let mut target = [0u8; 32];
    hex::decode_to_slice(&ids[1], &mut target).unwrap();
    swapped[28..60].copy_from_slice(&target);
    let len_b = std::fs::read(of(&ids[1], 1)).unwrap();
    swapped[64..72].copy_from_slice(&len_b[64..72]);
    swapped.truncate(80);
    swapped.extend_from_slice(&std::fs::read(of(&ids[0], 1)).unwrap()[80..]);
    swapped.resize(len_b.len(), 0);
    let payload_crc = crc32fast::hash(&swapped[80..]);
    swapped[72..76].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&swapped[..76]);
    swapped[76..80].copy_from_slice(&header_crc.to_le_bytes());
    std::fs::write(of(&ids[1], 1), &swapped).unwrap();
    // Both files read back exactly (each chunk still has k=2 good shards).
    let back = e.base.join("back");
    ok(&["get", "--config", &cfg, "/a", "/b", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(back.join("a")).unwrap(),
        common::bytes(2, 60_000)
    );
    assert_eq!(
        std::fs::read(back.join("b")).unwrap(),
        common::bytes(3, 60_000)
    );
    // A plainly damaged shard (checksum no longer matching) is what scrub reports.
    let mut rotten = std::fs::read(of(&ids[1], 2)).unwrap();
    let last = rotten.len() - 1;
    rotten[last] ^= 1;
    std::fs::write(of(&ids[1], 2), &rotten).unwrap();
    let o = run(&["scrub", "--config", &cfg]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("checksum"), "{}", stdout(&o));
    // With two of its three shards bad, the second chunk cannot be read: an
    // error, never wrong bytes. (Which file holds it depends on the ids.)
    let mut failed = 0;
    for (path, seed) in [("/a", 2), ("/b", 3)] {
        let out = e.p(&format!("again{seed}"));
        let o = run(&["get", "--config", &cfg, path, &out]);
        if !o.status.success() {
            failed += 1;
        }
        assert!(
            std::fs::read(&out).map_or(true, |d| d == common::bytes(seed, 60_000)),
            "never wrong bytes"
        );
    }
    assert_eq!(
        failed, 1,
        "exactly the chunk with one good shard is unreadable"
    );
}

#[test]
fn passwd_rewraps_the_key_and_key_files_unlock_unattended() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Env::new();
    let cfg = volume(&e, &[]);
    let local = e.base.join("f");
    std::fs::write(&local, common::bytes(4, 100_000)).unwrap();
    ok(&["put", "--config", &cfg, local.to_str().unwrap(), "/f"]);
    let o = bin()
        .env("CLOUDRAID_NEW_PASSPHRASE", "a much better passphrase")
        .args([
            "passwd",
            "--config",
            &cfg,
            "--kdf-memory",
            "1MiB",
            "--kdf-passes",
            "1",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("passphrase changed on 3 backend(s)"),
        "{}",
        stdout(&o)
    );
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    // The change is in the event history (read without the key).
    let ev = ok(&["events", "--config", &cfg]);
    assert!(
        ev.contains("key_changed") && ev.contains("changed on 3 backend(s)"),
        "{ev}"
    );
    let o = run(&["get", "--config", &cfg, "/f", &e.p("old")]);
    assert_one_line_error(&o, "wrong passphrase");
    let o = bin()
        .env("CLOUDRAID_PASSPHRASE", "a much better passphrase")
        .args(["get", "--config", &cfg, "/f", &e.p("new")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(e.p("new")).unwrap(),
        common::bytes(4, 100_000)
    );
    // From a passphrase file too (first line; private).
    let pf = e.p("pass");
    std::fs::write(&pf, "a much better passphrase\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = bin()
        .env_remove("CLOUDRAID_PASSPHRASE")
        .args([
            "--passphrase-file",
            &pf,
            "get",
            "--config",
            &cfg,
            "/f",
            &e.p("via-file"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(e.p("via-file")).unwrap(),
        common::bytes(4, 100_000)
    );
    // passwd needs every backend: with one gone it changes nothing.
    std::fs::rename(e.base.join("c"), e.base.join("c-gone")).unwrap();
    let o = bin()
        .env("CLOUDRAID_PASSPHRASE", "a much better passphrase")
        .env("CLOUDRAID_NEW_PASSPHRASE", "third")
        .args(["passwd", "--config", &cfg])
        .output()
        .unwrap();
    assert_one_line_error(&o, "nothing was changed");
    std::fs::rename(e.base.join("c-gone"), e.base.join("c")).unwrap();
    let o = bin()
        .env("CLOUDRAID_PASSPHRASE", "a much better passphrase")
        .args(["get", "--config", &cfg, "/f", &e.p("still")])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the passphrase is still the one before: {}",
        stderr(&o)
    );

    // A volume with a key file: the config names it, nothing else is needed.
    let e2 = Env::new();
    let key = e2.p("v.key");
    let cfg2 = volume(&e2, &["--key-file", &key]);
    assert!(std::fs::read_to_string(&cfg2).unwrap().contains("key_file"));
    let o = bin()
        .env_remove("CLOUDRAID_PASSPHRASE")
        .args(["put", "--config", &cfg2, local.to_str().unwrap(), "/f"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Another volume's key file is refused with what is wrong.
    let e3 = Env::new();
    let other = e3.p("other.key");
    volume(&e3, &["--key-file", &other]);
    let o = bin()
        .args([
            "--key-file",
            &other,
            "get",
            "--config",
            &cfg2,
            "/f",
            &e2.p("x"),
        ])
        .output()
        .unwrap();
    assert_one_line_error(&o, "does not open this volume");
}

#[test]
fn a_volume_without_encryption_says_so_and_stores_plain_chunks() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Env::new();
    let cfg = volume(&e, &["--no-encryption", "--compression", "none"]);
    assert!(std::fs::read_to_string(&cfg)
        .unwrap()
        .contains("encryption = \"none\""));
    let local = e.base.join("f");
    let text = b"visible on purpose ".repeat(100);
    std::fs::write(&local, &text).unwrap();
    let o = bin()
        .env_remove("CLOUDRAID_PASSPHRASE")
        .args(["put", "--config", &cfg, local.to_str().unwrap(), "/f"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        all_objects(&e)
            .iter()
            .any(|(_, b)| contains(b, b"visible on purpose")),
        "chosen without encryption nor compression: the bytes are stored as they are"
    );
    let o = run(&["passwd", "--config", &cfg]);
    assert_one_line_error(&o, "not encrypted");
}

/// Runs the binary on a new pseudo-terminal (its controlling terminal, as when a
/// user types), answering each prompt in `answers` with its line, in order.
/// Returns everything it printed there and whether it succeeded.
fn on_terminal(args: &[&str], answers: &[(&str, &str)]) -> (String, bool) {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    use std::os::unix::process::CommandExt;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors; the null pointers ask for defaults.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // Neither end leaks into other processes (the mount daemon, other tests'
    // children): the terminal closes when the command is done with it.
    // SAFETY: fcntl on descriptors we own.
    unsafe {
        libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(slave, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let mut cmd = bin();
    cmd.env_remove("CLOUDRAID_PASSPHRASE").args(args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::ioctl(slave, libc::TIOCSCTTY as _, 0);
            libc::dup2(slave, 0);
            libc::dup2(slave, 1);
            libc::dup2(slave, 2);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    // SAFETY: the parent's copy of the slave is not used again.
    unsafe { libc::close(slave) };
    // SAFETY: `master` is ours alone from here on.
    let mut term = unsafe { std::fs::File::from_raw_fd(master) };
    let mut reader = term.try_clone().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let t = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            // EIO once the child and its daemon have closed the terminal.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let mut from = 0;
    for (prompt, line) in answers {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let s = seen.lock().unwrap().clone();
            if let Some(i) = s[from..].find(prompt) {
                from += i + prompt.len();
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no prompt {prompt:?} in {s:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        term.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
    let ok = child.wait().unwrap().success();
    drop(term);
    let _ = t.join();
    let out = seen.lock().unwrap().clone();
    (out, ok)
}

#[test]
fn a_passphrase_typed_on_a_terminal_creates_opens_and_mounts() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Env::new();
    let cfg = e.p("v.toml");
    let (a, b, c, state) = (e.backend("a"), e.backend("b"), e.backend("c"), e.p("state"));
    let mut init = vec!["init", "--config", &cfg, "--backend", &a, "--backend", &b];
    init.extend_from_slice(&["--backend", &c, "--state-dir", &state]);
    init.extend_from_slice(&common::CHEAP_KDF);
    // Typed twice, and the two differ: nothing is created.
    let (out, done) = on_terminal(
        &init,
        &[
            ("New passphrase: ", "typed secret"),
            ("Repeat it: ", "typo secret"),
        ],
    );
    assert!(!done && out.contains("the two passphrases differ"), "{out}");
    assert!(!Path::new(&cfg).exists());
    assert!(
        !out.contains("typed secret"),
        "the passphrase is not echoed: {out}"
    );
    let (out, done) = on_terminal(
        &init,
        &[
            ("New passphrase: ", "typed secret"),
            ("Repeat it: ", "typed secret"),
        ],
    );
    assert!(done, "{out}");
    assert!(out.contains("encrypted with your passphrase"), "{out}");
    // Asked again where the key is needed.
    let local = e.base.join("f");
    std::fs::write(&local, b"typed in").unwrap();
    let (out, done) = on_terminal(
        &["put", "--config", &cfg, local.to_str().unwrap(), "/f"],
        &[("Passphrase for volume v: ", "typed secret")],
    );
    assert!(done, "{out}");
    // mount asks on the terminal and hands the passphrase to its daemon.
    if can_mount() {
        let mp = e.p("mnt");
        std::fs::create_dir(&mp).unwrap();
        let (out, mounted) = on_terminal(
            &["mount", "--config", &cfg, &mp],
            &[("Passphrase for volume v: ", "typed secret")],
        );
        assert!(mounted, "{out}");
        assert_eq!(
            std::fs::read(Path::new(&mp).join("f")).unwrap(),
            b"typed in"
        );
        ok(&["umount", &mp]);
    }
}
