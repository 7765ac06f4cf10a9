//! Database dumps stored by a job's run: each dump (see `dump`) streamed into
//! `DESTINATION/databases/NAME.EXT` under a temporary name and renamed over the
//! previous dump once the dump program succeeded.

use crate::format::Kind;
use crate::front::ops;
use crate::fs::{Caller, Errno, Fs};

/// Streams the dump of `db` into `DESTINATION/databases/NAME.EXT`: written
/// under a temporary name as it comes (sequential writes are cut and stored as
/// they arrive: no local copy), then renamed over the previous dump. On any
/// error the previous dump stays. Returns the dump's bytes and the bytes of its
/// chunks no other file holds (what this dump uploaded).
pub async fn store_dump(
    fs: &Fs,
    dest: u64,
    db: &super::config::DatabaseSection,
    env: &[(String, String)],
    owner: Caller,
) -> Result<(u64, u64), String> {
    use std::io::Read;
    let name = db.file_name();
    let shown = format!("database {}", db.name);
    let dir = match fs.lookup(dest, b"databases").await {
        Ok(a) if a.kind == Kind::Dir => a.ino,
        Ok(_) => {
            return Err(format!(
                "{shown}: databases in the destination is not a folder; move it away"
            ))
        }
        Err(Errno::ENOENT) => {
            fs.mkdir(dest, b"databases", 0o700, owner)
                .await
                .map_err(|e| format!("{shown}: {}", ops::fs_err("databases", e)))?
                .ino
        }
        Err(e) => return Err(format!("{shown}: {}", ops::fs_err("databases", e))),
    };
    // Dumps an interrupted run left.
    if let Ok(kids) = ops::children(fs, dir).await {
        for (n, _, kind) in kids {
            if kind == Kind::File && n.windows(16).any(|w| w == b".cloudraid-dump.") {
                let _ = fs.unlink(dir, &n).await;
            }
        }
    }
    let (db2, env2) = (db.clone(), env.to_vec());
    let dump = tokio::task::spawn_blocking(move || super::dump::start(&db2, &env2))
        .await
        .map_err(|e| format!("{shown}: {e}"))??;
    let tmp = ops::temp_name(name.as_bytes(), "dump");
    let (attr, fh) = fs
        .create(
            dir,
            &tmp,
            0o600,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            owner,
        )
        .await
        .map_err(|e| format!("{shown}: {}", ops::fs_err(&name, e)))?;
    // The dump is read in a blocking thread and handed over in blocks through a
    // channel of two: memory stays at a few blocks whatever the dump's size.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    let reader = tokio::task::spawn_blocking(move || {
        let mut dump = dump;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            let mut n = 0;
            while n < buf.len() {
                match dump.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return Err(String::new());
                    }
                }
            }
            if n == 0 {
                return dump.finish();
            }
            buf.truncate(n);
            if tx.blocking_send(Ok(buf)).is_err() {
                // The writer stopped: dropping the dump ends it.
                return Err(String::new());
            }
        }
    });
    let mut off = 0u64;
    let mut written: Result<(), String> = Ok(());
    while let Some(block) = rx.recv().await {
        match block {
            Ok(b) => {
                let mut done = 0;
                while done < b.len() {
                    match fs.write(fh, off, &b[done..]).await {
                        Ok(n) => {
                            done += n as usize;
                            off += n as u64;
                        }
                        Err(e) => {
                            written = Err(format!("{shown}: {}", ops::fs_err(&name, e)));
                            break;
                        }
                    }
                }
                if written.is_err() {
                    break;
                }
            }
            Err(e) => {
                written = Err(format!("{shown}: reading the dump: {e}"));
                break;
            }
        }
    }
    drop(rx);
    let finished = reader.await.map_err(|e| format!("{shown}: {e}"))?;
    let released = fs
        .release(fh)
        .await
        .map_err(|e| format!("{shown}: {}", ops::fs_err(&name, e)));
    let result = written
        .and(finished.map_err(|e| {
            if e.is_empty() {
                format!("{shown}: the dump stopped")
            } else {
                e
            }
        }))
        .and(released);
    // The chunks only this dump holds are what it uploaded.
    let fresh = result.as_ref().ok().map(|_| fresh_bytes(fs, attr.ino));
    let placed = match result {
        Ok(()) => fs
            .rename_as(dir, &tmp, dir, name.as_bytes(), 0, owner)
            .await
            .map_err(|e| format!("{shown}: {}", ops::fs_err(&name, e))),
        Err(e) => Err(e),
    };
    if let Err(e) = placed {
        let _ = fs.unlink(dir, &tmp).await;
        return Err(format!("{e}; the previous dump (if any) is kept"));
    }
    Ok((off, fresh.unwrap_or(0)))
}

/// Plaintext bytes of the chunks of `ino` that no other file references.
fn fresh_bytes(fs: &Fs, ino: u64) -> u64 {
    let Ok(Some(c)) = fs.index().content(ino) else {
        return 0;
    };
    c.chunks
        .iter()
        .filter_map(|r| match r {
            crate::format::ChunkRef::Data { id, len } => Some((id, *len as u64)),
            _ => None,
        })
        .filter(|(id, _)| matches!(fs.index().chunk(id), Ok(Some(rec)) if rec.refs <= 1))
        .map(|(_, len)| len)
        .sum()
}
