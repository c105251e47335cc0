//! The end-of-run summary and the `status` table, as text for people.

use std::fmt::Write as _;

use volley::RunReport;
use volley::store::JobSummary;
use volley::store::postgres::WorkerRow;

/// The summary printed after `volley fetch`.
pub fn run_summary(job: &str, report: &RunReport) -> String {
    let c = &report.counts;
    let t = &report.tally;
    let mut out = String::new();
    let state = if report.interrupted {
        "interrupted"
    } else {
        "finished"
    };
    let tasks = if c.pages > 0 {
        format!(
            "{} inputs and {} pages found from them (pagination, links)",
            c.inputs(),
            c.pages
        )
    } else {
        format!("{} inputs", c.inputs())
    };
    let _ = writeln!(
        out,
        "volley: job '{job}' {state}: {tasks}, {} with outcomes ({} done, {} failed), {} pending",
        c.done + c.failed,
        c.done,
        c.failed,
        c.unfinished()
    );
    let _ = writeln!(
        out,
        "  this run  {} fetched in {:.1}s, {:.1} requests/s, {}",
        t.fetched,
        report.elapsed.as_secs_f64(),
        report.requests_per_sec(),
        human_bytes(t.bytes)
    );
    if t.items > 0 {
        let _ = writeln!(out, "  items     {} recorded in this run", t.items);
    }
    if let (Some(p50), Some(p95), Some(p99)) = (
        report.latency_ms(0.50),
        report.latency_ms(0.95),
        report.latency_ms(0.99),
    ) {
        let _ = writeln!(out, "  latency   p50 {p50} ms, p95 {p95} ms, p99 {p99} ms");
    }
    if !t.by_class.is_empty() {
        let mut classes: Vec<_> = t.by_class.iter().collect();
        classes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let list: Vec<String> = classes.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "  classes   {}", list.join(", "));
    }
    if !t.by_status.is_empty() {
        let list: Vec<String> = t
            .by_status
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(out, "  statuses  {}", list.join(", "));
    }
    let hosts = report.busiest_hosts(5);
    if !hosts.is_empty() {
        let list: Vec<String> = hosts.iter().map(|(h, n)| format!("{h} {n}")).collect();
        let _ = writeln!(
            out,
            "  hosts     {} (state held for at most {} hosts at once)",
            list.join(", "),
            report.hosts_peak
        );
    }
    if report.fenced > 0 {
        let _ = writeln!(
            out,
            "  fenced    {} late outcomes dropped: this worker's lease had expired and other workers took those tasks",
            report.fenced
        );
    }
    if report.insecure {
        let _ = writeln!(
            out,
            "  warning   TLS certificates were not verified (--insecure): anyone on the path could read and change these responses"
        );
    }
    if report.interrupted {
        let _ = writeln!(out, "  run the same command again to resume");
    }
    out
}

/// The table printed by `volley status`.
pub fn status_table(jobs: &[JobSummary]) -> String {
    if jobs.is_empty() {
        return "no jobs yet\n".to_owned();
    }
    let width = jobs
        .iter()
        .map(|j| j.job.name.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let mut out = format!(
        "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>7}  {:<8}  INPUT\n",
        "JOB", "TASKS", "DONE", "FAILED", "PENDING", "LEASED", "INGEST"
    );
    for j in jobs {
        let c = &j.counts;
        let _ = writeln!(
            out,
            "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>7}  {:<8}  {}",
            j.job.name,
            c.total(),
            c.done,
            c.failed,
            c.pending,
            c.leased,
            if j.job.ingest_complete {
                "complete"
            } else {
                "partial"
            },
            j.job.input
        );
        if !j.classes.is_empty() {
            let list: Vec<String> = j.classes.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(out, "{:<width$}  classes: {}", "", list.join(", "));
        }
    }
    out
}

/// The live workers of a shared database, as `volley status` lists them
/// after the jobs.
pub fn workers_table(workers: &[WorkerRow]) -> String {
    if workers.is_empty() {
        return "\nno live workers\n".to_owned();
    }
    let mut out = format!(
        "\n{:<6}  {:<24}  {:<16}  {:>9}  {:>6}  {:>6}  {:>9}  {:>6}  {:>8}\n",
        "WORKER", "NAME", "JOB", "HEARTBEAT", "TASKS", "HOSTS", "RECORDED", "FENCED", "REQ/S"
    );
    for w in workers {
        let _ = writeln!(
            out,
            "{:<6}  {:<24}  {:<16}  {:>8.1}s  {:>6}  {:>6}  {:>9}  {:>6}  {:>8.1}",
            w.id,
            w.name,
            w.job.as_deref().unwrap_or("-"),
            w.heartbeat_age_s,
            w.tasks_held,
            w.hosts_held,
            w.recorded,
            w.fenced,
            w.requests_per_s
        );
    }
    out
}

/// Bytes with a binary unit, one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
