//! Sealing one chunk before it is erasure-coded, and opening it after decoding:
//!
//! write: plaintext → chunk id (keyed HMAC-SHA256, or SHA-256 without encryption)
//!        → compress (zstd; kept raw when that is not smaller) → encrypt
//!        (AES-256-GCM, fresh random nonce) → the sealed blob.
//! read:  sealed blob → decrypt (the tag checks every byte, and the associated
//!        data binds the volume, the chunk id and the format) → decompress to the
//!        recorded length; without encryption, the plaintext's SHA-256 must be the
//!        chunk's id.
//!
//! Pure functions, no I/O. The sealed layout is in docs/FORMAT.md.

use crate::data::keys::{Keys, Secret32};
use crate::format::{ChunkId, VolumeId, SHARD_FORMAT_VERSION};
use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use std::sync::Arc;

/// Flag bits of a sealed blob's first byte.
pub const FLAG_COMPRESSED: u8 = 1;
pub const FLAG_ENCRYPTED: u8 = 2;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the chunk is encrypted and the volume is not unlocked")]
    Locked,
    #[error("sealed chunk is damaged: {0}")]
    Damaged(String),
    #[error(
        "sealed chunk does not decrypt: it was altered, or belongs to another chunk or volume"
    )]
    Authentication,
    #[error("opened chunk does not match its id")]
    Mismatch,
}

/// Compression of new chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// zstd at this level.
    Zstd(i32),
}

/// What a volume needs to seal and open its chunks.
#[derive(Clone)]
pub struct ChunkSealer {
    volume: VolumeId,
    keys: Option<Arc<Keys>>,
    /// Whether the volume is encrypted (keys may be absent when it is locked).
    encrypted: bool,
    compression: Compression,
}

impl std::fmt::Debug for ChunkSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChunkSealer(encrypted: {}, unlocked: {}, {:?})",
            self.encrypted,
            self.keys.is_some(),
            self.compression
        )
    }
}

fn aad(volume: VolumeId, id: &ChunkId, flags: u8) -> [u8; 16 + 2 + 16 + 32 + 1] {
    let mut a = [0u8; 67];
    a[..16].copy_from_slice(b"cloudraid chunk\0");
    a[16..18].copy_from_slice(&SHARD_FORMAT_VERSION.to_le_bytes());
    a[18..34].copy_from_slice(&volume.0);
    a[34..66].copy_from_slice(&id.0);
    a[66] = flags;
    a
}

impl ChunkSealer {
    /// For an unencrypted volume.
    pub fn plain(volume: VolumeId, compression: Compression) -> Self {
        ChunkSealer {
            volume,
            keys: None,
            encrypted: false,
            compression,
        }
    }

    /// For an encrypted volume; `keys` is `None` while it is locked (commands
    /// that only check stored bytes, such as scrub, need no key).
    pub fn encrypted(volume: VolumeId, keys: Option<Keys>, compression: Compression) -> Self {
        ChunkSealer {
            volume,
            keys: keys.map(Arc::new),
            encrypted: true,
            compression,
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    pub fn is_unlocked(&self) -> bool {
        !self.encrypted || self.keys.is_some()
    }

    pub fn keys(&self) -> Option<&Keys> {
        self.keys.as_deref()
    }

    fn unlocked(&self) -> Result<Option<&Keys>, SealError> {
        match (&self.keys, self.encrypted) {
            (Some(k), _) => Ok(Some(k)),
            (None, false) => Ok(None),
            (None, true) => Err(SealError::Locked),
        }
    }

    /// The id of a chunk of plaintext `data`: HMAC-SHA256 under the volume's id
    /// key when encrypted (ids reveal nothing about content), else SHA-256.
    pub fn id_of(&self, data: &[u8]) -> Result<ChunkId, SealError> {
        Ok(match self.unlocked()? {
            Some(k) => {
                let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(k.id.bytes())
                    .expect("HMAC takes any key length");
                mac.update(data);
                ChunkId(mac.finalize().into_bytes().into())
            }
            None => ChunkId::of(data),
        })
    }

    /// Seals plaintext `data` whose id is `id`.
    pub fn seal(&self, id: &ChunkId, data: &[u8]) -> Result<Vec<u8>, SealError> {
        let keys = self.unlocked()?;
        let compressed = match self.compression {
            Compression::Zstd(level) => zstd::bulk::compress(data, level)
                .ok()
                .filter(|c| c.len() < data.len()),
            Compression::None => None,
        };
        let mut flags = if compressed.is_some() {
            FLAG_COMPRESSED
        } else {
            0
        };
        let body = compressed.as_deref().unwrap_or(data);
        // flags ‖ body, or flags ‖ nonce ‖ body encrypted in place ‖ tag: the
        // body is copied once, into the blob.
        let Some(k) = keys else {
            let mut out = Vec::with_capacity(1 + body.len());
            out.push(flags);
            out.extend_from_slice(body);
            return Ok(out);
        };
        flags |= FLAG_ENCRYPTED;
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len() + TAG_LEN);
        out.push(flags);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(body);
        let tag = cipher(&k.chunk)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad(self.volume, id, flags)[..]),
                &mut out[1 + NONCE_LEN..],
            )
            .map_err(|_| SealError::Damaged("too large to encrypt".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// The body of `sealed` (flags `flags`): decrypted with the key `key` picks
    /// and authenticated with `aad` when encrypted; as it is otherwise.
    fn unseal(
        &self,
        flags: u8,
        sealed: &[u8],
        key: impl Fn(&Keys) -> &Secret32,
        aad: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        if flags & !(FLAG_COMPRESSED | FLAG_ENCRYPTED) != 0 {
            return Err(SealError::Damaged(format!("unknown flags {flags:#x}")));
        }
        if flags & FLAG_ENCRYPTED != 0 {
            let keys = self.keys.as_deref().ok_or(SealError::Locked)?;
            decrypt(key(keys), aad, sealed)
        } else if self.encrypted {
            // An encrypted volume never stores plaintext: a blob that claims to
            // be is a forgery.
            Err(SealError::Authentication)
        } else {
            Ok(sealed.to_vec())
        }
    }

    /// Opens a sealed blob of chunk `id`, whose plaintext is `len` bytes.
    pub fn open(&self, id: &ChunkId, blob: &[u8], len: usize) -> Result<Vec<u8>, SealError> {
        let (&flags, rest) = blob
            .split_first()
            .ok_or_else(|| SealError::Damaged("empty".into()))?;
        let body = self.unseal(flags, rest, |k| &k.chunk, &aad(self.volume, id, flags))?;
        let data = if flags & FLAG_COMPRESSED != 0 {
            zstd::bulk::decompress(&body, len)
                .map_err(|e| SealError::Damaged(format!("does not decompress: {e}")))?
        } else {
            body
        };
        // Encrypted, the tag already proved these bytes were sealed for this id
        // (it is in the associated data): hashing them again would only cost.
        if data.len() != len || (flags & FLAG_ENCRYPTED == 0 && self.id_of(&data)? != *id) {
            return Err(SealError::Mismatch);
        }
        Ok(data)
    }

    /// As [`open`](Self::open), taking the sealed blob: an encrypted chunk is
    /// decrypted in place and returned as a view of the blob (no copy; stored
    /// uncompressed, as incompressible chunks are, nothing else is done to it).
    /// The blob's bytes are undefined after an error.
    pub fn open_owned(
        &self,
        id: &ChunkId,
        mut blob: BytesMut,
        len: usize,
    ) -> Result<Bytes, SealError> {
        let flags = *blob
            .first()
            .ok_or_else(|| SealError::Damaged("empty".into()))?;
        if flags & FLAG_ENCRYPTED == 0 || flags & !(FLAG_COMPRESSED | FLAG_ENCRYPTED) != 0 {
            return self.open(id, &blob, len).map(Bytes::from);
        }
        let keys = self.keys.as_deref().ok_or(SealError::Locked)?;
        if blob.len() < 1 + NONCE_LEN + TAG_LEN {
            return Err(SealError::Damaged("shorter than nonce and tag".into()));
        }
        let nonce: [u8; NONCE_LEN] = blob[1..1 + NONCE_LEN].try_into().expect("12 bytes");
        let n = cipher(&keys.chunk)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad(self.volume, id, flags)[..]),
                &mut blob[1 + NONCE_LEN..],
            )
            .map_err(|_| SealError::Authentication)?
            .len();
        let body = blob.freeze().slice(1 + NONCE_LEN..1 + NONCE_LEN + n);
        let data = if flags & FLAG_COMPRESSED != 0 {
            Bytes::from(
                zstd::bulk::decompress(&body, len)
                    .map_err(|e| SealError::Damaged(format!("does not decompress: {e}")))?,
            )
        } else {
            body
        };
        // The tag proved these bytes were sealed for this id (see `open`).
        if data.len() != len {
            return Err(SealError::Mismatch);
        }
        Ok(data)
    }

    /// Seals a metadata object's payload (log entries, snapshot parts): zstd
    /// when smaller, then AES-256-GCM under the metadata key when the volume is
    /// encrypted, bound to the object's kind and volume. Returns the flags and
    /// the sealed bytes.
    pub fn seal_meta(
        &self,
        kind: u8,
        name: &str,
        payload: &[u8],
    ) -> Result<(u8, Vec<u8>), SealError> {
        let keys = self.unlocked()?;
        let (mut flags, body) = compress(payload, Some(3));
        let Some(keys) = keys else {
            return Ok((flags, body));
        };
        flags |= FLAG_ENCRYPTED;
        let sealed = encrypt(&keys.meta, &meta_aad(self.volume, kind, flags, name), body)?;
        Ok((flags, sealed))
    }

    /// Opens what [`seal_meta`](Self::seal_meta) sealed.
    pub fn open_meta(
        &self,
        kind: u8,
        name: &str,
        flags: u8,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let aad = meta_aad(self.volume, kind, flags, name);
        let body = self.unseal(flags, sealed, |k| &k.meta, &aad)?;
        if flags & FLAG_COMPRESSED == 0 {
            return Ok(body);
        }
        // Metadata objects are a few MiB at most; 1 GiB bounds a forged one
        // (decoded as a stream, so a bomb stops at the bound).
        use std::io::Read;
        const LIMIT: u64 = 1 << 30;
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(&body[..])
            .and_then(|d| d.take(LIMIT + 1).read_to_end(&mut out))
            .map_err(|e| SealError::Damaged(format!("does not decompress: {e}")))?;
        if out.len() as u64 > LIMIT {
            return Err(SealError::Damaged("decompresses to more than 1 GiB".into()));
        }
        Ok(out)
    }
}

/// zstd at `level` when that makes `data` smaller: (flags, body).
fn compress(data: &[u8], level: Option<i32>) -> (u8, Vec<u8>) {
    match level.map(|l| zstd::bulk::compress(data, l)) {
        Some(Ok(c)) if c.len() < data.len() => (FLAG_COMPRESSED, c),
        _ => (0, data.to_vec()),
    }
}

/// The AES-256-GCM key. ring's implementation (AES-NI, carry-less multiply, and
/// the vector forms of both where the CPU has them) runs at several GB/s per core,
/// against about 1 GB/s for the aes-gcm crate here; the bytes are the same.
fn cipher(key: &Secret32) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.bytes()).expect("a 32-byte key"))
}

/// nonce (fresh, random) ‖ AES-256-GCM of `body` under `key` ‖ tag, bound to `aad`.
fn encrypt(key: &Secret32, aad: &[u8], body: Vec<u8>) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(NONCE_LEN + body.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    drop(body);
    let tag = cipher(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| SealError::Damaged("too large to encrypt".into()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// What [`encrypt`] sealed, checked against its tag and `aad`.
fn decrypt(key: &Secret32, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Damaged("shorter than nonce and tag".into()));
    }
    let (nonce, ct_and_tag) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).expect("a 12-byte nonce");
    let mut body = ct_and_tag.to_vec();
    let len = cipher(key)
        .open_in_place(nonce, Aad::from(aad), &mut body)
        .map_err(|_| SealError::Authentication)?
        .len();
    body.truncate(len);
    Ok(body)
}

/// Associated data of a metadata object: it is bound to its kind, volume,
/// flags and object name (so one cannot be served for another).
fn meta_aad(volume: VolumeId, kind: u8, flags: u8, name: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(34 + name.len());
    a.extend_from_slice(b"cloudraid meta\0\0");
    a.push(kind);
    a.extend_from_slice(&volume.0);
    a.push(flags);
    a.extend_from_slice(name.as_bytes());
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::keys::{Keys, Secret32};

    fn sealer(level: Option<i32>) -> ChunkSealer {
        let vol = VolumeId::random();
        let c = level.map_or(Compression::None, Compression::Zstd);
        ChunkSealer::encrypted(vol, Some(Keys::derive(&Secret32::random(), vol)), c)
    }

    /// The test vector of the GCM specification (AES-256, zero key and nonce, one
    /// block of zeros): sealed bytes are standard AES-256-GCM, so volumes sealed by
    /// any implementation open with this one.
    #[test]
    fn aes_256_gcm_known_answer() {
        let key = Secret32::from_bytes([0u8; 32]);
        let mut sealed = vec![0u8; NONCE_LEN];
        sealed.extend_from_slice(&hex("cea7403d4d606b6e074ec5d3baf39d18"));
        sealed.extend_from_slice(&hex("d0d1c8a799996bf0265b98b5d48ab919"));
        assert_eq!(decrypt(&key, b"", &sealed).unwrap(), [0u8; 16]);
        sealed[NONCE_LEN] ^= 1;
        assert_eq!(decrypt(&key, b"", &sealed), Err(SealError::Authentication));
        // And what encrypt makes opens, bound to its associated data.
        let s = encrypt(&key, b"aad", b"some bytes".to_vec()).unwrap();
        assert_eq!(s.len(), NONCE_LEN + 10 + TAG_LEN);
        assert_eq!(decrypt(&key, b"aad", &s).unwrap(), b"some bytes");
        assert_eq!(decrypt(&key, b"other", &s), Err(SealError::Authentication));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn opening_in_place_gives_what_open_gives_and_refuses_what_it_refuses() {
        for level in [Some(3), None] {
            let s = sealer(level);
            let text = b"the same words again and again ".repeat(1000);
            let id = s.id_of(&text).unwrap();
            let blob = s.seal(&id, &text).unwrap();
            assert_eq!(
                s.open_owned(&id, BytesMut::from(&blob[..]), text.len())
                    .unwrap(),
                text
            );
            let mut bad = blob.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(
                s.open_owned(&id, BytesMut::from(&bad[..]), text.len()),
                Err(SealError::Authentication)
            );
            let other = s.id_of(b"other").unwrap();
            assert!(s
                .open_owned(&other, BytesMut::from(&blob[..]), text.len())
                .is_err());
        }
    }

    #[test]
    fn round_trip_compressible_and_not() {
        let s = sealer(Some(3));
        let text = b"the same words again and again ".repeat(1000);
        let id = s.id_of(&text).unwrap();
        let blob = s.seal(&id, &text).unwrap();
        assert!(blob.len() < text.len() / 5, "compressed: {}", blob.len());
        assert_eq!(blob[0], FLAG_COMPRESSED | FLAG_ENCRYPTED);
        assert_eq!(s.open(&id, &blob, text.len()).unwrap(), text);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..10_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let id = s.id_of(&noise).unwrap();
        let blob = s.seal(&id, &noise).unwrap();
        assert_eq!(blob[0], FLAG_ENCRYPTED, "kept raw when zstd does not help");
        assert_eq!(blob.len(), 1 + 12 + noise.len() + 16);
        assert_eq!(s.open(&id, &blob, noise.len()).unwrap(), noise);
    }

    #[test]
    fn ids_are_keyed() {
        let (a, b) = (sealer(None), sealer(None));
        let data = b"same content";
        assert_eq!(a.id_of(data).unwrap(), a.id_of(data).unwrap());
        assert_ne!(a.id_of(data).unwrap(), b.id_of(data).unwrap());
        assert_ne!(a.id_of(data).unwrap(), ChunkId::of(data));
        let plain = ChunkSealer::plain(VolumeId::random(), Compression::None);
        assert_eq!(plain.id_of(data).unwrap(), ChunkId::of(data));
    }

    #[test]
    fn altered_swapped_or_locked_blobs_never_open() {
        let s = sealer(Some(1));
        let (x, y) = (b"chunk x".repeat(50), b"chunk y".repeat(50));
        let (ix, iy) = (s.id_of(&x).unwrap(), s.id_of(&y).unwrap());
        let bx = s.seal(&ix, &x).unwrap();
        let by = s.seal(&iy, &y).unwrap();
        // Another chunk's blob under this id.
        assert_eq!(s.open(&ix, &by, x.len()), Err(SealError::Authentication));
        let mut bad = bx.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 1;
        assert_eq!(s.open(&ix, &bad, x.len()), Err(SealError::Authentication));
        // The flags are authenticated too.
        let mut flipped = bx.clone();
        flipped[0] ^= FLAG_COMPRESSED;
        assert!(s.open(&ix, &flipped, x.len()).is_err());
        // A plaintext blob slipped into an encrypted volume.
        let mut forged = vec![0u8];
        forged.extend_from_slice(&x);
        assert_eq!(
            s.open(&ix, &forged, x.len()),
            Err(SealError::Authentication)
        );
        let locked = ChunkSealer::encrypted(VolumeId::random(), None, Compression::None);
        assert_eq!(locked.open(&ix, &bx, x.len()), Err(SealError::Locked));
        assert_eq!(locked.id_of(&x), Err(SealError::Locked));
        assert_eq!(s.open(&ix, &bx, x.len()).unwrap(), x);
    }
}
