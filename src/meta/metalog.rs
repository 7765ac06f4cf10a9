//! The metadata log: the index, kept on the backends, so that a volume can be
//! brought back on a new machine from its config and the backends alone.
//!
//! Every index batch is journalled locally (`J` + seq, in the same atomic batch as
//! the change; see `Index::apply`). The log uploads journal entries in order as log
//! objects, each replicated to every backend that answers (at least m+1 copies, so
//! losing m backends loses no log object), then deletes them from the journal. From
//! time to time a snapshot of the whole index is written the same way, after which
//! older log objects and snapshots are deleted. A snapshot is taken without
//! stopping writes: it records the sequence number reached when its scan began,
//! and every later change is in the log after it; replaying whole-key puts and
//! deletes in order over such a snapshot gives the exact index.
//!
//! `recover` rebuilds a local index from the newest complete snapshot found on
//! any backend and the log objects after it. Object formats: docs/FORMAT.md.

use crate::data::seal::ChunkSealer;
use crate::data::volume::Volume;
use crate::format::{keys, LogState, LoggedOps, VolumeId};
use crate::meta::index::Index;
use crate::meta::{Batch, MetaStore};
use crate::store::DynBackend;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub const META_MAGIC: &[u8; 8] = b"CRDMETA2";
const KIND_LOG: u8 = 1;
const KIND_PART: u8 = 2;
const KIND_MANIFEST: u8 = 3;
/// Journal entries per log object, at most.
const LOG_BATCH: usize = 4096;
/// Bytes of index records per snapshot part, about.
const PART_BYTES: usize = 4 << 20;
/// A snapshot is written after this many log objects, or this many bytes of
/// them, since the last one (replaying a long log is slower than loading a snapshot).
const SNAPSHOT_EVERY: u64 = 256;
const SNAPSHOT_EVERY_BYTES: u64 = 32 << 20;

fn snapshot_due(s: &LogState) -> bool {
    s.logs_since_snapshot >= SNAPSHOT_EVERY || s.log_bytes_since_snapshot >= SNAPSHOT_EVERY_BYTES
}

fn log_key(first: u64, last: u64) -> String {
    format!("meta/log/{first:020}-{last:020}")
}
fn part_key(seq: u64, i: u32) -> String {
    format!("meta/snap/{seq:020}/part-{i:06}")
}
fn manifest_key(seq: u64) -> String {
    format!("meta/snap/{seq:020}/manifest")
}

/// A log object: journal entries in order, and who wrote them (the writing
/// state dir's identity, to tell its own history from another's).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogObject {
    pub writer: String,
    pub entries: Vec<(u64, LoggedOps)>,
}

/// The last object of a complete snapshot: written after all its parts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub writer: String,
    /// The log up to this sequence number is contained in the snapshot.
    pub seq: u64,
    pub parts: u32,
    pub keys: u64,
    pub bytes: u64,
}

/// Frames a metadata object: magic, kind, volume id, payload length, payload, CRC-32.
/// A metadata object: header, sealed payload (see `seal`), checksum.
fn frame(
    kind: u8,
    name: &str,
    sealer: &ChunkSealer,
    volume: &VolumeId,
    payload: &[u8],
) -> Result<Bytes, String> {
    let (flags, sealed) = sealer
        .seal_meta(kind, name, payload)
        .map_err(|e| format!("cannot seal metadata: {e}"))?;
    let mut out = Vec::with_capacity(HEAD + sealed.len() + 4);
    out.extend_from_slice(META_MAGIC);
    out.push(kind);
    out.extend_from_slice(&volume.0);
    out.push(flags);
    out.extend_from_slice(&(sealed.len() as u64).to_le_bytes());
    out.extend_from_slice(&sealed);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(Bytes::from(out))
}

const HEAD: usize = 8 + 1 + 16 + 1 + 8;

/// The payload of a framed object, checked and opened.
fn unframe(
    kind: u8,
    name: &str,
    sealer: &ChunkSealer,
    volume: &VolumeId,
    data: &[u8],
) -> Result<Vec<u8>, String> {
    if data.len() < HEAD + 4 || &data[..8] != META_MAGIC {
        return Err("not a cloudraid metadata object (of this format)".into());
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err("checksum mismatch (damaged object)".into());
    }
    if body[8] != kind {
        return Err(format!("object of kind {}, expected {kind}", body[8]));
    }
    if body[9..25] != volume.0 {
        return Err("object of another volume".into());
    }
    let flags = body[25];
    let len = u64::from_le_bytes(body[26..34].try_into().expect("8 bytes")) as usize;
    if body.len() != HEAD + len {
        return Err("length mismatch (truncated object)".into());
    }
    sealer
        .open_meta(kind, name, flags, &body[HEAD..])
        .map_err(|e| e.to_string())
}

/// The index records of one snapshot part.
type SnapshotPart = Vec<(Vec<u8>, Vec<u8>)>;

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("metadata serialises")
}

fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(b).map_err(|e| format!("undecodable metadata ({e})"))
}

pub struct MetaLog {
    vol: Arc<Volume>,
    idx: Index,
    /// Identity of the state dir writing (see `lease::Holder`).
    writer: String,
    /// One push or snapshot at a time.
    busy: tokio::sync::Mutex<()>,
}

impl MetaLog {
    pub fn new(vol: Arc<Volume>, idx: Index, writer: String) -> Self {
        MetaLog {
            vol,
            idx,
            writer,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Copies needed for a metadata object to count as stored: m+1, so that
    /// losing m backends loses none.
    fn copies_needed(&self) -> usize {
        (self.vol.layout.m + 1).min(self.vol.slots.len())
    }

    /// Puts `data` under `key` on every backend not marked down; fails unless
    /// enough copies are stored.
    async fn replicate(&self, key: &str, data: Bytes) -> Result<usize, String> {
        let puts = self.vol.slots.iter().enumerate().map(|(i, s)| {
            let data = data.clone();
            async move {
                if self.vol.health[i].is_down() {
                    return Err(format!("{}: down", s.name));
                }
                s.backend
                    .put(key, data)
                    .await
                    .map_err(|e| format!("{}: {e}", s.name))
            }
        });
        let results = futures::future::join_all(puts).await;
        let stored = results.iter().filter(|r| r.is_ok()).count();
        if stored >= self.copies_needed() {
            Ok(stored)
        } else {
            let errors: Vec<String> = results.into_iter().filter_map(|r| r.err()).collect();
            Err(format!(
                "metadata object {key} stored on {stored} backend(s), {} needed: {}",
                self.copies_needed(),
                errors.join("; ")
            ))
        }
    }

    /// Uploads every journal entry made before the call, in order, as log objects;
    /// returns the sequence number the backends hold the log up to. Entries made
    /// while it runs wait for the next push: under a steady stream of changes the
    /// pusher sends one object per wake-up rather than one per change.
    pub async fn push(&self) -> Result<u64, String> {
        let _busy = self.busy.lock().await;
        self.push_locked().await
    }

    async fn push_locked(&self) -> Result<u64, String> {
        loop {
            let mut state = self.idx.log_state().map_err(|e| e.to_string())?;
            let entries = self
                .idx
                .journal_entries(state.pushed, LOG_BATCH)
                .map_err(|e| e.to_string())?;
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                return Ok(state.pushed);
            };
            let (first, last) = (first.0, last.0);
            let all_pending = entries.len() < LOG_BATCH;
            let object = frame(
                KIND_LOG,
                &log_key(first, last),
                &self.vol.sealer,
                &self.vol.id,
                &encode(&LogObject {
                    writer: self.writer.clone(),
                    entries,
                }),
            )?;
            let size = object.len() as u64;
            self.replicate(&log_key(first, last), object).await?;
            let mut b = Batch::default();
            for seq in first..=last {
                b.delete(keys::ino(keys::JOURNAL, seq));
            }
            state.pushed = last;
            state.logs_since_snapshot += 1;
            state.log_bytes_since_snapshot += size;
            b.put(
                keys::LOG_STATE.to_vec(),
                crate::format::encode_record(&state),
            );
            self.idx.apply_unjournaled(b).map_err(|e| e.to_string())?;
            if all_pending {
                return Ok(last);
            }
        }
    }

    /// Uploads part number `*parts` of snapshot `seq` and counts it.
    async fn put_part(&self, seq: u64, parts: &mut u32, part: &SnapshotPart) -> Result<(), String> {
        let key = part_key(seq, *parts);
        let object = frame(
            KIND_PART,
            &key,
            &self.vol.sealer,
            &self.vol.id,
            &encode(part),
        )?;
        self.replicate(&key, object).await?;
        *parts += 1;
        Ok(())
    }

    /// Writes a snapshot of the whole index, then deletes the log objects it
    /// covers and all but the previous snapshot. Returns its sequence number.
    pub async fn snapshot(&self) -> Result<u64, String> {
        let _busy = self.busy.lock().await;
        let seq = self.push_locked().await?;
        let store = self.idx.store().clone();
        let mut parts = 0u32;
        let mut keys_n = 0u64;
        let mut bytes_n = 0u64;
        let mut part: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut part_bytes = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = store
                .scan(&[], after.as_deref(), 4096)
                .map_err(|e| e.to_string())?;
            let done = rows.len() < 4096;
            after = rows.last().map(|(k, _)| k.clone());
            for (k, v) in rows {
                // The journal and the log's own state are local bookkeeping.
                if k[0] == keys::JOURNAL || k.as_slice() == keys::LOG_STATE {
                    continue;
                }
                keys_n += 1;
                part_bytes += k.len() + v.len();
                bytes_n += (k.len() + v.len()) as u64;
                part.push((k, v));
                if part_bytes >= PART_BYTES {
                    self.put_part(seq, &mut parts, &part).await?;
                    part.clear();
                    part_bytes = 0;
                }
            }
            if done || after.is_none() {
                break;
            }
        }
        if !part.is_empty() || parts == 0 {
            self.put_part(seq, &mut parts, &part).await?;
        }
        let manifest = Manifest {
            writer: self.writer.clone(),
            seq,
            parts,
            keys: keys_n,
            bytes: bytes_n,
        };
        self.replicate(
            &manifest_key(seq),
            frame(
                KIND_MANIFEST,
                &manifest_key(seq),
                &self.vol.sealer,
                &self.vol.id,
                &encode(&manifest),
            )?,
        )
        .await?;
        let mut state = self.idx.log_state().map_err(|e| e.to_string())?;
        let previous = state.snapshot;
        state.snapshot = seq;
        state.logs_since_snapshot = 0;
        state.log_bytes_since_snapshot = 0;
        let mut b = Batch::default();
        b.put(
            keys::LOG_STATE.to_vec(),
            crate::format::encode_record(&state),
        );
        self.idx.apply_unjournaled(b).map_err(|e| e.to_string())?;
        self.prune(seq, previous).await;
        tracing::info!(
            "metadata snapshot {seq}: {keys_n} records, {parts} part(s), {bytes_n} bytes"
        );
        Ok(seq)
    }

    /// Deletes log objects the snapshot `seq` covers and snapshots older than
    /// `keep` (the previous one stays, in case the newest is damaged somewhere).
    async fn prune(&self, seq: u64, keep: u64) {
        for (i, s) in self.vol.slots.iter().enumerate() {
            if self.vol.health[i].is_down() {
                continue;
            }
            let Ok(objects) = s.backend.list("meta/").await else {
                continue;
            };
            for o in objects {
                let stale = match parse_meta_key(&o.key) {
                    Some(MetaKey::Log { last, .. }) => last <= seq,
                    Some(MetaKey::Part { seq: s, .. }) | Some(MetaKey::Manifest { seq: s }) => {
                        s < keep.min(seq)
                    }
                    None => false,
                };
                if stale {
                    let _ = s.backend.delete(&o.key).await;
                }
            }
        }
    }

    /// Before changing the volume: refuses if the backends hold metadata newer
    /// than this index has seen (the volume was changed from another state dir
    /// or machine since), because writing from a stale index would fork it.
    pub async fn ensure_fresh(&self) -> Result<(), String> {
        let state = self.idx.log_state().map_err(|e| e.to_string())?;
        // Objects past what this index has pushed, and who holds them.
        let mut newer: BTreeMap<String, (MetaKey, Vec<usize>)> = BTreeMap::new();
        for (i, s) in self.vol.slots.iter().enumerate() {
            if self.vol.health[i].is_down() {
                continue;
            }
            let Ok(objects) = s.backend.list("meta/").await else {
                continue;
            };
            for o in objects {
                let k = parse_meta_key(&o.key);
                let past = match k {
                    Some(MetaKey::Log { last, .. }) => last > state.pushed,
                    Some(MetaKey::Manifest { seq }) => seq > state.pushed,
                    _ => false,
                };
                if let (true, Some(k)) = (past, k) {
                    newer.entry(o.key).or_insert((k, Vec::new())).1.push(i);
                }
            }
        }
        // Ours (pushed just before a crash, not yet recorded here) are fine;
        // another writer's mean this index is behind.
        let slots: Vec<(String, DynBackend)> = self
            .vol
            .slots
            .iter()
            .map(|s| (s.name.clone(), s.backend.clone()))
            .collect();
        let mut scratch = RecoverReport::default();
        for (key, (k, holders)) in newer {
            let writer = match k {
                MetaKey::Log { .. } => {
                    let p = fetch(
                        &slots,
                        &holders,
                        &key,
                        KIND_LOG,
                        &self.vol.sealer,
                        &self.vol.id,
                        &mut scratch,
                    )
                    .await?;
                    decode::<LogObject>(&p)?.writer
                }
                _ => {
                    let p = fetch(
                        &slots,
                        &holders,
                        &key,
                        KIND_MANIFEST,
                        &self.vol.sealer,
                        &self.vol.id,
                        &mut scratch,
                    )
                    .await?;
                    decode::<Manifest>(&p)?.writer
                }
            };
            if writer != self.writer {
                return Err(format!(
                    "the volume was changed from another state dir or machine since this index last saw it (the backends hold {key}, this index is at change {}); move this state dir away and run `cloudraid recover` to bring it up to date, or mount read-only (-o ro)",
                    state.pushed
                ));
            }
        }
        Ok(())
    }

    /// At open: uploads what a crash left in the journal, and writes a first
    /// snapshot if the backends hold none, or a new one when enough log has grown.
    pub async fn catch_up(&self) -> Result<(), String> {
        self.push().await?;
        let state = self.idx.log_state().map_err(|e| e.to_string())?;
        let have_snapshot = state.snapshot > 0 || {
            let mut found = false;
            for s in &self.vol.slots {
                if let Ok(objects) = s.backend.list("meta/snap/").await {
                    found |= objects
                        .iter()
                        .any(|o| matches!(parse_meta_key(&o.key), Some(MetaKey::Manifest { .. })));
                }
            }
            found
        };
        if !have_snapshot || snapshot_due(&state) {
            self.snapshot().await?;
        }
        Ok(())
    }

    /// Pushes the journal, and writes a snapshot if enough log has grown since
    /// the last one.
    pub async fn push_and_compact(&self) -> Result<(), String> {
        self.push().await?;
        let state = self.idx.log_state().map_err(|e| e.to_string())?;
        if snapshot_due(&state) {
            self.snapshot().await?;
        }
        Ok(())
    }

    /// Pushes the journal a moment after each change (and at least every
    /// `every`), and snapshots when enough log has grown. Runs until aborted.
    pub fn spawn(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let Some(j) = log.idx.journal().cloned() else {
                return;
            };
            loop {
                let _ = tokio::time::timeout(every, j.wake.notified()).await;
                // Let a burst of changes gather into one log object.
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Err(e) = log.push_and_compact().await {
                    tracing::warn!("metadata log: {e}; retrying");
                }
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MetaKey {
    Log { first: u64, last: u64 },
    Part { seq: u64, index: u32 },
    Manifest { seq: u64 },
}

fn parse_meta_key(key: &str) -> Option<MetaKey> {
    if let Some(rest) = key.strip_prefix("meta/log/") {
        let (a, b) = rest.split_once('-')?;
        return Some(MetaKey::Log {
            first: a.parse().ok()?,
            last: b.parse().ok()?,
        });
    }
    let rest = key.strip_prefix("meta/snap/")?;
    let (seq, name) = rest.split_once('/')?;
    let seq = seq.parse().ok()?;
    if name == "manifest" {
        return Some(MetaKey::Manifest { seq });
    }
    let index = name.strip_prefix("part-")?.parse().ok()?;
    Some(MetaKey::Part { seq, index })
}

/// What `cloudraid recover` did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecoverReport {
    pub snapshot_seq: u64,
    pub snapshot_records: u64,
    pub log_objects: u64,
    /// The log was replayed up to this sequence number.
    pub last_seq: u64,
    pub objects_downloaded: u64,
    pub bytes_downloaded: u64,
    pub inodes: u64,
    /// Backends that could not be listed.
    pub unreachable: Vec<String>,
}

/// Fetches `key` from the first backend (of `holders`) whose copy checks out.
async fn fetch(
    slots: &[(String, DynBackend)],
    holders: &[usize],
    key: &str,
    kind: u8,
    sealer: &ChunkSealer,
    volume: &VolumeId,
    report: &mut RecoverReport,
) -> Result<Vec<u8>, String> {
    let mut errors = Vec::new();
    for &h in holders {
        let (name, b) = &slots[h];
        match b.get(key).await {
            Ok(data) => {
                report.objects_downloaded += 1;
                report.bytes_downloaded += data.len() as u64;
                match unframe(kind, key, sealer, volume, &data) {
                    Ok(p) => return Ok(p),
                    Err(e) => errors.push(format!("{name}: {e}")),
                }
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    Err(format!("{key}: no good copy ({})", errors.join("; ")))
}

/// Rebuilds the index into `store` (empty) from the metadata on the backends.
/// `progress(done, total)` counts metadata objects.
pub async fn recover(
    vol: &Volume,
    store: Arc<dyn MetaStore>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<RecoverReport, String> {
    let mut report = RecoverReport::default();
    let slots: Vec<(String, DynBackend)> = vol
        .slots
        .iter()
        .map(|s| (s.name.clone(), s.backend.clone()))
        .collect();
    // Who holds what.
    let mut holders: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let listings = futures::future::join_all(slots.iter().map(|(_, b)| b.list("meta/"))).await;
    for (i, l) in listings.into_iter().enumerate() {
        match l {
            Ok(objects) => {
                for o in objects {
                    holders.entry(o.key).or_default().push(i);
                }
            }
            Err(e) => {
                tracing::warn!("recover: cannot list backend {}: {e}", slots[i].0);
                report.unreachable.push(slots[i].0.clone());
            }
        }
    }
    let mut manifests: Vec<u64> = holders
        .keys()
        .filter_map(|k| match parse_meta_key(k) {
            Some(MetaKey::Manifest { seq }) => Some(seq),
            _ => None,
        })
        .collect();
    manifests.sort_unstable();
    let mut logs: Vec<(u64, u64, String)> = holders
        .keys()
        .filter_map(|k| match parse_meta_key(k) {
            Some(MetaKey::Log { first, last }) => Some((first, last, k.clone())),
            _ => None,
        })
        .collect();
    logs.sort();
    // The newest snapshot that downloads completely.
    let mut last_error = String::from("no backend holds a metadata snapshot");
    for seq in manifests.iter().rev() {
        let attempt: Result<(Manifest, Vec<SnapshotPart>), String> = async {
            let m: Manifest = decode(
                &fetch(
                    &slots,
                    &holders[&manifest_key(*seq)],
                    &manifest_key(*seq),
                    KIND_MANIFEST,
                    &vol.sealer,
                    &vol.id,
                    &mut report,
                )
                .await?,
            )?;
            if m.seq != *seq {
                return Err(format!("the manifest of snapshot {seq} says {}", m.seq));
            }
            let total = m.parts as u64 + logs.iter().filter(|l| l.1 > *seq).count() as u64;
            let mut parts = Vec::new();
            for i in 0..m.parts {
                let key = part_key(*seq, i);
                let who = holders
                    .get(&key)
                    .ok_or_else(|| format!("part {i} of snapshot {seq} is on no backend"))?;
                parts.push(decode(
                    &fetch(
                        &slots,
                        who,
                        &key,
                        KIND_PART,
                        &vol.sealer,
                        &vol.id,
                        &mut report,
                    )
                    .await?,
                )?);
                progress(i as u64 + 1, total);
            }
            Ok((m, parts))
        }
        .await;
        match attempt {
            Ok((m, parts)) => {
                for part in parts {
                    let mut b = Batch::default();
                    for (k, v) in part {
                        report.snapshot_records += 1;
                        b.put(k, v);
                    }
                    store.apply(b).map_err(|e| e.to_string())?;
                }
                report.snapshot_seq = m.seq;
                break;
            }
            Err(e) => {
                tracing::warn!("recover: snapshot {seq} unusable: {e}");
                last_error = e;
            }
        }
    }
    if report.snapshot_records == 0 {
        return Err(format!(
            "no usable metadata snapshot on the backends ({last_error}); was the volume ever mounted read-write by this version?"
        ));
    }
    // Then the log after it, in order, until a gap.
    let mut cur = report.snapshot_seq;
    let total_logs = logs.iter().filter(|l| l.1 > cur).count() as u64;
    let mut done_logs = 0;
    let mut seen: HashMap<u64, ()> = HashMap::new();
    for (first, last, key) in logs {
        if last <= cur {
            continue;
        }
        if first > cur + 1 {
            tracing::warn!(
                "recover: the log has a gap after {cur} (next object starts at {first})"
            );
            break;
        }
        let object: LogObject = decode(
            &fetch(
                &slots,
                &holders[&key],
                &key,
                KIND_LOG,
                &vol.sealer,
                &vol.id,
                &mut report,
            )
            .await?,
        )?;
        if object
            .entries
            .iter()
            .any(|(seq, _)| *seq < first || *seq > last)
        {
            return Err(format!(
                "{key} holds entries outside {first}..={last}: it was altered; recover from the other backends (move this one away)"
            ));
        }
        // The object's entries, in order, as one batch (ops apply in order).
        let mut b = Batch::default();
        for (seq, ops) in object.entries {
            if seq <= cur || seen.insert(seq, ()).is_some() {
                continue;
            }
            b.ops.extend(ops);
            cur = seq;
        }
        store.apply(b).map_err(|e| e.to_string())?;
        report.log_objects += 1;
        done_logs += 1;
        progress(done_logs, total_logs);
    }
    report.last_seq = cur;
    let state = LogState {
        pushed: cur,
        snapshot: report.snapshot_seq,
        logs_since_snapshot: report.log_objects,
        log_bytes_since_snapshot: 0,
    };
    let mut b = Batch::default();
    b.put(
        keys::LOG_STATE.to_vec(),
        crate::format::encode_record(&state),
    );
    store.apply(b).map_err(|e| e.to_string())?;
    store.flush().map_err(|e| e.to_string())?;
    report.inodes = Index::new(store)
        .all::<crate::format::InodeRecord>(keys::INODE)
        .map_err(|e| e.to_string())?
        .len() as u64;
    Ok(report)
}

pub fn render_recover(r: &RecoverReport) -> String {
    use crate::config::human;
    let mut out = format!(
        "recovered {} inodes: snapshot {} ({} records) and {} log object(s), up to change {}\n",
        r.inodes, r.snapshot_seq, r.snapshot_records, r.log_objects, r.last_seq
    );
    out.push_str(&format!(
        "downloaded {} metadata object(s), {}\n",
        r.objects_downloaded,
        human(r.bytes_downloaded)
    ));
    for b in &r.unreachable {
        out.push_str(&format!("backend {b} was unreachable (not needed)\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_check_kind_volume_and_bytes() {
        let v = VolumeId::random();
        let keys = crate::data::keys::Keys::derive(&crate::data::keys::Secret32::random(), v);
        let sealer = ChunkSealer::encrypted(v, Some(keys), crate::data::seal::Compression::None);
        let payload = b"file names: holiday.jpg, taxes-2026.pdf ".repeat(20);
        let f = frame(KIND_LOG, "meta/log/1-2", &sealer, &v, &payload).unwrap();
        assert!(
            !f.windows(11).any(|w| w == b"holiday.jpg"),
            "the payload is not readable in the object"
        );
        assert_eq!(
            unframe(KIND_LOG, "meta/log/1-2", &sealer, &v, &f).unwrap(),
            payload
        );
        assert!(unframe(KIND_PART, "meta/log/1-2", &sealer, &v, &f)
            .unwrap_err()
            .contains("kind"));
        assert!(
            unframe(KIND_LOG, "meta/log/1-2", &sealer, &VolumeId::random(), &f)
                .unwrap_err()
                .contains("another volume")
        );
        let mut bad = f.to_vec();
        bad[40] ^= 1;
        assert!(unframe(KIND_LOG, "meta/log/1-2", &sealer, &v, &bad)
            .unwrap_err()
            .contains("checksum"));
        assert!(unframe(KIND_LOG, "meta/log/1-2", &sealer, &v, &f[..f.len() - 1]).is_err());
        // Altered with a valid checksum: the encryption catches it.
        let mut forged = f.to_vec();
        forged[HEAD + 20] ^= 1;
        let n = forged.len() - 4;
        let crc = crc32fast::hash(&forged[..n]);
        forged[n..].copy_from_slice(&crc.to_le_bytes());
        assert!(unframe(KIND_LOG, "meta/log/1-2", &sealer, &v, &forged)
            .unwrap_err()
            .contains("altered"));
        // The same object under another name (entries 1-2 served as 3-4) does not
        // open: a backend cannot reorder or replay the log.
        assert!(unframe(KIND_LOG, "meta/log/3-4", &sealer, &v, &f)
            .unwrap_err()
            .contains("altered"));
        // Without the key it cannot be read.
        let locked = ChunkSealer::encrypted(v, None, crate::data::seal::Compression::None);
        assert!(unframe(KIND_LOG, "meta/log/1-2", &locked, &v, &f).is_err());
    }

    #[test]
    fn meta_keys_parse_back() {
        assert_eq!(
            parse_meta_key(&log_key(5, 9)),
            Some(MetaKey::Log { first: 5, last: 9 })
        );
        assert_eq!(
            parse_meta_key(&part_key(7, 3)),
            Some(MetaKey::Part { seq: 7, index: 3 })
        );
        assert_eq!(
            parse_meta_key(&manifest_key(7)),
            Some(MetaKey::Manifest { seq: 7 })
        );
        assert_eq!(parse_meta_key("meta/other"), None);
    }
}
