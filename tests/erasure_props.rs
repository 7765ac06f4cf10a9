//! Property tests of the pure stages: shard headers and k+m coding.

use bytes::Bytes;
use cloudraid::erasure::{decode, encode, verify_shard, CodecError, Layout};
use cloudraid::format::{ChunkId, ShardHeader, VolumeId};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// Dropping or corrupting any ≤ m shards gives back identical bytes; losing
    /// m+1 gives a clean error, never wrong bytes.
    #[test]
    fn any_k_shards_rebuild_the_chunk(
        data in proptest::collection::vec(any::<u8>(), 0..20_000),
        k in 1usize..8,
        m in 0usize..4,
        seed in any::<u64>(),
    ) {
        let vol = VolumeId([3; 16]);
        let id = ChunkId::of(&data);
        let layout = Layout::new(k, m).unwrap();
        let objs = encode(vol, id, &data, layout).unwrap();
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
                    return verify_shard(&Bytes::from(v), vol, &id, i, layout, data.len()).ok();
                }
                Some(verify_shard(o, vol, &id, i, layout, data.len()).unwrap())
            }).collect();
            let r = decode(&id, payloads, layout, data.len());
            if lost <= m {
                prop_assert_eq!(r.unwrap(), data.clone());
            } else {
                prop_assert!(matches!(r, Err(CodecError::NotEnoughShards { .. })), "{r:?}");
            }
        }
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
