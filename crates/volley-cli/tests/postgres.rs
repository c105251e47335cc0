//! PostgreSQL and several workers, end to end: the store contract on both
//! stores, workers killed and stalled mid-run, and per-host limits that
//! hold for the whole cluster. Runs against a real PostgreSQL server
//! (`support::pg`).

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use support::{Server, Volley, max_per_second, pg, signal, stderr};
use volley::http::refresh::Resource;
use volley::input::{Input, parse_url};
use volley::outcome::{Class, NextPage, Outcome};
use volley::store::postgres::{PgOptions, PgReader, PgStore};
use volley::store::sqlite::{SqliteReader, SqliteStore};
use volley::store::{IngestBatch, IngestReport, JobCounts, Reader, Recorded, Store, Want};

fn url(line: u64, s: &str) -> Input {
    Input::Url {
        line,
        url: parse_url(s).expect("test URL parses"),
        meta: None,
    }
}

/// The counts the store keeps equal what its rows say, now.
async fn counts_hold<S: Store>(store: &S, job: i64, after: &str) {
    let (kept, counted) = store.recount(job).await.expect("recount");
    assert_eq!(kept, counted, "counts kept and counted after {after}");
}

const WANT: Want = Want {
    limit: 10,
    per_host: 8,
    handover: Duration::ZERO,
    busy: false,
};

/// The store contract, one body for both stores: ingest with repeats and
/// invalid lines, lease, record with items and a next page in the same
/// transaction, a pagination loop, a second outcome refused (fenced), and
/// a released task leased again.
async fn contract<S: Store>(
    store: &S,
    reader: impl FnOnce() -> Box<dyn FnOnce() -> Vec<(Option<u64>, String, Option<u64>)>>,
) {
    let job = store.open_job("j", "in.txt", None).await.expect("open");
    let batch = IngestBatch {
        inputs: vec![
            url(1, "http://a.test/x"),
            Input::Invalid {
                line: 2,
                raw: "nope".into(),
                reason: "line 2: not a URL".into(),
                malformed: false,
            },
            url(3, "http://a.test/x"),
            url(4, "http://b.test/y"),
        ],
        through_line: 4,
        complete: true,
        fingerprint: Some("f4".into()),
    };
    let report = store.ingest(job.id, batch.clone()).await.expect("ingest");
    assert_eq!(
        report,
        IngestReport {
            pending: 2,
            invalid_url: 1,
            invalid_input: 0,
            duplicates: 1
        }
    );
    assert_eq!(
        store.ingest(job.id, batch).await.expect("ingest again"),
        IngestReport::default(),
        "re-ingesting the same lines adds nothing"
    );
    counts_hold(store, job.id, "ingest").await;
    let leased = store.lease(job.id, WANT).await.expect("lease");
    counts_hold(store, job.id, "a lease").await;
    assert_eq!(
        leased.iter().map(|t| t.line).collect::<Vec<_>>(),
        [Some(1), Some(4)]
    );
    assert!(store.lease(job.id, WANT).await.expect("lease").is_empty());

    let mut ok = Outcome::new(leased[0].id, Class::Ok);
    ok.status = Some(200);
    ok.changed = Some(true);
    ok.resource = Some(Box::new(resource(1_000)));
    ok.items = vec!["{\"n\":1}".into(), "{\"n\":2}".into()];
    ok.next_page = Some(NextPage {
        url: "http://a.test/x?page=2".into(),
        host: "a.test".into(),
        page: 2,
        seed_id: leased[0].id,
        meta: None,
    });
    assert_eq!(
        store
            .record(job.id, vec![ok.clone()])
            .await
            .expect("record"),
        Recorded {
            outcomes: 1,
            pages: 1,
            fenced: 0
        },
        "the next page is a new task, in the same transaction"
    );
    counts_hold(store, job.id, "an outcome with a next page").await;
    let page2 = store.lease(job.id, WANT).await.expect("lease page 2");
    assert_eq!(
        page2.iter().map(|t| (t.line, t.page)).collect::<Vec<_>>(),
        [(None, 2)]
    );
    assert_eq!(
        page2[0].seed,
        Some((leased[0].id, leased[0].url.clone())),
        "a discovered page knows its seed"
    );
    let mut looped = Outcome::new(page2[0].id, Class::Ok);
    looped.next_page = Some(NextPage {
        url: "http://a.test/x".into(),
        host: "a.test".into(),
        page: 3,
        seed_id: page2[0].seed_id(),
        meta: None,
    });
    assert_eq!(
        store
            .record(job.id, vec![looped])
            .await
            .expect("record")
            .pages,
        0,
        "a next page already in the job is a loop"
    );
    assert_eq!(
        store.record(job.id, vec![ok]).await.expect("record again"),
        Recorded {
            outcomes: 0,
            pages: 0,
            fenced: 1
        },
        "a second outcome for a task is dropped and counted"
    );
    counts_hold(store, job.id, "a fenced outcome").await;
    // The task of line 4 is still held: release it and lease it again.
    store.release(job.id).await.expect("release");
    counts_hold(store, job.id, "a release").await;
    assert_eq!(
        store.counts(job.id).await.expect("counts"),
        JobCounts {
            pending: 1,
            leased: 0,
            done: 3,
            failed: 1,
            pages: 1
        }
    );
    assert_eq!(store.unfinished(job.id).await.expect("unfinished"), 1);
    let again = store.lease(job.id, WANT).await.expect("lease again");
    assert_eq!(again.iter().map(|t| t.line).collect::<Vec<_>>(), [Some(4)]);
    // The same body checked again later: checked moves, changed stays.
    let mut line4 = Outcome::new(again[0].id, Class::Ok);
    line4.resource = Some(Box::new(resource(2_000)));
    store
        .record(job.id, vec![line4])
        .await
        .expect("record line 4");
    let remembered = store
        .resources(vec!["http://a.test/x".into(), "http://b.test/y".into()])
        .await
        .expect("read resources");
    assert_eq!(remembered.len(), 1, "{remembered:?}");
    assert_eq!(
        remembered["http://a.test/x"],
        Resource {
            changed_at_ms: 1_000,
            ..resource(2_000)
        }
    );
    assert_eq!(store.unfinished(job.id).await.expect("unfinished"), 0);
    let (kept, counted) = store.recount(job.id).await.expect("recount");
    assert_eq!(kept, counted);
    assert_eq!(
        kept.classes,
        [
            ("ok".to_owned(), 3),
            ("duplicate".to_owned(), 1),
            ("invalid_url".to_owned(), 1)
        ]
    );
    assert!(kept.first_outcome_ms.is_some() && kept.first_outcome_ms <= kept.last_outcome_ms);

    let rows = reader()();
    assert_eq!(
        rows,
        [
            (Some(1), "ok".to_owned(), None),
            (Some(2), "invalid_url".to_owned(), None),
            (Some(3), "duplicate".to_owned(), Some(1)),
            (Some(4), "ok".to_owned(), None),
            (None, "ok".to_owned(), None),
        ]
    );
}

/// What a store is told to remember of `http://a.test/x`, checked at `at`.
fn resource(at: i64) -> Resource {
    Resource {
        url: "http://a.test/x".into(),
        status: Some(200),
        etag: Some("W/\"e\"".into()),
        last_modified: None,
        body_sha256: Some("aa".into()),
        body_path: None,
        bytes: Some(2),
        content_type: Some("text/plain".into()),
        next_url: Some("http://a.test/x?page=2".into()),
        checked_at_ms: at,
        changed_at_ms: at,
        fresh_until_ms: Some(at + 60_000),
        links: None,
    }
}

fn summary(reader: &impl Reader) -> Vec<(Option<u64>, String, Option<u64>)> {
    let job = reader.job("j").expect("the job");
    let mut rows = Vec::new();
    reader
        .for_each_outcome::<volley::store::StoreError>(job.id, |r| {
            rows.push((r.line, r.class.clone(), r.duplicate_of_line));
            Ok(())
        })
        .expect("read outcomes");
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_keep_the_same_contract() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("c.db");
    let sqlite = SqliteStore::open(&db).expect("open SQLite");
    let path = db.clone();
    contract(&sqlite, move || {
        Box::new(move || summary(&SqliteReader::open(&path).expect("reader")))
    })
    .await;
    // The outcomes recorded at ingest (the partial index's rows), alike.
    let job = sqlite.open_job("j", "in.txt", None).await.expect("job");
    let unfetched = SqliteReader::open(&db)
        .expect("reader")
        .unfetched_page(job.id, 0, 10)
        .expect("unfetched");
    assert_eq!(unfetched_lines(&unfetched), [Some(2), Some(3)]);

    let url = pg::database().await;
    let postgres = PgStore::connect(&url, PgOptions::default())
        .await
        .expect("connect to PostgreSQL");
    let reader = PgReader::connect(&url).await.expect("PG reader");
    contract(&postgres, move || Box::new(move || summary(&reader))).await;
    let job = postgres.open_job("j", "in.txt", None).await.expect("job");
    let all = postgres.unfetched_page(job.id, 0, 10).await.expect("page");
    assert_eq!(unfetched_lines(&all), [Some(2), Some(3)]);
    let after = postgres
        .unfetched_page(job.id, all[0].task_id, 10)
        .await
        .expect("page");
    assert_eq!(
        unfetched_lines(&after),
        [Some(3)],
        "keyset: after the first"
    );
    postgres.close().await.expect("close");
}

/// A batch whose first lines are already tasks (another process ingesting
/// the same input, with other batch bounds) adds only the lines past the
/// job's ingest cursor, once each.
async fn overlap<S: Store>(store: &S) {
    let job = store.open_job("o", "in.txt", None).await.expect("open");
    let batch = |lines: &[(u64, &str)], through_line| IngestBatch {
        inputs: lines.iter().map(|(l, u)| url(*l, u)).collect(),
        through_line,
        complete: false,
        fingerprint: None,
    };
    let first = batch(&[(1, "http://a.test/1"), (2, "http://a.test/2")], 2);
    assert_eq!(
        store.ingest(job.id, first).await.expect("ingest").pending,
        2
    );
    let second = batch(&[(2, "http://a.test/2"), (3, "http://a.test/3")], 3);
    assert_eq!(
        store.ingest(job.id, second).await.expect("ingest"),
        IngestReport {
            pending: 1,
            ..IngestReport::default()
        },
        "line 2 is a task already: neither added again nor a duplicate"
    );
    counts_hold(store, job.id, "an overlapping batch").await;
    let leased = store.lease(job.id, WANT).await.expect("lease");
    assert_eq!(
        leased.iter().map(|t| t.line).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_batch_adds_only_the_lines_past_the_cursor() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = SqliteStore::open(&dir.path().join("o.db")).expect("open SQLite");
    overlap(&sqlite).await;
    let postgres = PgStore::connect(&pg::database().await, PgOptions::default())
        .await
        .expect("connect to PostgreSQL");
    overlap(&postgres).await;
    postgres.close().await.expect("close");
}

/// The input lines of outcome entries, all recorded at ingest.
fn unfetched_lines(entries: &[volley::store::OutcomeEntry]) -> Vec<Option<u64>> {
    assert!(
        entries
            .iter()
            .all(|e| ["invalid_url", "duplicate"].contains(&e.row.class.as_str())),
        "only outcomes recorded at ingest"
    );
    entries.iter().map(|e| e.row.line).collect()
}

/// `volley` with `args` in `v`'s directory, output piped, not started.
fn command(v: &Volley, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_volley"));
    cmd.args(args)
        .current_dir(v.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts `volley` with `args` in `v`'s directory, output piped.
fn spawn(v: &Volley, args: &[&str]) -> tokio::process::Child {
    command(v, args).spawn().expect("start volley")
}

/// Asserts that `job`'s counts, as the store keeps them for status, equal
/// what its rows say, read in one snapshot (runs may be going).
async fn pg_counts_hold(db: &str, job: &str) {
    let store = PgStore::connect(db, PgOptions::default())
        .await
        .expect("connect to PostgreSQL");
    let id = store
        .find_job(job)
        .await
        .expect("find the job")
        .expect("the job exists")
        .id;
    let (kept, counted) = store.recount(id).await.expect("recount");
    assert_eq!(kept, counted, "counts kept and counted");
    store.close().await.expect("close");
}

async fn finish(child: tokio::process::Child) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("volley finished within 120 s")
        .expect("volley ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_and_a_sigkill_leave_exactly_one_outcome_per_input() {
    let server = Server::start_on_all_loopback().await;
    let port = server.addr.port();
    let hosts = 40;
    let urls: Vec<String> = (0..20_000)
        .map(|i| format!("http://127.0.1.{}:{port}/ok/{i}", 1 + i % hosts))
        .collect();
    let v = Volley::new();
    let list = v.write_lines("urls.txt", &urls);
    let db = pg::database().await;
    let common = [
        "--quiet",
        "--lease",
        "3s",
        "--timeout",
        "2s",
        "--concurrency",
        "16",
    ];
    let mut args = vec![
        "--db",
        &db,
        "fetch",
        list.to_str().expect("utf-8"),
        "--job",
        "big",
    ];
    args.extend(common);
    let ingester = spawn(&v, &args);
    server.wait_for_requests(1).await;
    let mut work = vec!["--db", db.as_str(), "work", "--job", "big"];
    work.extend(common);
    let workers: Vec<_> = (0..3).map(|_| spawn(&v, &work)).collect();
    let pids: Vec<u32> = workers.iter().filter_map(|w| w.id()).collect();
    // Kill a worker once the cluster is well under way, one that holds
    // leased tasks at that moment (a worker may hold none for a while: it
    // hands hosts back down to its fair share). A task whose frontier row
    // has an owner is leased.
    server.wait_for_requests(6_000).await;
    let watcher = pg::connect(&db).await;
    let victim = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let holders = watcher
                .query(
                    "SELECT w.name FROM frontier f JOIN workers w ON w.id = f.lease_owner \
                     GROUP BY w.name ORDER BY count(*) DESC",
                    &[],
                )
                .await
                .expect("read the leases");
            let holder = holders.iter().find_map(|row| {
                let name: String = row.get(0);
                let pid: u32 = name.rsplit(':').next()?.parse().ok()?;
                pids.iter().position(|p| *p == pid)
            });
            if let Some(index) = holder {
                return index;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a worker holds leased tasks within 30 s");
    signal(pids[victim], libc::SIGKILL);
    // The tasks it held at its death: another worker claims each again
    // once its lease has expired (a commit it had sent just before may
    // still land, finishing one of them itself).
    let held: HashSet<String> = watcher
        .query(
            "SELECT t.url FROM frontier f JOIN tasks t ON t.id = f.task_id \
             JOIN workers w ON w.id = f.lease_owner WHERE w.name LIKE '%:' || $1",
            &[&pids[victim].to_string()],
        )
        .await
        .expect("read the killed worker's leases")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!held.is_empty(), "the killed worker held leased tasks");
    // Mid-run, with the victim's leases held by no live worker: the counts
    // status reads equal the rows', in one snapshot.
    pg_counts_hold(&db, "big").await;
    let mut outs = vec![finish(ingester).await];
    for w in workers {
        outs.push(finish(w).await);
    }
    assert!(
        !outs[1 + victim].status.success(),
        "the killed worker did not exit 0"
    );
    for (i, out) in outs.iter().enumerate().filter(|(i, _)| *i != 1 + victim) {
        assert!(out.status.success(), "process {i}: {}", stderr(out));
    }
    let (tasks, outcomes, distinct, orphans) = pg::outcome_counts(&db).await;
    assert_eq!(
        (tasks, outcomes, distinct, orphans),
        (20_000, 20_000, 20_000, 0),
        "every input has exactly one outcome"
    );
    pg_counts_hold(&db, "big").await;
    // The ingester claimed every host before the workers started; it hands
    // hosts back down to its fair share, so the survivors did their part.
    let client = pg::connect(&db).await;
    for pid in pids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, p)| p)
    {
        let row = client
            .query_one(
                "SELECT recorded FROM workers WHERE name LIKE '%:' || $1",
                &[&pid.to_string()],
            )
            .await
            .expect("the worker's row");
        let recorded: i64 = row.get(0);
        assert!(recorded >= 1_000, "worker {pid} recorded only {recorded}");
    }
    // No URL is requested after its outcome was committed: every request
    // is one of the recorded attempts, except one more for a task the
    // killed worker held. It had fetched it, but its outcome was in flight
    // or waiting in the writer's channel or batch, never committed.
    let rows = client
        .query(
            "SELECT t.url, o.attempts FROM tasks t JOIN outcomes o ON o.task_id = t.id",
            &[],
        )
        .await
        .expect("read attempts");
    let recorded: HashMap<String, i32> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut repeated = 0;
    for (i, url) in urls.iter().enumerate() {
        let hits = server.hits(&format!("/ok/{i}"));
        let attempts = u64::try_from(recorded[url]).expect("attempts are positive");
        let reclaimed = held.contains(url);
        assert!(
            hits == attempts || (hits == attempts + 1 && reclaimed),
            "{url}: {hits} requests, {attempts} attempts recorded, held by the killed worker: {reclaimed}"
        );
        repeated += usize::from(hits > attempts);
    }
    eprintln!(
        "tasks the killed worker held: {}; requested again (fetched by the killed worker, not \
         committed): {repeated}",
        held.len()
    );
}

/// A database an older volley (schema 9, leases in `tasks`) left mid-job,
/// with a task finished, one leased by a worker that died and one waiting,
/// is upgraded by the next worker, which finishes the job: the lease moves
/// to the frontier, the counts still hold, and no task is lost or fetched
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_left_by_schema_9_is_finished_after_the_upgrade() {
    let server = Server::start().await;
    let urls: Vec<String> = (1..=3).map(|i| server.url(&format!("/ok/{i}"))).collect();
    let host = parse_url(&urls[0])
        .expect("test URL parses")
        .host_str()
        .map(str::to_owned)
        .expect("a host");
    let db = pg::database().await;
    volley::store::postgres::migrate_to(&db, 9)
        .await
        .expect("schema 9");
    let client = pg::connect(&db).await;
    let job: i64 = client
        .query_one(
            "INSERT INTO jobs (name, input, created_at_ms, ingested_lines, ingest_complete) \
             VALUES ('old', 'urls.txt', 0, 3, true) RETURNING id",
            &[],
        )
        .await
        .expect("a job")
        .get(0);
    let dead: i64 = client
        .query_one(
            "INSERT INTO workers (name, lease_expires_at) \
             VALUES ('gone:1', now() - interval '1 minute') RETURNING id",
            &[],
        )
        .await
        .expect("a dead worker")
        .get(0);
    client
        .execute(
            "INSERT INTO tasks (id, job_id, line, url, host, state, lease_owner, claim) VALUES \
               (1, $1, 1, $2, $5, 'done', NULL, 1), \
               (2, $1, 2, $3, $5, 'pending', $6, 2), \
               (3, $1, 3, $4, $5, 'pending', NULL, 0)",
            &[&job, &urls[0], &urls[1], &urls[2], &host, &dead],
        )
        .await
        .expect("tasks");
    client
        .batch_execute(&format!(
            "SELECT setval('tasks_id_seq', 3); \
             INSERT INTO outcomes (task_id, job_id, class, status, attempts, finished_at_ms) \
               VALUES (1, {job}, 'ok', 200, 1, 1); \
             INSERT INTO hosts (job_id, host, open, owner) VALUES ({job}, '{host}', 2, {dead}); \
             INSERT INTO job_counts (job_id, shard, kind, name, n, first_ms, last_ms) VALUES \
               ({job}, 0, 'tasks', 'done', 1, NULL, NULL), \
               ({job}, 0, 'tasks', 'leased', 1, NULL, NULL), \
               ({job}, 0, 'tasks', 'pending', 1, NULL, NULL), \
               ({job}, 0, 'outcomes', 'ok', 1, 1, 1);"
        ))
        .await
        .expect("an outcome, the host and the counts");
    // The upgrade, by the next worker to connect.
    let store = PgStore::connect(&db, PgOptions::default())
        .await
        .expect("connect and migrate");
    let leases: Vec<(i64, Option<i64>, i64)> = client
        .query(
            "SELECT task_id, lease_owner, claim FROM frontier ORDER BY task_id",
            &[],
        )
        .await
        .expect("read the frontier")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(leases, vec![(2, Some(dead), 2), (3, None, 0)]);
    counts_hold(&store, job, "the upgrade").await;
    store.close().await.expect("close");
    let out = finish(spawn(
        &Volley::new(),
        &["--db", db.as_str(), "work", "--job", "old", "--quiet"],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(pg::outcome_counts(&db).await, (3, 3, 3, 0));
    // The finished task is not fetched again; the other two once each.
    let hits: Vec<u64> = (1..=3).map(|i| server.hits(&format!("/ok/{i}"))).collect();
    assert_eq!(hits, vec![0, 1, 1]);
    pg_counts_hold(&db, "old").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stalled_past_its_lease_records_no_second_outcome() {
    let server = Server::start().await;
    let urls: Vec<String> = (0..40)
        .map(|i| server.url(&format!("/ok/{i}?ms=300")))
        .collect();
    let v = Volley::new();
    let list = v.write_lines("urls.txt", &urls);
    let db = pg::database().await;
    let common = [
        "--quiet",
        "--lease",
        "2s",
        "--timeout",
        "1s",
        "--concurrency",
        "4",
    ];
    // The process to stall ingests (one batch, so the job's input is all
    // read before its first lease) and fetches.
    let mut fetch = vec![
        "--db",
        db.as_str(),
        "fetch",
        list.to_str().expect("utf-8"),
        "--job",
        "slow",
    ];
    fetch.extend(common);
    let mut work = vec!["--db", db.as_str(), "work", "--job", "slow"];
    work.extend(common);
    let stalled = spawn(&v, &fetch);
    server.wait_for_requests(2).await;
    let pid = stalled.id().expect("a running worker");
    signal(pid, libc::SIGSTOP);
    let stopped_at = Instant::now();
    // Another worker takes over once the stalled one's lease expires, and
    // finishes the job: the stalled worker's tasks included.
    let rescuer = finish(spawn(&v, &work)).await;
    assert!(rescuer.status.success(), "{}", stderr(&rescuer));
    assert!(
        stopped_at.elapsed() >= Duration::from_secs(2),
        "the rescuer waited out the lease"
    );
    signal(pid, libc::SIGCONT);
    let stalled = finish(stalled).await;
    assert!(
        !stalled.status.success(),
        "the stalled worker must stop: {}",
        stderr(&stalled)
    );
    assert!(stderr(&stalled).contains("lease"), "{}", stderr(&stalled));
    let (tasks, outcomes, distinct, orphans) = pg::outcome_counts(&db).await;
    assert_eq!((tasks, outcomes, distinct, orphans), (40, 40, 40, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_limits_hold_across_four_workers() {
    let mut servers = Vec::new();
    for i in 0..10 {
        servers.push(Server::start_on(&format!("127.0.2.{}", 1 + i)).await);
    }
    let per_host_urls = 80;
    let mut urls = Vec::new();
    for i in 0..per_host_urls {
        for s in &servers {
            urls.push(s.url(&format!("/ok/{i}?ms=100")));
        }
    }
    let v = Volley::new();
    let list = v.write_lines("urls.txt", &urls);
    let db = pg::database().await;
    let limits = ["--rate", "20/s", "--per-host", "4"];
    let mut args = vec![
        "--db",
        db.as_str(),
        "fetch",
        list.to_str().expect("utf-8"),
        "--job",
        "polite",
        "--quiet",
    ];
    args.extend(limits);
    let ingester = spawn(&v, &args);
    // The job exists once its first request is made.
    servers[0].wait_for_requests(1).await;
    let work = ["--db", db.as_str(), "work", "--job", "polite", "--quiet"];
    let workers: Vec<_> = (0..3).map(|_| spawn(&v, &work)).collect();
    let mut outs = vec![finish(ingester).await];
    for w in workers {
        outs.push(finish(w).await);
    }
    for out in &outs {
        assert!(out.status.success(), "{}", stderr(out));
    }
    let (tasks, outcomes, _, orphans) = pg::outcome_counts(&db).await;
    assert_eq!((tasks, outcomes, orphans), (800, 800, 0));
    let mut by_host = HashMap::new();
    for (i, server) in servers.iter().enumerate() {
        let arrivals = server.arrivals_under("/ok/");
        assert_eq!(arrivals.len(), per_host_urls, "host {i}");
        let peak = max_per_second(&arrivals);
        let span = (arrivals[arrivals.len() - 1] - arrivals[0]).as_secs_f64();
        let achieved = (arrivals.len() - 1) as f64 / span;
        by_host.insert(i, (peak, server.max_in_flight(), achieved));
        assert!(peak <= 20, "host {i}: {peak} requests in one second");
        assert!(
            server.max_in_flight() <= 4,
            "host {i}: {} in flight",
            server.max_in_flight()
        );
        assert!(
            achieved >= 18.0,
            "host {i}: only {achieved:.1} requests/s of 20"
        );
    }
    eprintln!("per host (busiest second, most in flight, requests/s): {by_host:?}");
    // Politeness flags on a worker are refused: they come from the job.
    let refused = finish(spawn(&v, &["--db", db.as_str(), "work", "--rate", "80/s"])).await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--rate"), "{}", stderr(&refused));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_managed_on_postgres_as_on_sqlite() {
    let db = pg::database().await;
    let store = PgStore::connect(&db, PgOptions::default())
        .await
        .expect("connect to PostgreSQL");
    let job = store
        .create_job(
            "api",
            "api",
            "{\"retries\":0}",
            Some("http://127.0.0.1:9/hook"),
        )
        .await
        .expect("create");
    assert!(matches!(
        store.create_job("api", "api", "{}", None).await,
        Err(volley::store::StoreError::JobExists(_))
    ));
    let batch = IngestBatch {
        inputs: (1..=5)
            .map(|i| url(i, &format!("http://a.test/{i}")))
            .collect(),
        through_line: 5,
        complete: true,
        fingerprint: Some("f5".into()),
    };
    store.ingest(job.id, batch).await.expect("ingest");
    // Another worker leases two tasks and is still fetching when the job
    // is cancelled: its outcomes must not land.
    let other = PgStore::connect(&db, PgOptions::default())
        .await
        .expect("a second worker");
    let two = Want { limit: 2, ..WANT };
    let leased = other.lease(job.id, two).await.expect("lease");
    assert_eq!(leased.len(), 2, "the other worker holds tasks");
    let done = Outcome::new(leased[0].id, Class::Ok);
    // A pause reaches every worker: none claims more of a paused job, not
    // even of a host it holds.
    let paused = volley::store::JobState::Paused;
    store.set_job_state(job.id, paused).await.expect("pause");
    assert_eq!(store.job_record("api").await.expect("record").state, paused);
    assert!(other.lease(job.id, WANT).await.expect("lease").is_empty());
    assert!(other.unfinished_jobs().await.expect("jobs").is_empty());
    let active = volley::store::JobState::Active;
    store.set_job_state(job.id, active).await.expect("resume");
    assert_eq!(
        other.lease(job.id, WANT).await.expect("lease").len(),
        3,
        "resumed: the rest"
    );
    assert_eq!(store.cancel_job(job.id).await.expect("cancel"), 5);
    let late = other.record(job.id, vec![done]).await.expect("record");
    assert_eq!((late.outcomes, late.fenced), (0, 1), "fenced after cancel");
    let record = store.job_record("api").await.expect("record");
    assert_eq!(record.state, volley::store::JobState::Cancelled);
    assert_eq!(record.summary.counts.failed, 5);
    assert_eq!(record.summary.classes, [("cancelled".to_owned(), 5)]);
    assert_eq!(record.options.as_deref(), Some("{\"retries\":0}"));
    assert_eq!(record.notify.as_deref(), Some("http://127.0.0.1:9/hook"));
    assert!(record.summary.job.ingest_complete);
    let first = store.outcome_page(job.id, 0, None, 2).await.expect("page");
    assert_eq!(first.len(), 2);
    let rest = store
        .outcome_page(job.id, first[1].task_id, Some("cancelled"), 10)
        .await
        .expect("page");
    assert_eq!(rest.len(), 3, "keyset: the page after the first two");
    let wanted = [rest[2].task_id, first[0].task_id, -1];
    let by_id = store.outcomes_by_id(job.id, &wanted).await.expect("by id");
    assert_eq!(
        by_id.iter().map(|e| e.task_id).collect::<Vec<_>>(),
        [first[0].task_id, rest[2].task_id],
        "the ids asked for that have outcomes, in task order"
    );
    assert_eq!(by_id[1].row.url, rest[2].row.url);
    assert!(
        store
            .outcome_page(job.id, 0, Some("ok"), 10)
            .await
            .expect("page")
            .is_empty()
    );
    store.set_notified(job.id, "sent").await.expect("notified");
    assert_eq!(
        store
            .job_record("api")
            .await
            .expect("record")
            .notified
            .as_deref(),
        Some("sent")
    );
    assert!(
        store
            .recent_latencies(job.id, 10)
            .await
            .expect("latencies")
            .is_empty()
    );
    store.ping().await.expect("ping");
    assert!(
        other.unfinished_jobs().await.expect("jobs").is_empty(),
        "no worker picks a cancelled job up"
    );
    store.delete_job(job.id).await.expect("delete");
    assert!(matches!(
        store.job_record("api").await,
        Err(volley::store::StoreError::NoSuchJob(_))
    ));
    other.close().await.expect("close");
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_through_a_database_restart() {
    let server = Server::start_on_all_loopback().await;
    let port = server.addr.port();
    let n = 6_000;
    let urls: Vec<String> = (0..n)
        .map(|i| format!("http://127.0.1.{}:{port}/ok/{i}?ms=20", 1 + i % 8))
        .collect();
    let v = Volley::new();
    let list = v.write_lines("urls.txt", &urls);
    // A server of this test's own: restarting it disturbs no other test.
    let own = pg::OwnServer::start();
    let db = own.url.clone();
    let common = [
        "--quiet",
        "--lease",
        "10s",
        "--timeout",
        "3s",
        "--concurrency",
        "32",
    ];
    let mut args = vec!["--db", &db, "fetch", list.to_str().expect("utf-8")];
    args.extend(common);
    let fetcher = spawn(&v, &args);
    server.wait_for_requests(200).await;
    let mut work = vec!["--db", db.as_str(), "work"];
    work.extend(common);
    let worker = spawn(&v, &work);
    server.wait_for_requests(1_500).await;
    let before = server.total();
    let own = tokio::task::spawn_blocking(move || {
        own.restart();
        own
    })
    .await
    .expect("the restart ran");
    let (fetched, worked) = tokio::join!(finish(fetcher), finish(worker));
    for out in [&fetched, &worked] {
        assert!(
            out.status.success(),
            "a worker rides through the restart: {}",
            stderr(out)
        );
    }
    assert!(
        stderr(&fetched).contains("PostgreSQL is back")
            || stderr(&worked).contains("PostgreSQL is back"),
        "the restart was met and ridden out: {}\n{}",
        stderr(&fetched),
        stderr(&worked)
    );
    let (tasks, outcomes, distinct, orphans) = pg::outcome_counts(&db).await;
    assert_eq!(
        (tasks, outcomes, distinct, orphans),
        (n as i64, n as i64, n as i64, 0),
        "every input has exactly one outcome"
    );
    // No request was made again: each URL was requested as often
    // as its outcome's attempts say.
    let rows = pg::connect(&db)
        .await
        .query(
            "SELECT t.url, o.attempts FROM tasks t JOIN outcomes o ON o.task_id = t.id",
            &[],
        )
        .await
        .expect("read attempts");
    let recorded: HashMap<String, i32> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for (i, url) in urls.iter().enumerate() {
        let hits = server.hits(&format!("/ok/{i}"));
        assert_eq!(
            Some(hits),
            recorded.get(url).and_then(|a| u64::try_from(*a).ok()),
            "{url}"
        );
    }
    eprintln!("restarted after {before} requests of {n}");
    drop(own);
}

#[tokio::test]
async fn a_crawl_shared_by_two_workers_fetches_each_page_once() {
    let server = Server::start().await;
    let v = Volley::new();
    let list = v.write_lines("seeds.txt", &[server.url("/site/index.html")]);
    let db = pg::database().await;
    let fetch = [
        "--db",
        &db,
        "fetch",
        list.to_str().expect("utf-8"),
        "--job",
        "site",
        "--follow",
        "--retries",
        "0",
        "--quiet",
    ];
    let ingester = spawn(&v, &fetch);
    let worker = spawn(
        &v,
        &["--db", &db, "work", "--job", "site", "--wait", "--quiet"],
    );
    let out = finish(ingester).await;
    assert!(out.status.success(), "{}", stderr(&out));
    signal(worker.id().expect("the worker runs"), libc::SIGTERM);
    finish(worker).await;
    let client = pg::connect(&db).await;
    let rows = client
        .query(
            "SELECT t.url, o.class FROM tasks t JOIN outcomes o ON o.task_id = t.id ORDER BY t.url",
            &[],
        )
        .await
        .expect("read the outcomes");
    let base = server.url("");
    let pages: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            let url: String = r.get(0);
            (url.trim_start_matches(&base).to_owned(), r.get(1))
        })
        .collect();
    let expected = [
        "/site/a.html",
        "/site/a.html?x=1",
        "/site/b.html",
        "/site/c.html",
        "/site/deep/d.html",
        "/site/deep/e.html",
        "/site/index.html",
        "/site/missing.html",
        "http://127.0.0.1:9/gone",
    ];
    assert_eq!(
        pages.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        expected,
        "every page once: {pages:?}"
    );
    for page in expected.iter().filter(|p| p.starts_with('/')) {
        assert_eq!(server.uri_hits(page), 1, "{page}");
    }
    // The link graph, written by two workers: each broken URL with every
    // page linking to it.
    let out = finish(spawn(
        &v,
        &[
            "--db", &db, "export", "--job", "site", "--broken", "--format", "csv",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = String::from_utf8_lossy(&out.stdout).replace(&base, "");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let mut broken: Vec<(String, String, String)> = reader
        .records()
        .map(|r| {
            let r = r.expect("a CSV row");
            let mut from: Vec<&str> = r[4].split(' ').collect();
            from.sort();
            (r[0].to_owned(), r[1].to_owned(), from.join(" "))
        })
        .collect();
    broken.sort();
    assert_eq!(
        broken,
        [
            (
                "/site/missing.html".to_owned(),
                "http_4xx".to_owned(),
                "/site/b.html /site/deep/e.html".to_owned()
            ),
            (
                "http://127.0.0.1:9/gone".to_owned(),
                "connect_refused".to_owned(),
                "/site/a.html /site/a.html?x=1 /site/deep/d.html".to_owned()
            ),
        ],
        "{csv}"
    );

    // Page caps, counted in the database.
    let capped = finish(spawn(
        &v,
        &[
            "--db",
            &db,
            "fetch",
            list.to_str().expect("utf-8"),
            "--job",
            "capped",
            "--follow",
            "--max-crawl-pages",
            "3",
            "--quiet",
        ],
    ))
    .await;
    assert!(capped.status.success(), "{}", stderr(&capped));
    let client = pg::connect(&db).await;
    let tasks: i64 = client
        .query_one(
            "SELECT count(*) FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE j.name = 'capped'",
            &[],
        )
        .await
        .expect("count the tasks")
        .get(0);
    assert_eq!(tasks, 4, "the seed and 3 pages found from it");
}

#[tokio::test]
async fn an_archive_on_postgres_records_its_files_revisits_and_index() {
    let server = Server::start().await;
    let v = Volley::new();
    let urls = [
        server.url("/ok/1"),
        server.url("/big/5000"),
        server.url("/redirect/1"),
        server.url("/status/404"),
    ];
    let list = v.write_lines("urls.txt", &urls);
    let list = list.to_str().expect("utf-8");
    let db = pg::database().await;
    let prefix = v.path("warc/pg");
    let prefix = prefix.to_str().expect("utf-8");
    for job in ["first", "second"] {
        let out = finish(spawn(
            &v,
            &[
                "--db", &db, "fetch", list, "--job", job, "--warc", prefix, "--quiet",
            ],
        ))
        .await;
        assert!(out.status.success(), "{job}: {}", stderr(&out));
    }
    let client = pg::connect(&db).await;
    let files = client
        .query(
            "SELECT j.name, f.path, f.committed_end FROM warc_files f \
             JOIN jobs j ON j.id = f.job_id ORDER BY f.id",
            &[],
        )
        .await
        .expect("read warc_files");
    assert_eq!(files.len(), 2, "a file per run");
    for row in &files {
        let (path, end): (String, i64) = (row.get(1), row.get(2));
        let len = std::fs::metadata(&path).expect("the file is there").len();
        assert_eq!(len as i64, end, "{path}: committed to its end");
    }
    let kinds = |job: &'static str| {
        let client = &client;
        async move {
            client
                .query(
                    "SELECT r.kind, count(*) FROM warc_records r JOIN warc_files f ON f.id = r.file_id \
                     JOIN jobs j ON j.id = f.job_id WHERE j.name = $1 GROUP BY r.kind ORDER BY r.kind",
                    &[&job],
                )
                .await
                .expect("count the records")
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .collect::<Vec<_>>()
        }
    };
    // Four URLs, five exchanges (the redirect's hop is its own).
    assert_eq!(kinds("first").await, [("response".to_owned(), 5)]);
    // The second run's payloads were all archived by the first. The
    // redirect's empty payload has nothing to revisit.
    assert_eq!(
        kinds("second").await,
        [("response".to_owned(), 1), ("revisit".to_owned(), 4)]
    );
    let out = finish(spawn(
        &v,
        &["--db", &db, "export", "--job", "second", "--cdxj"],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(lines, 5);
}

/// Two transactions that take two rows in opposite orders: PostgreSQL
/// rolls one back with a deadlock, which the store classes as a conflict
/// (tried again whole, not a failure of the run) and not as a lost
/// connection.
#[tokio::test]
async fn a_deadlock_victim_is_a_conflict_to_try_again() {
    use volley::store::StoreError;
    use volley::store::postgres::{is_conflict, is_transient};

    let db = pg::database().await;
    let (mut a, mut b) = (pg::connect(&db).await, pg::connect(&db).await);
    a.batch_execute(
        "CREATE TABLE r (id int PRIMARY KEY, n int); INSERT INTO r VALUES (1, 0), (2, 0)",
    )
    .await
    .expect("make the rows");
    let (ta, tb) = (
        a.transaction().await.expect("begin a"),
        b.transaction().await.expect("begin b"),
    );
    ta.execute("UPDATE r SET n = n + 1 WHERE id = 1", &[])
        .await
        .expect("a takes row 1");
    tb.execute("UPDATE r SET n = n + 1 WHERE id = 2", &[])
        .await
        .expect("b takes row 2");
    // Each now waits for the other's row; the deadlock detector (after
    // deadlock_timeout, 1 s by default) rolls one of them back.
    let (ra, rb) = tokio::join!(
        ta.execute("UPDATE r SET n = n + 1 WHERE id = 2", &[]),
        tb.execute("UPDATE r SET n = n + 1 WHERE id = 1", &[]),
    );
    let victim = match (ra, rb) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => StoreError::Postgres(e),
        other => panic!("exactly one transaction is rolled back: {other:?}"),
    };
    assert!(is_conflict(&victim), "{victim}");
    assert!(!is_transient(&victim), "{victim}");
}

/// A host's room for claims (`Want::per_host`) comes back when its tasks
/// are fetched (`Store::fetched`), not when their outcomes commit; the
/// fetched tasks stay held until then, and their outcomes are accepted.
#[tokio::test]
async fn fetched_tasks_give_their_host_room_before_they_commit() {
    let db = pg::database().await;
    let store = PgStore::connect(&db, PgOptions::default())
        .await
        .expect("connect");
    let job = store.open_job("j", "in.txt", None).await.expect("open");
    let inputs = (1..=4)
        .map(|n| url(n, &format!("http://a.test/{n}")))
        .collect();
    let batch = IngestBatch {
        inputs,
        through_line: 4,
        complete: true,
        fingerprint: None,
    };
    store.ingest(job.id, batch).await.expect("ingest");
    let want = Want {
        per_host: 2,
        ..WANT
    };
    let first = store.lease(job.id, want).await.expect("lease");
    assert_eq!(first.len(), 2);
    assert!(
        store.lease(job.id, want).await.expect("lease").is_empty(),
        "the host's room is used up"
    );
    store.fetched(job.id, &[first[0].id]);
    let second = store.lease(job.id, want).await.expect("lease");
    assert_eq!(second.len(), 1, "one fetched task frees one place");
    let recorded = store
        .record(job.id, vec![Outcome::new(first[0].id, Class::Ok)])
        .await
        .expect("record");
    assert_eq!(recorded.outcomes, 1, "a fetched task is still held");
    counts_hold(&store, job.id, "a record after a fetched claim").await;
}

/// Ingest on PostgreSQL merges the batches read while one commits (the
/// input is read far faster than it commits here): a merged transaction
/// keeps the cursor and fingerprint of its last batch, so a rerun over the
/// same input with lines appended accepts what was read and fetches only
/// the new lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_ingest_batches_keep_the_cursor_for_a_rerun() {
    let server = Server::start().await;
    let n: i64 = 30_000;
    let mut urls: Vec<String> = (0..n).map(|i| server.url(&format!("/ok/{i}"))).collect();
    let v = Volley::new();
    let list = v.write_lines("urls.txt", &urls);
    let list = list.to_str().expect("utf-8");
    let db = pg::database().await;
    let fetch = ["--db", db.as_str(), "fetch", list, "--job", "merged"];
    let out = finish(
        command(
            &v,
            &[&fetch[..], &["--quiet", "--concurrency", "64"]].concat(),
        )
        .env("RUST_LOG", "volley::store::postgres=debug")
        .spawn()
        .expect("start volley"),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let largest = stderr(&out)
        .lines()
        .filter(|l| l.contains(" ingest "))
        .filter_map(|l| {
            l.split("inputs=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    assert!(
        largest > volley::pipeline::ingest::BATCH_LINES,
        "no ingest batch was merged (largest {largest}): {}",
        stderr(&out)
    );
    assert_eq!(pg::outcome_counts(&db).await, (n, n, n, 0));
    urls.extend((n..n + 10).map(|i| server.url(&format!("/ok/{i}"))));
    v.write_lines("urls.txt", &urls);
    let again = finish(spawn(&v, &[&fetch[..], &["--quiet"]].concat())).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(pg::outcome_counts(&db).await, (n + 10, n + 10, n + 10, 0));
    let hits: u64 = (0..n + 10).map(|i| server.hits(&format!("/ok/{i}"))).sum();
    assert_eq!(hits, (n + 10) as u64, "each URL fetched once");
}
