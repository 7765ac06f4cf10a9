//! Database dumps of backup jobs (src/backup/job/dump.rs), against real databases:
//! SQLite files written while they are dumped, and PostgreSQL / MariaDB servers
//! started by `scripts/databases.sh` (each dump is restored into a new database of
//! the same server and compared). The server tests skip when the
//! CLOUDRAID_TEST_* variables are not set, and fail then under CI:
//!
//!   scripts/databases.sh start; eval "$(scripts/databases.sh env)"
//!   cargo test --test databases; scripts/databases.sh stop

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudraid::backup::job::config::{DatabaseKind, DatabaseSection};
use cloudraid::backup::job::dump;
use rusqlite::Connection;

fn section(kind: DatabaseKind, path: Option<&Path>, url: Option<&str>) -> DatabaseSection {
    DatabaseSection {
        kind,
        name: "app".into(),
        path: path.map(Path::to_path_buf),
        url: url.map(str::to_string),
        options: Vec::new(),
    }
}

/// The whole dump through the API the job runner uses: start, read, finish.
fn dump_all(db: &DatabaseSection, env: &[(String, String)]) -> Result<Vec<u8>, String> {
    let mut d = dump::start(db, env)?;
    let mut out = Vec::new();
    d.read_to_end(&mut out).map_err(|e| e.to_string())?;
    d.finish()?;
    Ok(out)
}

/// A start error: one line, that names the database.
fn start_error(db: &DatabaseSection, env: &[(String, String)]) -> String {
    let t = Instant::now();
    let e = match dump::start(db, env) {
        Ok(_) => panic!("start of {db:?} should fail"),
        Err(e) => e,
    };
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "failing took {:?}",
        t.elapsed()
    );
    assert!(!e.contains('\n'), "not one line: {e:?}");
    assert!(e.starts_with("database app: "), "{e}");
    eprintln!("start error: {e}");
    e
}

/// The test server's variables, or None (skipped) when they are not set; under CI
/// they must be.
fn server_env(vars: &[&str], what: &str) -> Option<Vec<String>> {
    let values: Option<Vec<String>> = vars.iter().map(|v| std::env::var(v).ok()).collect();
    if values.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the {what} dump tests: set {vars:?} (scripts/databases.sh)"
        );
        eprintln!("skipped: needs a {what} server: scripts/databases.sh start; eval \"$(scripts/databases.sh env)\"");
    }
    values
}

/// A name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// A port of 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ------------------------------------------------------------------- SQLite

fn sqlite_fill(c: &Connection, batches: i64) {
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, batch INT NOT NULL, gen INT NOT NULL, body BLOB);
         CREATE INDEX t_batch ON t(batch);
         CREATE TABLE meta(batches INT NOT NULL, gens INT NOT NULL);
         INSERT INTO meta VALUES (0, 0);",
    )
    .unwrap();
    for _ in 0..batches {
        sqlite_batch(c);
    }
}

/// One transaction: 500 new rows of a new batch; `meta` counts the batches and
/// the sum of `gen`, so a snapshot is consistent when they agree with `t`.
fn sqlite_batch(c: &Connection) -> i64 {
    let tx = c.unchecked_transaction().unwrap();
    let b: i64 = tx
        .query_row(
            "UPDATE meta SET batches = batches + 1 RETURNING batches",
            [],
            |r| r.get(0),
        )
        .unwrap();
    tx.execute(
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 500)
         INSERT INTO t(batch, gen, body) SELECT ?1, 0, randomblob(400) FROM s",
        [b],
    )
    .unwrap();
    tx.commit().unwrap();
    b
}

/// One transaction rewriting the rows of an older batch (pages already in the
/// file change), keeping `meta.gens` = SUM(gen).
fn sqlite_rewrite(c: &Connection, batch: i64) {
    let tx = c.unchecked_transaction().unwrap();
    let n = tx
        .execute(
            "UPDATE t SET gen = gen + 1, body = randomblob(400) WHERE batch = ?1",
            [batch],
        )
        .unwrap();
    tx.execute("UPDATE meta SET gens = gens + ?1", [n as i64])
        .unwrap();
    tx.commit().unwrap();
}

/// Checks a dumped database on its own: it opens without any -wal, passes
/// integrity_check, and is one consistent state. Returns its batch count.
fn sqlite_check_copy(bytes: &[u8], dir: &Path) -> i64 {
    let copy = dir.join(unique("copy") + ".db");
    std::fs::write(&copy, bytes).unwrap();
    assert_eq!(&bytes[..16], b"SQLite format 3\0");
    assert_eq!((bytes[18], bytes[19]), (1, 1), "rollback-journal header");
    let c = Connection::open(&copy).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    let (batches, gens): (i64, i64) = c
        .query_row("SELECT batches, gens FROM meta", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let (rows, sum, max): (i64, i64, i64) = c
        .query_row(
            "SELECT COUNT(*), TOTAL(gen), IFNULL(MAX(batch), 0) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get::<_, f64>(1)? as i64, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(rows, 500 * batches, "rows of the batches meta counts");
    assert_eq!(max, batches);
    assert_eq!(sum, gens, "generations meta counts");
    assert!(!copy.with_extension("db-wal").exists());
    batches
}

#[test]
fn sqlite_in_rollback_mode_dumps_the_file_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let c = Connection::open(&path).unwrap();
    sqlite_fill(&c, 8);
    sqlite_rewrite(&c, 3);
    drop(c);
    let out = dump_all(&section(DatabaseKind::Sqlite, Some(&path), None), &[]).unwrap();
    // Several blocks of the reader, and the very pages of the file.
    assert!(out.len() > 1 << 20, "{} bytes", out.len());
    assert!(
        out == std::fs::read(&path).unwrap(),
        "dump differs from the file"
    );
    assert_eq!(sqlite_check_copy(&out, dir.path()), 8);
}

#[test]
fn sqlite_in_wal_mode_dumps_a_consistent_snapshot_while_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let c = Connection::open(&path).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // Everything stays in the -wal until the dump is done: the dump must read it.
    c.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
    sqlite_fill(&c, 12);
    let committed = Arc::new(AtomicI64::new(12));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (committed, stop) = (committed.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let b = sqlite_batch(&c);
                sqlite_rewrite(&c, 1 + i % b);
                committed.store(b, Ordering::SeqCst);
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            c
        })
    };
    let db = section(DatabaseKind::Sqlite, Some(&path), None);
    let before = committed.load(Ordering::SeqCst);
    let mut d = dump::start(&db, &[]).unwrap();
    let at_start = committed.load(Ordering::SeqCst);
    let mut out = Vec::new();
    let mut piece = vec![0u8; 64 * 1024];
    loop {
        let n = d.read(&mut piece).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&piece[..n]);
        if out.len() == n {
            // Midway, the writer commits more while the dump holds its snapshot.
            let t = Instant::now();
            while committed.load(Ordering::SeqCst) < at_start + 3 {
                assert!(t.elapsed() < Duration::from_secs(30), "writer stalled");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    d.finish().unwrap();
    let after = committed.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    let c = writer.join().unwrap();
    assert!(
        after >= at_start + 3,
        "the writer committed during the dump"
    );
    let batches = sqlite_check_copy(&out, dir.path());
    assert!(
        (before..=at_start + 1).contains(&batches),
        "snapshot of {batches} batches: taken while start() ran ({before}..={at_start}, +1 in flight)"
    );
    assert!(batches < after, "the dump is not the state after it");
    // The main file alone holds almost nothing: the pages came from the -wal.
    let main = std::fs::metadata(&path).unwrap().len();
    assert!(
        main < out.len() as u64 / 2,
        "main file {main}, dump {}",
        out.len()
    );
    // The source is untouched and still in WAL mode.
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn sqlite_missing_or_wrong_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let e = start_error(&section(DatabaseKind::Sqlite, Some(&missing), None), &[]);
    assert_eq!(
        e,
        format!(
            "database app: SQLite file {} does not exist: check path",
            missing.display()
        )
    );
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database, just some text that is long enough to have a header ".repeat(20),
    )
    .unwrap();
    let e = start_error(&section(DatabaseKind::Sqlite, Some(&text), None), &[]);
    assert!(
        e.contains("is not a SQLite database") && e.contains("check path"),
        "{e}"
    );
    let e = start_error(&section(DatabaseKind::Sqlite, Some(dir.path()), None), &[]);
    assert!(e.contains("is not a file"), "{e}");
}

#[test]
fn sqlite_dump_stopped_midway_is_an_error_and_ends_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    sqlite_fill(&Connection::open(&path).unwrap(), 10);
    let db = section(DatabaseKind::Sqlite, Some(&path), None);
    let mut d = dump::start(&db, &[]).unwrap();
    let mut piece = vec![0u8; 1000];
    d.read_exact(&mut piece).unwrap();
    let e = d.finish().unwrap_err();
    assert_eq!(e, "database app: the dump was stopped before its end");
    // Dropped midway: the reader ends and lets go of the database, so a writer
    // (rollback-journal mode) gets its lock at once.
    let mut d = dump::start(&db, &[]).unwrap();
    d.read_exact(&mut piece).unwrap();
    drop(d);
    let c = Connection::open(&path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let t = Instant::now();
    sqlite_batch(&c);
    assert!(t.elapsed() < Duration::from_secs(5));
    // An empty file is a database of no pages.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = dump_all(&section(DatabaseKind::Sqlite, Some(&empty), None), &[]).unwrap();
    assert!(out.is_empty());
}

// --------------------------------------------------------------- PostgreSQL

struct Pg {
    /// postgres://cloudraid@127.0.0.1:PORT (no database)
    base: String,
    password: String,
    bin: PathBuf,
    created: Vec<String>,
}

impl Pg {
    fn get() -> Option<Pg> {
        let v = server_env(
            &[
                "CLOUDRAID_TEST_PG_URL",
                "CLOUDRAID_TEST_PG_PASSWORD",
                "CLOUDRAID_TEST_PG_BIN",
            ],
            "PostgreSQL",
        )?;
        let base = v[0].rsplit_once('/').unwrap().0.to_string();
        Some(Pg {
            base,
            password: v[1].clone(),
            bin: PathBuf::from(&v[2]),
            created: Vec::new(),
        })
    }

    fn url(&self, db: &str) -> String {
        format!("{}/{db}", self.base)
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("PGPASSWORD".into(), self.password.clone())]
    }

    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        c.env("PGPASSWORD", &self.password);
        c
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        run(self
            .tool("psql")
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url(db))
            .arg("-c")
            .arg(sql))
    }

    fn createdb(&mut self) -> String {
        let name = unique("dump");
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.created.push(name.clone());
        name
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        for db in &self.created {
            let _ = self
                .tool("psql")
                .args(["-X", "-q", "-d"])
                .arg(self.url("postgres"))
                .arg("-c")
                .arg(format!("DROP DATABASE IF EXISTS {db}"))
                .output();
        }
    }
}

const PG_QUERIES: &[&str] = &[
    "SELECT * FROM items ORDER BY id",
    "SELECT * FROM notes ORDER BY id",
    "SELECT * FROM cheap ORDER BY id",
    "SELECT last_value FROM notes_id_seq",
];

#[test]
fn postgres_dump_restores_and_repeats_byte_for_byte() {
    let Some(mut pg) = Pg::get() else { return };
    let src = pg.createdb();
    pg.psql(
        &src,
        "CREATE TABLE items(id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), data bytea, tags text[], at timestamptz);
         INSERT INTO items SELECT g, 'item ' || g || ' ✓', g * 1.25, decode(md5(g::text) || md5((g * 7)::text), 'hex'),
                ARRAY['a' || g, 'b'], '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 minute'
           FROM generate_series(1, 30000) g;
         INSERT INTO items VALUES (0, 'null row', NULL, NULL, NULL, NULL);
         CREATE TABLE notes(id serial PRIMARY KEY, item int REFERENCES items(id), body text);
         INSERT INTO notes(item, body) SELECT g, repeat('note ', g % 50) FROM generate_series(1, 5000) g;
         CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 100;",
    );
    let url = pg.url(&src);
    let db = section(DatabaseKind::Postgres, None, Some(&url));
    let first = dump_all(&db, &pg.env()).unwrap();
    assert_eq!(&first[..5], b"PGDMP", "custom format");
    // Uncompressed: the rows are there as text.
    let row = "12345\titem 12345 ✓\t".as_bytes();
    assert!(
        first.windows(row.len()).any(|w| w == row),
        "rows in plain text"
    );
    assert!(first.len() > 2 << 20, "{} bytes", first.len());

    // Restored into a new database of the same server, it holds the same rows.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.pgdump");
    std::fs::write(&file, &first).unwrap();
    let restored = pg.createdb();
    run(pg
        .tool("pg_restore")
        .args(["--no-owner", "--exit-on-error", "-d"])
        .arg(pg.url(&restored))
        .arg(&file));
    for q in PG_QUERIES {
        let a = pg.psql(&src, q);
        assert!(!a.is_empty());
        assert!(a == pg.psql(&restored, q), "{q} differs after restore");
    }

    // Uncompressed custom format: a second dump of the unchanged database is the
    // same bytes but for the dump's creation time in the header (first 64 bytes),
    // which is what lets content-defined chunking store it once.
    std::thread::sleep(Duration::from_millis(1100));
    let second = dump_all(&db, &pg.env()).unwrap();
    assert_eq!(first.len(), second.len());
    let differing: Vec<usize> = (0..first.len())
        .filter(|&i| first[i] != second[i])
        .collect();
    assert!(
        differing.iter().all(|&i| i < 64),
        "bytes differ outside the header: {:?}",
        &differing[..differing.len().min(20)]
    );
}

#[test]
fn postgres_options_reach_pg_dump() {
    let Some(mut pg) = Pg::get() else { return };
    let src = pg.createdb();
    pg.psql(
        &src,
        "CREATE TABLE kept(v text); INSERT INTO kept VALUES ('kept row');
         CREATE TABLE skipped(v text); INSERT INTO skipped VALUES ('skipped row');",
    );
    let url = pg.url(&src);
    let mut db = section(DatabaseKind::Postgres, None, Some(&url));
    db.options = vec!["--exclude-table-data=skipped".into()];
    let out = dump_all(&db, &pg.env()).unwrap();
    let find = |s: &str| out.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(find("kept row"));
    assert!(!find("skipped row"));
    // A bad option: pg_dump's own complaint comes back.
    db.options = vec!["--no-such-option".into()];
    let e = start_error(&db, &pg.env());
    assert!(e.contains("pg_dump") && e.contains("no-such-option"), "{e}");
}

#[test]
fn postgres_unreachable_or_refused_is_a_clear_error() {
    let Some(pg) = Pg::get() else { return };
    let port = closed_port();
    let url = format!("postgres://cloudraid@127.0.0.1:{port}/app");
    let e = start_error(
        &section(DatabaseKind::Postgres, None, Some(&url)),
        &pg.env(),
    );
    assert!(
        e.starts_with(&format!(
            "database app: cannot connect to {url} (pg_dump: error: "
        )),
        "{e}"
    );
    assert!(e.ends_with("): check url and that the server runs"), "{e}");

    // A wrong password, from the env file or the url (which the message hides).
    let url = pg.url("postgres");
    let wrong = vec![("PGPASSWORD".to_string(), "wrong".to_string())];
    let e = start_error(&section(DatabaseKind::Postgres, None, Some(&url)), &wrong);
    assert!(e.contains(&format!("{url} refused the login (")), "{e}");
    assert!(e.contains("password authentication failed"), "{e}");
    let with_password = url.replacen("cloudraid@", "cloudraid:hunter2@", 1);
    let e = start_error(
        &section(DatabaseKind::Postgres, None, Some(&with_password)),
        &[],
    );
    assert!(
        e.contains("refused the login") && e.contains("cloudraid:***@"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");

    let url = pg.url("no_such_db");
    let e = start_error(
        &section(DatabaseKind::Postgres, None, Some(&url)),
        &pg.env(),
    );
    assert!(e.contains("has no such database"), "{e}");
}

// ----------------------------------------------------------- MySQL / MariaDB

struct My {
    port: String,
    user: String,
    password: String,
    created: Vec<String>,
}

impl My {
    fn get() -> Option<My> {
        let v = server_env(
            &["CLOUDRAID_TEST_MYSQL_URL", "CLOUDRAID_TEST_MYSQL_PASSWORD"],
            "MariaDB",
        )?;
        let u = url::Url::parse(&v[0]).unwrap();
        Some(My {
            port: u.port().unwrap().to_string(),
            user: u.username().to_string(),
            password: v[1].clone(),
            created: Vec::new(),
        })
    }

    fn url(&self, db: &str) -> String {
        format!("mysql://{}@127.0.0.1:{}/{db}", self.user, self.port)
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("MYSQL_PWD".into(), self.password.clone())]
    }

    fn client(&self, db: &str) -> Command {
        let mut c = Command::new("mariadb");
        c.args(["--no-defaults", "-N", "-B", "-h", "127.0.0.1", "-P"])
            .arg(&self.port)
            .arg("-u")
            .arg(&self.user)
            .env("MYSQL_PWD", &self.password);
        if !db.is_empty() {
            c.arg(db);
        }
        c
    }

    fn sql(&self, db: &str, sql: &str) -> String {
        run(self.client(db).arg("-e").arg(sql))
    }

    fn createdb(&mut self) -> String {
        let name = unique("dump");
        self.sql("", &format!("CREATE DATABASE {name}"));
        self.created.push(name.clone());
        name
    }
}

impl Drop for My {
    fn drop(&mut self) {
        for db in &self.created {
            let _ = self
                .client("")
                .arg("-e")
                .arg(format!("DROP DATABASE IF EXISTS {db}"))
                .output();
        }
    }
}

#[test]
fn mysql_dump_restores_and_repeats_byte_for_byte() {
    let Some(mut my) = My::get() else { return };
    let src = my.createdb();
    my.sql(
        &src,
        "CREATE TABLE items(id INT PRIMARY KEY, name VARCHAR(100) CHARACTER SET utf8mb4, price DECIMAL(10,2), data BLOB, at DATETIME);
         INSERT INTO items SELECT seq, CONCAT('item ', seq, ' ✓'), seq * 1.25, UNHEX(CONCAT(MD5(seq), MD5(seq * 7))),
                '2026-01-01 00:00:00' + INTERVAL seq MINUTE FROM seq_1_to_30000;
         INSERT INTO items VALUES (0, 'null row', NULL, NULL, NULL);
         CREATE TABLE log(id INT AUTO_INCREMENT PRIMARY KEY, item INT, note VARCHAR(50));
         CREATE TRIGGER items_log AFTER UPDATE ON items FOR EACH ROW INSERT INTO log(item, note) VALUES (NEW.id, 'updated');
         CREATE PROCEDURE total(OUT s DECIMAL(20,2)) SELECT SUM(price) INTO s FROM items;",
    );
    let url = my.url(&src);
    let db = section(DatabaseKind::Mysql, None, Some(&url));
    let first = dump_all(&db, &my.env()).unwrap();
    assert!(first.len() > 1 << 20, "{} bytes", first.len());
    // --hex-blob: binary columns are written as hex, the dump stays text.
    assert!(std::str::from_utf8(&first).is_ok(), "dump is not UTF-8");

    // Restored into a new database: same rows, and the trigger and procedure.
    let restored = my.createdb();
    let out = my
        .client(&restored)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&first)?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let q = "SELECT id, name, price, HEX(data), at FROM items ORDER BY id";
    let rows = my.sql(&src, q);
    assert_eq!(rows.lines().count(), 30001);
    assert!(rows == my.sql(&restored, q), "rows differ after restore");
    let total = "CALL total(@s); SELECT @s";
    assert_eq!(my.sql(&src, total), my.sql(&restored, total));
    let logged = my.sql(
        &restored,
        "UPDATE items SET price = 1 WHERE id = 5; SELECT COUNT(*) FROM log",
    );
    assert_eq!(logged.trim(), "1", "the trigger came back");

    // --skip-dump-date: the unchanged database dumps to the same bytes.
    std::thread::sleep(Duration::from_millis(1100));
    let second = dump_all(&db, &my.env()).unwrap();
    assert!(first == second, "second dump differs");
}

#[test]
fn mysql_unreachable_or_refused_is_a_clear_error() {
    let Some(my) = My::get() else { return };
    let port = closed_port();
    let url = format!("mysql://cloudraid@127.0.0.1:{port}/app");
    let e = start_error(&section(DatabaseKind::Mysql, None, Some(&url)), &my.env());
    assert!(
        e.starts_with(&format!("database app: cannot connect to {url} (")),
        "{e}"
    );
    assert!(e.ends_with("): check url and that the server runs"), "{e}");

    let url = my.url("cloudraid");
    let wrong = vec![("MYSQL_PWD".to_string(), "wrong".to_string())];
    let e = start_error(&section(DatabaseKind::Mysql, None, Some(&url)), &wrong);
    assert!(e.contains(&format!("{url} refused the login (")), "{e}");
    assert!(e.contains("Access denied"), "{e}");
    // The password of the url wins over the env file's, and is not shown.
    let with_password = url.replacen("cloudraid@", &format!("cloudraid:{}@", my.password), 1);
    let out = dump_all(
        &section(DatabaseKind::Mysql, None, Some(&with_password)),
        &wrong,
    )
    .unwrap();
    assert!(out.starts_with(b"/*") || out.starts_with(b"--"), "a dump");

    let url = my.url("no_such_db");
    let e = start_error(&section(DatabaseKind::Mysql, None, Some(&url)), &my.env());
    assert!(e.contains("has no such database"), "{e}");
}
