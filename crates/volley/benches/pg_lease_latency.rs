//! Lease and record latency of the PostgreSQL store at the start and at the
//! end of a large job (issue 10: a 10,000,000-task job must not slow down
//! as it progresses). Run through `bench/pg-lease-latency.sh`, which starts
//! a throwaway server:
//!
//!   cargo bench -p volley --bench pg_lease_latency -- URL [TASKS] [HOSTS]
//!
//! 1. Ingests TASKS URLs (default 10,000,000) spread over HOSTS hosts
//!    (default 1,000) through `Store::ingest`, in batches of 10,000.
//! 2. Start: ROUNDS rounds of `lease` (256 tasks) then `record` (an `ok`
//!    outcome for each), timed.
//! 3. Jumps to the end: all but the last 200 tasks of each host finished in
//!    bulk SQL (state `done` and an outcome row each, as `record` leaves
//!    them), host counters recounted.
//! 4. End, at once (the finished tasks' dead index entries not yet
//!    vacuumed), then again after `VACUUM ANALYZE`.
//!
//! Prints a Markdown table of the median, p95 and largest latency (ms),
//! after the latency of a small round trip (`SELECT 1`, 1,000 times on one
//! connection): the client must set TCP_NODELAY, or each small exchange
//! waits about 40 ms for delayed ACKs (sqlx 0.9.0, sqlx #4335).

use std::time::{Duration, Instant};

use volley::input::{Input, parse_url};
use volley::outcome::{Class, Outcome};
use volley::store::postgres::{PgOptions, PgStore};
use volley::store::{IngestBatch, Store, Want};

const ROUNDS: usize = 300;
const BATCH: u64 = 10_000;
const LEFT_PER_HOST: i64 = 200;
const WANT: Want = Want {
    limit: 256,
    per_host: 16,
    handover: Duration::ZERO,
    busy: false,
};

type Failure = Box<dyn std::error::Error>;

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(url) = args.first() else {
        return Err("usage: pg_lease_latency URL [TASKS] [HOSTS]".into());
    };
    let tasks: u64 = args.get(1).map_or(Ok(10_000_000), |a| a.parse())?;
    let hosts: u64 = args.get(2).map_or(Ok(1_000), |a| a.parse())?;
    tokio::runtime::Runtime::new()?.block_on(run(url, tasks, hosts))
}

async fn run(url: &str, tasks: u64, hosts: u64) -> Result<(), Failure> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut trips = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t = Instant::now();
        client.query_one("SELECT 1", &[]).await?;
        trips.push(t.elapsed());
    }
    println!(
        "Small round trip (`SELECT 1` over tokio-postgres, 1,000 times): p50 | p95 | max = {} ms\n",
        summary(&mut trips)
    );
    let options = PgOptions {
        lease: Duration::from_secs(600),
        pool_size: 4,
    };
    let store = PgStore::connect(url, options).await?;
    let job = store.open_job("latency", "bench", None).await?.id;
    let started = Instant::now();
    let mut line = 0;
    while line < tasks {
        let end = (line + BATCH).min(tasks);
        let inputs = (line + 1..=end)
            .map(|l| {
                let text = format!("http://h{}.example/p/{l}", l % hosts);
                Ok(Input::Url {
                    line: l,
                    url: parse_url(&text)?,
                    meta: None,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let batch = IngestBatch {
            inputs,
            through_line: end,
            complete: end == tasks,
            fingerprint: None,
        };
        store.ingest(job, batch).await?;
        line = end;
    }
    let ingest_s = started.elapsed().as_secs_f64();
    eprintln!(
        "ingested {tasks} tasks in {ingest_s:.0} s ({:.0} tasks/s)",
        tasks as f64 / ingest_s
    );
    println!("Lease and record latency, {tasks} tasks on {hosts} hosts, {ROUNDS} rounds of 256:\n");
    println!(
        "| when | lease p50 ms | lease p95 ms | lease max ms | record p50 ms | record p95 ms | record max ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    rounds(&store, job, "start").await?;
    let finish = Instant::now();
    let max_id: i64 = client
        .query_one("SELECT max(id) FROM tasks WHERE job_id = $1", &[&job])
        .await?
        .get(0);
    let cut = max_id - LEFT_PER_HOST * i64::try_from(hosts)?;
    let mut lo = 0;
    while lo < cut {
        let hi = (lo + 1_000_000).min(cut);
        client
            .execute(
                "WITH f AS (DELETE FROM frontier \
                   WHERE job_id = $1 AND task_id >= $2 AND task_id < $3 RETURNING task_id), \
                 d AS (UPDATE tasks SET state = 'done' FROM f WHERE id = f.task_id RETURNING id) \
                 INSERT INTO outcomes (task_id, job_id, class, status, attempts, finished_at_ms) \
                 SELECT id, $1, 'ok', 200, 1, 0 FROM d",
                &[&job, &lo, &hi],
            )
            .await?;
        lo = hi;
    }
    client
        .execute(
            "UPDATE hosts SET open = coalesce((SELECT count(*) FROM tasks t \
               WHERE t.job_id = hosts.job_id AND t.host = hosts.host AND t.state = 'pending'), 0) \
             WHERE job_id = $1",
            &[&job],
        )
        .await?;
    eprintln!(
        "finished all but the last {} tasks in {:.0} s",
        LEFT_PER_HOST * i64::try_from(hosts)?,
        finish.elapsed().as_secs_f64()
    );
    rounds(&store, job, "end, before vacuum").await?;
    client.batch_execute("VACUUM ANALYZE tasks").await?;
    rounds(&store, job, "end, after VACUUM ANALYZE").await?;
    store.close().await?;
    Ok(())
}

/// Times ROUNDS lease + record rounds and prints one table row.
async fn rounds(store: &PgStore, job: i64, label: &str) -> Result<(), Failure> {
    let (mut lease, mut record) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let leased = store.lease(job, WANT).await?;
        lease.push(t.elapsed());
        let outcomes = leased
            .iter()
            .map(|task| {
                let mut o = Outcome::new(task.id, Class::Ok);
                o.status = Some(200);
                o
            })
            .collect();
        let t = Instant::now();
        store.record(job, outcomes).await?;
        record.push(t.elapsed());
    }
    println!(
        "| {label} | {} | {} |",
        summary(&mut lease),
        summary(&mut record)
    );
    Ok(())
}

/// "p50 | p95 | max" in milliseconds.
fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    format!("{} | {} | {}", ms(at(0.5)), ms(at(0.95)), ms(at(1.0)))
}
