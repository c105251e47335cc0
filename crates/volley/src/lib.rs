//! volley: fetch very many URLs concurrently and politely, and record exactly
//! one outcome per input in a database.
//!
//! The crate is the engine; the `volley` binary (crate `volley-cli`) is a thin
//! front over it. Data flows one way through one module per stage:
//!
//! * [`source`] reads inputs, [`ingest`] streams them into the frontier;
//! * [`store`] holds the frontier (tasks) and the record (outcomes), and
//!   documents the durability model; [`store::any`] opens either database
//!   behind one handle;
//! * [`scheduler`] leases tasks into a window; [`task`] takes each through
//!   its steps (admit, gate and attempt until final, process, finish);
//! * [`clients`] builds the shared clients, [`fetch`] makes attempts with
//!   them, [`retry`] decides whether and when to try again, [`body`] hashes
//!   and saves bodies;
//! * [`writer`] commits outcomes in batches;
//! * [`engine`] wires one run together; [`stats`] counts it; [`export`]
//!   writes outcomes out.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use volley::store::{Store, sqlite::SqliteStore};
//!
//! let store = Arc::new(SqliteStore::open("volley.db".as_ref())?);
//! let job = store.open_job("demo", "-", None).await?;
//! let input = Box::new(volley::source::LineSource::new(std::io::Cursor::new("https://example.com/\n")));
//! let control = volley::Control::default();
//! let report = volley::fetch_job(store, &job, Some(input), volley::FetchSpec::default(), &control).await?;
//! println!("{} fetched, {:.0} requests/s", report.tally.fetched, report.requests_per_sec());
//! # Ok(()) }
//! ```

pub mod body;
pub mod clients;
pub mod cookies;
pub mod dns;
pub mod engine;
pub mod export;
pub mod fetch;
pub mod guard;
pub mod host;
pub mod ingest;
pub mod options;
pub mod outcome;
pub mod process;
pub mod proxy;
pub mod refresh;
pub mod retry;
pub mod robots;
pub(crate) mod run;
pub mod scheduler;
pub mod source;
pub mod stats;
pub mod store;
pub mod task;
pub mod writer;

pub use engine::{Control, RunError, fetch_job, preflight};
pub use options::FetchSpec;
pub use outcome::{Class, Outcome};
pub use stats::{Progress, RunReport};
