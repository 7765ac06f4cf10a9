//! The data plane of a volume: its backends, and the two pipelines for one chunk.
//!
//! write: chunk → seal (compress, encrypt) → encode (k+m shard objects) →
//!        upload, one shard per backend.
//! read:  cache → fetch any k shards (data shards first, parity on failure) →
//!        verify each shard → decode → open (decrypt, decompress, check the id)
//!        → cache. A sealed chunk that does not open (a shard altered with a
//!        valid checksum) is rebuilt from other shards.
//!
//! Inline chunks (plaintext of at most `inline_max` bytes) skip the shards: the
//! sealed chunk is kept in the chunk's record in the index, and read from it.

use crate::data::cache::ChunkCache;
use crate::data::erasure::{self, CodecError, Layout};
use crate::data::seal::{ChunkSealer, SealError};
use crate::format::{ChunkId, ChunkRecord, VolumeId, MARKER_KEY, SHARD_HEADER_LEN};
use crate::policy::class::StorageClass;
use crate::policy::rules::{PolicySet, Rule};
use crate::store::health::Health;
use crate::store::{DynBackend, StoreError, StoreResult};
use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

mod thaw;
pub use thaw::{longer_wait, ChunkThaw, ThawSettings, DEFAULT_THAW_DAYS};

/// Inline chunks up to this many bytes are sealed on the calling task rather
/// than on the blocking pool.
const INLINE_SEAL_HERE: usize = 16 << 10;

pub mod replace;

/// One backend of the volume, at a fixed slot number (its position in the
/// config's backend list, recorded in every chunk's placement).
#[derive(Clone, Debug)]
pub struct Slot {
    pub name: String,
    pub backend: DynBackend,
}

/// Why a shard could not be used: which backend, and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardFailure {
    pub index: usize,
    pub backend: String,
    pub reason: String,
}

fn list_failures(f: &[ShardFailure]) -> String {
    f.iter()
        .map(|x| format!("shard {} on {}: {}", x.index, x.backend, x.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum VolumeError {
    #[error("chunk {chunk}: only {have} of the {need} shards needed could be read ({})", list_failures(.failures))]
    NotEnoughShards {
        chunk: ChunkId,
        have: usize,
        need: usize,
        failures: Vec<ShardFailure>,
    },
    #[error("chunk {chunk}: upload failed: {stored} of {total} shards stored, {needed} needed ({})", list_failures(.failures))]
    UploadFailed {
        chunk: ChunkId,
        stored: usize,
        total: usize,
        needed: usize,
        failures: Vec<ShardFailure>,
    },
    #[error("stored shards could not be made durable ({})", list_failures(.failures))]
    FlushFailed { failures: Vec<ShardFailure> },
    /// Too few shards are readable without a thaw: `archived` more are in an
    /// archive class (see `thaw_chunk`). The FUSE adapter answers EAGAIN.
    #[error("chunk {chunk}: {archived} of its shards are in an archive class and only {have} of the {need} needed can be read without a thaw: request one (`cloudraid thaw PATH`) and read again once it completes")]
    NeedsThaw {
        chunk: ChunkId,
        have: usize,
        archived: usize,
        need: usize,
    },
    #[error("chunk {chunk}: {source}")]
    Codec { chunk: ChunkId, source: CodecError },
    #[error("chunk {chunk}, kept in the index (an inline chunk): {source}; it has no shards to be rebuilt from: `cloudraid scrub` names the files holding it")]
    InlineDamaged { chunk: ChunkId, source: SealError },
    #[error("chunk {chunk}: {source}{}", if .failures.is_empty() { String::new() } else { format!(" ({})", list_failures(.failures)) })]
    Sealed {
        chunk: ChunkId,
        source: SealError,
        failures: Vec<ShardFailure>,
    },
}

type SharedFetch = Shared<BoxFuture<'static, Result<Bytes, VolumeError>>>;

/// The last write that could not store its quorum of shards (shown by status
/// until a later write succeeds).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct WriteFailure {
    /// Seconds since the epoch.
    pub at: u64,
    pub stored: usize,
    pub total: usize,
    pub needed: usize,
    /// The backends that failed, each with its reason.
    pub failed: Vec<(String, String)>,
}

pub struct Volume {
    pub id: VolumeId,
    pub name: String,
    pub slots: Vec<Slot>,
    /// The redundancy `[volume]` gives (that of the default rule of a volume
    /// without rules).
    pub layout: Layout,
    /// Where each file's chunks go (`[[policy]]`); replaced by `policy apply`
    /// on a mounted volume ([`Volume::policies`]).
    policies: std::sync::RwLock<Arc<PolicySet>>,
    pub cache: ChunkCache,
    /// Circuit breaker and latencies, one per slot.
    pub health: Vec<Health>,
    /// Shards that must be stored for a write to succeed (k ≤ quorum ≤ k+m).
    pub write_quorum: usize,
    /// Seals and opens chunks: compression, encryption, chunk ids.
    pub sealer: ChunkSealer,
    /// Chunks of at most this many plaintext bytes are stored inline (sealed, in
    /// their index record) rather than as shards; 0: never.
    pub inline_max: usize,
    inflight: Mutex<HashMap<ChunkId, SharedFetch>>,
    /// Per slot and class code: what reading a GB costs (`with_read_costs`).
    read_costs: Vec<[u32; 12]>,
    last_write_failure: Mutex<Option<WriteFailure>>,
    /// Per slot: shards stored by `store_chunk` and not yet flushed to disk.
    flushes: Vec<SlotFlush>,
    /// Bytes of shards stored unflushed since the last background flush.
    unflushed: std::sync::atomic::AtomicU64,
    /// How reads ask for thaws of archived shards.
    pub thaw: ThawSettings,
    /// Thaws asked for lately (see `thaw.rs`).
    thaws: thaw::Asked,
}

/// Shard bytes stored without a flush after which a flush starts in the
/// background, so the disks write while a large file is still being written
/// (instead of all of it at the commit).
const FLUSH_EVERY: u64 = 128 << 20;

/// Shards a slot has stored with `put_unsynced`, and how many of them a
/// completed `sync` covers. Counts, so that a flush that started before a
/// shard was stored is never taken for one that covers it.
#[derive(Default)]
struct SlotFlush {
    stored: std::sync::atomic::AtomicU64,
    synced: std::sync::atomic::AtomicU64,
    one: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Volume({} {})", self.name, self.id)
    }
}

impl Volume {
    pub fn new(
        id: VolumeId,
        name: String,
        slots: Vec<Slot>,
        layout: Layout,
        cache_bytes: u64,
        sealer: ChunkSealer,
    ) -> Self {
        assert!(!slots.is_empty());
        let n_slots = slots.len();
        Volume {
            id,
            name,
            policies: std::sync::RwLock::new(Arc::new(PolicySet::uniform(layout, slots.len()))),
            slots,
            layout,
            cache: ChunkCache::new(cache_bytes),
            health: (0..n_slots).map(|_| Health::default()).collect(),
            write_quorum: crate::config::default_write_quorum(layout.k, layout.m),
            sealer,
            inline_max: 0,
            inflight: Mutex::new(HashMap::new()),
            read_costs: Vec::new(),
            last_write_failure: Mutex::new(None),
            flushes: (0..n_slots).map(|_| SlotFlush::default()).collect(),
            unflushed: std::sync::atomic::AtomicU64::new(0),
            thaw: ThawSettings::default(),
            thaws: Default::default(),
        }
    }

    /// The write quorum of chunks of `layout`: the configured one, within k..=k+m.
    pub fn quorum_for(&self, layout: Layout) -> usize {
        self.write_quorum.clamp(layout.k, layout.total())
    }

    /// The last write that could not reach its quorum, unless one succeeded since.
    pub fn last_write_failure(&self) -> Option<WriteFailure> {
        self.last_write_failure.lock().unwrap().clone()
    }

    /// Keeps chunks of at most `bytes` plaintext bytes inline (0: none).
    pub fn with_inline_max(mut self, bytes: usize) -> Self {
        self.inline_max = bytes;
        self
    }

    /// Places chunks by these rules (compiled from the config) instead of
    /// `layout` over every backend.
    pub fn with_policies(self, policies: PolicySet) -> Self {
        self.set_policies(Arc::new(policies));
        self
    }

    /// The rules that place chunks now.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies.read().unwrap().clone()
    }

    /// Places the chunks stored from now on by `policies` (`policy apply`).
    pub fn set_policies(&self, policies: Arc<PolicySet>) {
        *self.policies.write().unwrap() = policies;
    }

    /// Sets the write quorum (clamped to k..=k+m when used).
    pub fn with_write_quorum(mut self, quorum: usize) -> Self {
        self.write_quorum = quorum;
        self
    }

    fn slot(&self, s: u16) -> &Slot {
        &self.slots[s as usize % self.slots.len()]
    }

    /// Where shard `i` of a chunk comes in the order its shards are asked
    /// for (lowest first; ties keep the shard order: data shards first):
    /// instantly readable shards, then shards in an archive class (they fail
    /// until thawed, so a chunk with k instant shards never waits for one),
    /// then shards on backends marked down (they would fail at once, each
    /// with a warning); among equals, the cheaper to read (egress and
    /// retrieval per GB), then the rule's order of preference. Slow backends
    /// are left to hedging.
    fn read_rank(&self, rec: &ChunkRecord, i: usize) -> impl Ord {
        let slot = rec.placement[i] as usize % self.slots.len();
        let down = self.health[slot].is_down();
        let class = thaw::shard_class(rec, i);
        let cost = self
            .read_costs
            .get(slot)
            .map_or(0, |c| c[class.code() as usize % c.len()]);
        (down, !class.instant(), cost)
    }

    /// What reading a GB costs from each slot, per storage class code (egress
    /// plus retrieval fee, in millionths of the price table's currency): reads
    /// ask the cheaper shards first (see `read_rank`).
    pub fn with_read_costs(mut self, costs: Vec<[u32; 12]>) -> Self {
        self.read_costs = costs;
        self
    }

    /// Runs one request to backend slot `s` through its circuit breaker: a backend
    /// marked down fails at once; otherwise the outcome and latency are recorded.
    async fn guarded<T>(
        &self,
        s: u16,
        op: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let i = s as usize % self.slots.len();
        let h = &self.health[i];
        if h.is_down() {
            return Err(StoreError::Unavailable(
                "marked down after repeated failures; skipped until it answers again".into(),
            ));
        }
        let t = std::time::Instant::now();
        let r = op.await;
        match &r {
            // An archived object (a class that needs a thaw) is an answer of
            // a healthy backend, not a failure.
            Ok(_)
            | Err(StoreError::NotFound(_))
            | Err(StoreError::AlreadyExists(_))
            | Err(StoreError::Archived(_)) => h.record_ok(t.elapsed()),
            Err(e) => {
                if h.record_failure(&e.to_string()) {
                    tracing::warn!(
                        "backend {} marked down after {} failures in a row ({e}); reads use parity shards until it answers again",
                        self.slots[i].name,
                        crate::store::health::TRIP_AFTER
                    );
                }
            }
        }
        r
    }

    /// The slots of the backends marked down now.
    pub fn down_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| self.health[*i].is_down())
            .collect()
    }

    /// The names of the backends marked down now (for messages).
    pub fn down_names(&self) -> Vec<String> {
        self.down_slots()
            .into_iter()
            .map(|i| self.slots[i].name.clone())
            .collect()
    }

    /// Asks every backend marked down for the volume marker; those that answer (with
    /// or without it) are marked up again. Returns the names of the backends that came back.
    pub async fn probe_down_backends(&self) -> Vec<String> {
        let mut back = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if !self.health[i].is_down() {
                continue;
            }
            if self.probe(i).await.is_ok() {
                self.health[i].mark_up();
                tracing::info!("backend {} answers again and is marked up", slot.name);
                back.push(slot.name.clone());
            }
        }
        back
    }

    /// What the periodic check does: backends marked down are asked whether
    /// they answer again (see [`Self::probe_down_backends`]), and suspect ones
    /// (a read overtook one of their requests before their latency was known)
    /// are marked down if they do not answer in time. Returns the backends
    /// marked up.
    pub async fn probe_backends(&self) -> Vec<String> {
        let back = self.probe_down_backends().await;
        for (i, slot) in self.slots.iter().enumerate() {
            if !self.health[i].is_suspect() {
                continue;
            }
            match self.probe(i).await {
                Ok(()) => self.health[i].mark_up(),
                Err(why) => {
                    self.health[i].mark_down(&why);
                    tracing::warn!(
                        "backend {} marked down: {why}; reads use parity shards until it answers again",
                        slot.name
                    );
                }
            }
        }
        back
    }

    /// Asks backend `i` for the volume marker, for at most 5 s.
    async fn probe(&self, i: usize) -> Result<(), String> {
        let wait = std::time::Duration::from_secs(5);
        match tokio::time::timeout(wait, self.slots[i].backend.head(MARKER_KEY)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("its check failed: {e}")),
            Err(_) => Err(format!("no answer to a check in {} s", wait.as_secs())),
        }
    }

    /// Probes backends marked down every `every`, for as long as the volume lives.
    pub fn spawn_prober(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(vol) = weak.upgrade() else { return };
                vol.probe_backends().await;
            }
        })
    }

    /// Seals a chunk (plaintext `data`, id `id`), encodes it and uploads its k+m
    /// shards in parallel. Succeeds when at least the write quorum of shards is
    /// stored, and returns the record (with no references yet) and the shards
    /// that could not be written. A chunk of at most `inline_max` bytes is only
    /// sealed: its record holds the sealed bytes, nothing is uploaded.
    pub async fn store_chunk(
        &self,
        id: ChunkId,
        data: Bytes,
        rule: &Rule,
    ) -> Result<(ChunkRecord, Vec<usize>), VolumeError> {
        let layout = rule.layout;
        if !data.is_empty() && data.len() <= self.inline_max {
            let (sealer, plain_len) = (self.sealer.clone(), data.len() as u32);
            // Up to 16 KiB seals in tens of microseconds: less than handing it to
            // the blocking pool and back (two thread switches per small file).
            let sealed = if data.len() <= INLINE_SEAL_HERE {
                sealer.seal(&id, &data)
            } else {
                tokio::task::spawn_blocking(move || sealer.seal(&id, &data))
                    .await
                    .expect("sealing task panicked")
            }
            .map_err(|source| VolumeError::Sealed {
                chunk: id,
                source,
                failures: Vec::new(),
            })?;
            return Ok((ChunkRecord::inline(plain_len, sealed), Vec::new()));
        }
        let placed = rule.place(&id);
        let len = data.len();
        let (vol, sealer) = (self.id, self.sealer.clone());
        let (sealed_len, objects) = tokio::task::spawn_blocking(move || {
            let blob = sealer
                .seal(&id, &data)
                .map_err(|source| VolumeError::Sealed {
                    chunk: id,
                    source,
                    failures: Vec::new(),
                })?;
            let objects = erasure::encode(vol, id, &blob, layout)
                .map_err(|source| VolumeError::Codec { chunk: id, source })?;
            Ok::<_, VolumeError>((blob.len(), objects))
        })
        .await
        .expect("sealing task panicked")?;
        let rec = ChunkRecord {
            refs: 0,
            len: len as u32,
            sealed_len: sealed_len as u32,
            k: layout.k as u8,
            m: layout.m as u8,
            shard_size: layout.shard_object_len(sealed_len) as u32,
            placement: placed.slots,
            inline: None,
            // The rule of a volume without rules keeps the records and keys
            // chunks always had (every shard in the standard class).
            classes: if rule.legacy {
                Vec::new()
            } else {
                placed.classes.iter().map(|c| c.code()).collect()
            },
        };
        let failures = self
            .put_shards(id, &rec, &objects, 0..objects.len(), false)
            .await;
        for f in &failures {
            tracing::warn!(chunk = %id, backend = %f.backend, "shard upload failed: {}", f.reason);
        }
        let quorum = self.quorum_for(layout);
        let stored = layout.total() - failures.len();
        if stored < quorum {
            let mut failed: Vec<(String, String)> = Vec::new();
            for f in &failures {
                if !failed.iter().any(|(b, _)| *b == f.backend) {
                    failed.push((f.backend.clone(), f.reason.clone()));
                }
            }
            tracing::error!(
                "writes blocked: chunk {id} stored on {stored} of {} backends, {quorum} needed (write_quorum); failed: {}",
                layout.total(),
                failed.iter().map(|(b, r)| format!("{b} ({r})")).collect::<Vec<_>>().join(", ")
            );
            *self.last_write_failure.lock().unwrap() = Some(WriteFailure {
                at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                stored,
                total: layout.total(),
                needed: quorum,
                failed,
            });
            return Err(VolumeError::UploadFailed {
                chunk: id,
                stored,
                total: layout.total(),
                needed: quorum,
                failures,
            });
        }
        *self.last_write_failure.lock().unwrap() = None;
        let missing = failures.iter().map(|f| f.index).collect();
        Ok((rec, missing))
    }

    /// The chunk's bytes, from the cache or rebuilt from any k shards. Concurrent
    /// callers for the same chunk share one fetch. An inline chunk is opened from
    /// its record (no backend, no cache: opening a few KiB costs microseconds).
    pub async fn load_chunk(
        self: &Arc<Self>,
        id: ChunkId,
        rec: &ChunkRecord,
    ) -> Result<Bytes, VolumeError> {
        if let Some(sealed) = &rec.inline {
            return self.open_inline(id, sealed, rec.len).map(Bytes::from);
        }
        if let Some(b) = self.cache.get(&id) {
            return Ok(b);
        }
        let fut = {
            let mut inflight = self.inflight.lock().unwrap();
            match inflight.get(&id) {
                Some(f) => f.clone(),
                None => {
                    let this = self.clone();
                    let rec = rec.clone();
                    let f = async move {
                        let r = this.fetch_chunk(id, &rec).await;
                        if let Ok(b) = &r {
                            this.cache.insert(id, b.clone());
                        }
                        this.inflight.lock().unwrap().remove(&id);
                        r
                    }
                    .boxed()
                    .shared();
                    inflight.insert(id, f.clone());
                    f
                }
            }
        };
        fut.await
    }

    /// Opens an inline chunk's sealed bytes: the AEAD tag (volume, chunk id and
    /// format bound) and, once decompressed, its length (and, unencrypted, its id).
    pub fn open_inline(
        &self,
        id: ChunkId,
        sealed: &[u8],
        len: u32,
    ) -> Result<Vec<u8>, VolumeError> {
        self.sealer
            .open(&id, sealed, len as usize)
            .map_err(|source| match source {
                SealError::Locked => VolumeError::Sealed {
                    chunk: id,
                    source,
                    failures: Vec::new(),
                },
                source => VolumeError::InlineDamaged { chunk: id, source },
            })
    }

    /// Starts fetching a chunk into the cache without waiting for it (inline
    /// chunks need no fetching).
    pub fn prefetch(self: &Arc<Self>, id: ChunkId, rec: ChunkRecord) {
        if rec.is_inline()
            || self.cache.contains(&id)
            || self.inflight.lock().unwrap().contains_key(&id)
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.load_chunk(id, &rec).await {
                tracing::debug!("prefetch of chunk {id} failed: {e}");
            }
        });
    }

    async fn fetch_shard(
        &self,
        id: ChunkId,
        rec: &ChunkRecord,
        i: usize,
    ) -> Result<Bytes, ShardFailure> {
        let slot = self.slot(rec.placement[i]);
        let fail = |reason: String| ShardFailure {
            index: i,
            backend: slot.name.clone(),
            reason,
        };
        let key = rec.shard_key(&id, i);
        let obj = self
            .guarded(rec.placement[i], slot.backend.get(&key))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let layout = Layout {
            k: rec.k as usize,
            m: rec.m as usize,
        };
        erasure::verify_shard(&obj, self.id, &id, i, layout, rec.sealed_len as usize)
            .map_err(|e| fail(e.to_string()))
    }

    /// Fetches shard `i` of a chunk, its payload appended to `piece` (read there
    /// by the backend directly), and checks it as `fetch_shard` does. A shard that
    /// does not check is read again whole through `fetch_shard`, which names what
    /// is wrong with it. Gives the piece back either way, with nothing appended
    /// when the shard is unusable (and whether it is because the shard is in
    /// an archive class).
    async fn fetch_shard_into(
        &self,
        id: ChunkId,
        rec: &ChunkRecord,
        i: usize,
        mut piece: BytesMut,
    ) -> (BytesMut, Result<(), (ShardFailure, bool)>) {
        let slot = self.slot(rec.placement[i]);
        let layout = Layout {
            k: rec.k as usize,
            m: rec.m as usize,
        };
        let sealed_len = rec.sealed_len as usize;
        let plen = layout.payload_len(sealed_len);
        let start = piece.len();
        let key = rec.shard_key(&id, i);
        let mut head = [0u8; SHARD_HEADER_LEN];
        let read = self
            .guarded(
                rec.placement[i],
                slot.backend.get_into(&key, &mut head, &mut piece, plen),
            )
            .await;
        match read {
            Ok(size) if size == (SHARD_HEADER_LEN + plen) as u64 => {
                let payload = piece.get(start..).unwrap_or_default();
                let checked = erasure::verify_shard_parts(
                    &head, payload, self.id, &id, i, layout, sealed_len,
                );
                if checked.is_ok() {
                    return (piece, Ok(()));
                }
            }
            Ok(_) => {}
            Err(e) => {
                piece.truncate(start);
                let failure = ShardFailure {
                    index: i,
                    backend: slot.name.clone(),
                    reason: e.to_string(),
                };
                let archived = matches!(e, StoreError::Archived(_));
                return (piece, Err((failure, archived)));
            }
        }
        piece.truncate(start);
        let r = self.fetch_shard(id, rec, i).await;
        let r = r
            .map(|p| piece.extend_from_slice(&p))
            .map_err(|f| (f, false));
        (piece, r)
    }

    async fn fetch_chunk(&self, id: ChunkId, rec: &ChunkRecord) -> Result<Bytes, VolumeError> {
        let (_, plain) = self.fetch_sealed(id, rec, false).await?;
        Ok(plain)
    }

    /// The sealed chunk rebuilt from any k of its shards (with `keep_blob`;
    /// otherwise it is opened in place and not returned), and its plaintext.
    async fn fetch_sealed(
        &self,
        id: ChunkId,
        rec: &ChunkRecord,
        keep_blob: bool,
    ) -> Result<(Vec<u8>, Bytes), VolumeError> {
        let layout = Layout::new(rec.k as usize, rec.m as usize)
            .map_err(|source| VolumeError::Codec { chunk: id, source })?;
        let total = layout.total();
        let (sealed_len, len) = (rec.sealed_len as usize, rec.len as usize);
        let plen = layout.payload_len(sealed_len);
        // One buffer for the k data payloads, back to back: each data shard is read
        // straight into its piece of it, and the pieces joined again cost nothing
        // (they are still one allocation). Parity shards get buffers of their own.
        let mut pieces: Vec<Option<BytesMut>> = Vec::with_capacity(total);
        let mut rest = BytesMut::with_capacity(layout.k * plen);
        for _ in 1..layout.k {
            let tail = rest.split_off(plen);
            pieces.push(Some(std::mem::replace(&mut rest, tail)));
        }
        pieces.push(Some(rest));
        pieces.resize_with(total, || None);
        let mut got = vec![false; total];
        let mut failures = Vec::new();
        let mut pending = FuturesUnordered::new();
        let fetch = |i: usize, piece: BytesMut| {
            self.fetch_shard_into(id, rec, i, piece)
                .map(move |(piece, r)| (i, piece, r))
                .boxed()
        };
        // In-flight requests: shard index → when to hedge it (start + its backend's p95).
        let mut inflight: HashMap<usize, tokio::time::Instant> = HashMap::new();
        let mut hedged: Vec<usize> = Vec::new();
        let slot_of = |i: usize| rec.placement[i] as usize % self.slots.len();
        let launch = |i: usize,
                      pieces: &mut Vec<Option<BytesMut>>,
                      pending: &mut FuturesUnordered<_>,
                      inflight: &mut HashMap<usize, tokio::time::Instant>| {
            let after = self.health[slot_of(i)].hedge_delay();
            inflight.insert(i, tokio::time::Instant::now() + after);
            let piece = pieces[i]
                .take()
                .unwrap_or_else(|| BytesMut::with_capacity(plen));
            pending.push(fetch(i, piece));
        };
        // Instantly readable shards first, then archived ones, then those on
        // backends marked down (see `read_rank`).
        let mut order: Vec<usize> = (0..total).collect();
        order.sort_by_key(|&i| self.read_rank(rec, i));
        for &i in &order[..layout.k] {
            launch(i, &mut pieces, &mut pending, &mut inflight);
        }
        let mut next = layout.k;
        let mut have = 0;
        let mut archived = 0;
        let mut unusable = Vec::new();
        while have < layout.k {
            let deadline = inflight
                .iter()
                .filter(|(i, _)| !hedged.contains(i))
                .map(|(_, d)| *d)
                .min();
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                done = pending.next() => {
                    let Some((i, piece, r)) = done else { break };
                    inflight.remove(&i);
                    pieces[i] = Some(piece);
                    match r {
                        Ok(()) => {
                            got[i] = true;
                            have += 1;
                        }
                        Err((f, cold)) => {
                            if cold {
                                // Said once per file by the reader (`NeedsThaw`).
                                archived += 1;
                                tracing::debug!(chunk = %id, backend = %f.backend, "shard {} is archived", f.index);
                            } else {
                                unusable.push(slot_of(f.index));
                                tracing::warn!(chunk = %id, backend = %f.backend, "shard {} unusable: {}", f.index, f.reason);
                            }
                            failures.push(f);
                            if next < total {
                                launch(order[next], &mut pieces, &mut pending, &mut inflight);
                                next += 1;
                            }
                        }
                    }
                }
                _ = timer => {
                    // The slowest request is late for its backend: ask a parity shard too.
                    if let Some((&late, _)) = inflight
                        .iter()
                        .filter(|(i, _)| !hedged.contains(i))
                        .min_by_key(|(_, d)| **d)
                    {
                        hedged.push(late);
                        if next < total {
                            launch(order[next], &mut pieces, &mut pending, &mut inflight);
                            next += 1;
                        }
                    }
                }
            }
        }
        // Requests still running were overtaken after they were late: they count
        // as slow answers of their backend (not errors), and enough of them in a
        // row mark a frozen backend down. While a backend's normal latency is
        // unknown (a cold connection is slow too), being overtaken only makes it
        // suspect, and the periodic check asks it directly.
        for i in inflight.keys().filter(|i| hedged.contains(i)) {
            let h = &self.health[slot_of(*i)];
            if !h.knows_latency() {
                h.record_overtaken_unknown();
            } else if h.record_slow() {
                tracing::warn!(
                    "backend {} marked down: its requests keep running late",
                    self.slots[slot_of(*i)].name
                );
            }
        }
        drop(pending);
        if have < layout.k && archived > 0 && have + archived >= layout.k {
            // The thaw asked next counts these out of the instant shards.
            self.thaws.failed(unusable);
            let e = VolumeError::NeedsThaw {
                chunk: id,
                have,
                archived,
                need: layout.k,
            };
            tracing::debug!("{e}");
            return Err(e);
        }
        if have < layout.k {
            let e = VolumeError::NotEnoughShards {
                chunk: id,
                have,
                need: layout.k,
                failures,
            };
            tracing::error!("{e}");
            return Err(e);
        }
        let sealer = self.sealer.clone();
        let opened = tokio::task::spawn_blocking(move || {
            // The data pieces joined (a data shard that could not be read leaves
            // its piece to be rebuilt from parity, in place).
            let mut data = pieces.drain(..layout.k).zip(&got).map(|(p, ok)| {
                let mut p = p.unwrap_or_else(|| BytesMut::with_capacity(plen));
                if !ok {
                    p.clear();
                    p.resize(plen, 0);
                }
                p
            });
            let mut blob = data.next().expect("k is at least 1");
            for p in data {
                blob.unsplit(p);
            }
            let parity = pieces
                .iter_mut()
                .zip(&got[layout.k..])
                .map(|(p, ok)| p.as_mut().filter(|_| *ok).map(|p| &mut p[..]))
                .collect();
            erasure::rebuild_in_place(layout, &mut blob, &got[..layout.k], parity)?;
            blob.truncate(sealed_len);
            Ok::<_, CodecError>(if keep_blob {
                sealer
                    .open(&id, &blob, len)
                    .map(|p| (blob.to_vec(), Bytes::from(p)))
            } else {
                sealer.open_owned(&id, blob, len).map(|p| (Vec::new(), p))
            })
        })
        .await
        .expect("decoder task panicked")
        .map_err(|source| VolumeError::Codec { chunk: id, source })?;
        match opened {
            Ok(done) => Ok(done),
            Err(SealError::Locked) => Err(VolumeError::Sealed {
                chunk: id,
                source: SealError::Locked,
                failures,
            }),
            // A shard passed its checksum but holds other bytes: rebuild from the
            // others, and name the shards that disagree with the good chunk. (The
            // shards read are read again: the chunk was opened in their buffer.)
            Err(first_error) => {
                let payloads = vec![None; total];
                self.rebuild_around_altered(id, rec, layout, payloads, failures, first_error)
                    .await
            }
        }
    }

    /// Fetches every shard not yet read, then tries the ways of choosing k of
    /// them until one opens. Shards that differ from the chunk that opened are
    /// reported as altered.
    async fn rebuild_around_altered(
        &self,
        id: ChunkId,
        rec: &ChunkRecord,
        layout: Layout,
        mut payloads: Vec<Option<Bytes>>,
        mut failures: Vec<ShardFailure>,
        first_error: SealError,
    ) -> Result<(Vec<u8>, Bytes), VolumeError> {
        let rest: Vec<usize> = (0..layout.total())
            .filter(|i| payloads[*i].is_none() && !failures.iter().any(|f| f.index == *i))
            .collect();
        let fetched =
            futures::future::join_all(rest.iter().map(|i| self.fetch_shard(id, rec, *i))).await;
        for (i, r) in rest.into_iter().zip(fetched) {
            match r {
                Ok(p) => payloads[i] = Some(p),
                Err(f) => failures.push(f),
            }
        }
        let (sealed_len, len) = (rec.sealed_len as usize, rec.len as usize);
        let sealer = self.sealer.clone();
        let vol = self.id;
        let found = tokio::task::spawn_blocking(move || {
            use itertools::Itertools;
            let have: Vec<usize> = (0..payloads.len())
                .filter(|i| payloads[*i].is_some())
                .collect();
            // At most 4096 tries: every choice for k+m up to 12+3 or 8+4, and
            // more than enough for one altered shard in any layout.
            for pick in have.iter().copied().combinations(layout.k).take(4096) {
                let subset: Vec<Option<Bytes>> = (0..payloads.len())
                    .map(|i| pick.contains(&i).then(|| payloads[i].clone()).flatten())
                    .collect();
                let Ok(blob) = erasure::decode(subset, layout, sealed_len) else {
                    continue;
                };
                if let Ok(plain) = sealer.open(&id, &blob, len) {
                    let good = erasure::encode(vol, id, &blob, layout).unwrap_or_default();
                    let altered: Vec<usize> = have
                        .iter()
                        .copied()
                        .filter(|i| {
                            good.get(*i).map(|g| &g[crate::format::SHARD_HEADER_LEN..])
                                != payloads[*i].as_deref()
                        })
                        .collect();
                    return Some((blob, plain, altered));
                }
            }
            None
        })
        .await
        .expect("decoder task panicked");
        match found {
            Some((blob, plain, altered)) => {
                for i in altered {
                    let slot = self.slot(rec.placement[i]);
                    tracing::warn!(chunk = %id, backend = %slot.name, "shard {i} is altered (its checksum matches other bytes); read from the other shards; `cloudraid repair` rewrites it");
                }
                Ok((blob, Bytes::from(plain)))
            }
            None => {
                let e = VolumeError::Sealed {
                    chunk: id,
                    source: first_error,
                    failures,
                };
                tracing::error!("{e}");
                Err(e)
            }
        }
    }

    /// Writes shards `which` of a chunk again: the sealed chunk is rebuilt from
    /// the other shards and checked by opening it, and re-encoding it gives the
    /// very same shard objects. Used by repair; needs the volume unlocked. An
    /// inline chunk has no shards: nothing to write.
    pub async fn rewrite_shards(
        &self,
        id: ChunkId,
        rec: &ChunkRecord,
        which: &[usize],
    ) -> Result<(), VolumeError> {
        if rec.is_inline() {
            return Ok(());
        }
        let layout = Layout {
            k: rec.k as usize,
            m: rec.m as usize,
        };
        let (blob, _) = self.fetch_sealed(id, rec, true).await?;
        let objects = self.encode(id, Bytes::from(blob), layout).await?;
        let failures = self
            .put_shards(id, rec, &objects, which.iter().copied(), true)
            .await;
        if failures.is_empty() {
            Ok(())
        } else {
            Err(VolumeError::UploadFailed {
                chunk: id,
                stored: which.len() - failures.len(),
                total: which.len(),
                needed: which.len(),
                failures,
            })
        }
    }

    /// Encodes a chunk into its k+m shard objects, off the async workers.
    async fn encode(
        &self,
        id: ChunkId,
        data: Bytes,
        layout: Layout,
    ) -> Result<Vec<Bytes>, VolumeError> {
        let vol = self.id;
        tokio::task::spawn_blocking(move || erasure::encode(vol, id, &data, layout))
            .await
            .expect("encoder task panicked")
            .map_err(|source| VolumeError::Codec { chunk: id, source })
    }

    /// Uploads shards `which` of `objects` in parallel, each to its slot in
    /// `placement`, through the circuit breakers. Returns the shards that failed.
    async fn put_shards(
        &self,
        id: ChunkId,
        rec: &ChunkRecord,
        objects: &[Bytes],
        which: impl Iterator<Item = usize>,
        durable: bool,
    ) -> Vec<ShardFailure> {
        let puts = which.map(|i| {
            let s = rec.placement[i];
            let slot = self.slot(s).clone();
            let obj = objects[i].clone();
            let key = rec.shard_key(&id, i);
            let class = rec
                .classes
                .get(i)
                .and_then(|c| StorageClass::from_code(*c))
                .unwrap_or_default();
            async move {
                let flush = &self.flushes[s as usize % self.flushes.len()];
                self.guarded(s, async {
                    if durable && class == StorageClass::Standard {
                        slot.backend.put(&key, obj).await
                    } else if durable {
                        slot.backend.put_unsynced_in(&key, obj, class).await?;
                        slot.backend.sync().await
                    } else {
                        let len = obj.len() as u64;
                        slot.backend.put_unsynced_in(&key, obj, class).await?;
                        flush
                            .stored
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        self.unflushed
                            .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                        Ok(())
                    }
                })
                .await
                .map_err(|e| ShardFailure {
                    index: i,
                    backend: slot.name.clone(),
                    reason: e.to_string(),
                })
            }
        });
        futures::future::join_all(puts)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect()
    }

    /// Makes every shard `store_chunk` has stored so far durable on its backend
    /// (one flush per backend that stored any since the last one; nothing for
    /// providers whose uploads are durable when they return). A commit calls it
    /// before its index batch names the chunks.
    pub async fn flush_stored(&self) -> Result<(), VolumeError> {
        use std::sync::atomic::Ordering::SeqCst;
        let flushes = self.flushes.iter().enumerate().map(|(s, f)| async move {
            if f.synced.load(SeqCst) >= f.stored.load(SeqCst) {
                return Ok(());
            }
            let _one = f.one.lock().await;
            let upto = f.stored.load(SeqCst);
            if f.synced.load(SeqCst) >= upto {
                return Ok(());
            }
            let slot = &self.slots[s];
            match slot.backend.sync().await {
                Ok(()) => {
                    f.synced.fetch_max(upto, SeqCst);
                    Ok(())
                }
                Err(e) => Err(ShardFailure {
                    index: s,
                    backend: slot.name.clone(),
                    reason: e.to_string(),
                }),
            }
        });
        let failures: Vec<ShardFailure> = futures::future::join_all(flushes)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            for f in &failures {
                tracing::error!(backend = %f.backend, "flushing stored shards failed: {}", f.reason);
            }
            Err(VolumeError::FlushFailed { failures })
        }
    }

    /// Starts `flush_stored` in the background once `FLUSH_EVERY` bytes of
    /// shards were stored since the last one started. A failure there is for
    /// the commit's own flush to report.
    pub fn flush_if_due(self: &Arc<Self>) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.unflushed.load(Relaxed) < FLUSH_EVERY
            || self.unflushed.swap(0, Relaxed) < FLUSH_EVERY
        {
            return;
        }
        let vol = self.clone();
        tokio::spawn(async move {
            let _ = vol.flush_stored().await;
        });
    }

    /// Deletes every shard of a chunk. Missing shards are not an error; an inline
    /// chunk has none (its placement is empty).
    pub async fn delete_chunk(&self, id: ChunkId, rec: &ChunkRecord) -> Result<(), ShardFailure> {
        let dels = rec.placement.iter().enumerate().map(|(i, s)| {
            let slot = self.slot(*s).clone();
            let s = *s;
            let key = rec.shard_key(&id, i);
            async move {
                self.guarded(s, slot.backend.delete(&key))
                    .await
                    .map_err(|e| ShardFailure {
                        index: i,
                        backend: slot.name.clone(),
                        reason: e.to_string(),
                    })
            }
        });
        self.cache.remove(&id);
        for r in futures::future::join_all(dels).await {
            r?;
        }
        Ok(())
    }
}
