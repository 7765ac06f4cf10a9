//! The chunk cache: verified chunks in memory, least recently used evicted first,
//! bounded in bytes (a hard limit: a chunk larger than the whole cache is not kept).

use crate::format::ChunkId;
use bytes::Bytes;
use lru::LruCache;
use std::sync::Mutex;

pub struct ChunkCache {
    inner: Mutex<Inner>,
    capacity: u64,
}

struct Inner {
    lru: LruCache<ChunkId, Bytes>,
    bytes: u64,
    hits: u64,
    misses: u64,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CacheStats {
    pub bytes: u64,
    pub capacity: u64,
    pub chunks: usize,
    pub hits: u64,
    pub misses: u64,
}

impl ChunkCache {
    pub fn new(capacity: u64) -> Self {
        ChunkCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
                hits: 0,
                misses: 0,
            }),
            capacity,
        }
    }

    pub fn get(&self, id: &ChunkId) -> Option<Bytes> {
        let mut g = self.inner.lock().unwrap();
        let hit = g.lru.get(id).cloned();
        if hit.is_some() {
            g.hits += 1;
            crate::metrics::METRICS.cache_hits.inc();
        } else {
            g.misses += 1;
            crate::metrics::METRICS.cache_misses.inc();
        }
        hit
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.inner.lock().unwrap().lru.contains(id)
    }

    pub fn insert(&self, id: ChunkId, data: Bytes) {
        let len = data.len() as u64;
        if len > self.capacity {
            return;
        }
        let mut g = self.inner.lock().unwrap();
        if let Some(old) = g.lru.put(id, data) {
            g.bytes -= old.len() as u64;
        }
        g.bytes += len;
        while g.bytes > self.capacity {
            match g.lru.pop_lru() {
                Some((_, b)) => g.bytes -= b.len() as u64,
                None => break,
            }
        }
    }

    pub fn remove(&self, id: &ChunkId) {
        let mut g = self.inner.lock().unwrap();
        if let Some(b) = g.lru.pop(id) {
            g.bytes -= b.len() as u64;
        }
    }

    pub fn stats(&self) -> CacheStats {
        let g = self.inner.lock().unwrap();
        CacheStats {
            bytes: g.bytes,
            capacity: self.capacity,
            chunks: g.lru.len(),
            hits: g.hits,
            misses: g.misses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_bytes_and_lru() {
        let c = ChunkCache::new(100);
        let id = |n: u8| ChunkId([n; 32]);
        c.insert(id(1), Bytes::from(vec![0; 40]));
        c.insert(id(2), Bytes::from(vec![0; 40]));
        assert!(c.get(&id(1)).is_some()); // 1 is now most recent
        c.insert(id(3), Bytes::from(vec![0; 40])); // evicts 2
        assert!(c.contains(&id(1)) && !c.contains(&id(2)) && c.contains(&id(3)));
        assert_eq!(c.stats().bytes, 80);
        c.insert(id(4), Bytes::from(vec![0; 101])); // larger than the cache: not kept
        assert!(!c.contains(&id(4)));
        assert!(c.stats().bytes <= 100);
    }
}
