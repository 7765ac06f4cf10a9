//! The keys of an encrypted volume.
//!
//! A volume has one random 256-bit master key. It is never stored in the clear:
//! the volume marker on every backend holds it wrapped (AES-256-GCM) by a key
//! derived from the user's passphrase with Argon2id, and/or by a random key kept
//! in a key file. Any backend's marker is enough to unlock. From the master key,
//! HKDF-SHA256 (salted with the volume id) derives the keys that are used:
//! one encrypts chunks, one names them (HMAC-SHA256 chunk ids), one encrypts
//! the metadata log.

use crate::format::VolumeId;
use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::path::Path;
use zeroize::Zeroizing;

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// A 256-bit secret, wiped from memory when dropped.
#[derive(Clone)]
pub struct Secret32(Zeroizing<[u8; KEY_LEN]>);

impl Secret32 {
    pub fn random() -> Self {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(&mut k[..]);
        Secret32(k)
    }
    pub fn from_bytes(b: [u8; KEY_LEN]) -> Self {
        Secret32(Zeroizing::new(b))
    }
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

/// Argon2id cost parameters, stored beside the key they protect.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfCost {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfCost {
    /// Within what init and passwd accept: 8 KiB to 4 GiB, 1 to 64 passes, 1 to
    /// 16 lanes. Anything beyond in a marker came from an altered marker, and
    /// could exhaust memory or time.
    pub fn check(&self) -> Result<(), String> {
        if !(8..=4 << 20).contains(&self.m_cost_kib)
            || !(1..=64).contains(&self.t_cost)
            || !(1..=16).contains(&self.p_cost)
        {
            return Err(format!(
                "Argon2 cost {} KiB x {} passes x {} lanes is outside 8 KiB-4 GiB x 1-64 x 1-16",
                self.m_cost_kib, self.t_cost, self.p_cost
            ));
        }
        Ok(())
    }
}

impl Default for KdfCost {
    /// 64 MiB, 3 passes, 1 lane: about half a second here; far above the
    /// minimum the Argon2 RFC (9106) and OWASP recommend.
    fn default() -> Self {
        KdfCost {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

/// One way to unlock the master key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KeySlot {
    /// Wrapped by Argon2id(passphrase, salt).
    Passphrase {
        kdf: String,
        cost: KdfCost,
        /// 16 random bytes, hex.
        salt: String,
        /// nonce (12) ‖ AES-256-GCM ciphertext of the master key ‖ tag (16), hex.
        wrapped: String,
    },
    /// Wrapped by the 256-bit key of a key file.
    KeyFile {
        /// The first 8 bytes of HKDF(file key, "cloudraid key file id"), hex:
        /// tells which key file opens this slot without revealing it.
        file_id: String,
        wrapped: String,
    },
}

/// The `encryption` section of the volume marker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeySection {
    /// Always `aes-256-gcm`.
    pub cipher: String,
    pub slots: Vec<KeySlot>,
}

/// How the user unlocks the volume.
#[derive(Clone)]
pub enum Credential {
    Passphrase(Zeroizing<String>),
    /// The key read from a key file, and where it came from (for messages).
    KeyFile(Secret32, String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Passphrase(_) => f.write_str("Passphrase(..)"),
            Credential::KeyFile(_, p) => write!(f, "KeyFile({p})"),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("wrong passphrase for this volume: nothing was changed; try again, or use its key file (--key-file)")]
    WrongPassphrase,
    #[error("the key file {0} does not open this volume (it belongs to another volume or was changed); nothing was changed")]
    WrongKeyFile(String),
    #[error("this volume has no passphrase, only a key file: use --key-file FILE (or key_file in the config)")]
    NoPassphraseSlot,
    #[error("this volume has no key file slot: unlock it with its passphrase")]
    NoKeyFileSlot,
    #[error("the volume's key material in its marker is damaged ({0}); unlock from another backend's marker or restore the marker")]
    Damaged(String),
    #[error("{0}")]
    Invalid(String),
}

/// The keys derived from the master key.
#[derive(Clone)]
pub struct Keys {
    /// Encrypts chunks (AES-256-GCM).
    pub chunk: Secret32,
    /// Names chunks: chunk id = HMAC-SHA256(id key, plaintext).
    pub id: Secret32,
    /// Encrypts the metadata log and snapshots on the backends.
    pub meta: Secret32,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

fn hkdf(ikm: &[u8], salt: &[u8], info: &str) -> Secret32 {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    hkdf::Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info.as_bytes(), &mut out[..])
        .expect("32 bytes is a valid HKDF length");
    Secret32(out)
}

impl Keys {
    pub fn derive(master: &Secret32, volume: VolumeId) -> Keys {
        let m = master.bytes();
        Keys {
            chunk: hkdf(m, &volume.0, "cloudraid v1 chunk encryption"),
            id: hkdf(m, &volume.0, "cloudraid v1 chunk id"),
            meta: hkdf(m, &volume.0, "cloudraid v1 metadata encryption"),
        }
    }
}

fn wrap_aad(volume: VolumeId) -> Vec<u8> {
    let mut aad = b"cloudraid master key v1".to_vec();
    aad.extend_from_slice(&volume.0);
    aad
}

fn wrap(kek: &Secret32, master: &Secret32, volume: VolumeId) -> String {
    let cipher = Aes256Gcm::new(kek.bytes().into());
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: master.bytes(),
                aad: &wrap_aad(volume),
            },
        )
        .expect("AES-GCM encryption of 32 bytes cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    hex::encode(out)
}

/// Unwraps; `None` when the key is wrong (the GCM tag does not match).
fn unwrap(kek: &Secret32, wrapped: &str, volume: VolumeId) -> Result<Option<Secret32>, KeyError> {
    let raw = hex::decode(wrapped).map_err(|e| KeyError::Damaged(e.to_string()))?;
    if raw.len() != NONCE_LEN + KEY_LEN + 16 {
        return Err(KeyError::Damaged(format!(
            "wrapped key is {} bytes, not {}",
            raw.len(),
            NONCE_LEN + KEY_LEN + 16
        )));
    }
    let cipher = Aes256Gcm::new(kek.bytes().into());
    let Ok(plain) = cipher.decrypt(
        Nonce::from_slice(&raw[..NONCE_LEN]),
        Payload {
            msg: &raw[NONCE_LEN..],
            aad: &wrap_aad(volume),
        },
    ) else {
        return Ok(None);
    };
    let plain = Zeroizing::new(plain);
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    k.copy_from_slice(&plain);
    Ok(Some(Secret32(k)))
}

fn passphrase_kek(pass: &str, salt: &[u8], cost: KdfCost) -> Result<Secret32, KeyError> {
    cost.check().map_err(KeyError::Damaged)?;
    let params = argon2::Params::new(cost.m_cost_kib, cost.t_cost, cost.p_cost, Some(KEY_LEN))
        .map_err(|e| KeyError::Damaged(format!("Argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    a.hash_password_into(pass.as_bytes(), salt, &mut out[..])
        .map_err(|e| KeyError::Damaged(format!("Argon2: {e}")))?;
    Ok(Secret32(out))
}

fn file_id(file_key: &Secret32) -> String {
    hex::encode(&hkdf(file_key.bytes(), b"", "cloudraid key file id").bytes()[..8])
}

/// A slot that opens `master` with `cred`.
pub fn make_slot(
    cred: &Credential,
    master: &Secret32,
    volume: VolumeId,
    cost: KdfCost,
) -> Result<KeySlot, KeyError> {
    Ok(match cred {
        Credential::Passphrase(p) => {
            let mut salt = [0u8; 16];
            OsRng.fill_bytes(&mut salt);
            let kek = passphrase_kek(p, &salt, cost)?;
            KeySlot::Passphrase {
                kdf: "argon2id-v19".into(),
                cost,
                salt: hex::encode(salt),
                wrapped: wrap(&kek, master, volume),
            }
        }
        Credential::KeyFile(k, _) => KeySlot::KeyFile {
            file_id: file_id(k),
            wrapped: wrap(k, master, volume),
        },
    })
}

impl KeySection {
    /// A new section for a new master key opened by `cred`.
    pub fn create(
        cred: &Credential,
        volume: VolumeId,
        cost: KdfCost,
    ) -> Result<(KeySection, Secret32), KeyError> {
        let master = Secret32::random();
        let slot = make_slot(cred, &master, volume, cost)?;
        Ok((
            KeySection {
                cipher: "aes-256-gcm".into(),
                slots: vec![slot],
            },
            master,
        ))
    }

    /// The master key, opened with `cred`.
    pub fn unlock(&self, cred: &Credential, volume: VolumeId) -> Result<Secret32, KeyError> {
        if self.cipher != "aes-256-gcm" {
            return Err(KeyError::Invalid(format!(
                "the volume uses cipher {:?}, which this cloudraid does not know; upgrade cloudraid",
                self.cipher
            )));
        }
        match cred {
            Credential::Passphrase(p) => {
                let mut any = false;
                for s in &self.slots {
                    if let KeySlot::Passphrase {
                        kdf,
                        cost,
                        salt,
                        wrapped,
                    } = s
                    {
                        any = true;
                        if kdf != "argon2id-v19" {
                            return Err(KeyError::Invalid(format!(
                                "the volume's passphrase uses key derivation {kdf:?}, which this cloudraid does not know; upgrade cloudraid"
                            )));
                        }
                        let salt =
                            hex::decode(salt).map_err(|e| KeyError::Damaged(e.to_string()))?;
                        let kek = passphrase_kek(p, &salt, *cost)?;
                        if let Some(m) = unwrap(&kek, wrapped, volume)? {
                            return Ok(m);
                        }
                    }
                }
                Err(if any {
                    KeyError::WrongPassphrase
                } else {
                    KeyError::NoPassphraseSlot
                })
            }
            Credential::KeyFile(k, path) => {
                let mut any = false;
                for s in &self.slots {
                    if let KeySlot::KeyFile { wrapped, .. } = s {
                        any = true;
                        if let Some(m) = unwrap(k, wrapped, volume)? {
                            return Ok(m);
                        }
                    }
                }
                Err(if any {
                    KeyError::WrongKeyFile(path.clone())
                } else {
                    KeyError::NoKeyFileSlot
                })
            }
        }
    }

    /// Replaces the slots of `cred`'s kind with one for `cred` (passwd).
    pub fn replace_slot(
        &mut self,
        cred: &Credential,
        master: &Secret32,
        volume: VolumeId,
        cost: KdfCost,
    ) -> Result<(), KeyError> {
        let slot = make_slot(cred, master, volume, cost)?;
        let passphrase = matches!(cred, Credential::Passphrase(_));
        self.slots
            .retain(|s| matches!(s, KeySlot::Passphrase { .. }) != passphrase);
        self.slots.push(slot);
        Ok(())
    }
}

/// Reads a key file: 64 hex digits (a 256-bit key), then optionally a newline.
/// Like the env file, it must be private to its owner.
pub fn read_key_file(path: &Path) -> Result<Secret32, String> {
    let shown = path.display();
    let mut f = crate::config::open_private(
        path,
        "key file",
        "give the key file made by `cloudraid init --key-file`",
    )?;
    // A key file is 65 bytes at most; read a little more to tell a longer file.
    let mut bytes = Zeroizing::new(Vec::new());
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut f, 4096), &mut bytes)
        .map_err(|e| format!("key file {shown}: {e}"))?;
    let not_a_key = || {
        format!(
            "key file {shown} is not a cloudraid key file (those hold 64 hex digits, as `cloudraid init --key-file` writes them); give the volume's key file"
        )
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| not_a_key())?;
    let raw = Zeroizing::new(hex::decode(text.trim()).map_err(|_| not_a_key())?);
    if raw.len() != KEY_LEN {
        return Err(not_a_key());
    }
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    k.copy_from_slice(&raw);
    Ok(Secret32(k))
}

/// Creates a new key file (mode 0600) with a random key. Refuses to overwrite.
pub fn create_key_file(path: &Path) -> Result<Secret32, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = Secret32::random();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "key file {} already exists; a new volume gets a new key: choose another path",
                    path.display()
                )
            } else {
                format!("cannot create key file {}: {e}", path.display())
            }
        })?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(key.bytes())));
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write key file {}: {e}", path.display()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfCost = KdfCost {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    fn pass(s: &str) -> Credential {
        Credential::Passphrase(Zeroizing::new(s.to_string()))
    }

    #[test]
    fn the_passphrase_opens_the_master_key_and_nothing_else_does() {
        let vol = VolumeId::random();
        let (sec, master) = KeySection::create(&pass("correct horse"), vol, CHEAP).unwrap();
        assert_eq!(
            sec.unlock(&pass("correct horse"), vol).unwrap().bytes(),
            master.bytes()
        );
        assert_eq!(
            sec.unlock(&pass("wrong"), vol).unwrap_err(),
            KeyError::WrongPassphrase
        );
        // Bound to its volume: the same section under another id opens nothing.
        assert_eq!(
            sec.unlock(&pass("correct horse"), VolumeId::random())
                .unwrap_err(),
            KeyError::WrongPassphrase
        );
        let file = Credential::KeyFile(Secret32::random(), "k".into());
        assert_eq!(sec.unlock(&file, vol).unwrap_err(), KeyError::NoKeyFileSlot);
    }

    #[test]
    fn damaged_key_material_is_reported_not_mistaken_for_a_wrong_passphrase() {
        let vol = VolumeId::random();
        let (mut sec, _) = KeySection::create(&pass("p"), vol, CHEAP).unwrap();
        let KeySlot::Passphrase { wrapped, .. } = &mut sec.slots[0] else {
            unreachable!()
        };
        wrapped.truncate(20);
        assert!(matches!(
            sec.unlock(&pass("p"), vol).unwrap_err(),
            KeyError::Damaged(_)
        ));
    }

    #[test]
    fn rewrapping_keeps_the_master_key_and_retires_the_old_passphrase() {
        let vol = VolumeId::random();
        let (mut sec, master) = KeySection::create(&pass("old"), vol, CHEAP).unwrap();
        let file_key = Secret32::random();
        let file = Credential::KeyFile(file_key.clone(), "k".into());
        sec.replace_slot(&file, &master, vol, CHEAP).unwrap();
        sec.replace_slot(&pass("new"), &master, vol, CHEAP).unwrap();
        assert_eq!(sec.slots.len(), 2);
        assert_eq!(
            sec.unlock(&pass("new"), vol).unwrap().bytes(),
            master.bytes()
        );
        assert_eq!(sec.unlock(&file, vol).unwrap().bytes(), master.bytes());
        assert_eq!(
            sec.unlock(&pass("old"), vol).unwrap_err(),
            KeyError::WrongPassphrase
        );
        let other = Credential::KeyFile(Secret32::random(), "other".into());
        assert_eq!(
            sec.unlock(&other, vol).unwrap_err(),
            KeyError::WrongKeyFile("other".into())
        );
    }

    #[test]
    fn subkeys_differ_and_depend_on_the_volume() {
        let m = Secret32::random();
        let v = VolumeId::random();
        let a = Keys::derive(&m, v);
        let b = Keys::derive(&m, VolumeId::random());
        assert_ne!(a.chunk.bytes(), a.id.bytes());
        assert_ne!(a.id.bytes(), a.meta.bytes());
        assert_ne!(a.chunk.bytes(), b.chunk.bytes());
        assert_eq!(a.chunk.bytes(), Keys::derive(&m, v).chunk.bytes());
    }

    #[test]
    fn key_files_are_private_hex() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let k = create_key_file(&p).unwrap();
        assert_eq!(read_key_file(&p).unwrap().bytes(), k.bytes());
        assert!(create_key_file(&p).unwrap_err().contains("already exists"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_key_file(&p).unwrap_err().contains("chmod 600"));
        std::fs::write(dir.path().join("bad"), "nothex").unwrap();
        std::fs::set_permissions(
            dir.path().join("bad"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert!(read_key_file(&dir.path().join("bad"))
            .unwrap_err()
            .contains("64 hex digits"));
    }
}
