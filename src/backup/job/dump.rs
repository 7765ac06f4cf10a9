//! Database dumps of backup jobs, streamed: a [`Dump`] is a blocking reader whose
//! bytes go straight into the volume, with no copy on the local disk.
//!
//! - SQLite: the database's own pages, read in one read transaction through
//!   SQLite's `sqlite_dbpage` virtual table, so the copy is consistent while other
//!   connections write (in WAL mode they are not even held up). The result is a
//!   standalone database file: a WAL database is marked as rollback-journal in
//!   the copy (header bytes 18-19), so it opens without its `-wal` file.
//! - PostgreSQL: `pg_dump --format=custom --compress=0`: uncompressed, so an
//!   unchanged table gives the same bytes in the next dump and content-defined
//!   chunking stores it once.
//! - MySQL / MariaDB: `mariadb-dump` (or `mysqldump`) `--single-transaction`, with
//!   routines, events and triggers, binary columns in hex, and no dump date.
//!
//! [`start`] fails before the caller gets any byte when the database cannot be
//! read (file missing, server unreachable, login refused, no such database): it
//! waits for the first block of the dump (64 KiB from a dump program, or its
//! end if sooner). [`Dump::finish`] reports what went wrong later.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use rusqlite::{Connection, OpenFlags};

use super::config::{DatabaseKind, DatabaseSection};

/// Bytes of SQLite pages sent to the reader at once.
const SQLITE_BLOCK: usize = 512 * 1024;
/// Blocks waiting in the channel: memory stays under (this + 2) blocks.
const SQLITE_QUEUE: usize = 4;
/// How long the SQLite reader waits for a lock held by a writer
/// (rollback-journal mode; in WAL mode readers never wait).
const SQLITE_BUSY: Duration = Duration::from_secs(60);
/// The first read of a dump process, kept to see whether it produces anything.
const FIRST_BLOCK: usize = 64 * 1024;
/// Bytes of a process's stderr kept for the error message.
const STDERR_TAIL: usize = 16 * 1024;
/// `PGCONNECT_TIMEOUT` given to pg_dump unless the environment sets one: a server
/// that accepts connections and never answers fails the dump instead of hanging it.
const PG_CONNECT_TIMEOUT: &str = "30";

/// A dump being produced: read it to its end, then call [`Dump::finish`].
/// Dropped before that, it stops the dump (kills the process, ends the reader).
pub struct Dump {
    what: String,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    source: Source,
}

// The job runner reads a dump on a blocking thread of its own.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Dump>();
};

enum Source {
    Process(ProcessDump),
    Sqlite(SqliteDump),
}

struct ProcessDump {
    /// `pg_dump`, `mariadb-dump`, ... for messages.
    tool: String,
    child: Option<Child>,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// How it ended, when that is already known.
    exited: Option<(ExitStatus, Vec<u8>)>,
}

struct SqliteDump {
    rx: Option<Receiver<Result<Vec<u8>, String>>>,
    thread: Option<JoinHandle<()>>,
    failed: Option<String>,
}

/// Starts dumping `db`; `env` (the volume's env file: `PGPASSWORD`, `MYSQL_PWD`, ...)
/// is added to the environment of the dump process. Blocks until the first block
/// of the dump is there (call it where blocking is fine, e.g. `spawn_blocking`),
/// so an unreachable database is an `Err` here: one line saying what is wrong and
/// what to check.
pub fn start(db: &DatabaseSection, env: &[(String, String)]) -> Result<Dump, String> {
    let what = format!("database {}", db.name);
    match db.kind {
        DatabaseKind::Sqlite => {
            let path = db.path.as_deref().ok_or_else(|| {
                format!("{what}: a sqlite database takes path = \"/path/to/file.db\"")
            })?;
            start_sqlite(what, path)
        }
        DatabaseKind::Postgres => {
            let url = need_url(&what, db, "postgres")?;
            start_postgres(what, url, &db.options, env)
        }
        DatabaseKind::Mysql => {
            let url = need_url(&what, db, "mysql")?;
            start_mysql(what, url, &db.options, env)
        }
    }
}

fn need_url<'a>(what: &str, db: &'a DatabaseSection, scheme: &str) -> Result<&'a str, String> {
    db.url.as_deref().ok_or_else(|| {
        format!("{what}: a {scheme} database takes url = \"{scheme}://user@host/dbname\"")
    })
}

impl Read for Dump {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                if self.pos == self.buf.len() {
                    self.buf = Vec::new();
                    self.pos = 0;
                }
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            match &mut self.source {
                Source::Process(p) => {
                    let Some(stdout) = p.stdout.as_mut() else {
                        return Ok(0);
                    };
                    let n = stdout.read(out)?;
                    if n == 0 {
                        self.eof = true;
                    }
                    return Ok(n);
                }
                Source::Sqlite(s) => {
                    if let Some(e) = &s.failed {
                        return Err(io::Error::other(e.clone()));
                    }
                    let Some(rx) = s.rx.as_ref() else {
                        return Ok(0);
                    };
                    match rx.recv() {
                        Ok(Ok(block)) => {
                            self.buf = block;
                            self.pos = 0;
                        }
                        Ok(Err(e)) => {
                            let e = format!("{}: {e}", self.what);
                            s.failed = Some(e.clone());
                            return Err(io::Error::other(e));
                        }
                        // The reader is done and every block was taken.
                        Err(_) => self.eof = true,
                    }
                }
            }
        }
    }
}

impl Dump {
    /// Waits for the dump to end. `Err` (one line) when the dump process failed
    /// (with the last thing it said), when the SQLite reader failed, or when the
    /// dump was not read to its end.
    pub fn finish(mut self) -> Result<(), String> {
        let read_all = self.eof && self.pos >= self.buf.len();
        let what = self.what.clone();
        match &mut self.source {
            Source::Process(p) => {
                if !read_all {
                    p.stop();
                    return Err(format!("{what}: the dump was stopped before its end"));
                }
                let (status, stderr) = p.wait()?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "{what}: {} failed ({status}): {}",
                        p.tool,
                        stderr_summary(&stderr)
                    ))
                }
            }
            Source::Sqlite(s) => {
                if let Some(e) = s.failed.take() {
                    return Err(e);
                }
                if !read_all {
                    return Err(format!("{what}: the dump was stopped before its end"));
                }
                s.rx = None;
                match s.thread.take().map(|t| t.join()) {
                    Some(Err(_)) => Err(format!("{what}: the SQLite reader panicked")),
                    _ => Ok(()),
                }
            }
        }
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        match &mut self.source {
            Source::Process(p) => p.stop(),
            // Its next send fails, and the reader thread ends.
            Source::Sqlite(s) => s.rx = None,
        }
    }
}

impl ProcessDump {
    /// Kills the process (if still there) and reaps it.
    fn stop(&mut self) {
        self.stdout = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(t) = self.stderr.take() {
            let _ = t.join();
        }
    }

    /// Waits for the process; its exit status and the tail of its stderr.
    fn wait(&mut self) -> Result<(ExitStatus, Vec<u8>), String> {
        self.stdout = None;
        if let Some(exited) = self.exited.take() {
            return Ok(exited);
        }
        let mut child = self
            .child
            .take()
            .expect("a dump process is waited for once");
        let status = child
            .wait()
            .map_err(|e| format!("{} could not be waited for: {e}", self.tool))?;
        let stderr = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        Ok((status, stderr))
    }
}

// ---------------------------------------------------------------- processes

/// Words of the line that says what went wrong.
const ERROR_WORDS: &[&str] = &[
    "error",
    "fatal",
    "unrecognized",
    "unknown",
    "invalid",
    "denied",
    "failed",
];

/// The first line a tool wrote that says what went wrong (see [`ERROR_WORDS`])
/// and up to two lines after it (pg_dump puts its hint on the next line); else
/// all it wrote when that is three lines or fewer, else its last line. At most
/// 300 characters.
fn stderr_summary(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let picked = match lines.iter().position(|l| {
        let l = l.to_ascii_lowercase();
        ERROR_WORDS.iter().any(|w| l.contains(w))
    }) {
        Some(i) => lines[i..lines.len().min(i + 3)].join(" "),
        None if lines.len() <= 3 => lines.join(" "),
        None => lines.last().map(|l| l.to_string()).unwrap_or_default(),
    };
    if picked.is_empty() {
        return "it said nothing on stderr".into();
    }
    match picked.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &picked[..cut]),
        None => picked,
    }
}

/// Runs a dump program and waits for its first bytes. `target` names the
/// database in messages (the URL without its password).
fn start_process(what: String, mut cmd: Command, target: &str) -> Result<Dump, String> {
    let tool = Path::new(cmd.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "{what}: {} could not start: {e}",
            cmd.get_program().to_string_lossy()
        )
    })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr = std::thread::Builder::new()
        .name("dump-stderr".into())
        .spawn(move || {
            // Only the tail of what it says is kept.
            let mut tail = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match stderr.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        tail.extend_from_slice(&buf[..n]);
                        if tail.len() > 2 * STDERR_TAIL {
                            tail.drain(..tail.len() - STDERR_TAIL);
                        }
                    }
                }
            }
            tail
        })
        .map_err(|e| format!("{what}: cannot start a thread: {e}"))?;
    let mut dump = Dump {
        what,
        buf: Vec::new(),
        pos: 0,
        eof: false,
        source: Source::Process(ProcessDump {
            tool,
            child: Some(child),
            stdout: Some(stdout),
            stderr: Some(stderr),
            exited: None,
        }),
    };
    // Up to FIRST_BLOCK bytes, or all of a dump that ends sooner: mariadb-dump
    // writes its header before it selects the database, so the first bytes alone
    // do not say the dump works.
    let mut first = vec![0u8; FIRST_BLOCK];
    let mut n = 0;
    while n < first.len() {
        match dump.read(&mut first[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("{}: reading the dump failed: {e}", dump.what)),
        }
    }
    first.truncate(n);
    dump.buf = first;
    if !dump.eof {
        return Ok(dump);
    }
    // The program ended already: it worked, or failed before FIRST_BLOCK bytes.
    let Source::Process(p) = &mut dump.source else {
        unreachable!("a process dump")
    };
    let (status, stderr) = p.wait()?;
    let tool = p.tool.clone();
    if !status.success() {
        return Err(start_error(
            &dump.what,
            &tool,
            target,
            &stderr_summary(&stderr),
        ));
    }
    if n == 0 {
        return Err(format!(
            "{}: {tool} ended without writing a dump; check the options given to it",
            dump.what
        ));
    }
    p.exited = Some((status, stderr));
    Ok(dump)
}

/// One line for a dump program that failed at its start: what it said, and what
/// to check given what it said.
fn start_error(what: &str, tool: &str, target: &str, said: &str) -> String {
    let s = said.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| s.contains(w));
    if has(&[
        "password",
        "authentication",
        "access denied",
        "role \"",
        "no pg_hba.conf entry",
    ]) {
        let var = if tool.starts_with("pg_") {
            "PGPASSWORD"
        } else {
            "MYSQL_PWD"
        };
        format!("{what}: {target} refused the login ({said}): check the user, and the password ({var} in the volume's env file, or in the url)")
    } else if has(&["does not exist", "unknown database"]) {
        format!("{what}: {target} has no such database ({said}): check the database name in url")
    } else if has(&[
        "connect",
        "connection",
        "translate host name",
        "unknown server host",
        "timeout expired",
    ]) {
        format!("{what}: cannot connect to {target} ({said}): check url and that the server runs")
    } else if has(&["permission denied", "command denied", "privilege"]) {
        format!("{what}: {tool} may not read everything in {target} ({said}): grant the user read access to every table (or exclude tables in options)")
    } else {
        format!("{what}: {tool} failed on {target} ({said})")
    }
}

/// The URL as shown in messages: its password replaced by `***`.
fn shown(url: &url::Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// pg_dump from PATH, else the newest of Debian's `/usr/lib/postgresql/N/bin`
/// (and Red Hat's `/usr/pgsql-N/bin`): a pg_dump older than the server refuses
/// to dump it, so the newest is the one that works.
fn find_pg_dump() -> Option<PathBuf> {
    if let Some(p) = on_path("pg_dump") {
        return Some(p);
    }
    let mut found: Vec<(Vec<u64>, PathBuf)> = Vec::new();
    for (dir, prefix) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(version) = name.strip_prefix(prefix) else {
                continue;
            };
            let Ok(version) = version
                .split('.')
                .map(str::parse::<u64>)
                .collect::<Result<Vec<u64>, _>>()
            else {
                continue;
            };
            let bin = e.path().join("bin/pg_dump");
            if is_executable(&bin) {
                found.push((version, bin));
            }
        }
    }
    found.into_iter().max().map(|(_, p)| p)
}

fn add_env(cmd: &mut Command, env: &[(String, String)]) {
    for (k, v) in env {
        cmd.env(k, v);
    }
}

fn start_postgres(
    what: String,
    url: &str,
    options: &[String],
    env: &[(String, String)],
) -> Result<Dump, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{what}: url is not a URL ({e})"))?;
    let target = shown(&parsed);
    let pg_dump = find_pg_dump().ok_or_else(|| {
        format!("{what}: pg_dump not found (looked in PATH and /usr/lib/postgresql/*/bin): install the PostgreSQL client (apt-get install postgresql-client)")
    })?;
    let mut cmd = Command::new(pg_dump);
    cmd.args(["--format=custom", "--compress=0", "--no-password"])
        .args(options)
        .arg(format!("--dbname={url}"));
    if std::env::var_os("PGCONNECT_TIMEOUT").is_none()
        && !env.iter().any(|(k, _)| k == "PGCONNECT_TIMEOUT")
    {
        cmd.env("PGCONNECT_TIMEOUT", PG_CONNECT_TIMEOUT);
    }
    add_env(&mut cmd, env);
    start_process(what, cmd, &target)
}

/// What mariadb-dump is told of a `mysql://user:password@host:port/db` URL.
#[derive(Debug, PartialEq)]
struct MysqlTarget {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    socket: Option<String>,
    database: String,
}

fn decode(s: &str) -> Result<String, String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("{s:?} is not UTF-8 once percent-decoded"))
}

fn parse_mysql_url(url: &url::Url) -> Result<MysqlTarget, String> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
    let user = Some(decode(url.username())?).filter(|u| !u.is_empty());
    let password = url.password().map(decode).transpose()?;
    let database = decode(url.path().trim_matches('/'))?;
    if database.is_empty() || database.contains('/') {
        return Err(format!(
            "url path {:?} should be one database name: mysql://user@host/dbname",
            url.path()
        ));
    }
    let mut socket = None;
    for (k, v) in url.query_pairs() {
        match &*k {
            "socket" => socket = Some(v.into_owned()),
            _ => {
                return Err(format!(
                    "url parameter {k:?} is not understood (only ?socket=/path/to/mysqld.sock); give other arguments in options"
                ))
            }
        }
    }
    Ok(MysqlTarget {
        host,
        port: url.port(),
        user,
        password,
        socket,
        database,
    })
}

fn start_mysql(
    what: String,
    url: &str,
    options: &[String],
    env: &[(String, String)],
) -> Result<Dump, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{what}: url is not a URL ({e})"))?;
    let target = shown(&parsed);
    let t = parse_mysql_url(&parsed).map_err(|e| format!("{what}: {e}"))?;
    let program = on_path("mariadb-dump")
        .or_else(|| on_path("mysqldump"))
        .ok_or_else(|| {
            format!("{what}: neither mariadb-dump nor mysqldump is in PATH: install the MariaDB or MySQL client (apt-get install mariadb-client)")
        })?;
    let mut cmd = Command::new(program);
    cmd.args([
        "--single-transaction",
        "--routines",
        "--events",
        "--triggers",
        "--hex-blob",
        "--skip-dump-date",
    ]);
    if let Some(h) = &t.host {
        cmd.arg(format!("--host={h}"));
    }
    if let Some(p) = t.port {
        cmd.arg(format!("--port={p}"));
    }
    if let Some(u) = &t.user {
        cmd.arg(format!("--user={u}"));
    }
    if let Some(s) = &t.socket {
        cmd.arg(format!("--socket={s}"));
    }
    cmd.args(options).arg(&t.database);
    add_env(&mut cmd, env);
    // A password in the url goes through the environment, not the command line
    // (which every user of the machine can read).
    if let Some(p) = &t.password {
        cmd.env("MYSQL_PWD", p);
    }
    start_process(what, cmd, &target)
}

// ------------------------------------------------------------------- SQLite

fn start_sqlite(what: String, path: &Path) -> Result<Dump, String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(format!(
                "{what}: {} is not a file: path should name the SQLite database file",
                path.display()
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "{what}: SQLite file {} does not exist: check path",
                path.display()
            ))
        }
        Err(e) => return Err(format!("{what}: cannot read {}: {e}", path.display())),
    }
    let (tx, rx) = sync_channel(SQLITE_QUEUE);
    let owned = path.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("dump-sqlite".into())
        .spawn(move || {
            if let Err(e) = sqlite_pages(&owned, &tx) {
                let _ = tx.send(Err(e));
            }
        })
        .map_err(|e| format!("{what}: cannot start a thread: {e}"))?;
    let mut dump = Dump {
        what,
        buf: Vec::new(),
        pos: 0,
        eof: false,
        source: Source::Sqlite(SqliteDump {
            rx: Some(rx),
            thread: Some(thread),
            failed: None,
        }),
    };
    // The first block, or the reason there is none.
    let Source::Sqlite(s) = &mut dump.source else {
        unreachable!("a sqlite dump")
    };
    match s.rx.as_ref().expect("just set").recv() {
        Ok(Ok(block)) => dump.buf = block,
        Ok(Err(e)) => {
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
            return Err(format!("{}: {e}", dump.what));
        }
        // The reader ended without a page: an empty file (a database of no
        // pages), unless it panicked.
        Err(_) => {
            if let Some(Err(_)) = s.thread.take().map(|t| t.join()) {
                return Err(format!("{}: the SQLite reader panicked", dump.what));
            }
            dump.eof = true;
        }
    }
    Ok(dump)
}

/// Sends the pages of the database at `path`, in order, in blocks; all read in
/// one read transaction, so they are one consistent state of the database.
/// Returns early (`Ok`) when the receiver is gone.
fn sqlite_pages(path: &Path, tx: &SyncSender<Result<Vec<u8>, String>>) -> Result<(), String> {
    let shown = path.display();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open {shown} as a SQLite database ({e}): check path"))?;
    conn.busy_timeout(SQLITE_BUSY)
        .map_err(|e| format!("cannot set up {shown}: {e}"))?;
    let sql_error = |e: rusqlite::Error| {
        match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            format!("{shown} is not a SQLite database ({e}): check path")
        }
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            format!(
                "{shown} stayed locked by a writer for {}s ({e}): run the job when it is idle, or switch it to WAL mode (PRAGMA journal_mode=WAL)",
                SQLITE_BUSY.as_secs()
            )
        }
        _ if e.to_string().contains("sqlite_dbpage") => format!(
            "this cloudraid was built without SQLite's sqlite_dbpage table ({e}): build it with LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_DBPAGE_VTAB"
        ),
        _ => format!("reading {shown} failed: {e}"),
    }
    };
    // One read transaction for the page count and every page.
    conn.execute_batch("BEGIN").map_err(sql_error)?;
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(sql_error)?;
    let mut stmt = conn
        .prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
        .map_err(sql_error)?;
    let mut rows = stmt.query([]).map_err(sql_error)?;
    let mut block = Vec::with_capacity(SQLITE_BLOCK);
    let mut expected = 1i64;
    while let Some(row) = rows.next().map_err(sql_error)? {
        let pgno: i64 = row.get(0).map_err(sql_error)?;
        let data = row.get_ref(1).map_err(sql_error)?;
        let data = data
            .as_blob()
            .map_err(|e| format!("{shown}: page {pgno} is not a blob: {e}"))?;
        if pgno != expected {
            return Err(format!(
                "{shown}: page {expected} expected, sqlite_dbpage gave page {pgno}"
            ));
        }
        let start = block.len();
        block.extend_from_slice(data);
        if pgno == 1 {
            standalone_header(&mut block[start..]);
        }
        if block.len() >= SQLITE_BLOCK {
            let full = std::mem::replace(&mut block, Vec::with_capacity(SQLITE_BLOCK));
            if tx.send(Ok(full)).is_err() {
                return Ok(());
            }
        }
        expected += 1;
    }
    if expected - 1 != pages {
        return Err(format!(
            "{shown}: {} pages read, the database has {pages}",
            expected - 1
        ));
    }
    if !block.is_empty() {
        let _ = tx.send(Ok(block));
    }
    Ok(())
}

/// Page 1 of a copy: a database in WAL mode (file format versions 2, bytes 18
/// and 19 of the header) is marked rollback-journal (1) so that the copy, which
/// already holds every committed page, opens on its own without a `-wal` file.
fn standalone_header(page1: &mut [u8]) {
    if page1.len() >= 20 && page1[18] == 2 && page1[19] == 2 {
        page1[18] = 1;
        page1[19] = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn mysql_url_parts_are_decoded() {
        let t = parse_mysql_url(&url("mysql://me%40corp:p%3Ass@db.example:3307/shop%2Dx")).unwrap();
        assert_eq!(
            t,
            MysqlTarget {
                host: Some("db.example".into()),
                port: Some(3307),
                user: Some("me@corp".into()),
                password: Some("p:ss".into()),
                socket: None,
                database: "shop-x".into(),
            }
        );
        let t = parse_mysql_url(&url("mariadb://root@[::1]/app")).unwrap();
        assert_eq!(t.host.as_deref(), Some("::1"));
        assert_eq!(t.port, None);
        assert_eq!(t.password, None);
        let t = parse_mysql_url(&url(
            "mysql://root@localhost/app?socket=/run/mysqld/mysqld.sock",
        ))
        .unwrap();
        assert_eq!(t.socket.as_deref(), Some("/run/mysqld/mysqld.sock"));
    }

    #[test]
    fn mysql_url_refusals_say_why() {
        let e = parse_mysql_url(&url("mysql://me@host/")).unwrap_err();
        assert!(e.contains("one database name"), "{e}");
        let e = parse_mysql_url(&url("mysql://me@host/a/b")).unwrap_err();
        assert!(e.contains("one database name"), "{e}");
        let e = parse_mysql_url(&url("mysql://me@host/a?ssl=1")).unwrap_err();
        assert!(e.contains("\"ssl\"") && e.contains("options"), "{e}");
    }

    #[test]
    fn shown_url_hides_the_password() {
        assert_eq!(
            shown(&url("postgres://me:secret@127.0.0.1:5432/app")),
            "postgres://me:***@127.0.0.1:5432/app"
        );
        assert_eq!(
            shown(&url("postgres://me@127.0.0.1:5432/app")),
            "postgres://me@127.0.0.1:5432/app"
        );
    }

    #[test]
    fn stderr_summary_takes_the_error_and_its_hint() {
        let pg = b"pg_dump: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?\n";
        assert_eq!(
            stderr_summary(pg),
            "pg_dump: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused Is the server running on that host and accepting TCP/IP connections?"
        );
        assert_eq!(
            stderr_summary(b"pg_dump: unrecognized option '--x'\npg_dump: hint: Try \"pg_dump --help\" for more information.\n"),
            "pg_dump: unrecognized option '--x' pg_dump: hint: Try \"pg_dump --help\" for more information."
        );
        assert_eq!(
            stderr_summary(b"note: one\nsomething broke\n\n"),
            "note: one something broke"
        );
        assert_eq!(
            stderr_summary(b"note: one\nnote: two\nnote: three\nsomething broke\n"),
            "something broke"
        );
        assert_eq!(stderr_summary(b""), "it said nothing on stderr");
        let long = format!("error: {}", "x".repeat(1000));
        assert_eq!(stderr_summary(long.as_bytes()).chars().count(), 301);
    }

    #[test]
    fn start_errors_name_what_to_check() {
        let e = start_error(
            "database app",
            "pg_dump",
            "postgres://me@h/app",
            "pg_dump: error: connection to server at \"h\", port 1 failed: Connection refused",
        );
        assert!(
            e.starts_with("database app: cannot connect to postgres://me@h/app ("),
            "{e}"
        );
        assert!(e.ends_with("check url and that the server runs"), "{e}");
        let e = start_error("database app", "pg_dump", "postgres://me@h/app", "pg_dump: error: connection to server at \"h\", port 1 failed: FATAL:  password authentication failed for user \"me\"");
        assert!(
            e.contains("refused the login") && e.contains("(PGPASSWORD in the volume's env file"),
            "{e}"
        );
        let e = start_error(
            "database app",
            "mariadb-dump",
            "mysql://me@h/app",
            "mariadb-dump: Got error: 1045: \"Access denied for user 'me'@'h' (using password: YES)\" when trying to connect",
        );
        assert!(
            e.contains("refused the login") && e.contains("(MYSQL_PWD in the volume's env file"),
            "{e}"
        );
        let e = start_error(
            "database app",
            "mariadb-dump",
            "mysql://me@h/app",
            "mariadb-dump: Got error: 1049: \"Unknown database 'app'\" when selecting the database",
        );
        assert!(e.contains("no such database"), "{e}");
    }

    #[test]
    fn wal_header_becomes_rollback() {
        let mut page = vec![0u8; 4096];
        page[18] = 2;
        page[19] = 2;
        standalone_header(&mut page);
        assert_eq!((page[18], page[19]), (1, 1));
        page[18] = 1;
        page[19] = 1;
        standalone_header(&mut page);
        assert_eq!((page[18], page[19]), (1, 1));
    }
}
