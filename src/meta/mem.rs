use super::{Batch, MetaResult, MetaStore};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

/// In-memory [`MetaStore`]: a B-tree behind a mutex.
#[derive(Default)]
pub struct MemMeta {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemMeta {
    pub fn new() -> Self {
        Self::default()
    }
}

impl MetaStore for MemMeta {
    fn get(&self, key: &[u8]) -> MetaResult<Option<Vec<u8>>> {
        Ok(self.map.lock().unwrap().get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> MetaResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let map = self.map.lock().unwrap();
        let start = match after {
            Some(a) => Bound::Excluded(a.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        Ok(map
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, batch: Batch) -> MetaResult<()> {
        let mut map = self.map.lock().unwrap();
        for (k, v) in batch.ops {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Ok(())
    }

    fn flush(&self) -> MetaResult<()> {
        Ok(())
    }
}
