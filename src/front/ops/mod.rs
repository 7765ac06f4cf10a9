//! Whole-file and whole-tree operations for front ends without a mount: `ls`,
//! `put`, `get`, `rm`, `mkdir` and `du`.
//!
//! They run over the filesystem core, so they behave the same whether the CLI
//! opened the volume itself or the mount daemon runs them for it (through the
//! control socket). Paths inside the volume are written `/dir/file` (the leading
//! slash is optional). Local files are read and written by the process running
//! the operation. Changes made while mounted are pushed out of the kernel's
//! caches, so the mount shows them at once.

mod du;
mod get;
mod ls;
mod mkdir;
mod put;
mod remove;
mod thaw;
pub mod upload;

pub use du::{du, render_du};
pub use get::{get, get_with};
pub use ls::{list, render_list, stat};
pub use mkdir::{mkdir, MkdirReport};
pub use put::put;
pub(crate) use put::times_of;
pub use remove::remove;
pub(crate) use remove::remove_at;
pub use thaw::{render_thaw, thaw, ThawReport, ThawedFile};

use crate::format::Kind;
use crate::fs::{Attr, Caller, Errno, Fs};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Progress of a transfer: (bytes done, bytes in all).
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// How well a file survives losing backends.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Redundancy {
    /// Every shard of every chunk is stored on a backend that answers.
    Full,
    /// Some chunk lacks `missing` of its shards (not stored, or on a backend that
    /// is down) but is still readable.
    Degraded { missing: usize },
    /// Some chunk has fewer than k shards reachable: unreadable until backends return.
    Unreadable { missing: usize },
    /// Every chunk is inline (kept in the index, no shards): readable with every
    /// backend down; on the backends as part of the metadata log (m+1 copies or more).
    Inline,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListEntry {
    /// The name; when it is not valid UTF-8, with U+FFFD in place of the bad
    /// bytes, and the exact bytes in `name_hex`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_hex: Option<String>,
    pub kind: Kind,
    pub mode: u16,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    pub chunks: usize,
    pub redundancy: Redundancy,
    /// A file's layout as its placement rule chose it: `ec:4+2` or `3 copies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// The placement rule that chose it (none in a volume without rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Symlink target (as `name`: lossy when not UTF-8, exact in `target_hex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Character and block devices: the device number (`st_rdev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hex: Option<String>,
}

/// Bytes as a string for JSON: the string itself when valid UTF-8; else the
/// lossy string and the exact bytes in hex.
fn text_and_hex(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(hex::encode(bytes)),
        ),
    }
}

/// The exact bytes of a JSON string with its `_hex` twin.
fn exact_bytes(text: &str, hex: Option<&String>) -> Vec<u8> {
    hex.and_then(|h| hex::decode(h).ok())
        .unwrap_or_else(|| text.as_bytes().to_vec())
}

/// A name for the terminal, quoted like GNU `ls --quoting-style=shell-escape`
/// (its default on a terminal): shown as is when made only of letters, digits
/// and `%+,-./:=@_`; else in single quotes, with control characters, invisible
/// or direction-changing characters and bytes that are not UTF-8 written as
/// `$'\n'`, `$'\033'`, `$'\377'`. The result, pasted into a shell, is the exact
/// name: no two names look the same, and none moves the cursor or changes
/// colours.
pub fn shell_escape(name: &[u8]) -> String {
    fn plain(c: char) -> bool {
        c.is_ascii_alphanumeric() || "%+,-./:=@_".contains(c)
    }
    fn hidden(c: char) -> bool {
        c.is_control()
            || (!c.is_ascii() && c.is_whitespace())
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    }
    let all_plain = name.utf8_chunks().all(|c| {
        c.invalid().is_empty()
            && c.valid()
                .chars()
                .all(|ch| plain(ch) || (!ch.is_ascii() && !hidden(ch)))
    });
    if !name.is_empty() && all_plain {
        return String::from_utf8_lossy(name).into_owned();
    }
    // Runs of printable characters in '...', runs of the others in $'...'.
    #[derive(PartialEq, Clone, Copy)]
    enum Quote {
        None,
        Single,
        Dollar,
    }
    fn switch(out: &mut String, now: &mut Quote, to: Quote) {
        if *now != to {
            if *now != Quote::None {
                out.push('\'');
            }
            match to {
                Quote::Single => out.push('\''),
                Quote::Dollar => out.push_str("$'"),
                Quote::None => {}
            }
            *now = to;
        }
    }
    fn escaped(out: &mut String, now: &mut Quote, bytes: &[u8]) {
        switch(out, now, Quote::Dollar);
        for b in bytes {
            match b {
                b'\n' => out.push_str("\\n"),
                b'\t' => out.push_str("\\t"),
                b'\r' => out.push_str("\\r"),
                _ => out.push_str(&format!("\\{b:03o}")),
            }
        }
    }
    let mut out = String::new();
    let mut quoted = Quote::None;
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            if hidden(c) {
                let mut buf = [0u8; 4];
                escaped(&mut out, &mut quoted, c.encode_utf8(&mut buf).as_bytes());
            } else if c == '\'' {
                // Outside the quotes: \'
                switch(&mut out, &mut quoted, Quote::None);
                out.push_str("\\'");
            } else {
                switch(&mut out, &mut quoted, Quote::Single);
                out.push(c);
            }
        }
        if !chunk.invalid().is_empty() {
            escaped(&mut out, &mut quoted, chunk.invalid());
        }
    }
    switch(&mut out, &mut quoted, Quote::None);
    if out.is_empty() {
        out.push_str("''");
    }
    out
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TransferReport {
    /// Files stored or written.
    pub files: u64,
    pub bytes: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// FIFOs, sockets and devices (type and device number; no data).
    #[serde(default)]
    pub specials: u64,
    /// Get: further links of a file already written (made hard links of it).
    #[serde(default)]
    pub hard_links: u64,
    /// Files left alone because the destination already held the same content.
    pub unchanged: u64,
    pub unchanged_bytes: u64,
    /// Put: chunks uploaded now, and chunks the volume already held (deduplicated).
    pub chunks_uploaded: u64,
    pub chunks_deduplicated: u64,
    /// Put: plaintext bytes of the chunks uploaded now.
    #[serde(default)]
    pub bytes_uploaded: u64,
    /// What could not be done, one line each; the rest was done.
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DuReport {
    pub path: String,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// FIFOs, sockets and devices.
    #[serde(default)]
    pub specials: u64,
    /// Sum of file sizes.
    pub bytes: u64,
    /// Distinct chunks the files use, their plaintext size, and what their shards
    /// take on the backends (all shards, headers included).
    pub chunks: u64,
    pub chunk_bytes: u64,
    pub stored_bytes: u64,
    /// For the root: what snapshots hold that no live file uses (chunks, their
    /// plaintext bytes, what their shards take on the backends).
    #[serde(default)]
    pub snapshot_only_chunks: u64,
    #[serde(default)]
    pub snapshot_only_bytes: u64,
    #[serde(default)]
    pub snapshot_only_stored_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoveReport {
    pub files: u64,
    pub dirs: u64,
    pub errors: Vec<String>,
}

/// A volume path: its components, checked.
fn components(path: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            return Err(format!(
                "{path}: `..` is not allowed in volume paths; write the path from the volume's root"
            ));
        }
        out.push(c);
    }
    Ok(out)
}

fn display(path: &str) -> String {
    format!("/{}", components(path).unwrap_or_default().join("/"))
}

pub(crate) fn fs_err(path: &str, e: Errno) -> String {
    let what = match e {
        Errno::ENOENT => "no such file or directory in the volume".to_string(),
        Errno::ENOTDIR => "not a directory".to_string(),
        Errno::EISDIR => "is a directory".to_string(),
        Errno::EEXIST => "already exists".to_string(),
        Errno::ENOTEMPTY => "directory not empty (use -r to remove it with its contents)".into(),
        Errno::EROFS => "the volume is mounted read-only".to_string(),
        Errno::EAGAIN => {
            "is in an archive class and being thawed; try again later (`cloudraid thaw` says where it stands)".to_string()
        }
        Errno::EIO => {
            "input/output error: too few backends answer (see `cloudraid status`)".to_string()
        }
        e => std::io::Error::from_raw_os_error(e.0).to_string(),
    };
    format!("{}: {what}", display(path))
}

/// Attributes of the inode at `path`.
pub async fn resolve(fs: &Fs, path: &str) -> Result<Attr, String> {
    let mut attr = fs
        .getattr(crate::meta::index::ROOT_INO)
        .await
        .map_err(|e| fs_err("/", e))?;
    for c in components(path)? {
        if attr.kind != Kind::Dir {
            return Err(fs_err(path, Errno::ENOTDIR));
        }
        attr = fs
            .lookup(attr.ino, c.as_bytes())
            .await
            .map_err(|e| fs_err(path, e))?;
    }
    Ok(attr)
}

/// The directory holding `path` and the last component's name.
async fn resolve_parent(fs: &Fs, path: &str) -> Result<(Attr, String), String> {
    let comps = components(path)?;
    let Some((name, dir)) = comps.split_last() else {
        return Err("/ is the volume's root; name something inside it".into());
    };
    let parent = resolve(fs, &dir.join("/")).await?;
    if parent.kind != Kind::Dir {
        return Err(fs_err(&dir.join("/"), Errno::ENOTDIR));
    }
    Ok((parent, name.to_string()))
}

/// A volume path for messages (names that are not UTF-8 shown lossily).
fn join(dir: &str, name: &[u8]) -> String {
    format!(
        "{}/{}",
        dir.trim_end_matches('/'),
        String::from_utf8_lossy(name)
    )
}

/// Every entry of directory `ino` but `.` and `..`. Names are bytes, as stored:
/// not every name is UTF-8.
pub(crate) async fn children(fs: &Fs, ino: u64) -> Result<Vec<(Vec<u8>, u64, Kind)>, Errno> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let batch = fs.readdir(ino, offset, 512).await?;
        let Some(last) = batch.last() else { break };
        offset = last.offset;
        for e in batch {
            if e.name != b"." && e.name != b".." {
                out.push((e.name, e.ino, e.kind));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A name for a file being written, unique in this process and not too long:
/// `.NAME.cloudraid-WHAT.PID.N`.
pub(crate) fn temp_name(name: &[u8], what: &str) -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tail = format!(".cloudraid-{what}.{}.{n}", std::process::id());
    let mut t = Vec::with_capacity(name.len() + tail.len() + 1);
    if name.len() + tail.len() < crate::fs::NAME_MAX {
        t.push(b'.');
        t.extend_from_slice(name);
    }
    t.extend_from_slice(tail.as_bytes());
    t
}

/// One copy into or out of the volume: who owns what it makes, and its progress.
pub(crate) struct Transfer<'a> {
    fs: &'a Fs,
    owner: Caller,
    total: u64,
    done: AtomicU64,
    progress: ProgressFn<'a>,
}

impl<'a> Transfer<'a> {
    pub(crate) fn new(fs: &'a Fs, owner: Caller, total: u64, progress: ProgressFn<'a>) -> Self {
        Transfer {
            fs,
            owner,
            total,
            done: AtomicU64::new(0),
            progress,
        }
    }

    fn advance(&self, n: u64) {
        let d = self.done.fetch_add(n, Ordering::Relaxed) + n;
        (self.progress)(d, self.total);
    }
}

/// The caller of the CLI itself.
pub fn current_caller() -> Caller {
    // SAFETY: getuid and getgid cannot fail.
    unsafe {
        Caller {
            uid: libc::getuid(),
            gid: libc::getgid(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_for_the_terminal_like_gnu_ls() {
        assert_eq!(
            shell_escape(b"report-2024_v1.2.pdf"),
            "report-2024_v1.2.pdf"
        );
        assert_eq!(shell_escape("résumé.txt".as_bytes()), "résumé.txt");
        assert_eq!(shell_escape(b"a b"), "'a b'");
        assert_eq!(shell_escape(b"a\nb"), "'a'$'\\n''b'");
        assert_eq!(shell_escape(b"\x1b[31mred"), "$'\\033''[31mred'");
        assert_eq!(shell_escape(b"it's"), "'it'\\''s'");
        assert_eq!(shell_escape(b"bad\xff\xfe"), "'bad'$'\\377\\376'");
        assert_eq!(
            shell_escape("x\u{202e}y".as_bytes()),
            "'x'$'\\342\\200\\256''y'"
        );
        assert_eq!(shell_escape(b"~home"), "'~home'");
        // Injective: names that differ never print the same.
        let names: [&[u8]; 8] = [
            b"a\xff",
            b"a\xfe",
            "a\u{fffd}".as_bytes(),
            b"a?",
            b"a\n",
            b"a\\n",
            b"a'",
            b"a\x07",
        ];
        let shown: std::collections::HashSet<String> =
            names.iter().map(|n| shell_escape(n)).collect();
        assert_eq!(shown.len(), names.len(), "{shown:?}");
        assert!(shown.iter().all(|s| !s.chars().any(char::is_control)));
    }

    #[test]
    fn volume_paths_refuse_parent_components() {
        assert_eq!(components("/a//b/./c").unwrap(), vec!["a", "b", "c"]);
        assert!(components("a/../b").is_err());
        assert_eq!(display("a/b/"), "/a/b");
    }
}
