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
    ops::upload::remove_leftovers(fs, dir).await;
    let (db2, env2) = (db.clone(), env.to_vec());
    let dump = tokio::task::spawn_blocking(move || super::dump::start(&db2, &env2))
        .await
        .map_err(|e| format!("{shown}: {e}"))??;
    // The dump is read in a blocking thread and handed over in blocks through a
    // channel of two: memory stays at a few blocks whatever the dump's size. The
    // dump program's own failure ends the stream with an error: nothing is
    // renamed over the previous dump.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, String>>(2);
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
                        let _ = tx.blocking_send(Err(format!("reading the dump: {e}")));
                        return;
                    }
                }
            }
            if n == 0 {
                if let Err(e) = dump.finish() {
                    let _ = tx.blocking_send(Err(e));
                }
                return;
            }
            buf.truncate(n);
            if tx.blocking_send(Ok(buf.into())).is_err() {
                // The writer stopped: dropping the dump ends it.
                return;
            }
        }
    });
    let blocks = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let stored =
        ops::upload::store_stream(fs, dir, name.as_bytes(), &name, 0o600, owner, blocks).await;
    let _ = reader.await;
    let (bytes, fresh) = stored.map_err(|e| match e {
        ops::upload::StreamError::Source(m) if m.is_empty() => {
            format!("{shown}: the dump stopped; the previous dump (if any) is kept")
        }
        e => format!("{shown}: {e}; the previous dump (if any) is kept"),
    })?;
    // The chunks only this dump holds are what it uploaded.
    Ok((bytes, fresh))
}
