//! The path of an inode, for the placement rules that match files by path.
//!
//! The index maps names to inodes only (a file may have several names). The
//! core remembers the last name each inode was reached by — every kernel
//! lookup, create, link and rename passes here — and walks those names up to
//! the root. An inode reached otherwise (a CLI process that opened it by
//! number) is found by a walk of the tree from the root.

use super::{Fs, FsResult};
use crate::meta::index::ROOT_INO;
use std::sync::Mutex;

/// How many inodes' names are remembered (about 80 bytes each): the least
/// recently used are forgotten beyond, and found again by a search.
const NAMES_KEPT: usize = 256 * 1024;

/// Inode → (parent, name) of the last name it was reached by, for the most
/// recently used inodes (memory stays bounded however many files pass).
pub(super) struct Names(Mutex<lru::LruCache<u64, (u64, Vec<u8>)>>);

impl Default for Names {
    fn default() -> Self {
        Names(Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(NAMES_KEPT).expect("not zero"),
        )))
    }
}

impl Names {
    pub(super) fn learn(&self, parent: u64, name: &[u8], ino: u64) {
        if name == b"." || name == b".." || ino == ROOT_INO {
            return;
        }
        let mut m = self.0.lock().unwrap();
        match m.get(&ino) {
            Some((p, n)) if *p == parent && n == name => {}
            _ => {
                m.put(ino, (parent, name.to_vec()));
            }
        }
    }

    pub(super) fn forget(&self, ino: u64) {
        self.0.lock().unwrap().pop(&ino);
    }

    fn get(&self, ino: u64) -> Option<(u64, Vec<u8>)> {
        self.0.lock().unwrap().get(&ino).cloned()
    }
}

impl Fs {
    /// The path of `ino` from the volume root, without a leading `/` (empty
    /// for the root); `None` if no name leads to it (unlinked).
    pub fn path_of(&self, ino: u64) -> FsResult<Option<String>> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut at = ino;
        let mut seen = 0;
        while at != ROOT_INO {
            seen += 1;
            // A cycle of stale names (renames raced the walk): search instead.
            if seen > 4096 {
                return self.search_path(ino);
            }
            let known = self.names.get(at).filter(|(p, n)| {
                self.idx
                    .dirent(*p, n)
                    .ok()
                    .flatten()
                    .is_some_and(|d| d.ino == at)
            });
            match known {
                Some((p, n)) => {
                    parts.push(n);
                    at = p;
                }
                None => return self.search_path(ino),
            }
        }
        parts.reverse();
        Ok(Some(join(&parts)))
    }

    /// Walks the tree from the root for a name of `ino`, learning the names of
    /// the directories on the way.
    fn search_path(&self, ino: u64) -> FsResult<Option<String>> {
        let mut queue: std::collections::VecDeque<(u64, Vec<Vec<u8>>)> =
            [(ROOT_INO, Vec::new())].into();
        while let Some((dir, path)) = queue.pop_front() {
            let mut after = 0;
            loop {
                let batch = self.idx.dir_entries(dir, after, 1024)?;
                let Some(last) = batch.last() else { break };
                after = last.0;
                for (_, name) in batch {
                    let Some(d) = self.idx.dirent(dir, &name)? else {
                        continue;
                    };
                    let mut p = path.clone();
                    p.push(name.clone());
                    if d.ino == ino {
                        self.names.learn(dir, &name, ino);
                        return Ok(Some(join(&p)));
                    }
                    if d.kind == crate::format::Kind::Dir {
                        self.names.learn(dir, &name, d.ino);
                        queue.push_back((d.ino, p));
                    }
                }
            }
        }
        Ok(None)
    }
}

fn join(parts: &[Vec<u8>]) -> String {
    parts
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}
