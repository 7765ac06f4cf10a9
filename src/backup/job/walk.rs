//! Comparing a job's sources with the volume, one directory at a time.
//!
//! The walk visits the local tree depth first; at each directory it lists the
//! local entries (filtered by the job's patterns) and the volume directory's
//! entries, both sorted by name, and pairs them up. Memory is bounded by the
//! largest directory (and the directories waiting on the stack), never by the
//! size of the tree. The same walk serves the plan (nothing changes) and the run.

use super::config::JobSection;
use crate::format::Kind;
use crate::fs::Fs;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Which local paths a job takes: not excluded, and (when `include` is set)
/// included themselves or through a parent directory. Patterns are gitignore
/// lines relative to the source they are applied to.
pub struct Filter {
    exclude: Gitignore,
    include: Option<Gitignore>,
}

impl Filter {
    pub fn new(root: &Path, job: &JobSection) -> Result<Filter, String> {
        let build = |patterns: &[super::config::Pattern]| -> Result<Gitignore, String> {
            let mut b = GitignoreBuilder::new(root);
            for p in patterns {
                b.add_line(None, &p.0)
                    .map_err(|e| format!("job {}: pattern {:?}: {e}", job.name, p.0))?;
            }
            b.build()
                .map_err(|e| format!("job {}: patterns: {e}", job.name))
        };
        Ok(Filter {
            exclude: build(&job.exclude)?,
            include: if job.include.is_empty() {
                None
            } else {
                Some(build(&job.include)?)
            },
        })
    }

    /// Whether `path` (under the root) is taken. Directories are walked unless
    /// excluded: `include` picks files, wherever they are.
    pub fn takes(&self, path: &Path, is_dir: bool) -> bool {
        if self.exclude.matched(path, is_dir).is_ignore() {
            return false;
        }
        match &self.include {
            Some(inc) if !is_dir => inc.matched_path_or_any_parents(path, false).is_ignore(),
            _ => true,
        }
    }
}

/// A local entry the job takes.
pub struct Local {
    pub name: Vec<u8>,
    /// Where it is in the source tree (what patterns match).
    pub path: PathBuf,
    /// What is stored: `path` itself, or the target of a symlink followed.
    pub src: PathBuf,
    /// Of `src` (a symlink's own unless followed).
    pub md: std::fs::Metadata,
}

impl Local {
    pub fn is_dir(&self) -> bool {
        self.md.is_dir()
    }
    pub fn kind(&self) -> Kind {
        let ft = self.md.file_type();
        if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Fifo
        }
    }
}

/// A local entry as the job sees it: `None` when it is skipped (a followed
/// symlink whose target is gone is kept as the symlink).
pub fn local_entry(path: PathBuf, name: Vec<u8>, follow: bool) -> Result<Local, String> {
    let md = std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if follow && md.file_type().is_symlink() {
        if let (Ok(target), Ok(real)) = (std::fs::metadata(&path), std::fs::canonicalize(&path)) {
            return Ok(Local {
                name,
                path,
                src: real,
                md: target,
            });
        }
    }
    Ok(Local {
        name,
        src: path.clone(),
        path,
        md,
    })
}

/// The entries of local directory `dir` the job takes, sorted by name; the
/// entries that could not be read are reported in `errors`.
pub fn local_children(
    dir: &Path,
    filter: &Filter,
    follow: bool,
    errors: &mut Vec<String>,
) -> Result<Vec<Local>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for e in rd {
        let e = match e {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        let name = e.file_name().as_bytes().to_vec();
        match local_entry(e.path(), name, follow) {
            Ok(l) => {
                if filter.takes(&l.path, l.is_dir()) {
                    out.push(l);
                }
            }
            Err(err) => errors.push(err),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One name of a directory, on either side.
pub enum Pair {
    /// Only in the source (`None`), or on both sides (the volume entry's inode and kind).
    Local(Box<Local>, Option<(u64, Kind)>),
    /// Only in the volume.
    Gone(Vec<u8>, u64, Kind),
}

/// Pairs sorted local entries with sorted volume entries by name.
pub fn pair(local: Vec<Local>, vol: Vec<(Vec<u8>, u64, Kind)>) -> Vec<Pair> {
    let mut out = Vec::with_capacity(local.len().max(vol.len()));
    let mut vol = vol.into_iter().peekable();
    for l in local {
        while let Some((n, _, _)) = vol.peek() {
            if n.as_slice() < l.name.as_slice() {
                let (n, ino, k) = vol.next().unwrap();
                out.push(Pair::Gone(n, ino, k));
            } else {
                break;
            }
        }
        let both = match vol.peek() {
            Some((n, ino, k)) if *n == l.name => {
                let r = (*ino, *k);
                vol.next();
                Some(r)
            }
            _ => None,
        };
        out.push(Pair::Local(Box::new(l), both));
    }
    for (n, ino, k) in vol {
        out.push(Pair::Gone(n, ino, k));
    }
    out
}

/// Whether a volume name was left by an interrupted store (`.NAME.cloudraid-put.PID.N`).
pub fn is_leftover(name: &[u8]) -> bool {
    name.windows(15).any(|w| w == b".cloudraid-put.")
}

/// Whether the volume's file `ino` has the local file's size and modification
/// time: taken as unchanged without reading it (as rsync, restic and `put` do).
pub async fn same_size_and_time(fs: &Fs, ino: u64, md: &std::fs::Metadata) -> bool {
    match fs.getattr(ino).await {
        Ok(a) => a.kind == Kind::File && a.size == md.len() && md.modified().ok() == Some(a.mtime),
        Err(_) => false,
    }
}

/// The non-directory entries under volume directory `ino` (for a plan's
/// deletions).
pub async fn count_entries(fs: &Fs, ino: u64) -> u64 {
    let mut n = 0;
    let mut stack = vec![ino];
    while let Some(d) = stack.pop() {
        for (_, c, k) in crate::front::ops::children(fs, d).await.unwrap_or_default() {
            if k == Kind::Dir {
                stack.push(c);
            } else {
                n += 1;
            }
        }
    }
    n
}

/// The device a local path is on (for `one_file_system`).
pub fn device_of(md: &std::fs::Metadata) -> u64 {
    md.dev()
}
