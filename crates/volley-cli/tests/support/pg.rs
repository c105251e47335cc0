//! A real PostgreSQL server for the tests: `VOLLEY_TEST_DATABASE_URL` when
//! set, else one throwaway server per test binary, started on first use by
//! `scripts/pg.sh` (initdb and pg_ctl from Debian's postgresql, on a free
//! loopback port) and stopped when the test binary exits. Each test gets a
//! database of its own on it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The server's URL (its `volley` database).
fn server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("VOLLEY_TEST_DATABASE_URL") {
            return url;
        }
        pg_sh(&[
            "start",
            "--fast",
            "--until",
            &std::process::id().to_string(),
        ])
    })
}

const PG_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg.sh");

/// Runs `scripts/pg.sh` with `args`; its stdout, trimmed (a URL for
/// `start`). Fails the test if the script fails.
fn pg_sh(args: &[&str]) -> String {
    let out = std::process::Command::new(PG_SH)
        .args(args)
        .output()
        .expect("run scripts/pg.sh");
    assert!(
        out.status.success(),
        "scripts/pg.sh {} failed: {}",
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let (server, _) = base.rsplit_once('/').expect("a database URL has a path");
    format!("{server}/{name}{query}")
}

/// A client of `url`, its connection driven on the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL server");
    tokio::spawn(connection);
    client
}

/// A new, empty database on the test server; returns its URL.
pub async fn database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let admin = connect(server()).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    with_database(server(), &name)
}

/// (tasks, outcomes, tasks with an outcome, tasks without one) of every job.
pub async fn outcome_counts(url: &str) -> (i64, i64, i64, i64) {
    let row = connect(url)
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM outcomes), \
             (SELECT count(DISTINCT task_id) FROM outcomes), \
             (SELECT count(*) FROM tasks t WHERE NOT EXISTS \
                (SELECT 1 FROM outcomes o WHERE o.task_id = t.id))",
            &[],
        )
        .await
        .expect("count tasks and outcomes");
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

/// A PostgreSQL server of the calling test's own (so that restarting it
/// disturbs no other test), stopped when the test binary exits.
pub struct OwnServer {
    /// Its directory, for `scripts/pg.sh restart`.
    pub dir: tempfile::TempDir,
    /// Its URL (its `volley` database).
    pub url: String,
}

impl OwnServer {
    /// Starts one with `scripts/pg.sh start`.
    pub fn start() -> OwnServer {
        let dir = tempfile::Builder::new()
            .prefix("volley-pg-own")
            .tempdir_in("/tmp")
            .expect("a directory for the server");
        let path = dir.path().to_str().expect("a UTF-8 temporary path");
        let url = pg_sh(&[
            "start",
            path,
            "--fast",
            "--until",
            &std::process::id().to_string(),
        ]);
        OwnServer { dir, url }
    }

    /// Restarts it as `pg_ctl restart -m fast` does: every connection is
    /// cut, and the server is back once this returns.
    pub fn restart(&self) {
        pg_sh(&[
            "restart",
            self.dir.path().to_str().expect("a UTF-8 temporary path"),
        ]);
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(PG_SH)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
