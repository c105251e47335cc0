//! How a job looks to the API's clients (and to its completion webhook):
//! its status, derived from what its owner asked for and its tasks, and its
//! JSON.

use serde_json::{Map, Value, json};
use volley::options::table::{Kind, OPTIONS};
use volley::store::{JobRecord, JobState};

use crate::App;

/// Stored options without the address rules a server stores with each
/// job (so that `volley work` processes apply them too): what the job's
/// creator gave.
pub(crate) fn stored_by_client(mut values: Map<String, Value>) -> Map<String, Value> {
    for opt in OPTIONS.iter().filter(|opt| opt.is(Kind::AddressRule)) {
        values.remove(opt.key);
    }
    values
}

/// Where a job stands, derived from what its owner asked for and its tasks.
pub fn job_status(record: &JobRecord, running: bool) -> &'static str {
    let counts = &record.summary.counts;
    match record.state {
        JobState::Cancelled => "cancelled",
        JobState::Paused => "paused",
        JobState::Active if !record.summary.job.ingest_complete && !running => "waiting",
        JobState::Active if record.summary.job.ingest_complete && counts.unfinished() == 0 => {
            "done"
        }
        JobState::Active => "running",
    }
}

/// A job as JSON.
pub fn job_json(app: &App, record: &JobRecord) -> Value {
    let job = &record.summary.job;
    let counts = &record.summary.counts;
    let live = app.runs.live(&job.name);
    let classes: Map<String, Value> = record
        .summary
        .classes
        .iter()
        .map(|(class, n)| (class.clone(), json!(n)))
        .collect();
    let status = job_status(record, live.is_some());
    let per_sec = live.map(|l| l.per_sec).filter(|r| *r > 0.0);
    let eta = per_sec.map(|r| counts.unfinished() as f64 / r);
    let options = match record.options.as_deref().map(serde_json::from_str) {
        Some(Ok(Value::Object(values))) => Value::Object(stored_by_client(values)),
        _ => json!({}),
    };
    let finished = matches!(status, "done" | "cancelled");
    json!({
        "name": job.name,
        "state": status,
        "counts": {
            "total": counts.total(),
            "pending": counts.pending,
            "leased": counts.leased,
            "done": counts.done,
            "failed": counts.failed,
            "pages": counts.pages,
        },
        "classes": classes,
        "in_flight": live.map_or(0, |l| l.in_flight),
        "requests_per_sec": per_sec,
        "eta_secs": eta,
        "created_at_ms": record.created_at_ms,
        "started_at_ms": record.first_outcome_ms,
        "finished_at_ms": if finished { record.last_outcome_ms } else { None },
        "options": options,
        "notify": record.notify,
        "notified": record.notified,
        "error": app.runs.failure(&job.name).map(|f| f.message),
    })
}
