//! Awaitables whose results cross to Python on the event loop's thread.
//!
//! The engine runs on a tokio runtime of its own. A native call that
//! returns an awaitable spawns its future there and returns a ticket; when
//! the future ends, its result (still a Rust value) joins the bridge's
//! queue and one byte is written to a socket the event loop watches
//! (`loop.add_reader`). The loop's callback takes the queue, turns each
//! result into a Python object on the loop's own thread and completes the
//! asyncio future of its ticket (`volley/_bridge.py`).
//!
//! So no tokio thread ever takes the GIL. That is the point: a runtime
//! thread that attaches to Python while the interpreter finalizes kills the
//! process (`PyGILState_Release: thread state … must be current`, or a
//! segfault), which is how pyo3-async-runtimes' `future_into_py` crashed
//! short scripts at exit (PyO3/pyo3-async-runtimes#40).

use std::collections::HashMap;
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tokio::runtime::Runtime;
use tokio::task::AbortHandle;

use crate::lock;

/// The engine's runtime, started on first use and never stopped: its
/// threads never touch Python, so they may outlive the interpreter.
pub(crate) fn runtime() -> PyResult<&'static Runtime> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            volley::runtime_builder()
                .thread_name("volley")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the engine's runtime: {e}")))
}

/// A finished call: makes its Python value (or exception) under the GIL.
type Ready = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

struct Inner {
    next: AtomicU64,
    /// Finished calls not yet taken by the loop.
    ready: Mutex<Vec<(u64, Ready)>>,
    /// Calls not yet delivered, to cancel them.
    running: Mutex<HashMap<u64, AbortHandle>>,
    /// Written one byte when `ready` becomes non-empty.
    wake: UnixStream,
    /// The end the event loop watches.
    watched: UnixStream,
}

impl Inner {
    fn finish(&self, ticket: u64, ready: Ready) {
        let mut queue = lock(&self.ready);
        let was_empty = queue.is_empty();
        queue.push((ticket, ready));
        drop(queue);
        if was_empty {
            // A full socket already holds a wake-up: nothing is lost.
            let _ = (&self.wake).write(&[1]);
        }
    }
}

/// The bridge of one event loop (see the module docs).
#[pyclass(frozen, module = "volley")]
pub struct Bridge {
    inner: Arc<Inner>,
}

impl Bridge {
    /// Runs `fut` on the runtime; its result goes to the ticket returned.
    pub(crate) fn spawn<F, T>(&self, fut: F) -> PyResult<u64>
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: for<'py> IntoPyObject<'py> + Send + 'static,
    {
        let ticket = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::clone(&self.inner);
        let task = runtime()?.spawn(async move {
            let result = fut.await;
            let ready: Ready = Box::new(move |py| result.and_then(|v| v.into_py_any(py)));
            inner.finish(ticket, ready);
        });
        // Delivery happens on the loop's thread, after this returns, so the
        // handle is in place before `take` or `cancel` looks for it.
        lock(&self.inner.running).insert(ticket, task.abort_handle());
        Ok(ticket)
    }
}

#[pymethods]
impl Bridge {
    #[new]
    fn new() -> PyResult<Bridge> {
        let (wake, watched) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        watched.set_nonblocking(true)?;
        Ok(Bridge {
            inner: Arc::new(Inner {
                next: AtomicU64::new(1),
                ready: Mutex::default(),
                running: Mutex::default(),
                wake,
                watched,
            }),
        })
    }

    /// The file descriptor the event loop watches for reading.
    fn fileno(&self) -> i32 {
        self.inner.watched.as_raw_fd()
    }

    /// The finished calls, as `(ticket, ok, value or exception)`.
    fn take(&self, py: Python<'_>) -> Vec<(u64, bool, Py<PyAny>)> {
        let mut sink = [0u8; 256];
        loop {
            match (&self.inner.watched).read(&mut sink) {
                Ok(n) if n == sink.len() => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // Drained (WouldBlock), or a short read that emptied it.
                _ => break,
            }
        }
        let ready = std::mem::take(&mut *lock(&self.inner.ready));
        {
            let mut running = lock(&self.inner.running);
            for (ticket, _) in &ready {
                running.remove(ticket);
            }
        }
        ready
            .into_iter()
            .map(|(ticket, make)| match make(py) {
                Ok(value) => (ticket, true, value),
                Err(e) => (ticket, false, e.into_value(py).into_any()),
            })
            .collect()
    }

    /// Cancels the call of `ticket`: its future is dropped where it waits.
    fn cancel(&self, ticket: u64) {
        if let Some(task) = lock(&self.inner.running).remove(&ticket) {
            task.abort();
        }
    }
}
