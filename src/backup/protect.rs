//! Snapshot protection: while it is on (`SnapshotSettings.protected`), deleting
//! snapshots (`snapshot delete`, `forget`) and turning protection off need the
//! volume's passphrase or key file given again with the request, not a stored
//! one. Whoever executes the request checks the proof (the mount daemon too, so a
//! process that talks to the control socket directly cannot skip it) by opening
//! a key slot of the volume marker read from the backends, and by checking that
//! the master key it opens is the one the volume was opened with (a marker
//! replaced on a backend by someone holding the backend's credentials does not
//! pass). The mount daemon's own scheduled retention is not subject to it.

use crate::data::keys::{Credential, KeySection, Keys, Secret32};
use crate::format::{VolumeMarker, MARKER_KEY};
use crate::fs::snapshot::{SnapError, SnapResult};
use crate::fs::Fs;
use serde::{Deserialize, Serialize};

/// The passphrase or key typed again for a protected operation.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Proof {
    Passphrase {
        passphrase: String,
    },
    /// The key of a key file (64 hex digits) and the file's name (for messages).
    KeyFile {
        key: String,
        path: String,
    },
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proof::Passphrase { .. } => f.write_str("Proof::Passphrase(..)"),
            Proof::KeyFile { path, .. } => write!(f, "Proof::KeyFile({path})"),
        }
    }
}

impl Proof {
    pub fn of(cred: &Credential) -> Proof {
        match cred {
            Credential::Passphrase(p) => Proof::Passphrase {
                passphrase: p.to_string(),
            },
            Credential::KeyFile(k, path) => Proof::KeyFile {
                key: hex::encode(k.bytes()),
                path: path.clone(),
            },
        }
    }

    fn credential(&self) -> SnapResult<Credential> {
        Ok(match self {
            Proof::Passphrase { passphrase } => {
                Credential::Passphrase(zeroize::Zeroizing::new(passphrase.clone()))
            }
            Proof::KeyFile { key, path } => {
                let raw = zeroize::Zeroizing::new(hex::decode(key).unwrap_or_default());
                let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| {
                    SnapError(format!("key file {path}: not a key of 64 hex digits"))
                })?;
                Credential::KeyFile(Secret32::from_bytes(bytes), path.clone())
            }
        })
    }
}

/// The refusal of a protected operation without proof.
pub fn needs_proof_message(what: &str) -> String {
    format!(
        "the snapshots of this volume are protected: {what} needs the volume's passphrase typed again on a terminal, or its key file named on the command line (--key-file FILE)"
    )
}

/// Whether protection is on.
pub fn protected(fs: &Fs) -> SnapResult<bool> {
    Ok(fs.index().snapshot_settings()?.protected)
}

/// Checks `proof` against the volume's markers: it must open a key slot, and
/// the key it opens must be the volume's.
pub async fn verify(fs: &Fs, proof: &Proof) -> SnapResult<()> {
    let vol = fs.volume();
    let Some(mine) = vol.sealer.keys() else {
        return Err(SnapError(
            "the volume was opened without its key: give its passphrase or key file to open it"
                .into(),
        ));
    };
    let cred = proof.credential()?;
    let markers =
        futures::future::join_all(vol.slots.iter().map(|s| s.backend.get(MARKER_KEY))).await;
    let mut sections: Vec<KeySection> = Vec::new();
    for bytes in markers.into_iter().flatten() {
        if let Ok(VolumeMarker {
            encryption: Some(sec),
            ..
        }) = VolumeMarker::from_bytes(&bytes)
        {
            if !sections.contains(&sec) {
                sections.push(sec);
            }
        }
    }
    if sections.is_empty() {
        return Err(SnapError(
            "no backend answered with the volume's marker: the proof cannot be checked now; try again when the backends answer".into(),
        ));
    }
    let id = vol.id;
    let meta = mine.meta.bytes().to_vec();
    // The key derivation of a passphrase takes a while: not on a runtime worker.
    tokio::task::spawn_blocking(move || {
        let mut first_error = None;
        for sec in &sections {
            match sec.unlock(&cred, id) {
                Ok(master) => {
                    if Keys::derive(&master, id).meta.bytes()[..] == meta[..] {
                        return Ok(());
                    }
                    first_error.get_or_insert_with(|| {
                        "a volume marker opens with this proof but holds another key than the volume's (it was replaced): nothing was changed; check the backends".to_string()
                    });
                }
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        Err(SnapError(first_error.unwrap_or_default()))
    })
    .await
    .map_err(|e| SnapError(format!("checking the proof failed: {e}")))?
}

/// Whether a protected operation may go ahead: yes when protection is off, or
/// with a proof that checks. `Err((message, needs_proof))`.
pub async fn check(fs: &Fs, proof: Option<&Proof>, what: &str) -> Result<(), (String, bool)> {
    match protected(fs) {
        Err(e) => Err((e.0, false)),
        Ok(false) => Ok(()),
        Ok(true) => match proof {
            None => Err((needs_proof_message(what), true)),
            Some(p) => verify(fs, p).await.map_err(|e| (e.0, false)),
        },
    }
}
