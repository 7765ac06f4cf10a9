//! The CLI without a mount, driven as a user runs it: put a tree, ls it, get it
//! back identical (also with a backend down), rm, mkdir, du; the same commands
//! through the mount daemon while mounted; completions and man pages.

mod common;

use common::{assert_one_line_error, can_mount, ok, run, stderr, Env};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

static SERIAL: Mutex<()> = Mutex::new(());

/// A local tree with files of several sizes (empty, below, at and across chunk
/// boundaries), a sparse run of zeros, nested directories, a symlink, and
/// distinct modes and times.
fn make_tree(root: &Path, seed: u64) {
    std::fs::create_dir_all(root.join("docs/deep/er")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    let files: &[(&str, usize)] = &[
        ("empty", 0),
        ("small.txt", 1234),
        ("docs/chunk", 256 << 10),
        ("docs/deep/two-and-a-bit", (512 << 10) + 7),
        ("docs/deep/er/big.bin", (3 << 20) + 12345),
    ];
    for (i, (name, len)) in files.iter().enumerate() {
        std::fs::write(root.join(name), common::bytes(seed + i as u64, *len)).unwrap();
    }
    let mut zeros = common::bytes(seed + 99, 1 << 20);
    zeros[256 << 10..768 << 10].fill(0);
    std::fs::write(root.join("docs/holey"), zeros).unwrap();
    std::os::unix::fs::symlink("deep/er/big.bin", root.join("docs/link")).unwrap();
    std::fs::set_permissions(
        root.join("small.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("docs/chunk"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("docs/deep/two-and-a-bit"),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    for f in ["docs/deep/er/big.bin", "small.txt"] {
        std::fs::File::options()
            .write(true)
            .open(root.join(f))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
}

fn shard_count(e: &Env) -> usize {
    fn count(p: &Path) -> usize {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        if e.file_type().unwrap().is_dir() {
                            count(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    ["a", "b", "c", "d"]
        .iter()
        .map(|b| count(&e.base.join(b).join("chunks")))
        .sum()
}

/// A volume over four folders (2 data + 2 parity shards, 256 KiB chunks):
/// writes still reach the quorum of 3 with one folder gone.
fn volume(e: &Env) -> String {
    let cfg = e.p("v.toml");
    let (a, b, c, d, state) = (
        e.backend("a"),
        e.backend("b"),
        e.backend("c"),
        e.backend("d"),
        e.p("state"),
    );
    let o = e.init(
        &cfg,
        &[
            "--backend",
            &a,
            "--backend",
            &b,
            "--backend",
            &c,
            "--backend",
            &d,
            "--data-shards",
            "2",
            "--parity-shards",
            "2",
            "--chunk-size",
            "256KiB",
            "--cache-size",
            "1MiB",
            "--state-dir",
            &state,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    cfg
}

#[derive(serde::Deserialize, Debug)]
struct Entry {
    name: String,
    size: u64,
    chunks: usize,
    redundancy: serde_json::Value,
    target: Option<String>,
}

fn ls_json(cfg: &str, path: &str) -> Vec<Entry> {
    serde_json::from_str(&ok(&["ls", "--config", cfg, "--json", path])).unwrap()
}

#[test]
fn put_ls_get_round_trip_without_a_mount() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Env::new();
    let cfg = volume(&e);
    let src = e.base.join("src");
    make_tree(&src, 1);

    let out = ok(&["put", "--config", &cfg, src.to_str().unwrap(), "/"]);
    assert!(out.contains("stored 6 file(s)"), "{out}");
    assert!(out.contains("5 directories, 1 symlink"), "{out}");
    let shards = shard_count(&e);
    assert!(shards > 0);

    // ls: a table with sizes, chunks and redundancy; JSON with the same facts.
    let table = ok(&["ls", "--config", &cfg, "/src/docs"]);
    assert!(table.starts_with("MODE"), "{table}");
    let chunk_line = table.lines().find(|l| l.ends_with(" chunk")).unwrap();
    assert!(chunk_line.starts_with("-rwxr-x---"), "{chunk_line}");
    assert!(
        chunk_line.contains(" 262144 ") && chunk_line.contains(" full "),
        "{chunk_line}"
    );
    assert!(table.contains("link -> deep/er/big.bin"), "{table}");
    assert!(table.contains("deep/"), "{table}");
    let docs = ls_json(&cfg, "/src/docs");
    let names: Vec<&str> = docs.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["chunk", "deep", "holey", "link"]);
    // Content-defined chunks of 64 KiB to 1 MiB (around 256 KiB).
    assert_eq!(docs[0].size, 256 << 10);
    assert!((1..=4).contains(&docs[0].chunks), "{}", docs[0].chunks);
    assert_eq!(docs[2].size, 1 << 20);
    assert!((1..=16).contains(&docs[2].chunks), "{}", docs[2].chunks);
    assert_eq!(docs[3].target.as_deref(), Some("deep/er/big.bin"));
    let big = &ls_json(&cfg, "/src/docs/deep/er/big.bin")[0];
    assert_eq!(big.size, (3 << 20) + 12345);
    assert!((4..=49).contains(&big.chunks), "{}", big.chunks);
    assert_eq!(big.redundancy, serde_json::json!("full"));

    // A second put of the same tree stores nothing: every file is skipped by hash.
    let out = ok(&["put", "--config", &cfg, src.to_str().unwrap(), "/"]);
    assert!(out.contains("skipped 6 file(s)"), "{out}");
    assert_eq!(
        shard_count(&e),
        shards,
        "no shard written for unchanged files"
    );
    // The same content under another name is stored without uploading a chunk.
    let out = ok(&[
        "put",
        "--config",
        &cfg,
        src.join("docs/deep/er/big.bin").to_str().unwrap(),
        "/copy-of-big",
    ]);
    assert!(
        out.contains("stored 1 file(s)")
            && out.contains(&format!(
                "0 chunk(s) uploaded, {} already stored",
                big.chunks
            )),
        "{out}"
    );
    assert_eq!(shard_count(&e), shards);

    // get: identical bytes, modes, times and symlinks.
    let back = e.base.join("back");
    let out = ok(&["get", "--config", &cfg, "/src", back.to_str().unwrap()]);
    assert!(out.contains("wrote 6 file(s)"), "{out}");
    common::assert_same_tree(&src, &back);
    // Again over what the first get wrote (a read-only file too): replaced, and
    // nothing else left beside them.
    for f in ["docs/deep/two-and-a-bit", "small.txt"] {
        let local = back.join(f);
        std::fs::write(&local, b"changed locally").unwrap_or_default();
        ok(&[
            "get",
            "--config",
            &cfg,
            &format!("/src/{f}"),
            local.to_str().unwrap(),
        ]);
    }
    common::assert_same_tree(&src, &back);

    // Names that are not UTF-8 are stored and given back byte for byte.
    let odd = e.base.join("odd");
    std::fs::create_dir(&odd).unwrap();
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(odd.join(latin1), b"latin-1 name").unwrap();
    ok(&["put", "--config", &cfg, odd.to_str().unwrap(), "/odd"]);
    let listed = ls_json(&cfg, "/odd");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "caf\u{fffd}.txt", "shown lossily");
    let odd_back = e.base.join("odd-back");
    ok(&["get", "--config", &cfg, "/odd", odd_back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(odd_back.join(latin1)).unwrap(),
        b"latin-1 name"
    );
    ok(&["rm", "--config", &cfg, "-r", "/odd"]);
    // Several paths at once into a directory.
    let many = e.base.join("many");
    ok(&[
        "get",
        "--config",
        &cfg,
        "/src/small.txt",
        "/src/docs/deep",
        "/copy-of-big",
        many.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(many.join("small.txt")).unwrap(),
        std::fs::read(src.join("small.txt")).unwrap()
    );
    common::assert_same_tree(&src.join("docs/deep"), &many.join("deep"));
    assert_eq!(
        std::fs::read(many.join("copy-of-big")).unwrap(),
        std::fs::read(src.join("docs/deep/er/big.bin")).unwrap()
    );

    // du counts the tree, and each distinct chunk once.
    #[derive(serde::Deserialize)]
    struct Du {
        files: u64,
        dirs: u64,
        symlinks: u64,
        bytes: u64,
        chunks: u64,
        chunk_bytes: u64,
        stored_bytes: u64,
    }
    let du: Du = serde_json::from_str(&ok(&["du", "--config", &cfg, "--json", "/"])).unwrap();
    let src_bytes: u64 = [
        0,
        1234,
        256 << 10,
        (512 << 10) + 7,
        (3 << 20) + 12345,
        1 << 20,
    ]
    .iter()
    .sum();
    // Directories: the root, src, docs, deep, er and empty-dir.
    assert_eq!((du.files, du.dirs, du.symlinks), (7, 6, 1));
    assert_eq!(du.bytes, src_bytes + (3 << 20) + 12345);
    // Each distinct chunk once: copy-of-big adds none.
    let listed: usize = ["/src", "/src/docs", "/src/docs/deep", "/src/docs/deep/er"]
        .iter()
        .flat_map(|d| ls_json(&cfg, d))
        .map(|e| e.chunks)
        .sum();
    assert!(
        du.chunks >= 5 && du.chunks as usize <= listed,
        "{} of {listed}",
        du.chunks
    );
    // Zeros that fill a whole chunk are not stored; nothing is counted twice.
    assert!(
        du.chunk_bytes <= src_bytes && du.chunk_bytes >= src_bytes - (512 << 10),
        "{} of {src_bytes}",
        du.chunk_bytes
    );
    // 2+2 shards take twice the data, but for the run of zeros that compresses away.
    assert!(
        du.stored_bytes >= 2 * (du.chunk_bytes - (512 << 10)),
        "{} for {}",
        du.stored_bytes,
        du.chunk_bytes
    );

    // mkdir, rm, and their errors.
    ok(&["mkdir", "--config", &cfg, "-p", "/a/b/c"]);
    assert_one_line_error(&run(&["mkdir", "--config", &cfg, "/a/b"]), "already exists");
    assert_one_line_error(&run(&["mkdir", "--config", &cfg, "/x/y"]), "-p");
    assert_one_line_error(
        &run(&["rm", "--config", &cfg, "/a"]),
        "is a directory (use -r",
    );
    assert_one_line_error(
        &run(&["rm", "--config", &cfg, "/nope"]),
        "/nope: no such file",
    );
    assert_one_line_error(
        &run(&["get", "--config", &cfg, "/nope", "/tmp/x"]),
        "/nope: no such file",
    );
    assert_one_line_error(
        &run(&["ls", "--config", &cfg, "/src/../etc"]),
        "`..` is not allowed",
    );
    ok(&["rm", "--config", &cfg, "-r", "/a", "/copy-of-big"]);
    let root: Vec<String> = ls_json(&cfg, "/").into_iter().map(|e| e.name).collect();
    assert_eq!(root, ["src"]);
    // Removing the last file using chunks frees their shards (no daemon: right away).
    ok(&["rm", "--config", &cfg, "-r", "/src"]);
    assert_eq!(shard_count(&e), 0, "shards of removed files are deleted");
}

#[test]
fn sparse_files_put_and_get_without_touching_their_holes() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Env::new();
    let cfg = volume(&e);
    // A 4 TiB local file holding 300 KB: put reads only its data, get writes
    // only the data back (the holes stay holes), and a second put sees it is
    // unchanged. Reading or writing the holes would take hours.
    const SIZE: u64 = 4 << 40;
    let local = e.base.join("disk.img");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&local).unwrap();
        f.set_len(SIZE).unwrap();
        f.write_all_at(&common::bytes(1, 100_000), 0).unwrap();
        f.write_all_at(&common::bytes(2, 100_000), SIZE / 2)
            .unwrap();
        f.write_all_at(&common::bytes(3, 100_000), SIZE - 100_000)
            .unwrap();
    }
    let out = ok(&[
        "put",
        "--config",
        &cfg,
        local.to_str().unwrap(),
        "/disk.img",
    ]);
    assert!(out.contains("stored 1 file(s)"), "{out}");
    let l = ls_json(&cfg, "/disk.img");
    assert_eq!(l[0].size, SIZE);
    assert!(l[0].chunks <= 8, "{} chunks", l[0].chunks);
    let out = ok(&[
        "put",
        "--config",
        &cfg,
        local.to_str().unwrap(),
        "/disk.img",
    ]);
    assert!(out.contains("skipped 1 file(s)"), "{out}");
    let back = e.base.join("back.img");
    ok(&["get", "--config", &cfg, "/disk.img", back.to_str().unwrap()]);
    let b = std::fs::File::open(&back).unwrap();
    assert_eq!(b.metadata().unwrap().len(), SIZE);
    assert!(
        b.metadata().unwrap().blocks() * 512 < 8 << 20,
        "holes stay holes"
    );
    use std::os::unix::fs::FileExt;
    for (seed, off) in [(1, 0), (2, SIZE / 2), (3, SIZE - 100_000)] {
        let mut buf = vec![0u8; 100_000];
        b.read_exact_at(&mut buf, off).unwrap();
        assert!(buf == common::bytes(seed, 100_000), "bytes at {off}");
    }
}

#[test]
fn put_and_get_with_a_backend_down() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Env::new();
    let cfg = volume(&e);
    let src = e.base.join("src");
    make_tree(&src, 7);
    ok(&["put", "--config", &cfg, src.to_str().unwrap(), "/before"]);

    // Backend b's folder goes away (an unplugged drive).
    std::fs::rename(e.base.join("b"), e.base.join("b-gone")).unwrap();
    let listing = ls_json(&cfg, "/before/docs/deep/er");
    assert_eq!(
        listing[0].redundancy,
        serde_json::json!({"degraded": {"missing": 1}})
    );
    let table = ok(&["ls", "--config", &cfg, "/before/docs/deep/er"]);
    assert!(table.contains("degraded (1 shard missing)"), "{table}");
    let back = e.base.join("back");
    ok(&["get", "--config", &cfg, "/before", back.to_str().unwrap()]);
    common::assert_same_tree(&src, &back);

    // Writes still reach the quorum (3 of 4 shards) and say which are missing.
    let src2 = e.base.join("src2");
    make_tree(&src2, 21);
    ok(&["put", "--config", &cfg, src2.to_str().unwrap(), "/during"]);
    let back2 = e.base.join("back2");
    ok(&["get", "--config", &cfg, "/during", back2.to_str().unwrap()]);
    common::assert_same_tree(&src2, &back2);

    // The drive returns; repair completes the shards written without it.
    std::fs::rename(e.base.join("b-gone"), e.base.join("b")).unwrap();
    let during = ls_json(&cfg, "/during/docs/deep/er");
    assert_eq!(
        during[0].redundancy,
        serde_json::json!({"degraded": {"missing": 1}})
    );
    ok(&["repair", "--config", &cfg]);
    let during = ls_json(&cfg, "/during/docs/deep/er");
    assert_eq!(during[0].redundancy, serde_json::json!("full"));

    // Two of four gone: still readable (m = 2); a put fails clearly.
    for b in ["b", "c"] {
        std::fs::rename(e.base.join(b), e.base.join(format!("{b}-gone"))).unwrap();
    }
    let back3 = e.base.join("back3");
    ok(&["get", "--config", &cfg, "/during", back3.to_str().unwrap()]);
    common::assert_same_tree(&src2, &back3);
    let late = e.base.join("late");
    std::fs::write(&late, common::bytes(999, 5000)).unwrap();
    let o = run(&["put", "--config", &cfg, late.to_str().unwrap(), "/late"]);
    // Changing the volume needs the write lease on a majority of the backends.
    assert_one_line_error(&o, "write lease could be stored on 2 of 4 backends");
    // Refused before anything changed.
    let names: Vec<String> = ls_json(&cfg, "/").into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["before", "during"]);
}

#[test]
fn commands_go_through_the_mount_when_mounted() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let cfg = volume(&e);
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();
    ok(&["mount", "--config", &cfg, &mp]);
    let src = e.base.join("src");
    make_tree(&src, 3);

    // A put while mounted (the daemon holds the index) shows up in the mount.
    let out = ok(&["put", "--config", &cfg, src.to_str().unwrap(), "/"]);
    assert!(out.contains("stored 6 file(s)"), "{out}");
    common::assert_same_tree(&src, Path::new(&mp).join("src").as_path());
    // An overwrite is seen at once, though the mount had the old file cached.
    let small = Path::new(&mp).join("src/small.txt");
    let _ = std::fs::read(&small).unwrap();
    std::fs::write(src.join("small.txt"), b"new contents").unwrap();
    ok(&[
        "put",
        "--config",
        &cfg,
        src.join("small.txt").to_str().unwrap(),
        "/src/small.txt",
    ]);
    assert_eq!(std::fs::read(&small).unwrap(), b"new contents");

    // Files written through the mount are listed and fetched by the CLI.
    std::fs::write(Path::new(&mp).join("from-mount"), common::bytes(5, 700_000)).unwrap();
    let entries = ls_json(&cfg, "/");
    let fm = entries.iter().find(|e| e.name == "from-mount").unwrap();
    assert_eq!(fm.size, 700_000);
    assert!((1..=11).contains(&fm.chunks), "{}", fm.chunks);
    let back = e.base.join("back");
    ok(&[
        "get",
        "--config",
        &cfg,
        "/src",
        "/from-mount",
        back.to_str().unwrap(),
    ]);
    common::assert_same_tree(&src, &back.join("src"));
    assert_eq!(
        std::fs::read(back.join("from-mount")).unwrap(),
        common::bytes(5, 700_000)
    );

    // Puts of the same destination at once: each stores its file under a name
    // of its own and renames it into place; the last rename wins, whole.
    let (one, two) = (e.base.join("one"), e.base.join("two"));
    std::fs::write(&one, common::bytes(11, 900_000)).unwrap();
    std::fs::write(&two, common::bytes(12, 1_100_000)).unwrap();
    common::puts_at_once(&cfg, &[(&one, "/same"), (&two, "/same")]);
    let same = std::fs::read(Path::new(&mp).join("same")).unwrap();
    assert!(
        same == common::bytes(11, 900_000) || same == common::bytes(12, 1_100_000),
        "one of the two files, never a mix ({} bytes)",
        same.len()
    );
    let leftovers: Vec<_> = std::fs::read_dir(&mp)
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().contains("cloudraid-put"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A put whose client goes away (Ctrl-C) is finished by the daemon, not cut
    // off half-way with the file left open.
    let big = e.base.join("big");
    std::fs::write(&big, common::bytes(13, 48 << 20)).unwrap();
    let mut client = common::bin()
        .args(["put", "--config", &cfg, big.to_str().unwrap(), "/big"])
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let in_progress = || {
        std::fs::read_dir(&mp).unwrap().flatten().any(|d| {
            d.file_name()
                .to_string_lossy()
                .starts_with(".big.cloudraid-put")
        })
    };
    while !in_progress() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(in_progress(), "the daemon started storing the file");
    client.kill().unwrap();
    client.wait().unwrap();
    let landed = Path::new(&mp).join("big");
    while !landed.exists() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read(&landed).unwrap(),
        common::bytes(13, 48 << 20),
        "stored whole although the client went away"
    );
    assert!(!in_progress());

    // rm and mkdir while mounted: the mount sees them at once.
    let _ = std::fs::metadata(Path::new(&mp).join("src/docs/chunk")).unwrap();
    ok(&["rm", "--config", &cfg, "-r", "/src/docs"]);
    assert!(!Path::new(&mp).join("src/docs/chunk").exists());
    assert!(!Path::new(&mp).join("src/docs").exists());
    ok(&["mkdir", "--config", &cfg, "-p", "/made/here"]);
    assert!(Path::new(&mp).join("made/here").is_dir());
    let du = ok(&["du", "--config", &cfg, "/src"]);
    assert!(du.starts_with("/src: "), "{du}");

    assert!(run(&["umount", &mp]).status.success());
    // And the same tree without the mount: what the mount changed is stored.
    let back2 = e.base.join("back2");
    ok(&["get", "--config", &cfg, "/src", back2.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(back2.join("small.txt")).unwrap(),
        b"new contents"
    );
    assert!(!back2.join("docs").exists());
    assert_eq!(std::fs::read(back2.join("empty")).unwrap(), b"");
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let bash = ok(&["completions", "bash"]);
    assert!(bash.contains("_cloudraid()") && bash.contains("put") && bash.contains("--config"));
    let zsh = ok(&["completions", "zsh"]);
    assert!(
        zsh.starts_with("#compdef cloudraid"),
        "{}",
        &zsh[..40.min(zsh.len())]
    );
    let fish = ok(&["completions", "fish"]);
    assert!(fish.contains("complete -c cloudraid"));
    let o = run(&["completions", "tcsh"]);
    assert!(!o.status.success() && stderr(&o).contains("tcsh"));

    let man = ok(&["man"]);
    assert!(
        man.starts_with(".ie \\n(.g") || man.contains(".TH cloudraid 1"),
        "{}",
        &man[..200]
    );
    assert!(man.contains(".TH cloudraid 1") && man.contains("install\\-helper"));
    let dir = tempfile::tempdir().unwrap();
    ok(&["man", "--dir", dir.path().to_str().unwrap()]);
    for page in [
        "cloudraid.1",
        "cloudraid-put.1",
        "cloudraid-get.1",
        "cloudraid-mount.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".SH NAME"), "{page}");
    }
}

fn mknod(p: &Path, mode: u32, dev: u64) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe { libc::mknod(c.as_ptr(), mode, dev as libc::dev_t) };
    assert_eq!(r, 0, "mknod {p:?}: {}", std::io::Error::last_os_error());
    // The mode exactly, whatever the umask.
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o7777)).unwrap();
}

/// Sets a path's access and modification times without opening it (a FIFO
/// would block).
fn set_times(p: &Path, secs: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: a valid path and two timespecs.
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) },
        0
    );
}

#[test]
fn put_and_get_keep_fifos_sockets_and_devices() {
    use std::os::unix::fs::FileTypeExt;
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Env::new();
    let cfg = volume(&e);
    let src = e.base.join("special");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("plain"), b"data").unwrap();
    mknod(&src.join("fifo"), libc::S_IFIFO | 0o640, 0);
    drop(std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap());
    // Devices need root to make, here and when written back.
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let null = libc::makedev(1, 3);
    if root {
        mknod(&src.join("null"), libc::S_IFCHR | 0o666, null);
        mknod(
            &src.join("loop"),
            libc::S_IFBLK | 0o660,
            libc::makedev(7, 200),
        );
    }
    for n in ["fifo", "sock", "null", "loop"] {
        if src.join(n).symlink_metadata().is_ok() {
            set_times(&src.join(n), 1_500_000_000);
        }
    }
    let specials = if root { 4 } else { 2 };

    let out = ok(&["put", "--config", &cfg, src.to_str().unwrap(), "/"]);
    assert!(
        out.contains(&format!("{specials} special file(s)")),
        "{out}"
    );
    let table = ok(&["ls", "--config", &cfg, "/special"]);
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{table}"))
            .to_string()
    };
    assert!(line("fifo").starts_with("prw-r-----"), "{table}");
    assert!(line("sock").starts_with('s'), "{table}");
    if root {
        assert!(line("null").starts_with("crw-rw-rw-"), "{table}");
        assert!(line("null").contains(" 1, 3 "), "{table}");
        assert!(line("loop").starts_with("brw-rw----"), "{table}");
        assert!(line("loop").contains(" 7, 200 "), "{table}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["ls", "--config", &cfg, "--json", "/special"])).unwrap();
    let kinds: Vec<String> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e["name"].as_str().unwrap(), e["kind"]))
        .collect();
    assert!(kinds.contains(&"fifo \"Fifo\"".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"sock \"Socket\"".to_string()), "{kinds:?}");
    let du: serde_json::Value =
        serde_json::from_str(&ok(&["du", "--config", &cfg, "--json", "/special"])).unwrap();
    assert_eq!(
        (du["files"].as_u64(), du["specials"].as_u64()),
        (Some(1), Some(specials))
    );

    // Written back as they were: type, device number, mode and times.
    let out = e.base.join("out");
    let said = ok(&["get", "--config", &cfg, "/special", out.to_str().unwrap()]);
    assert!(
        said.contains(&format!("{specials} special file(s)")),
        "{said}"
    );
    common::assert_same_tree(&src, &out);
    assert!(out
        .join("fifo")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_fifo());
    // A second get replaces them in place.
    ok(&[
        "get",
        "--config",
        &cfg,
        "/special/fifo",
        "/special/sock",
        out.to_str().unwrap(),
    ]);
    common::assert_same_tree(&src, &out);
    // Put again: the same nodes are left as they are.
    ok(&["put", "--config", &cfg, src.to_str().unwrap(), "/"]);
    assert_eq!(ls_json(&cfg, "/special").len(), specials as usize + 1);
}
