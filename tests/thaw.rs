//! Reads of chunks in an archive class, and `thaw`, over in-memory backends
//! whose shards are archived on purpose (`Fault::Archived`).

mod common;

use cloudraid::data::volume::{Slot, Volume};
use cloudraid::format::VolumeId;
use cloudraid::fs::{Caller, Errno, Fs, FsOptions};
use cloudraid::meta::index::Index;
use cloudraid::meta::{MemMeta, MetaStore};
use cloudraid::store::{open_backend, Backend, Fault, FaultyBackend};
use common::{bytes, read_all, write_file, ROOT};
use std::sync::Arc;

/// A core over `classes.len()` in-memory backends b0, b1... behind fault
/// switches, its chunks placed ec:`k`+`m` by one rule over all of them with
/// shards on backend i in `classes[i]` (an S3 class name).
struct Cold {
    faults: Vec<Arc<FaultyBackend>>,
    meta: Arc<MemMeta>,
    id: VolumeId,
    k: usize,
    m: usize,
    rule: String,
    staging: tempfile::TempDir,
    /// What reading a GB costs per backend and class (`Volume::with_read_costs`).
    costs: std::sync::Mutex<Vec<[u32; 12]>>,
}

impl Cold {
    fn new(k: usize, m: usize, classes: &[&str], archive_only: bool) -> (Cold, Arc<Fs>) {
        let faults = classes
            .iter()
            .map(|_| {
                let inner: Arc<dyn Backend> = Arc::new(
                    open_backend("memory://", &Default::default(), &Default::default()).unwrap(),
                );
                Arc::new(FaultyBackend::new(inner))
            })
            .collect();
        let names: Vec<String> = (0..classes.len()).map(|i| format!("\"b{i}\"")).collect();
        let class_of: Vec<String> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| format!("b{i} = \"{c}\""))
            .collect();
        let rule = format!(
            "[[policy]]\nname = \"cold\"\nlayout = \"ec:{k}+{m}\"\nbackends = [{}]\nstorage_class = {{ {} }}\nallow_archive_only = {archive_only}\n",
            names.join(", "),
            class_of.join(", ")
        );
        let meta = Arc::new(MemMeta::new());
        let id = VolumeId::random();
        let idx = Index::new(meta.clone() as Arc<dyn MetaStore>);
        Fs::format(&idx, id, Caller::default()).unwrap();
        let c = Cold {
            faults,
            meta,
            id,
            k,
            m,
            rule,
            staging: tempfile::tempdir().unwrap(),
            costs: Default::default(),
        };
        let fs = c.open();
        (c, fs)
    }

    /// A fresh core over the same index and backends (empty cache, no memory
    /// of thaws asked: what another process sees).
    fn open(&self) -> Arc<Fs> {
        let policies = common::policy_set(
            self.k,
            self.m,
            self.faults.len(),
            |i| format!("s3://bucket/b{i}"),
            &self.rule,
        );
        let slots = self
            .faults
            .iter()
            .enumerate()
            .map(|(i, f)| Slot {
                name: format!("b{i}"),
                backend: f.clone() as Arc<dyn Backend>,
            })
            .collect();
        let sealer = cloudraid::data::seal::ChunkSealer::encrypted(
            self.id,
            Some(cloudraid::data::keys::Keys::derive(
                &cloudraid::data::keys::Secret32::from_bytes([7; 32]),
                self.id,
            )),
            cloudraid::data::seal::Compression::Zstd(3),
        );
        let layout = cloudraid::data::erasure::Layout::new(self.k, self.m).unwrap();
        let vol = Volume::new(self.id, "test".into(), slots, layout, 64 << 20, sealer)
            .with_policies(policies)
            .with_read_costs(self.costs.lock().unwrap().clone());
        let opts = FsOptions {
            read_only: false,
            staging_dir: self.staging.path().to_path_buf(),
            chunking: cloudraid::data::chunker::Chunking::around(64 << 10),
            upload_concurrency: 3,
            readahead_chunks: 2,
            show_uid: None,
            show_gid: None,
            writer: "test".into(),
        };
        Fs::load(
            Arc::new(vol),
            Index::new(self.meta.clone() as Arc<dyn MetaStore>),
            opts,
        )
        .unwrap()
    }

    fn restores(&self) -> u64 {
        self.faults.iter().map(|f| f.restores()).sum()
    }

    fn archive(&self, i: usize, hold: bool) {
        self.faults[i].set(Fault::Archived);
        self.faults[i].hold_thaws(hold);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn k_instant_shards_never_ask_an_archived_one() {
    // ec:2+1: two instant shards of every chunk, one in DEEP_ARCHIVE.
    let (c, fs) = Cold::new(2, 1, &["STANDARD", "STANDARD_IA", "DEEP_ARCHIVE"], false);
    let data = bytes(1, 600 << 10);
    let ino = write_file(&fs, ROOT, "mixed.bin", &data).await;
    fs.sync_all().await.unwrap();
    c.archive(2, false);
    let fs = c.open();
    let before = c.faults[2].operations();
    assert_eq!(read_all(&fs, ino).await.unwrap(), data);
    assert_eq!(
        c.faults[2].operations(),
        before,
        "the archived backend was asked for a shard"
    );
    assert_eq!(c.restores(), 0);
    // With an instant backend down, the archived shard is needed: the read
    // asks for its thaw (one shard per chunk) and waits for it.
    c.faults[0].set(Fault::Down);
    c.archive(2, true);
    let fs = c.open();
    assert_eq!(read_all(&fs, ino).await.unwrap_err(), Errno::EAGAIN);
    let chunks = fs
        .file_chunks(ino)
        .unwrap()
        .iter()
        .filter(|r| matches!(r, cloudraid::format::ChunkRef::Data { .. }))
        .count() as u64;
    assert!(chunks > 1);
    assert_eq!(c.faults[2].restores(), chunks);
    c.faults[2].hold_thaws(false);
    assert_eq!(read_all(&fs, ino).await.unwrap(), data);
}

/// Among shards readable at once, reads ask the cheaper backends first
/// (egress and retrieval per GB, from the price table).
#[tokio::test(flavor = "multi_thread")]
async fn reads_ask_the_cheapest_shards_first() {
    // Three copies; the first backend in the rule's order costs the most to read.
    let (c, fs) = Cold::new(1, 2, &["STANDARD", "STANDARD", "STANDARD"], false);
    let data = bytes(9, 600 << 10);
    let ino = write_file(&fs, ROOT, "three.bin", &data).await;
    fs.sync_all().await.unwrap();
    // Requests each backend got while a fresh core read the file, with `costs`.
    let asked = |costs: Vec<[u32; 12]>| {
        *c.costs.lock().unwrap() = costs;
        let fs = c.open();
        let before: Vec<u64> = c.faults.iter().map(|f| f.operations()).collect();
        let (data, c) = (&data, &c);
        async move {
            assert_eq!(&read_all(&fs, ino).await.unwrap(), data);
            c.faults
                .iter()
                .zip(&before)
                .map(|(f, b)| f.operations() - b)
                .collect::<Vec<u64>>()
        }
    };
    let n = asked(vec![[120_000; 12], [90_000; 12], [87_000; 12]]).await;
    assert!(
        n[2] > 0 && n[0] == 0 && n[1] == 0,
        "asked per backend: {n:?}"
    );
    // Without prices, the rule's order of preference decides.
    let n = asked(Vec::new()).await;
    assert!(
        n[0] > 0 && n[1] == 0 && n[2] == 0,
        "asked per backend: {n:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archived_chunk_is_thawed_once_and_read_when_thawed() {
    // Every shard in DEEP_ARCHIVE (ec:2+1), thaws that take a while.
    let (c, fs) = Cold::new(2, 1, &["DEEP_ARCHIVE"; 3], true);
    let d = fs
        .mkdir(ROOT, b"cold", 0o755, Caller::default())
        .await
        .unwrap();
    let data = bytes(2, 300 << 10);
    let ino = write_file(&fs, d.ino, "a.cold", &data).await;
    fs.sync_all().await.unwrap();
    let chunks = fs.file_chunks(ino).unwrap().len() as u64;
    for i in 0..3 {
        c.archive(i, true);
    }
    let fs = c.open();
    // The first read fails with EAGAIN and asks for the thaw of k shards of
    // every chunk of the file, no more.
    assert_eq!(read_all(&fs, ino).await.unwrap_err(), Errno::EAGAIN);
    assert_eq!(c.restores(), 2 * chunks);
    let note = fs.thaw_note(ino).unwrap();
    assert!(
        note.contains("/cold/a.cold")
            && note.contains("a thaw was requested, expected in up to 12 hours"),
        "{note}"
    );
    // Reads while the thaw runs fail the same, and ask for nothing new: not
    // this core (it remembers), nor another one (the provider says "in progress").
    assert_eq!(read_all(&fs, ino).await.unwrap_err(), Errno::EAGAIN);
    let other = c.open();
    assert_eq!(read_all(&other, ino).await.unwrap_err(), Errno::EAGAIN);
    assert_eq!(c.restores(), 2 * chunks);
    assert!(other.thaw_note(ino).unwrap().contains("in progress"));
    // `get` says it in one line.
    let out = tempfile::tempdir().unwrap();
    let r = cloudraid::front::ops::get(&other, &["/cold".into()], out.path(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(
        r.errors[0].contains("is in an archive class; its thaw is in progress"),
        "{:?}",
        r.errors
    );
    // Once thawed, the file reads.
    for f in &c.faults {
        f.hold_thaws(false);
    }
    assert_eq!(read_all(&fs, ino).await.unwrap(), data);
    assert_eq!(c.restores(), 2 * chunks);
}

#[tokio::test(flavor = "multi_thread")]
async fn thaw_asks_once_for_a_tree_and_says_where_it_stands() {
    let (c, fs) = Cold::new(
        2,
        2,
        &["DEEP_ARCHIVE", "DEEP_ARCHIVE", "GLACIER", "GLACIER"],
        true,
    );
    let d = fs
        .mkdir(ROOT, b"cold", 0o755, Caller::default())
        .await
        .unwrap();
    let a = bytes(3, 200 << 10);
    write_file(&fs, d.ino, "a.cold", &a).await;
    write_file(&fs, d.ino, "b.cold", &bytes(4, 100 << 10)).await;
    fs.sync_all().await.unwrap();
    for i in 0..4 {
        c.archive(i, true);
    }
    let thaw = |fs: Arc<Fs>| async move {
        cloudraid::front::ops::thaw(&fs, &["/".into()], "bulk", 3)
            .await
            .unwrap()
    };
    let r = thaw(c.open()).await;
    assert_eq!((r.files, r.instant, r.thawing.len()), (2, 0, 2), "{r:?}");
    assert!(r.thawing.iter().all(|f| f.state == "requested"), "{r:?}");
    let chunks: usize = r.thawing.iter().map(|f| f.chunks).sum();
    assert_eq!(r.requested, 2 * chunks);
    assert_eq!(c.restores() as usize, 2 * chunks);
    // GLACIER thaws faster than DEEP_ARCHIVE: only those were asked (bulk:
    // 5-12 hours), never the DEEP_ARCHIVE shards.
    assert_eq!(c.faults[0].restores() + c.faults[1].restores(), 0);
    assert_eq!(r.wait.as_deref(), Some("5-12 hours"));
    let shown = cloudraid::front::ops::render_thaw(&r);
    assert!(
        shown.contains("/cold/a.cold: thaw requested for"),
        "{shown}"
    );
    // A second run (another process) finds them in progress and sends nothing.
    let r = thaw(c.open()).await;
    assert!(r.thawing.iter().all(|f| f.state == "in_progress"), "{r:?}");
    assert_eq!((r.requested, r.in_progress), (0, 2 * chunks));
    assert!(cloudraid::front::ops::render_thaw(&r).contains("nothing new requested"));
    assert_eq!(c.restores() as usize, 2 * chunks);
    // Thawed: readable, and `thaw` says so.
    for f in &c.faults {
        f.hold_thaws(false);
    }
    let fs = c.open();
    let r = thaw(fs.clone()).await;
    assert!(r.thawing.iter().all(|f| f.state == "readable"), "{r:?}");
    let ino = fs.lookup(d.ino, b"a.cold").await.unwrap().ino;
    assert_eq!(read_all(&fs, ino).await.unwrap(), a);
    assert_eq!(c.restores() as usize, 2 * chunks);
}
