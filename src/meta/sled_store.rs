use super::{Batch, LocalDisk, MetaError, MetaResult, MetaStore};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How often changes are made durable in the background (besides explicit flushes).
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Applied but unflushed changes above this many bytes are flushed before the
/// next change is accepted, so that what the reserve must hold stays small.
const MAX_UNFLUSHED: usize = 64 << 10;
/// Space kept in the state dir (`index.reserve`) for the day its filesystem
/// fills, released to let the index write what it has acknowledged: this much,
/// plus twice the index's snapshot files (sled writes a new one when it opens).
pub const RESERVE_BYTES: u64 = 4 << 20;
/// A failed index is tried again at most this often.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// [`MetaStore`] on a sled database in the state dir.
///
/// sled makes changes durable only at a flush (here every 0.5 s and when asked),
/// and once one of its disk writes fails (ENOSPC) it refuses every later write
/// until reopened, forgetting what it had applied but not written. So every
/// batch applied since the last successful flush is also kept here, in order;
/// when the disk fails, the database is reopened (with the reserve file's space
/// released), those batches applied again and flushed. An acknowledged change is
/// never lost: it is on disk, or still held here and written as soon as there is
/// room. While the index cannot be written, or the reserve cannot be restored,
/// changes fail with [`MetaError::Full`] (ENOSPC) and are not applied.
pub struct SledMeta {
    shared: Arc<Shared>,
    /// Stops the background flusher (set, then the thread is joined at drop).
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    path: PathBuf,
    reserve: PathBuf,
    state: Mutex<State>,
}

/// The operations of one batch (puts and deletes).
type Ops = Vec<(Vec<u8>, Option<Vec<u8>>)>;

struct State {
    db: Option<sled::Db>,
    /// Bumped at each reopen: a flush started before it does not clear batches.
    generation: u64,
    /// Batches applied since the last successful flush, oldest first, each with
    /// its sequence number.
    unflushed: std::collections::VecDeque<(u64, Ops)>,
    next_seq: u64,
    unflushed_bytes: usize,
    /// Why the index cannot take changes now, and when that was last tried.
    failed: Option<(String, Instant)>,
    /// The reserve file could not be (re)created: the disk is (nearly) full.
    reserve_missing: bool,
    /// When `heal` last tried.
    last_try: Option<Instant>,
}

/// A read's error. A database whose disk write failed may refuse reads with
/// that same error until it is reopened: a full disk is ENOSPC there too.
fn err(e: sled::Error) -> MetaError {
    match &e {
        sled::Error::Io(io) if is_full(io) => MetaError::Full(format!(
            "the local index cannot be read until its disk has room ({e})"
        )),
        _ => MetaError::Io(e.to_string()),
    }
}

fn is_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC)
}

/// Indexes this process has open: a path in it is locked by us; a path it has
/// closed may still be locked for a moment while sled's threads let go.
static OPEN_HERE: Mutex<Vec<(PathBuf, bool)>> = Mutex::new(Vec::new());

fn open_db(path: &Path) -> MetaResult<sled::Db> {
    let closed_here = OPEN_HERE
        .lock()
        .unwrap()
        .iter()
        .any(|(p, open)| p == path && !open);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // sled has been seen to panic on a log cut short by a full disk: an error here.
        let r = std::panic::catch_unwind(|| open_db_once(path)).unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(MetaError::Io(format!(
                "cannot open {}: the index library failed ({what})",
                path.display()
            )))
        });
        match r {
            Err(MetaError::Locked { .. }) if closed_here && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            r => return r,
        }
    }
}

fn set_open_here(path: &Path, open: bool) {
    let mut v = OPEN_HERE.lock().unwrap();
    v.retain(|(p, _)| p != path);
    v.push((path.to_path_buf(), open));
}

/// sled's page cache: the index's memory, whatever its size.
const CACHE_CAPACITY: u64 = 64 << 20;

/// Asks the kernel to start reading the index's log file (up to what sled caches)
/// into the page cache, without waiting for it. sled reads the pages of its tree
/// one by one as they are first needed: right after a mount, with nothing cached,
/// listing a directory of 5,000 files paid a random disk read per page (0.1 s);
/// read ahead in the background at open, the whole file takes a sequential read.
fn read_ahead(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(f) = std::fs::File::open(path.join("db")) {
        let len = f.metadata().map_or(0, |m| m.len()).min(CACHE_CAPACITY);
        // SAFETY: a valid descriptor; the range is only a hint.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, len as i64, libc::POSIX_FADV_WILLNEED) };
    }
}

fn open_db_once(path: &Path) -> MetaResult<sled::Db> {
    read_ahead(path);
    sled::Config::new()
        .path(path)
        .flush_every_ms(None)
        .cache_capacity(CACHE_CAPACITY)
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
            sled::Error::Io(ref io) if is_full(io) => {
                MetaError::Full(format!("cannot open {}: {io}", path.display()))
            }
            other => MetaError::Io(format!("cannot open {}: {other}", path.display())),
        })
}

/// How big the reserve of the index at `index` should be.
fn reserve_size(index: &Path) -> u64 {
    let snapshots: u64 = std::fs::read_dir(index)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("snap."))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    RESERVE_BYTES + 2 * snapshots
}

/// Creates the reserve file of `size` bytes (its blocks allocated).
fn make_reserve(path: &Path, size: u64) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= size) {
        return Ok(());
    }
    let tmp = path.with_extension("reserve.tmp");
    let made = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        // SAFETY: a valid descriptor and range.
        let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, size as libc::off_t) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if is_full(&e) {
                return Err(e);
            }
            // No fallocate here: write the bytes (not zeros, which some
            // filesystems would not store).
            let block = vec![0x5au8; 64 << 10];
            for _ in 0..size.div_ceil(block.len() as u64) {
                f.write_all(&block)?;
            }
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if made.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    made
}

/// Free and total bytes of the filesystem holding `path`.
pub fn disk_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a zeroed statvfs is a valid out-parameter; c is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let f = st.f_frsize as u64;
    Some((st.f_bavail as u64 * f, st.f_blocks as u64 * f))
}

impl SledMeta {
    pub fn open(path: &Path) -> MetaResult<Self> {
        let db = open_db(path)?;
        set_open_here(path, true);
        let reserve = path.with_extension("reserve");
        let reserve_missing = match make_reserve(&reserve, reserve_size(path)) {
            Ok(()) => false,
            Err(e) => {
                tracing::warn!(
                    "cannot keep {} of reserve for the local index at {} ({e}); changes fail with ENOSPC until there is room",
                    crate::config::human(reserve_size(path)),
                    reserve.display()
                );
                true
            }
        };
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            reserve,
            state: Mutex::new(State {
                db: Some(db),
                generation: 0,
                unflushed: Default::default(),
                next_seq: 0,
                unflushed_bytes: 0,
                failed: None,
                reserve_missing,
                last_try: None,
            }),
        });
        let weak = Arc::downgrade(&shared);
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let stopped = stop.clone();
        let flusher = std::thread::Builder::new()
            .name("index-flush".into())
            .spawn(move || flusher(weak, stopped))
            .map_err(|e| MetaError::Io(format!("cannot start the index flusher: {e}")))?;
        Ok(SledMeta {
            shared,
            stop,
            flusher: Some(flusher),
        })
    }
}

impl Drop for SledMeta {
    /// The flusher ends first, so the database closes (and its lock is free) when
    /// this returns.
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
        if Arc::strong_count(&self.shared) == 1 {
            set_open_here(&self.shared.path, false);
        }
    }
}

/// Flushes the index every `FLUSH_EVERY` until stopped.
fn flusher(weak: Weak<Shared>, stop: Arc<(Mutex<bool>, std::sync::Condvar)>) {
    loop {
        {
            let stopped = stop.0.lock().unwrap();
            let (stopped, _) = stop.1.wait_timeout(stopped, FLUSH_EVERY).unwrap();
            if *stopped {
                return;
            }
        }
        let Some(shared) = weak.upgrade() else { return };
        let due = {
            let st = shared.state.lock().unwrap();
            !st.unflushed.is_empty() || st.failed.is_some() || st.reserve_missing
        };
        if due {
            if let Err(e) = shared.flush() {
                tracing::debug!("background flush of the local index: {e}");
            }
        }
    }
}

impl Shared {
    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }

    fn full_message(&self, what: &str) -> String {
        let free = disk_space(self.dir())
            .map(|(f, _)| format!(" ({} free)", crate::config::human(f)))
            .unwrap_or_default();
        format!(
            "local disk full: {what}; free space in {}{free}",
            self.dir().display()
        )
    }

    /// Why changes are refused now, if they are.
    fn refusal(&self, st: &State) -> Option<MetaError> {
        if let Some((what, _)) = &st.failed {
            return Some(MetaError::Full(self.full_message(what)));
        }
        st.reserve_missing.then(|| {
            MetaError::Full(self.full_message(&format!(
                "no room for the local index's {} reserve",
                crate::config::human(RESERVE_BYTES)
            )))
        })
    }

    /// The database for reads: after a failed write it is kept (its memory holds
    /// every applied change) until it can be reopened.
    fn db(&self) -> MetaResult<sled::Db> {
        let mut st = self.state.lock().unwrap();
        self.heal(&mut st);
        match &st.db {
            Some(db) => Ok(db.clone()),
            None => Err(self
                .refusal(&st)
                .unwrap_or_else(|| MetaError::Io("the local index is not open".into()))),
        }
    }

    /// Runs a read. A database whose disk write failed may refuse reads with
    /// that error too: it is then reopened at once (with the reserve's space,
    /// as after a failed write) and the read tried again, so reads go on while
    /// the disk is full.
    fn read<T>(&self, f: impl Fn(&sled::Db) -> Result<T, sled::Error>) -> MetaResult<T> {
        let (db, generation) = {
            let mut st = self.state.lock().unwrap();
            self.heal(&mut st);
            match &st.db {
                Some(db) => (db.clone(), st.generation),
                None => {
                    return Err(self
                        .refusal(&st)
                        .unwrap_or_else(|| MetaError::Io("the local index is not open".into())))
                }
            }
        };
        match f(&db) {
            Err(sled::Error::Io(io)) if is_full(&io) => {
                drop(db);
                {
                    let mut st = self.state.lock().unwrap();
                    if st.generation == generation {
                        self.fail(&mut st, &sled::Error::Io(io));
                        self.heal(&mut st);
                    }
                }
                f(&self.db()?).map_err(err)
            }
            r => r.map_err(err),
        }
    }

    /// Records a disk error of the database; it is reopened by `heal`.
    fn fail(&self, st: &mut State, e: &sled::Error) -> MetaError {
        let full = matches!(e, sled::Error::Io(io) if is_full(io))
            || disk_space(self.dir()).is_some_and(|(free, _)| free < RESERVE_BYTES);
        let what = format!("the local index could not be written ({e})");
        if st.failed.is_none() {
            tracing::error!(
                "{what}; changes fail until it can be written again ({} acknowledged change(s) held in memory)",
                st.unflushed.len()
            );
        }
        // Tried again at once: the reserve may be all it takes.
        st.failed = Some((what.clone(), Instant::now()));
        st.last_try = None;
        if full {
            MetaError::Full(self.full_message(&what))
        } else {
            MetaError::Io(what)
        }
    }

    /// Brings a failed database back (reopened, unflushed batches applied again,
    /// flushed) once there is room, and restores the reserve; each at most every
    /// `RETRY_EVERY`.
    fn heal(&self, st: &mut State) {
        if st.failed.is_none() && !st.reserve_missing {
            return;
        }
        if st.last_try.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
            return;
        }
        st.last_try = Some(Instant::now());
        if st.failed.is_some() {
            // The reserve's space is for this: writing what was acknowledged.
            let had_reserve = std::fs::remove_file(&self.reserve).is_ok();
            let room = disk_space(self.dir()).is_none_or(|(free, _)| free >= RESERVE_BYTES);
            if !had_reserve && !room {
                return; // the poisoned database still serves reads
            }
            st.reserve_missing = true;
            st.db = None;
            match self.reopen(st) {
                Ok(()) => {
                    tracing::info!(
                        "local index written again ({} acknowledged change(s) that were held in memory are on disk)",
                        st.unflushed.len()
                    );
                    st.unflushed.clear();
                    st.unflushed_bytes = 0;
                    st.failed = None;
                }
                Err(e) => {
                    tracing::warn!("{e}; will retry");
                    st.failed = Some((e, Instant::now()));
                    return;
                }
            }
        }
        match make_reserve(&self.reserve, reserve_size(&self.path)) {
            Ok(()) => {
                tracing::info!("the local disk has room again; the index accepts changes");
                st.reserve_missing = false;
                st.last_try = None;
            }
            Err(_) => st.reserve_missing = true,
        }
    }

    fn reopen(&self, st: &mut State) -> Result<(), String> {
        // Our own old handle may take a moment to let go of the lock.
        set_open_here(&self.path, false);
        let db = open_db(&self.path);
        set_open_here(&self.path, true);
        let db = db.map_err(|e| e.to_string())?;
        st.generation += 1;
        for (_, ops) in &st.unflushed {
            let mut b = sled::Batch::default();
            for (k, v) in ops {
                match v {
                    Some(v) => b.insert(k.as_slice(), v.as_slice()),
                    None => b.remove(k.as_slice()),
                }
            }
            db.apply_batch(b)
                .map_err(|e| format!("the local index could not be written ({e})"))?;
        }
        db.flush()
            .map_err(|e| format!("the local index could not be written ({e})"))?;
        st.db = Some(db);
        Ok(())
    }

    fn apply(&self, batch: Batch) -> MetaResult<()> {
        let mut st = self.state.lock().unwrap();
        self.heal(&mut st);
        if st.unflushed_bytes > MAX_UNFLUSHED && st.failed.is_none() {
            drop(st);
            self.flush()?;
            st = self.state.lock().unwrap();
        }
        if let Some(e) = self.refusal(&st) {
            return Err(e);
        }
        let Some(db) = st.db.clone() else {
            return Err(MetaError::Io("the local index is not open".into()));
        };
        let mut b = sled::Batch::default();
        let mut bytes = 0;
        for (k, v) in &batch.ops {
            bytes += k.len() + v.as_ref().map_or(0, Vec::len);
            match v {
                Some(v) => b.insert(k.as_slice(), v.as_slice()),
                None => b.remove(k.as_slice()),
            }
        }
        match db.apply_batch(b) {
            Ok(()) => {
                let seq = st.next_seq;
                st.next_seq += 1;
                st.unflushed.push_back((seq, batch.ops));
                st.unflushed_bytes += bytes;
                Ok(())
            }
            Err(e) => Err(self.fail(&mut st, &e)),
        }
    }

    fn flush(&self) -> MetaResult<()> {
        let (db, generation, n) = {
            let mut st = self.state.lock().unwrap();
            self.heal(&mut st);
            match (&st.db, &st.failed) {
                (Some(db), None) => (db.clone(), st.generation, st.next_seq),
                _ => {
                    return Err(self
                        .refusal(&st)
                        .unwrap_or_else(|| MetaError::Io("the local index is not open".into())))
                }
            }
        };
        let r = db.flush();
        // Not held while waiting for the state: a reopen waits for every handle.
        drop(db);
        let mut st = self.state.lock().unwrap();
        match r {
            Ok(_) => {
                // Every batch applied before the flush began is on disk (flushes
                // may overlap: each drops only what it covered).
                while st.unflushed.front().is_some_and(|(seq, _)| *seq < n) {
                    let (_, ops) = st.unflushed.pop_front().unwrap();
                    let bytes: usize = ops
                        .iter()
                        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                        .sum();
                    st.unflushed_bytes = st.unflushed_bytes.saturating_sub(bytes);
                }
                Ok(())
            }
            Err(e) => {
                if st.generation != generation {
                    // Reopened meanwhile: that reopen flushed everything.
                    return Ok(());
                }
                let failed = self.fail(&mut st, &e);
                // Straight away with the reserve's space: what was acknowledged is written.
                self.heal(&mut st);
                if st.failed.is_none() {
                    Ok(())
                } else {
                    Err(failed)
                }
            }
        }
    }

    fn local_disk(&self) -> LocalDisk {
        let dir = self.path.parent().unwrap_or(&self.path);
        let (free, total) = disk_space(dir).unwrap_or((0, 0));
        let st = self.state.lock().unwrap();
        let problem = match (&st.failed, st.reserve_missing) {
            (Some((e, _)), _) => Some(e.clone()),
            (None, true) => Some(format!(
                "no room for the local index's {} reserve",
                crate::config::human(RESERVE_BYTES)
            )),
            (None, false) => None,
        };
        LocalDisk {
            path: dir.display().to_string(),
            free_bytes: free,
            total_bytes: total,
            problem,
            unwritten_changes: st.unflushed.len() as u64,
        }
    }
}

impl Drop for Shared {
    /// Closing writes what was acknowledged; after a disk error, with the
    /// reserve's space.
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap();
        st.last_try = None;
        self.heal(&mut st);
        let held = st.unflushed.len();
        let written = match (&st.db, &st.failed) {
            (Some(db), None) => db.flush().map(|_| ()).map_err(|e| e.to_string()),
            (_, Some((e, _))) => Err(e.clone()),
            (None, None) => Ok(()),
        };
        if let Err(e) = written {
            tracing::error!(
                "the local index could not be written at close ({e}): {held} acknowledged change(s) are lost locally; those in the metadata log can be brought back with `cloudraid recover`"
            );
        }
    }
}

impl MetaStore for SledMeta {
    fn get(&self, key: &[u8]) -> MetaResult<Option<Vec<u8>>> {
        self.shared.read(|db| Ok(db.get(key)?.map(|v| v.to_vec())))
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> MetaResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.shared.read(|db| {
            let iter = match after {
                Some(a) => db.range((
                    std::ops::Bound::Excluded(a.to_vec()),
                    std::ops::Bound::Unbounded,
                )),
                None => db.range(prefix.to_vec()..),
            };
            let mut out = Vec::new();
            for item in iter {
                let (k, v) = item?;
                if !k.starts_with(prefix) || out.len() >= limit {
                    break;
                }
                out.push((k.to_vec(), v.to_vec()));
            }
            Ok(out)
        })
    }

    fn apply(&self, batch: Batch) -> MetaResult<()> {
        self.shared.apply(batch)
    }

    fn flush(&self) -> MetaResult<()> {
        self.shared.flush()
    }

    fn accepts_changes(&self) -> MetaResult<()> {
        let mut st = self.shared.state.lock().unwrap();
        self.shared.heal(&mut st);
        match self.shared.refusal(&st) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn local_disk(&self) -> Option<LocalDisk> {
        Some(self.shared.local_disk())
    }
}
