//! `ls`: listing entries with their redundancy, and rendering them as a table.

use super::{
    children, components, exact_bytes, fs_err, resolve, shell_escape, text_and_hex, ListEntry,
    Redundancy,
};
use crate::format::{ChunkRef, Kind};
use crate::fs::{Attr, Errno, Fs};
use std::collections::HashSet;
use std::time::UNIX_EPOCH;

/// How many shards of the worst chunk of `ino` are missing or on backends down now
/// (inline chunks have none to miss; a file of only inline chunks says so).
fn redundancy(fs: &Fs, ino: u64) -> Result<(usize, Redundancy), Errno> {
    let vol = fs.volume();
    let down: HashSet<u16> = vol.down_slots().into_iter().map(|i| i as u16).collect();
    let chunks = fs.file_chunks(ino)?;
    let mut worst = 0;
    let mut m = vol.layout.m;
    let mut seen = HashSet::new();
    let (mut inline, mut sharded) = (0, 0);
    for c in &chunks {
        let ChunkRef::Data { id, .. } = c else {
            continue;
        };
        if !seen.insert(*id) {
            continue;
        }
        let Some(rec) = fs.index().chunk(id)? else {
            continue;
        };
        if rec.is_inline() {
            inline += 1;
            continue;
        }
        sharded += 1;
        m = rec.m as usize;
        let recorded: HashSet<u8> = fs
            .index()
            .degraded(id)?
            .map(|d| d.missing.into_iter().collect())
            .unwrap_or_default();
        let missing = rec
            .placement
            .iter()
            .enumerate()
            .filter(|(i, slot)| recorded.contains(&(*i as u8)) || down.contains(slot))
            .count();
        worst = worst.max(missing);
    }
    let r = match worst {
        0 if inline > 0 && sharded == 0 => Redundancy::Inline,
        0 => Redundancy::Full,
        n if n <= m => Redundancy::Degraded { missing: n },
        n => Redundancy::Unreadable { missing: n },
    };
    Ok((chunks.len(), r))
}

async fn entry(fs: &Fs, name: &[u8], attr: &Attr) -> Result<ListEntry, Errno> {
    let (chunks, redundancy) = if attr.kind == Kind::File {
        redundancy(fs, attr.ino)?
    } else {
        (0, Redundancy::Full)
    };
    let (target, target_hex) = if attr.kind == Kind::Symlink {
        let (t, hex) = text_and_hex(&fs.readlink(attr.ino).await?);
        (Some(t), hex)
    } else {
        (None, None)
    };
    // What is stored: an open file's uncommitted changes are not, yet.
    let stored = match attr.kind {
        Kind::File => fs.index().inode(attr.ino)?,
        _ => None,
    };
    let (size, mtime) = stored.map_or((attr.size, attr.mtime), |r| {
        (r.size, crate::fs::from_nanos(r.mtime))
    });
    let (name, name_hex) = text_and_hex(name);
    let content = match attr.kind {
        Kind::File => fs.index().content(attr.ino)?,
        _ => None,
    };
    let layout = content.as_ref().map(|c| {
        crate::policy::rules::describe_layout(crate::data::erasure::Layout {
            k: c.k as usize,
            m: c.m as usize,
        })
    });
    Ok(ListEntry {
        layout,
        rule: content.and_then(|c| c.rule),
        name,
        name_hex,
        kind: attr.kind,
        mode: attr.perm,
        size,
        mtime: mtime
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
        chunks,
        redundancy,
        target,
        rdev: matches!(attr.kind, Kind::CharDevice | Kind::BlockDevice).then_some(attr.rdev),
        target_hex,
    })
}

/// `ls`: the entries of directory `path`, or the one entry of a file.
/// One entry as [`list`] shows it; for a folder, its own entry.
pub async fn stat(fs: &Fs, path: &str) -> Result<ListEntry, String> {
    let attr = resolve(fs, path).await?;
    let name = components(path)?.last().copied().unwrap_or("/");
    entry(fs, name.as_bytes(), &attr)
        .await
        .map_err(|e| fs_err(path, e))
}

pub async fn list(fs: &Fs, path: &str) -> Result<Vec<ListEntry>, String> {
    let attr = resolve(fs, path).await?;
    let err = |e| fs_err(path, e);
    if attr.kind != Kind::Dir {
        let name = components(path)?.last().copied().unwrap_or("/");
        return Ok(vec![entry(fs, name.as_bytes(), &attr)
            .await
            .map_err(err)?]);
    }
    let mut out = Vec::new();
    for (name, ino, _) in children(fs, attr.ino).await.map_err(err)? {
        let a = match fs.getattr(ino).await {
            Ok(a) => a,
            Err(Errno::ENOENT) => continue, // removed meanwhile
            Err(e) => return Err(err(e)),
        };
        out.push(entry(fs, &name, &a).await.map_err(err)?);
    }
    Ok(out)
}

/// Renders `ls` entries as a table.
pub fn render_list(entries: &[ListEntry]) -> String {
    let mut out = format!(
        "{:<10} {:>12} {:<16} {:>6}  {:<10} {:<24} {}\n",
        "MODE", "SIZE", "MODIFIED", "CHUNKS", "LAYOUT", "REDUNDANCY", "NAME"
    );
    for e in entries {
        let mut mode = String::from(e.kind.letter());
        // setuid, setgid and sticky show in the execute column, as with ls -l.
        for (shift, special, letter) in [(6u16, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
            let bits = (e.mode >> shift) & 7;
            mode.push(if bits & 4 != 0 { 'r' } else { '-' });
            mode.push(if bits & 2 != 0 { 'w' } else { '-' });
            mode.push(match (bits & 1 != 0, e.mode & special != 0) {
                (true, false) => 'x',
                (false, false) => '-',
                (true, true) => letter,
                (false, true) => letter.to_ascii_uppercase(),
            });
        }
        let redundancy = match (&e.kind, &e.redundancy) {
            (Kind::File, Redundancy::Full) => "full".to_string(),
            (Kind::File, Redundancy::Inline) => "inline (in the index)".to_string(),
            (Kind::File, Redundancy::Degraded { missing }) => {
                format!("degraded ({missing} shard{} missing)", plural(*missing))
            }
            (Kind::File, Redundancy::Unreadable { missing }) => {
                format!("UNREADABLE ({missing} missing)")
            }
            _ => "-".to_string(),
        };
        // Escaped: a name never reaches the terminal raw (escape sequences,
        // newlines splitting a row).
        let shown = shell_escape(&exact_bytes(&e.name, e.name_hex.as_ref()));
        let name = match &e.target {
            Some(t) => format!(
                "{shown} -> {}",
                shell_escape(&exact_bytes(t, e.target_hex.as_ref()))
            ),
            None if e.kind == Kind::Dir => format!("{shown}/"),
            None => shown,
        };
        let chunks = if e.kind == Kind::File {
            e.chunks.to_string()
        } else {
            "-".into()
        };
        // Devices show their major and minor numbers where the size goes, as ls does.
        let size = match e.rdev {
            Some(rdev) => format!("{}, {}", libc::major(rdev), libc::minor(rdev)),
            None => e.size.to_string(),
        };
        out.push_str(&format!(
            "{mode:<10} {size:>12} {:<16} {chunks:>6}  {:<10} {redundancy:<24} {name}\n",
            format_time(e.mtime),
            e.layout.as_deref().unwrap_or("-"),
        ));
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `YYYY-MM-DD HH:MM` in UTC.
fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_show_types_special_bits_and_device_numbers() {
        let e = |name: &str, kind, mode, rdev| ListEntry {
            name: name.into(),
            name_hex: None,
            kind,
            mode,
            size: 0,
            mtime: 0,
            chunks: 0,
            redundancy: Redundancy::Full,
            layout: None,
            rule: None,
            target: None,
            target_hex: None,
            rdev,
        };
        let table = render_list(&[
            e("tmp", Kind::Dir, 0o1777, None),
            e("suid", Kind::File, 0o4754, None),
            e("sgid", Kind::File, 0o2640, None),
            e("fifo", Kind::Fifo, 0o640, None),
            e("sock", Kind::Socket, 0o755, None),
            e("null", Kind::CharDevice, 0o666, Some(libc::makedev(1, 3))),
            e("sda", Kind::BlockDevice, 0o660, Some(libc::makedev(8, 0))),
        ]);
        let rows: Vec<(&str, &str)> = table
            .lines()
            .skip(1)
            .map(|l| (l.split_whitespace().next().unwrap(), l))
            .collect();
        let modes: Vec<&str> = rows.iter().map(|r| r.0).collect();
        assert_eq!(
            modes,
            [
                "drwxrwxrwt",
                "-rwsr-xr--",
                "-rw-r-S---",
                "prw-r-----",
                "srwxr-xr-x",
                "crw-rw-rw-",
                "brw-rw----"
            ]
        );
        assert!(rows[5].1.contains(" 1, 3 "), "{table}");
        assert!(rows[6].1.contains(" 8, 0 "), "{table}");
    }

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00");
        assert_eq!(format_time(1_795_000_000), "2026-11-18 11:06");
    }
}
