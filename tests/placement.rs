//! Stored chunks moved by a rule change: a chunk re-placed (its bytes kept,
//! its old shards gone once its record names the new ones), a crash between
//! the upload and the switch, dedup across rules, and `policy_apply`.

mod common;

use cloudraid::format::{ChunkId, ChunkRecord, ChunkRef};
use cloudraid::fs::Fs;
use cloudraid::meta::index::ROOT_INO;
use cloudraid::policy::rules::PolicySet;
use cloudraid::store::Backend;
use common::{bytes, read_all, volume, write_file, TestVolume};
use std::sync::Arc;
use std::time::Duration;

/// Text files in 2 copies on b2 and b3; everything else ec:2+2 over all four.
const RULES: &str = r#"
[[policy]]
name = "text"
match = { extensions = ["txt"] }
layout = "replicate:2"
backends = ["b2", "b3"]

[[policy]]
name = "default"
layout = "ec:2+2"
"#;

/// The rules above compiled for four backends b0..b3 (the test volume's slots).
fn rules(policies: &str) -> PolicySet {
    common::policy_set(2, 2, 4, |i| format!("file:///mnt/b{i}"), policies)
}

fn chunks_of(fs: &Fs, ino: u64) -> Vec<(ChunkId, ChunkRecord)> {
    fs.index()
        .content(ino)
        .unwrap()
        .unwrap()
        .chunks
        .iter()
        .filter_map(|c| match c {
            ChunkRef::Data { id, .. } => Some((*id, fs.index().chunk(id).unwrap().unwrap())),
            ChunkRef::Hole { .. } => None,
        })
        .collect()
}

/// Shard keys stored on backend `i`.
async fn keys_on(v: &TestVolume, i: usize) -> Vec<String> {
    v.faults[i]
        .list("chunks")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

async fn all_keys(v: &TestVolume) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for i in 0..v.faults.len() {
        out.push(keys_on(v, i).await);
    }
    out
}

fn noop(_: u64, _: u64) {}

#[tokio::test]
async fn apply_moves_a_file_into_its_new_rule_and_keeps_its_bytes() {
    let v = volume(2, 2, 4, 64 << 10);
    let data = bytes(1, 300_000);
    let ino = write_file(&v.fs, ROOT_INO, "notes.txt", &data).await;
    // Before rules: 2+2 over the four backends, keys without a layout.
    let before = chunks_of(&v.fs, ino);
    assert!(before.len() > 1);
    assert!(before.iter().all(|(_, r)| (r.k, r.m) == (2, 2)));
    let set = Arc::new(rules(RULES));

    let plan = v.fs.policy_apply(&set, true, &noop).await.unwrap();
    assert_eq!(plan.chunks_to_move, before.len() as u64);
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].to, "text");
    // b2 and b3 get one copy of each chunk; every old shard goes.
    let up: Vec<u64> = plan.backends.iter().map(|b| b.upload_shards).collect();
    assert_eq!(up, vec![0, 0, before.len() as u64, before.len() as u64]);
    let del: u64 = plan.backends.iter().map(|b| b.delete_shards).sum();
    assert_eq!(del, 4 * before.len() as u64);
    // A dry run changes nothing.
    assert_eq!(chunks_of(&v.fs, ino), before);

    v.fs.volume().set_policies(set.clone());
    let done = v.fs.policy_apply(&set, false, &noop).await.unwrap();
    assert_eq!(done.chunks_moved, before.len() as u64);
    assert_eq!(done.files_updated, 1);
    assert!(done.failed.is_empty());
    let after = chunks_of(&v.fs, ino);
    for ((id, old), (id2, new)) in before.iter().zip(&after) {
        assert_eq!(id, id2);
        assert_eq!((new.k, new.m), (1, 1));
        assert_eq!(new.placement.len(), 2);
        assert!(new.placement.iter().all(|s| *s == 2 || *s == 3));
        assert_eq!(new.refs, old.refs);
        assert_eq!(new.sealed_len, old.sealed_len);
    }
    let keys = all_keys(&v).await;
    assert!(keys[0].is_empty() && keys[1].is_empty(), "{keys:?}");
    for k in &keys[2..] {
        assert_eq!(k.len(), before.len());
        assert!(k.iter().all(|k| k.contains(".1-1.")), "{k:?}");
    }
    let content = v.fs.index().content(ino).unwrap().unwrap();
    assert_eq!(content.rule.as_deref(), Some("text"));
    assert_eq!((content.k, content.m), (1, 1));
    // Read from the new shards (not the cache).
    let fresh = v.reopen(false);
    assert_eq!(read_all(&fresh, ino).await.unwrap(), data);
    // Again: nothing to do.
    let again = fresh.policy_apply(&set, false, &noop).await.unwrap();
    assert_eq!((again.chunks_to_move, again.files.len()), (0, 0));
}

#[tokio::test]
async fn a_crash_between_upload_and_switch_leaves_the_old_placement_and_orphans() {
    let v = volume(2, 2, 4, 64 << 10);
    let data = bytes(2, 200_000);
    let ino = write_file(&v.fs, ROOT_INO, "notes.txt", &data).await;
    let before = chunks_of(&v.fs, ino);
    let old_keys = all_keys(&v).await;
    let set = rules(RULES);
    let text = set.by_name("text").unwrap();
    // The upload step alone, as if the process died before the switch.
    for (id, rec) in &before {
        let new = v.fs.volume().replace_chunk(*id, rec, text).await.unwrap();
        assert_eq!((new.k, new.m), (1, 1));
    }
    assert_eq!(chunks_of(&v.fs, ino), before);
    let keys = all_keys(&v).await;
    for (old, now) in old_keys.iter().zip(&keys) {
        assert!(old.iter().all(|k| now.contains(k)), "old shard gone");
    }
    let fresh = v.reopen(false);
    assert_eq!(read_all(&fresh, ino).await.unwrap(), data);
    // The new shards are orphans to fsck: young ones left alone...
    let r = fresh.fsck(false, Duration::from_secs(3600)).await.unwrap();
    assert_eq!(r.recent_orphans, 2 * before.len() as u64);
    assert!(r.clean(), "{:?}", r.problems);
    // ...older ones deleted by repair, and the file still reads.
    let r = fresh.fsck(true, Duration::ZERO).await.unwrap();
    assert_eq!(r.problems.len(), 2 * before.len(), "{:?}", r.problems);
    assert_eq!(all_keys(&v).await, old_keys);
    let fresh = v.reopen(false);
    assert_eq!(read_all(&fresh, ino).await.unwrap(), data);
}

#[tokio::test]
async fn a_chunk_shared_across_rules_takes_the_stronger_placement() {
    let v = volume(2, 2, 4, 64 << 10);
    v.fs.volume().set_policies(Arc::new(rules(RULES)));
    let data = bytes(3, 150_000);
    let t = write_file(&v.fs, ROOT_INO, "a.txt", &data).await;
    let as_text = chunks_of(&v.fs, t);
    assert!(as_text.iter().all(|(_, r)| (r.k, r.m) == (1, 1)));
    // The same bytes under the default rule (ec:2+2 survives more): the
    // shared chunks are re-placed so.
    let b = write_file(&v.fs, ROOT_INO, "b.bin", &data).await;
    let shared = chunks_of(&v.fs, b);
    assert_eq!(
        shared.iter().map(|c| c.0).collect::<Vec<_>>(),
        as_text.iter().map(|c| c.0).collect::<Vec<_>>()
    );
    for (_, r) in &shared {
        assert_eq!((r.k, r.m, r.placement.len()), (2, 2, 4));
        assert_eq!(r.refs, 2);
    }
    assert_eq!(chunks_of(&v.fs, t), shared);
    let keys = all_keys(&v).await;
    assert!(
        keys.iter().flatten().all(|k| !k.contains(".1-1.")),
        "{keys:?}"
    );
    // A third file of the weaker rule leaves them as they are.
    let c = write_file(&v.fs, ROOT_INO, "c.txt", &data).await;
    assert!(chunks_of(&v.fs, c)
        .iter()
        .all(|(_, r)| (r.k, r.m) == (2, 2)));
    let fresh = v.reopen(false);
    for ino in [t, b, c] {
        assert_eq!(read_all(&fresh, ino).await.unwrap(), data);
    }
    // apply agrees: the strongest rule of their files is where they are.
    let set = rules(RULES);
    let r = fresh.policy_apply(&set, true, &noop).await.unwrap();
    assert_eq!(r.chunks_to_move, 0, "{r:?}");
}
