//! Deduplication as a backup user sees it, through the mount: the same large file
//! copied in twice costs (almost) nothing the second time, and a file with one
//! byte inserted at its start stores only a handful of new chunks. The figures
//! come from `cloudraid status`.

mod common;

use common::{can_mount, mounted_volume, run, stderr, stdout, Env};

fn status(cfg: &str) -> serde_json::Value {
    let o = run(&["status", "--config", cfg, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn num(s: &serde_json::Value, k: &str) -> u64 {
    s[k].as_u64()
        .unwrap_or_else(|| panic!("status has no {k}: {s}"))
}

#[test]
fn copies_and_shifted_versions_are_stored_once() {
    if !can_mount() {
        return;
    }
    let e = Env::new();
    // Default chunking (content-defined around 1 MiB), encrypted and compressed.
    let (cfg, mp) = mounted_volume(&e, &["--cache-size", "64MiB"]);
    let data = common::bytes(21, 256 << 20);
    let src = e.base.join("original.bin");
    std::fs::write(&src, &data).unwrap();

    std::fs::copy(&src, format!("{mp}/first.bin")).unwrap();
    let one = status(&cfg);
    assert_eq!(num(&one, "logical_bytes"), 256 << 20);
    let stored_one = num(&one, "stored_bytes");

    // The same bytes under another name: stored bytes grow by less than 1 %.
    std::fs::copy(&src, format!("{mp}/second.bin")).unwrap();
    let two = status(&cfg);
    assert_eq!(num(&two, "logical_bytes"), 512 << 20);
    let growth = num(&two, "stored_bytes") - stored_one;
    assert!(
        growth * 100 < stored_one,
        "a second copy added {growth} bytes to {stored_one}"
    );
    assert_eq!(num(&two, "chunks"), num(&one, "chunks"));

    // One byte inserted at the start: only the chunks around it are new.
    let mut shifted = vec![0x42u8];
    shifted.extend_from_slice(&data);
    let src2 = e.base.join("shifted.bin");
    std::fs::write(&src2, &shifted).unwrap();
    std::fs::copy(&src2, format!("{mp}/shifted.bin")).unwrap();
    let three = status(&cfg);
    let new_chunks = num(&three, "chunks") - num(&two, "chunks");
    assert!(
        new_chunks <= 3,
        "{new_chunks} new chunks for one inserted byte (of {})",
        num(&two, "chunks")
    );
    // The human-readable status says what deduplication saved.
    let text = stdout(&run(&["status", "--config", &cfg]));
    assert!(text.contains("% of logical after deduplication"), "{text}");
    // Everything reads back.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    assert!(std::fs::read(format!("{mp}/second.bin")).unwrap() == data);
    assert!(std::fs::read(format!("{mp}/shifted.bin")).unwrap() == shifted);
    assert!(run(&["umount", &mp]).status.success());
}

/// The same content stored twice at the same time (two puts through the mount
/// daemon): its chunks are in flight in both at once, and each must be uploaded
/// once (two uploads of one chunk would seal it twice, with different nonces,
/// and mix their shards).
#[test]
fn identical_chunks_in_flight_at_once_are_stored_once() {
    if !can_mount() {
        return;
    }
    let e = Env::new();
    let (cfg, mp) = mounted_volume(
        &e,
        &[
            "--data-shards",
            "2",
            "--parity-shards",
            "1",
            "--chunk-size",
            "64KiB",
        ],
    );
    let data = common::bytes(31, 32 << 20);
    let local = e.base.join("same.bin");
    std::fs::write(&local, &data).unwrap();
    for round in 0..3 {
        let (x, y) = (format!("/x{round}"), format!("/y{round}"));
        common::puts_at_once(&cfg, &[(&local, &x), (&local, &y)]);
        let o = run(&["scrub", "--config", &cfg]);
        assert!(o.status.success(), "round {round}: {}", stdout(&o));
        for n in ["x", "y"] {
            assert!(std::fs::read(format!("{mp}/{n}{round}")).unwrap() == data);
        }
        // The next round uploads everything again.
        let o = run(&[
            "rm",
            "--config",
            &cfg,
            &format!("/x{round}"),
            &format!("/y{round}"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let _ = run(&["sync", "--config", &cfg]);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(run(&["umount", &mp]).status.success());
}
