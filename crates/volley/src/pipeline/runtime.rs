//! The thread layout a run is made for.
//!
//! Fetching is I/O: an async worker thread spends most of its time handing
//! bytes between sockets, and every hand-off between two workers is a
//! wake-up through the kernel. The database and the disk run on threads of
//! their own (the blocking pool: SQLite's connection, body files, WARC
//! compression). So the engine asks for one async worker per core but one:
//! on 2 cores, one worker fetches while SQLite commits on the other, and
//! neither waits on the other's wake-ups (bench/NOTES.md has the A/B on 2
//! cores).

/// A multi-threaded tokio runtime builder with the engine's layout: one
/// async worker per core but one (at least one), unless the
/// `TOKIO_WORKER_THREADS` environment variable sets the count, which tokio
/// then honours. Timers and I/O are enabled; the caller names the threads
/// and builds it.
#[must_use]
pub fn runtime_builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(workers(
            std::thread::available_parallelism().map_or(1, usize::from),
        ));
    }
    builder
}

/// Async workers for `cores` cores: all but one, at least one.
fn workers(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_core_is_left_to_the_database_and_the_disk() {
        assert_eq!(workers(0), 1);
        assert_eq!(workers(1), 1);
        assert_eq!(workers(2), 1);
        assert_eq!(workers(8), 7);
    }
}
