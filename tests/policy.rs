//! Placement rules as a user meets them: `policy check`, and files stored
//! where their rule says — by `put` without a mount, and through a mount.

mod common;

use common::{assert_one_line_error, can_mount, run, stderr, stdout, Env};
use std::path::Path;

const RULES: &str = r#"
[[policy]]
name = "text"
match = { extensions = ["txt"] }
layout = "replicate:2"
backends = ["b", "a"]

[[policy]]
name = "default"
layout = "ec:2+2"
"#;

/// A volume over folders a, b, c and d with the rules above.
fn volume(e: &Env) -> String {
    let cfg = e.p("v.toml");
    let mut args = vec!["--state-dir".to_string(), e.p("state")];
    for n in ["a", "b", "c", "d"] {
        args.push("--backend".into());
        args.push(e.backend(n));
    }
    args.extend(["--chunk-size", "64KiB"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = e.init(&cfg, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(RULES);
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// The volume of `volume`, mounted at `e/mnt`: (config, mountpoint).
fn mounted(e: &Env) -> (String, String) {
    let cfg = volume(e);
    let mp = e.p("mnt");
    std::fs::create_dir(&mp).unwrap();
    let o = run(&["mount", "--config", &cfg, &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    (cfg, mp)
}

/// Shard object names under folder `backend` of `e` (file names only).
fn shards(e: &Env, backend: &str) -> Vec<String> {
    let mut out = Vec::new();
    let root = Path::new(&e.p(backend)).join("chunks");
    for fan in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(fan.path()).unwrap().flatten() {
            out.push(f.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// The shards of layout `tag` (e.g. "1-1") in each of folders a..d.
fn counts(e: &Env, tag: &str) -> Vec<usize> {
    ["a", "b", "c", "d"]
        .iter()
        .map(|b| {
            shards(e, b)
                .iter()
                .filter(|n| n.contains(&format!(".{tag}.")))
                .count()
        })
        .collect()
}

#[test]
fn policy_check_prints_each_rule_and_where_paths_go() {
    let e = Env::new();
    let cfg = volume(&e);
    let o = run(&[
        "policy",
        "check",
        "--config",
        &cfg,
        "notes/todo.txt",
        "/big.iso",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("rule text: 2 copies, survives any 1 backend; shard 0 → b (STANDARD), shard 1 → a (STANDARD)"), "{out}");
    assert!(
        out.contains("rule default: ec:2+2, survives any 2 backends"),
        "{out}"
    );
    assert!(
        out.contains("/notes/todo.txt: rule text (2 copies)"),
        "{out}"
    );
    assert!(out.contains("/big.iso: rule default (ec:2+2)"), "{out}");
    // A layout the backends cannot hold within their domains: exit 1, one line.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("ec:2+2", "ec:4+1");
    std::fs::write(&cfg, text).unwrap();
    let o = run(&["policy", "check", "--config", &cfg]);
    assert_one_line_error(&o, "would hold more than 1");
    assert!(stderr(&o).contains("add backends in other domains"));
}

#[test]
fn put_stores_each_file_where_its_rule_says() {
    let e = Env::new();
    let cfg = volume(&e);
    let src = e.p("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(Path::new(&src).join("notes.txt"), common::bytes(1, 300_000)).unwrap();
    std::fs::write(Path::new(&src).join("disk.img"), common::bytes(2, 300_000)).unwrap();
    let o = run(&["put", "--config", &cfg, &src, "/"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The text file: two copies, on b and a only; the image: 2+2 over all four.
    let text = counts(&e, "1-1");
    assert!(
        text[0] > 0 && text[0] == text[1] && text[2] == 0 && text[3] == 0,
        "{text:?}"
    );
    let img = counts(&e, "2-2");
    assert_eq!(img.iter().sum::<usize>() % 4, 0, "{img:?}");
    assert!(img.iter().all(|n| *n > 0), "{img:?}");
    // Nothing under the keys of a volume without rules.
    assert!(["a", "b", "c", "d"]
        .iter()
        .all(|b| shards(&e, b).iter().all(|n| n.matches('.').count() == 2)));
    // ls shows each file's layout, JSON its rule too.
    let o = run(&["ls", "--config", &cfg, "/src"]);
    let table = stdout(&o);
    let line = |n: &str| {
        table
            .lines()
            .find(|l| l.ends_with(n))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("notes.txt").contains(" 2 copies "), "{table}");
    assert!(line("disk.img").contains(" ec:2+2 "), "{table}");
    let o = run(&["ls", "--config", &cfg, "--json", "/src/notes.txt"]);
    assert!(stdout(&o).contains("\"rule\": \"text\""), "{}", stdout(&o));
    // Status names each rule, what it survives, and that the four folders
    // share one disk without saying so.
    let o = run(&["status", "--config", &cfg]);
    let out = stdout(&o);
    assert!(
        out.contains("rule text: 2 copies over b, a; survives any 1 backend"),
        "{out}"
    );
    assert!(
        out.contains("rule default: ec:2+2 over a, b, c, d; survives any 2 backends"),
        "{out}"
    );
    assert!(
        out.contains("backends a, b, c, d are in one filesystem"),
        "{out}"
    );
    // Both read back, and losing c and d loses nothing of the text file.
    let out = e.p("out");
    std::fs::create_dir(&out).unwrap();
    let o = run(&["get", "--config", &cfg, "/src", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    common::assert_same_tree(Path::new(&src), &Path::new(&out).join("src"));
    std::fs::rename(e.p("c"), e.p("c-gone")).unwrap();
    std::fs::rename(e.p("d"), e.p("d-gone")).unwrap();
    let o = run(&["get", "--config", &cfg, "/src/notes.txt", &e.p("again.txt")]);
    assert!(
        o.status.success(),
        "the text file lives on a and b: {}",
        stderr(&o)
    );
}

#[test]
fn a_file_written_through_the_mount_goes_where_its_rule_says() {
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let (cfg, mp) = mounted(&e);
    let data = common::bytes(3, 500_000);
    std::fs::create_dir(Path::new(&mp).join("docs")).unwrap();
    std::fs::write(Path::new(&mp).join("docs/report.txt"), &data).unwrap();
    let text = counts(&e, "1-1");
    assert!(
        text[0] >= 4 && text[0] == text[1] && text[2] + text[3] == 0,
        "{text:?}"
    );
    let o = run(&["umount", &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["mount", "--config", &cfg, &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(Path::new(&mp).join("docs/report.txt")).unwrap() == data);
    let o = run(&["umount", &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The config of `volume` with its default rule turned from ec:2+2 over the
/// four folders into 2 copies on c and d.
fn default_to_two_copies(cfg: &str) {
    let text = std::fs::read_to_string(cfg).unwrap().replace(
        "name = \"default\"\nlayout = \"ec:2+2\"",
        "name = \"default\"\nlayout = \"replicate:2\"\nbackends = [\"c\", \"d\"]",
    );
    assert!(text.contains("backends = [\"c\", \"d\"]"));
    std::fs::write(cfg, text).unwrap();
}

#[test]
fn policy_apply_moves_stored_files_into_the_new_rules() {
    let e = Env::new();
    let cfg = volume(&e);
    let src = e.p("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(Path::new(&src).join("disk.img"), common::bytes(4, 400_000)).unwrap();
    std::fs::write(Path::new(&src).join("notes.txt"), common::bytes(5, 100_000)).unwrap();
    let o = run(&["put", "--config", &cfg, &src, "/"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (img, text) = (counts(&e, "2-2"), counts(&e, "1-1"));
    assert!(img.iter().all(|n| *n > 0), "{img:?}");
    default_to_two_copies(&cfg);

    // The plan, and nothing changed.
    let o = run(&["policy", "apply", "--config", &cfg, "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("file /src/disk.img: rule default → default (2 copies)")
            || out.contains("file src/disk.img: rule default → default (2 copies)"),
        "{out}"
    );
    assert!(!out.contains("notes.txt"), "{out}");
    let chunks = img[0] as u64;
    assert!(
        out.contains(&format!("would move {chunks} chunk(s)")),
        "{out}"
    );
    assert!(out.contains("  c: upload"), "{out}");
    assert!(out.contains("  a: upload 0 shard(s)"), "{out}");
    assert!(out.contains("dry run: nothing changed"), "{out}");
    assert_eq!(
        (counts(&e, "2-2"), counts(&e, "1-1")),
        (img.clone(), text.clone())
    );

    // Applied: the image's chunks in two copies on c and d, nothing in 2+2.
    let o = run(&["policy", "apply", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("moved {chunks} chunk(s)")),
        "{}",
        stdout(&o)
    );
    assert_eq!(counts(&e, "2-2"), vec![0, 0, 0, 0]);
    let now = counts(&e, "1-1");
    assert_eq!(now[0] + now[1], text[0] + text[1], "{now:?}");
    assert_eq!((now[2], now[3]), (img[2], img[3]), "{now:?}");
    let out = e.p("out");
    std::fs::create_dir(&out).unwrap();
    let o = run(&["get", "--config", &cfg, "/src", &out]);
    assert!(o.status.success(), "{}", stderr(&o));
    common::assert_same_tree(Path::new(&src), &Path::new(&out).join("src"));

    // A second run has nothing to do.
    let o = run(&["policy", "apply", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));
}

#[test]
fn policy_apply_through_the_mount_while_a_reader_reads() {
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let (cfg, mp) = mounted(&e);
    let data = common::bytes(6, 2_000_000);
    let file = Path::new(&mp).join("disk.img");
    std::fs::write(&file, &data).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, file, data) = (stop.clone(), file.clone(), data.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                assert!(
                    std::fs::read(&file).unwrap() == data,
                    "a read saw other bytes"
                );
                reads += 1;
            }
            reads
        })
    };
    default_to_two_copies(&cfg);
    let o = run(&["policy", "apply", "--config", &cfg]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().expect("the reader failed while shards moved");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(reads > 0);
    assert_eq!(counts(&e, "2-2"), vec![0, 0, 0, 0]);
    let now = counts(&e, "1-1");
    assert!(
        now[2] > 0 && now[2] == now[3] && now[0] + now[1] == 0,
        "{now:?}"
    );
    // The mount places new files by the new rules too.
    std::fs::write(Path::new(&mp).join("new.img"), common::bytes(7, 300_000)).unwrap();
    assert_eq!(counts(&e, "2-2"), vec![0, 0, 0, 0]);
    let o = run(&["umount", &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["mount", "--config", &cfg, &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&file).unwrap() == data);
    let o = run(&["umount", &mp]);
    assert!(o.status.success(), "{}", stderr(&o));
}
