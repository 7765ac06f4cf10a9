use super::{Batch, MetaError, MetaResult, MetaStore};
use std::path::Path;

/// [`MetaStore`] on a sled database in the state dir. sled is only durable after
/// `flush`, which it also does on its own every `flush_every_ms`.
pub struct SledMeta {
    db: sled::Db,
}

fn err(e: sled::Error) -> MetaError {
    MetaError::Io(e.to_string())
}

impl SledMeta {
    pub fn open(path: &Path) -> MetaResult<Self> {
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(500))
            .cache_capacity(64 << 20)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    MetaError::Locked {
                        path: path.display().to_string(),
                    }
                }
                other => MetaError::Io(format!("cannot open {}: {other}", path.display())),
            })?;
        Ok(SledMeta { db })
    }
}

impl MetaStore for SledMeta {
    fn get(&self, key: &[u8]) -> MetaResult<Option<Vec<u8>>> {
        Ok(self.db.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> MetaResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let iter = match after {
            Some(a) => self.db.range((
                std::ops::Bound::Excluded(a.to_vec()),
                std::ops::Bound::Unbounded,
            )),
            None => self.db.range(prefix.to_vec()..),
        };
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(err)?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn apply(&self, batch: Batch) -> MetaResult<()> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.db.apply_batch(b).map_err(err)
    }

    fn flush(&self) -> MetaResult<()> {
        self.db.flush().map(|_| ()).map_err(err)
    }
}
