//! Property tests of the pure stages: the whole chunk pipeline (compress →
//! encrypt → encode → lose shards → decode → decrypt → decompress), and shard
//! headers.

use bytes::{Bytes, BytesMut};
use cloudraid::data::erasure::{
    decode, encode, rebuild_in_place, verify_shard, verify_shard_parts, CodecError, Layout,
};
use cloudraid::data::keys::{Keys, Secret32};
use cloudraid::data::seal::{ChunkSealer, Compression};
use cloudraid::format::{ChunkId, ShardHeader, VolumeId, SHARD_HEADER_LEN};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// A chunk sealed (compressed when that helps, encrypted), erasure-coded,
    /// with any ≤ m shards dropped or corrupted, decodes and opens to identical
    /// bytes; losing m+1 gives a clean error, never wrong bytes.
    #[test]
    fn the_chunk_pipeline_survives_any_m_lost_shards(
        random in proptest::collection::vec(any::<u8>(), 0..20_000),
        repeats in 0usize..2000,
        k in 1usize..8,
        m in 0usize..4,
        seed in any::<u64>(),
        level in prop_oneof![Just(None), (1i32..6).prop_map(Some)],
    ) {
        // Random bytes, then a compressible run.
        let mut data = random;
        data.extend(b"abc".iter().cycle().take(repeats * 3));
        let vol = VolumeId([3; 16]);
        let sealer = ChunkSealer::encrypted(
            vol,
            Some(Keys::derive(&Secret32::random(), vol)),
            level.map_or(Compression::None, Compression::Zstd),
        );
        let id = sealer.id_of(&data).unwrap();
        let sealed = sealer.seal(&id, &data).unwrap();
        let layout = Layout::new(k, m).unwrap();
        let objs = encode(vol, id, &sealed, layout).unwrap();
        prop_assert_eq!(objs.len(), k + m);
        // Pick which shards to damage: a seeded shuffle of the indexes.
        let mut order: Vec<usize> = (0..k + m).collect();
        let mut s = seed;
        for i in (1..order.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        for lost in [m, m + 1] {
            if lost > k + m { continue; }
            let damaged = &order[..lost];
            let payloads: Vec<Option<Bytes>> = objs.iter().enumerate().map(|(i, o)| {
                if damaged.contains(&i) {
                    // Half the damaged shards are missing, half are corrupted in place.
                    if i % 2 == 0 { return None; }
                    let mut v = o.to_vec();
                    let at = (seed as usize + i) % v.len();
                    v[at] ^= 0x01;
                    return verify_shard(&Bytes::from(v), vol, &id, i, layout, sealed.len()).ok();
                }
                Some(verify_shard(o, vol, &id, i, layout, sealed.len()).unwrap())
            }).collect();
            // The read path's way: each shard checked in two parts (header, payload),
            // the data payloads in one buffer, the missing ones rebuilt there.
            let plen = layout.payload_len(sealed.len());
            let mut joined = vec![0x5A; k * plen];
            let mut parity: Vec<Option<Vec<u8>>> = vec![None; m];
            let mut present = vec![false; k];
            for (i, p) in payloads.iter().enumerate() {
                let Some(p) = p else { continue };
                let (head, _) = objs[i].split_at(SHARD_HEADER_LEN);
                prop_assert!(verify_shard_parts(head, p, vol, &id, i, layout, sealed.len()).is_ok());
                if i < k {
                    joined[i * plen..(i + 1) * plen].copy_from_slice(p);
                    present[i] = true;
                } else {
                    parity[i - k] = Some(p.to_vec());
                }
            }
            let parity_refs = parity.iter_mut().map(|p| p.as_deref_mut()).collect();
            let in_place = rebuild_in_place(layout, &mut joined, &present, parity_refs);
            let r = decode(payloads, layout, sealed.len());
            if lost <= m {
                let blob = r.unwrap();
                in_place.unwrap();
                prop_assert_eq!(&joined[..sealed.len()], &blob[..]);
                joined.truncate(sealed.len());
                let owned = sealer.open_owned(&id, BytesMut::from(&joined[..]), data.len()).unwrap();
                prop_assert_eq!(&owned[..], &data[..]);
                let opened = sealer.open(&id, &blob, data.len()).unwrap();
                prop_assert_eq!(opened, data.clone());
            } else {
                prop_assert!(matches!(r, Err(CodecError::NotEnoughShards { .. })), "{r:?}");
                prop_assert!(matches!(in_place, Err(CodecError::NotEnoughShards { .. })), "{in_place:?}");
            }
        }
    }

    /// A shard altered together with its checksums passes every per-shard check;
    /// the chunk's shards then disagree, the key names the altered one, and the
    /// others still open to the exact bytes.
    #[test]
    fn a_shard_altered_with_its_checksums_is_named_and_read_around(
        data in proptest::collection::vec(any::<u8>(), 1..20_000),
        k in 1usize..6,
        m in 1usize..4,
        which in any::<usize>(),
        at in any::<usize>(),
    ) {
        let vol = VolumeId([8; 16]);
        let sealer = ChunkSealer::encrypted(
            vol,
            Some(Keys::derive(&Secret32::random(), vol)),
            Compression::Zstd(1),
        );
        let id = sealer.id_of(&data).unwrap();
        let sealed = sealer.seal(&id, &data).unwrap();
        let layout = Layout::new(k, m).unwrap();
        let objs = encode(vol, id, &sealed, layout).unwrap();
        let bad = which % (k + m);
        let mut forged = objs[bad].to_vec();
        let hl = cloudraid::format::SHARD_HEADER_LEN;
        let pos = hl + at % (forged.len() - hl);
        forged[pos] ^= 0x5a;
        let mut h = ShardHeader::decode_and_verify(&objs[bad]).unwrap().0;
        h.payload_crc = crc32fast::hash(&forged[hl..]);
        h.encode_into(&mut forged[..hl]);
        let payloads: Vec<Bytes> = objs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let o = if i == bad { Bytes::from(forged.clone()) } else { o.clone() };
                verify_shard(&o, vol, &id, i, layout, sealed.len()).unwrap()
            })
            .collect();
        prop_assert!(!cloudraid::data::erasure::consistent(&payloads, layout));
        let opens = |blob: &[u8]| sealer.open(&id, blob, data.len()).is_ok();
        prop_assert_eq!(
            cloudraid::data::erasure::locate_altered(&payloads, layout, sealed.len(), Some(&opens)),
            Some(bad)
        );
        let without: Vec<Option<Bytes>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (i != bad).then(|| p.clone()))
            .collect();
        let blob = decode(without, layout, sealed.len()).unwrap();
        prop_assert_eq!(sealer.open(&id, &blob, data.len()).unwrap(), data);
    }

    #[test]
    fn shard_header_round_trips_and_detects_any_flipped_byte(
        payload in proptest::collection::vec(any::<u8>(), 1..2000),
        index in 0u8..20, k in 1u8..10, m in 0u8..5, flip in any::<usize>(),
    ) {
        let h = ShardHeader {
            volume: VolumeId([9; 16]), chunk: ChunkId([4; 32]), index, k, m,
            chunk_len: 12345, payload_len: payload.len() as u32, payload_crc: crc32fast::hash(&payload),
        };
        let mut obj = vec![0u8; cloudraid::format::SHARD_HEADER_LEN];
        h.encode_into(&mut obj);
        obj.extend_from_slice(&payload);
        let (back, off) = ShardHeader::decode_and_verify(&obj).unwrap();
        prop_assert_eq!(&back, &h);
        prop_assert_eq!(off, cloudraid::format::SHARD_HEADER_LEN);
        let at = flip % obj.len();
        obj[at] ^= 0x80;
        prop_assert!(ShardHeader::decode_and_verify(&obj).is_err());
    }
}
