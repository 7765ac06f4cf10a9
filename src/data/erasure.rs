//! Erasure coding of one chunk into k data + m parity shard objects, and back.
//!
//! Pure functions, no I/O: `encode` turns a sealed chunk (see `seal`) into k+m
//! complete shard objects (header + payload, ready to upload); `decode` rebuilds
//! the sealed chunk from any k of them. Each shard's header and checksum are
//! checked on their own (`verify_shard`); the sealed chunk is authenticated when
//! it is opened.

use crate::format::{ChunkId, HeaderError, ShardHeader, VolumeId, SHARD_HEADER_LEN};
use bytes::Bytes;
use reed_solomon_erasure::galois_8::ReedSolomon;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("invalid redundancy: k={k}, m={m} (k must be 1..=255 and k+m at most 256)")]
    BadParameters { k: usize, m: usize },
    #[error("only {have} valid shards, {need} needed")]
    NotEnoughShards { have: usize, need: usize },
    #[error("shard {index}: {reason}")]
    BadShard { index: usize, reason: String },
    #[error("chunk of {0} bytes is larger than a shard can describe")]
    TooLarge(usize),
}

/// Geometry of one coded chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub k: usize,
    pub m: usize,
}

impl Layout {
    pub fn new(k: usize, m: usize) -> Result<Self, CodecError> {
        if k == 0 || k > 255 || k + m > 256 {
            return Err(CodecError::BadParameters { k, m });
        }
        Ok(Layout { k, m })
    }
    pub fn total(&self) -> usize {
        self.k + self.m
    }
    /// Payload bytes per shard for a chunk of `len` bytes.
    pub fn payload_len(&self, len: usize) -> usize {
        len.div_ceil(self.k).max(1)
    }
    pub fn shard_object_len(&self, len: usize) -> usize {
        SHARD_HEADER_LEN + self.payload_len(len)
    }
}

struct Payload(Vec<u8>);
impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        &self.0[SHARD_HEADER_LEN..]
    }
}
impl AsMut<[u8]> for Payload {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0[SHARD_HEADER_LEN..]
    }
}

/// Encodes `data` (whose id is `id`) into k+m shard objects. Each object is allocated
/// once with room for its header, so the chunk is copied exactly once.
pub fn encode(
    volume: VolumeId,
    id: ChunkId,
    data: &[u8],
    layout: Layout,
) -> Result<Vec<Bytes>, CodecError> {
    let len = u32::try_from(data.len()).map_err(|_| CodecError::TooLarge(data.len()))?;
    let plen = layout.payload_len(data.len());
    // Data shards get their piece copied in (zero-padded at the end); parity
    // shards start as zeros.
    let mut pieces = data.chunks(plen.max(1));
    let mut shards: Vec<Payload> = (0..layout.total())
        .map(|i| {
            let mut v = Vec::with_capacity(SHARD_HEADER_LEN + plen);
            v.resize(SHARD_HEADER_LEN, 0);
            if i < layout.k {
                if let Some(piece) = pieces.next() {
                    v.extend_from_slice(piece);
                }
            }
            v.resize(SHARD_HEADER_LEN + plen, 0);
            Payload(v)
        })
        .collect();
    if layout.m > 0 {
        let rs = ReedSolomon::new(layout.k, layout.m).map_err(|_| CodecError::BadParameters {
            k: layout.k,
            m: layout.m,
        })?;
        rs.encode(&mut shards)
            .map_err(|_| CodecError::BadParameters {
                k: layout.k,
                m: layout.m,
            })?;
    }
    Ok(shards
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            let header = ShardHeader {
                volume,
                chunk: id,
                index: i as u8,
                k: layout.k as u8,
                m: layout.m as u8,
                chunk_len: len,
                payload_len: plen as u32,
                payload_crc: crc32fast::hash(s.as_ref()),
            };
            header.encode_into(&mut s.0[..SHARD_HEADER_LEN]);
            Bytes::from(s.0)
        })
        .collect())
}

/// Checks one shard object against what the index expects of it and returns its
/// payload. A shard that fails here must be treated as missing.
pub fn verify_shard(
    obj: &Bytes,
    volume: VolumeId,
    id: &ChunkId,
    index: usize,
    layout: Layout,
    chunk_len: usize,
) -> Result<Bytes, CodecError> {
    let (h, off) =
        ShardHeader::decode_and_verify(obj).map_err(|e: HeaderError| CodecError::BadShard {
            index,
            reason: e.to_string(),
        })?;
    expected_header(&h, volume, id, index, layout, chunk_len)?;
    Ok(obj.slice(off..))
}

/// [`verify_shard`] for a shard read in two parts (`Backend::get_into`): `head`,
/// exactly its header, and `payload`, the rest. The same checks.
pub fn verify_shard_parts(
    head: &[u8],
    payload: &[u8],
    volume: VolumeId,
    id: &ChunkId,
    index: usize,
    layout: Layout,
    chunk_len: usize,
) -> Result<(), CodecError> {
    let h =
        ShardHeader::decode_and_verify_parts(head, payload).map_err(|e| CodecError::BadShard {
            index,
            reason: e.to_string(),
        })?;
    expected_header(&h, volume, id, index, layout, chunk_len)
}

/// Whether a (checked) shard header is the one the index expects.
fn expected_header(
    h: &ShardHeader,
    volume: VolumeId,
    id: &ChunkId,
    index: usize,
    layout: Layout,
    chunk_len: usize,
) -> Result<(), CodecError> {
    let bad = |reason: String| CodecError::BadShard { index, reason };
    if h.volume != volume {
        return Err(bad(format!("belongs to another volume ({})", h.volume)));
    }
    if h.chunk != *id || h.index as usize != index {
        return Err(bad(format!(
            "is shard {} of chunk {}, expected shard {index} of chunk {id}",
            h.index, h.chunk
        )));
    }
    if h.k as usize != layout.k || h.m as usize != layout.m || h.chunk_len as usize != chunk_len {
        return Err(bad("geometry differs from the index".into()));
    }
    if h.payload_len as usize != layout.payload_len(chunk_len) {
        return Err(bad("payload length differs from the geometry".into()));
    }
    Ok(())
}

/// Rebuilds, in place, the data payloads of a chunk that are missing: `data` holds
/// the k data payloads back to back (each `data.len() / k` bytes; those not in
/// `present` are overwritten), `parity` the m parity payloads (`None` where
/// missing). Needs k payloads in all; opening the chunk checks what was rebuilt.
pub fn rebuild_in_place(
    layout: Layout,
    data: &mut [u8],
    present: &[bool],
    parity: Vec<Option<&mut [u8]>>,
) -> Result<(), CodecError> {
    assert_eq!(present.len(), layout.k);
    assert_eq!(parity.len(), layout.m);
    assert_eq!(data.len() % layout.k, 0);
    let have =
        present.iter().filter(|p| **p).count() + parity.iter().filter(|p| p.is_some()).count();
    if have < layout.k {
        return Err(CodecError::NotEnoughShards {
            have,
            need: layout.k,
        });
    }
    if present.iter().all(|p| *p) {
        return Ok(());
    }
    let plen = data.len() / layout.k;
    let rs = ReedSolomon::new(layout.k, layout.m).map_err(|_| CodecError::BadParameters {
        k: layout.k,
        m: layout.m,
    })?;
    let mut shards: Vec<(&mut [u8], bool)> = data
        .chunks_mut(plen)
        .zip(present)
        .map(|(d, p)| (d, *p))
        .chain(parity.into_iter().map(|p| match p {
            Some(p) => (p, true),
            None => (&mut [][..], false),
        }))
        .collect();
    rs.reconstruct_data(&mut shards)
        .map_err(|_| CodecError::NotEnoughShards {
            have,
            need: layout.k,
        })
}

/// Rebuilds a sealed chunk of `chunk_len` bytes from verified payloads (`None`
/// where a shard is missing or bad). Opening it checks what was rebuilt.
pub fn decode(
    mut payloads: Vec<Option<Bytes>>,
    layout: Layout,
    chunk_len: usize,
) -> Result<Vec<u8>, CodecError> {
    assert_eq!(payloads.len(), layout.total());
    let have = payloads.iter().filter(|p| p.is_some()).count();
    if have < layout.k {
        return Err(CodecError::NotEnoughShards {
            have,
            need: layout.k,
        });
    }
    let data_complete = payloads[..layout.k].iter().all(|p| p.is_some());
    let mut out = Vec::with_capacity(chunk_len);
    if data_complete {
        for p in payloads[..layout.k].iter().flatten() {
            let take = (chunk_len - out.len()).min(p.len());
            out.extend_from_slice(&p[..take]);
        }
    } else {
        let rs = ReedSolomon::new(layout.k, layout.m).map_err(|_| CodecError::BadParameters {
            k: layout.k,
            m: layout.m,
        })?;
        let mut shards: Vec<Option<Vec<u8>>> = payloads
            .iter_mut()
            .map(|p| p.take().map(|b| b.to_vec()))
            .collect();
        rs.reconstruct_data(&mut shards)
            .map_err(|_| CodecError::NotEnoughShards {
                have,
                need: layout.k,
            })?;
        for s in shards[..layout.k].iter().flatten() {
            let take = (chunk_len - out.len()).min(s.len());
            out.extend_from_slice(&s[..take]);
        }
    }
    if out.len() != chunk_len {
        return Err(CodecError::NotEnoughShards {
            have,
            need: layout.k,
        });
    }
    Ok(out)
}

/// Whether all k+m payloads of a chunk agree: the parity recomputed from the
/// data payloads equals the stored parity. Needs no key: a shard altered along
/// with its checksum is caught here.
pub fn consistent(payloads: &[Bytes], layout: Layout) -> bool {
    if layout.m == 0 || payloads.len() != layout.total() {
        return true;
    }
    let Ok(rs) = ReedSolomon::new(layout.k, layout.m) else {
        return false;
    };
    let slices: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
    rs.verify(&slices).unwrap_or(false)
}

/// Checks a rebuilt sealed chunk (by opening it with the volume's key).
pub type OpensFn<'a> = &'a dyn Fn(&[u8]) -> bool;

/// Which one shard of a chunk whose payloads disagree is the altered one, if it
/// can be told. With `opens` (the volume's key): the first sealed chunk rebuilt
/// without some shard that opens is the true one, and the altered shards are
/// those that differ from its encoding. Without: the one shard without which the
/// others rebuild a consistent set, which only m ≥ 2 can tell. `None` when no
/// single shard explains it.
pub fn locate_altered(
    payloads: &[Bytes],
    layout: Layout,
    sealed_len: usize,
    opens: Option<OpensFn<'_>>,
) -> Option<usize> {
    let rs = ReedSolomon::new(layout.k, layout.m).ok()?;
    let mut found = Vec::new();
    for j in 0..payloads.len() {
        let mut shards: Vec<Option<Vec<u8>>> = payloads.iter().map(|p| Some(p.to_vec())).collect();
        shards[j] = None;
        if rs.reconstruct(&mut shards).is_err() {
            continue;
        }
        let full: Vec<Vec<u8>> = shards.into_iter().map(|s| s.unwrap_or_default()).collect();
        if let Some(opens) = opens {
            let mut blob = Vec::with_capacity(sealed_len);
            for s in &full[..layout.k] {
                let take = (sealed_len - blob.len()).min(s.len());
                blob.extend_from_slice(&s[..take]);
            }
            if !opens(&blob) {
                continue;
            }
            // The true chunk: which stored payloads differ from its encoding?
            let expected = encode(VolumeId([0; 16]), ChunkId([0; 32]), &blob, layout).ok()?;
            let differ: Vec<usize> = (0..payloads.len())
                .filter(|i| expected[*i][SHARD_HEADER_LEN..] != payloads[*i][..])
                .collect();
            return match differ[..] {
                [i] => Some(i),
                _ => None,
            };
        }
        if layout.m < 2 {
            return None;
        }
        if rs.verify(&full).unwrap_or(false) {
            found.push(j);
        }
    }
    match found[..] {
        [j] => Some(j),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8], k: usize, m: usize, drop: &[usize]) -> Result<Vec<u8>, CodecError> {
        let vol = VolumeId([7; 16]);
        let id = ChunkId::of(data);
        let layout = Layout::new(k, m).unwrap();
        let objs = encode(vol, id, data, layout).unwrap();
        let payloads = objs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                if drop.contains(&i) {
                    None
                } else {
                    Some(verify_shard(o, vol, &id, i, layout, data.len()).unwrap())
                }
            })
            .collect();
        decode(payloads, layout, data.len())
    }

    #[test]
    fn fast_path_and_rebuild() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        assert_eq!(roundtrip(&data, 4, 2, &[]).unwrap(), data);
        assert_eq!(roundtrip(&data, 4, 2, &[0, 3]).unwrap(), data);
        assert_eq!(
            roundtrip(&data, 4, 2, &[0, 1, 2]),
            Err(CodecError::NotEnoughShards { have: 3, need: 4 })
        );
        assert_eq!(roundtrip(&data, 1, 0, &[]).unwrap(), data);
        assert_eq!(roundtrip(b"", 2, 1, &[1]).unwrap(), b"");
    }

    /// The verified payloads of `data` encoded under `layout`.
    fn payloads_of(vol: VolumeId, id: ChunkId, data: &[u8], layout: Layout) -> Vec<Bytes> {
        encode(vol, id, data, layout)
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, o)| verify_shard(o, vol, &id, i, layout, data.len()).unwrap())
            .collect()
    }

    #[test]
    fn an_altered_shard_with_a_valid_checksum_is_found_by_the_others() {
        let vol = VolumeId([5; 16]);
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 253) as u8).collect();
        let id = ChunkId::of(&data);
        for (k, m) in [(3, 2), (2, 1)] {
            let layout = Layout::new(k, m).unwrap();
            let mut payloads = payloads_of(vol, id, &data, layout);
            assert!(consistent(&payloads, layout));
            for bad in 0..layout.total() {
                let good = payloads[bad].clone();
                let mut v = good.to_vec();
                v[10] ^= 0x40;
                payloads[bad] = Bytes::from(v);
                assert!(!consistent(&payloads, layout));
                let opens = |blob: &[u8]| blob == &data[..];
                assert_eq!(
                    locate_altered(&payloads, layout, data.len(), Some(&opens)),
                    Some(bad)
                );
                let without_key = locate_altered(&payloads, layout, data.len(), None);
                assert_eq!(without_key, (m >= 2).then_some(bad), "k={k} m={m}");
                payloads[bad] = good;
            }
        }
    }

    #[test]
    fn an_altered_padding_byte_is_named_too() {
        // 5001 bytes over k=2: shard 1 ends with one byte of padding.
        let vol = VolumeId([6; 16]);
        let data: Vec<u8> = (0..5001u32).map(|i| (i * 13 % 251) as u8).collect();
        let id = ChunkId::of(&data);
        let layout = Layout::new(2, 1).unwrap();
        let mut payloads = payloads_of(vol, id, &data, layout);
        let mut v = payloads[1].to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        payloads[1] = Bytes::from(v);
        assert!(!consistent(&payloads, layout));
        let opens = |blob: &[u8]| blob == &data[..];
        assert_eq!(
            locate_altered(&payloads, layout, data.len(), Some(&opens)),
            Some(1)
        );
    }

    #[test]
    fn rebuilt_in_place_as_decoded() {
        let vol = VolumeId([3; 16]);
        let data: Vec<u8> = (0..10_001u32).map(|i| (i * 29 % 241) as u8).collect();
        let id = ChunkId::of(&data);
        let layout = Layout::new(4, 2).unwrap();
        let plen = layout.payload_len(data.len());
        let payloads = payloads_of(vol, id, &data, layout);
        for drop in [vec![], vec![0], vec![3], vec![1, 2], vec![0, 5], vec![4, 5]] {
            let mut joined = vec![0xAA; 4 * plen];
            let present: Vec<bool> = (0..4).map(|i| !drop.contains(&i)).collect();
            for ((piece, p), ok) in joined.chunks_mut(plen).zip(&payloads).zip(&present) {
                if *ok {
                    piece.copy_from_slice(p);
                }
            }
            let mut parity: Vec<Vec<u8>> = (4..6).map(|i| payloads[i].to_vec()).collect();
            let parity_refs = parity
                .iter_mut()
                .enumerate()
                .map(|(j, p)| (!drop.contains(&(4 + j))).then_some(&mut p[..]))
                .collect();
            rebuild_in_place(layout, &mut joined, &present, parity_refs).unwrap();
            assert_eq!(&joined[..data.len()], &data[..], "lost {drop:?}");
        }
        // Three of six gone: not enough.
        let mut joined = vec![0; 4 * plen];
        let mut p4 = payloads[4].to_vec();
        assert_eq!(
            rebuild_in_place(
                layout,
                &mut joined,
                &[true, false, false, true],
                vec![Some(&mut p4[..]), None]
            ),
            Err(CodecError::NotEnoughShards { have: 3, need: 4 })
        );
    }

    #[test]
    fn a_shard_checks_the_same_whole_or_in_two_parts() {
        let vol = VolumeId([4; 16]);
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 199) as u8).collect();
        let id = ChunkId::of(&data);
        let layout = Layout::new(2, 1).unwrap();
        let objs = encode(vol, id, &data, layout).unwrap();
        let parts = |o: &[u8], i: usize, id: &ChunkId| {
            let (h, p) = o.split_at(SHARD_HEADER_LEN);
            verify_shard_parts(h, p, vol, id, i, layout, data.len())
        };
        let whole = |o: &[u8], i: usize, id: &ChunkId| {
            verify_shard(&Bytes::copy_from_slice(o), vol, id, i, layout, data.len()).map(|_| ())
        };
        for (i, obj) in objs.iter().enumerate() {
            assert_eq!(parts(obj, i, &id), Ok(()));
            assert_eq!(whole(obj, i, &id), Ok(()));
            // Wrong index, wrong chunk, a flipped payload bit, a flipped header bit.
            let j = (i + 1) % 3;
            assert_eq!(parts(obj, j, &id), whole(obj, j, &id));
            assert!(parts(obj, j, &id).is_err());
            let other = ChunkId([9; 32]);
            assert_eq!(parts(obj, i, &other), whole(obj, i, &other));
            assert!(parts(obj, i, &other).is_err());
            for at in [5, 70, SHARD_HEADER_LEN + 3, obj.len() - 1] {
                let mut v = obj.to_vec();
                v[at] ^= 0x10;
                assert_eq!(parts(&v, i, &id), whole(&v, i, &id), "bit at {at}");
                assert!(parts(&v, i, &id).is_err(), "bit at {at}");
            }
        }
    }

    #[test]
    fn swapped_shard_is_rejected() {
        let vol = VolumeId([1; 16]);
        let a = b"first chunk of data".to_vec();
        let b = b"other chunk of data".to_vec();
        let layout = Layout::new(2, 1).unwrap();
        let oa = encode(vol, ChunkId::of(&a), &a, layout).unwrap();
        let ob = encode(vol, ChunkId::of(&b), &b, layout).unwrap();
        let err = verify_shard(&ob[0], vol, &ChunkId::of(&a), 0, layout, a.len()).unwrap_err();
        assert!(err.to_string().contains("expected shard 0"), "{err}");
        let err = verify_shard(&oa[1], vol, &ChunkId::of(&a), 0, layout, a.len()).unwrap_err();
        assert!(matches!(err, CodecError::BadShard { .. }));
        let err = verify_shard(
            &oa[0],
            VolumeId([2; 16]),
            &ChunkId::of(&a),
            0,
            layout,
            a.len(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("another volume"), "{err}");
    }
}
