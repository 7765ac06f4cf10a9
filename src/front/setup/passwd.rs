//! `passwd`: the volume's key wrapped again with a new passphrase or key file
//! on every backend.

use super::{connect, read_marker, KeySource};
use crate::config::Config;
use crate::data::keys::{Credential, KdfCost};
use crate::format::{VolumeId, VolumeMarker, MARKER_KEY};
use bytes::Bytes;

/// `passwd`: unlocks the volume's key with the current credential and wraps it
/// again with `new` on every backend (all must answer, or the old passphrase
/// would still open the volume where the marker was not rewritten). Returns the
/// backends whose marker was rewritten.
pub async fn passwd(
    config: &Config,
    keys: &KeySource,
    new: &Credential,
    cost: KdfCost,
) -> Result<Vec<String>, String> {
    let v = &config.volume;
    if !v.encrypted() {
        return Err(format!(
            "volume {} is not encrypted: it has no passphrase to change",
            v.name
        ));
    }
    let id = VolumeId::parse(&v.id).ok_or("volume id is not a UUID")?;
    let slots = connect(config)?;
    let markers = futures::future::join_all(slots.iter().map(|s| read_marker(&s.backend))).await;
    let mut found = Vec::new();
    for (slot, m) in slots.iter().zip(markers) {
        match m {
            Ok(Some(mk)) if mk.volume_id == v.id && mk.encryption.is_some() => found.push(mk),
            Ok(Some(mk)) if mk.volume_id != v.id => {
                return Err(format!(
                    "backend {} holds volume {}, not {}; nothing was changed",
                    slot.name, mk.volume_id, v.id
                ))
            }
            Ok(_) => {
                return Err(format!(
                    "backend {} has no marker with this volume's keys; run `cloudraid repair` first (nothing was changed)",
                    slot.name
                ))
            }
            Err(e) => {
                return Err(format!(
                    "backend {} does not answer ({e}); passwd must rewrite the key on every backend, or the old passphrase would still open the volume there: nothing was changed",
                    slot.name
                ))
            }
        }
    }
    let mut section = found[0].encryption.clone().expect("checked above");
    let cred = keys.credential(config)?;
    let master = section.unlock(&cred, id).map_err(|e| e.to_string())?;
    section
        .replace_slot(new, &master, id, cost)
        .map_err(|e| e.to_string())?;
    let mut done = Vec::new();
    for (slot, mk) in slots.iter().zip(found) {
        let marker = VolumeMarker {
            encryption: Some(section.clone()),
            ..mk
        };
        slot.backend
            .put(MARKER_KEY, Bytes::from(marker.to_bytes()))
            .await
            .map_err(|e| {
                format!(
                    "backend {}: cannot rewrite the marker ({e}); the backends done so far take the new passphrase ({}), the others the old one: run passwd again",
                    slot.name,
                    done.join(", ")
                )
            })?;
        done.push(slot.name.clone());
    }
    Ok(done)
}
