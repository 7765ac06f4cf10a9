//! One writer at a time: the write lease.
//!
//! Opening a volume read-write (a mount, or a CLI command that changes it) takes a
//! lease: an object `cloudraid.lease` on every backend that answers, naming the
//! holder (the state dir's identity, its host, path and process) and when the
//! lease expires. It is renewed while held and deleted when released. Another
//! holder is refused while any backend shows an unexpired lease of someone else;
//! the lease must be written to a majority of the backends, so two writers can
//! never both hold it. A crashed holder's lease expires on its own
//! (`LEASE_TTL`); the same state dir opening again after its own crash is the
//! same holder; `--takeover` overwrites a live lease, and the holder it was taken
//! from finds out at its next renewal and stops writing.

use crate::data::volume::Volume;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const LEASE_KEY: &str = "cloudraid.lease";
pub const LEASE_FORMAT_VERSION: u32 = 1;
/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(60);
/// How often a held lease is renewed.
pub const LEASE_RENEW: Duration = Duration::from_secs(20);

/// The lease object (JSON).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseRecord {
    pub format: String,
    pub version: u32,
    /// Identity of the holder's state dir (a random UUID kept in `STATE_DIR/holder`).
    pub holder: String,
    pub host: String,
    pub state_dir: String,
    pub pid: u32,
    /// Seconds since the epoch.
    pub acquired_at: u64,
    pub expires_at: u64,
}

/// Who we are: the state dir's identity (created on first use).
#[derive(Clone, Debug)]
pub struct Holder {
    pub id: String,
    pub host: String,
    pub state_dir: String,
}

impl Holder {
    pub fn of_state_dir(dir: &Path) -> Result<Holder, String> {
        let path = dir.join("holder");
        let id = match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = uuid::Uuid::new_v4().to_string();
                std::fs::write(&path, format!("{id}\n"))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                id
            }
        };
        Ok(Holder {
            id,
            host: hostname(),
            state_dir: dir.display().to_string(),
        })
    }
}

pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length; gethostname NUL-terminates within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(0);
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown-host".into()
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn when(t: u64, now: u64) -> String {
    if t > now {
        format!("in {} s", t - now)
    } else {
        format!("{} s ago", now - t)
    }
}

impl LeaseRecord {
    fn describe(&self, now: u64) -> String {
        format!(
            "{} (state dir {}, pid {}); its lease expires {} unless renewed",
            self.host,
            self.state_dir,
            self.pid,
            when(self.expires_at, now)
        )
    }
}

async fn read(vol: &Volume, i: usize) -> Result<Option<LeaseRecord>, String> {
    match vol.slots[i].backend.get(LEASE_KEY).await {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("unreadable lease: {e}")),
        Err(crate::store::StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// What acquiring or renewing found.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseError {
    /// Someone else holds it: the message names them.
    Held(String),
    /// Too few backends answered to hold it.
    Unreachable(String),
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseError::Held(s) | LeaseError::Unreachable(s) => f.write_str(s),
        }
    }
}

/// Takes (or renews) the lease for `me` at time `now`. With `takeover`, a live
/// lease of someone else is overwritten.
pub async fn acquire(
    vol: &Volume,
    me: &Holder,
    takeover: bool,
    now: u64,
) -> Result<LeaseRecord, LeaseError> {
    let n = vol.slots.len();
    let reads = futures::future::join_all((0..n).map(|i| read(vol, i))).await;
    for r in reads.iter().flatten().flatten() {
        if r.holder != me.id && r.expires_at > now && !takeover {
            return Err(LeaseError::Held(format!(
                "the volume is mounted read-write by {}; mount it read-only (-o ro), wait for the lease to expire, or use --takeover if that machine is gone",
                r.describe(now)
            )));
        }
    }
    let record = LeaseRecord {
        format: "cloudraid-lease".into(),
        version: LEASE_FORMAT_VERSION,
        holder: me.id.clone(),
        host: me.host.clone(),
        state_dir: me.state_dir.clone(),
        pid: std::process::id(),
        acquired_at: reads
            .iter()
            .flatten()
            .flatten()
            .find(|r| r.holder == me.id)
            .map(|r| r.acquired_at)
            .unwrap_or(now),
        expires_at: now + LEASE_TTL.as_secs(),
    };
    let data = Bytes::from(serde_json::to_vec_pretty(&record).expect("lease serialises"));
    let writes = (0..n).map(|i| {
        let data = data.clone();
        let had = reads[i].clone();
        async move {
            let b = &vol.slots[i].backend;
            match had {
                // None there: create only if still none (another holder may race us).
                Ok(None) => match b.put_if_absent(LEASE_KEY, data.clone()).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!("{}: taken meanwhile", vol.slots[i].name)),
                    Err(e) => Err(format!("{}: {e}", vol.slots[i].name)),
                },
                Ok(Some(_)) | Err(_) => b
                    .put(LEASE_KEY, data)
                    .await
                    .map_err(|e| format!("{}: {e}", vol.slots[i].name)),
            }
        }
    });
    let results = futures::future::join_all(writes).await;
    let held = results.iter().filter(|r| r.is_ok()).count();
    let majority = n / 2 + 1;
    if held >= majority {
        return Ok(record);
    }
    // Not enough: who got in our way?
    for i in 0..n {
        if let Ok(Some(r)) = read(vol, i).await {
            if r.holder != me.id && r.expires_at > now && !takeover {
                return Err(LeaseError::Held(format!(
                    "the volume is mounted read-write by {}",
                    r.describe(now)
                )));
            }
        }
    }
    let errors: Vec<String> = results.into_iter().filter_map(|r| r.err()).collect();
    Err(LeaseError::Unreachable(format!(
        "the write lease could be stored on {held} of {n} backends, a majority ({majority}) is needed to change the volume ({}); bring the backends back, or use the volume read-only",
        errors.join("; ")
    )))
}

/// Deletes our lease from every backend that holds it.
pub async fn release(vol: &Volume, me: &Holder) {
    for i in 0..vol.slots.len() {
        if let Ok(Some(r)) = read(vol, i).await {
            if r.holder == me.id {
                let _ = vol.slots[i].backend.delete(LEASE_KEY).await;
            }
        }
    }
}

/// Renews the lease every `LEASE_RENEW` until aborted; calls `lost` (once) if
/// another holder took it over.
pub fn spawn_renewal(
    vol: std::sync::Arc<Volume>,
    me: Holder,
    lost: Box<dyn Fn(String) + Send + Sync>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(LEASE_RENEW).await;
            match acquire(&vol, &me, false, now_secs()).await {
                Ok(_) => {}
                Err(LeaseError::Held(who)) => {
                    lost(who);
                    return;
                }
                Err(LeaseError::Unreachable(e)) => {
                    tracing::warn!("write lease not renewed: {e}; retrying");
                }
            }
        }
    })
}
