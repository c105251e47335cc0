//! The pipeline of one run: ingest → scheduler → task → writer, joined by
//! bounded channels.
//!
//! `engine` wires one run together; [`ingest`] streams inputs into the
//! frontier; the scheduler leases tasks from the
//! frontier into a window; each task goes through its named steps (admit,
//! gate and attempt until final, process, finish); [`process`] reads a
//! fetched page (pagination, items, extraction); the writer records
//! outcomes in batches; [`runtime`] is the thread layout it is made for.
//! What the stages share (the frontier signal, the run's shared state)
//! lives in `run`.

pub(crate) mod engine;
pub mod ingest;
pub mod process;
pub(crate) mod run;
pub mod runtime;
pub(crate) mod scheduler;
pub(crate) mod task;
pub(crate) mod writer;
