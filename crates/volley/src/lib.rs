//! volley: fetch very many URLs concurrently and politely, and record exactly
//! one outcome per input in a database.
//!
//! The crate is the engine; the `volley` binary (crate `volley-cli`), the
//! HTTP service (`volley-serve`) and the Python package (`volley-py`) are
//! fronts over it. Its folders are its subsystems, in the order data flows:
//!
//! * [`options`]: the option table, the layers (file, environment, flags,
//!   API, Python) and the one [`FetchSpec`] they resolve to;
//! * [`input`]: sources of inputs (lists, CSV, JSON Lines, templates),
//!   streamed into the frontier;
//! * [`store`]: the frontier (tasks) and the record (outcomes) in SQLite
//!   or PostgreSQL, one implementation each, with the durability model;
//! * [`politeness`]: per-host limits and rates, backoff and `Retry-After`,
//!   robots.txt;
//! * [`http`]: the clients, one attempt, bodies, cookies, conditional
//!   requests, the address rules;
//! * [`pipeline`]: one run, from leased task to recorded outcome;
//! * [`crawl`]: the links of fetched pages, scope and URL normalisation;
//! * [`warc`]: every exchange as WARC/1.1 records, safe across crashes;
//! * [`database`]: the one handle a front end opens, either database,
//!   for runs and administration alike;
//! * [`outcome`] is what a task ends with, [`stats`] counts a run,
//!   [`export`] writes outcomes out.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use volley::store::{Store, sqlite::SqliteStore};
//!
//! let store = Arc::new(SqliteStore::open("volley.db".as_ref())?);
//! let job = store.open_job("demo", "-", None).await?;
//! let input = Box::new(volley::input::LineSource::new(std::io::Cursor::new("https://example.com/\n")));
//! let control = volley::Control::default();
//! let report = volley::fetch_job(store, &job, Some(input), volley::FetchSpec::default(), &control).await?;
//! println!("{} fetched, {:.0} requests/s", report.tally.fetched, report.requests_per_sec());
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![deny(unreachable_pub)]

pub mod crawl;
pub mod database;
pub mod export;
pub mod http;
pub mod input;
pub mod options;
pub mod outcome;
pub mod pipeline;
pub mod politeness;
pub mod stats;
pub mod store;
pub mod warc;

pub use options::FetchSpec;
pub use outcome::{Class, Outcome};
pub use pipeline::engine::{Control, RunError, fetch_job, preflight};
pub use pipeline::runtime::runtime_builder;
pub use stats::{Progress, RunReport};
