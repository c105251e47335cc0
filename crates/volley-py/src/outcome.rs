//! [`Outcome`]: one recorded outcome, as Python sees it.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use volley::Class;
use volley::store::ExportRow;

/// One recorded outcome: the fields `volley export` writes. Frozen.
#[pyclass(frozen, module = "volley", get_all)]
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The input line (from 1), `None` for pages found by pagination or a crawl.
    line: Option<u64>,
    /// The page of a paginated chain (1 for the input's own URL).
    page: u32,
    /// The URL as given.
    url: String,
    /// The outcome class: `ok`, `not_modified`, `fresh`, or what went
    /// wrong (`not_found`, `connect_refused`, `invalid_url`, …).
    outcome_class: String,
    /// The final HTTP status, if a response came.
    status: Option<u16>,
    /// `HTTP/1.1`, `HTTP/2.0`.
    http_version: Option<String>,
    /// What went wrong, for a person.
    message: Option<String>,
    /// Requests made, retries included.
    attempts: u32,
    /// Decoded body bytes.
    bytes: Option<u64>,
    /// Body bytes on the wire.
    wire_bytes: Option<u64>,
    /// The final attempt, from sending the request to the end of the body
    /// (ms).
    elapsed_ms: Option<u64>,
    /// From sending the request to the response headers (ms).
    ttfb_ms: Option<u64>,
    /// The URL that answered, after redirects.
    final_url: Option<String>,
    /// The response's `Content-Type`.
    content_type: Option<String>,
    /// Hex SHA-256 of the body.
    body_sha256: Option<String>,
    /// Where the body was saved (`save_bodies`).
    body_path: Option<String>,
    /// With `refresh`: whether the body differs from the last one.
    changed: Option<bool>,
    /// The response headers as JSON text (`headers` parses it).
    headers_json: Option<String>,
    /// The task's metadata as JSON text (`meta` parses it).
    meta_json: Option<String>,
    /// The `extract` fields as JSON text (`extracted` parses it).
    extracted_json: Option<String>,
    /// The line this one repeats, for `duplicate` outcomes.
    duplicate_of_line: Option<u64>,
    /// When the first attempt started (Unix ms).
    started_at_ms: Option<i64>,
    /// When the outcome was decided (Unix ms).
    finished_at_ms: i64,
}

impl From<ExportRow> for Outcome {
    fn from(r: ExportRow) -> Outcome {
        Outcome {
            line: r.line,
            page: r.page,
            url: r.url,
            outcome_class: r.class,
            status: r.status,
            http_version: r.http_version,
            message: r.message,
            attempts: r.attempts,
            bytes: r.bytes,
            wire_bytes: r.wire_bytes,
            elapsed_ms: r.elapsed_ms,
            ttfb_ms: r.ttfb_ms,
            final_url: r.final_url,
            content_type: r.content_type,
            body_sha256: r.body_sha256,
            body_path: r.body_path,
            changed: r.changed,
            duplicate_of_line: r.duplicate_of_line,
            started_at_ms: r.started_at_ms,
            finished_at_ms: r.finished_at_ms,
            headers_json: r.headers,
            meta_json: r.meta,
            extracted_json: r.extracted,
        }
    }
}

fn json_loads<'py>(py: Python<'py>, text: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
    match text {
        None => Ok(py.None().into_bound(py)),
        Some(text) => py.import("json")?.call_method1("loads", (text,)),
    }
}

#[pymethods]
impl Outcome {
    /// Whether the outcome is a success (`ok`, `not_modified`, `fresh`).
    #[getter]
    fn ok(&self) -> bool {
        Class::parse(&self.outcome_class).is_some_and(Class::is_success)
    }

    /// The class of a failure, `None` for a success.
    #[getter]
    fn error_class(&self) -> Option<String> {
        (!self.ok()).then(|| self.outcome_class.clone())
    }

    /// The response headers, as a dict of lower-case names to values.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, self.headers_json.as_deref())
    }

    /// The task's metadata (a CSV row or JSONL record), if any.
    #[getter]
    fn meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, self.meta_json.as_deref())
    }

    /// The values `extract` took from the body, if any.
    #[getter]
    fn extracted<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, self.extracted_json.as_deref())
    }

    /// The saved body, as bytes.
    ///
    /// Raises `ValueError` when the body was not saved (run with
    /// `save_bodies=DIR`), `OSError` when the file cannot be read.
    fn read<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let Some(path) = &self.body_path else {
            return Err(PyValueError::new_err(format!(
                "the body of {} was not saved: run with save_bodies=DIR",
                self.url
            )));
        };
        let bytes = py.detach(|| std::fs::read(path))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The saved body parsed as JSON (see `read`).
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let body = self.read(py)?;
        py.import("json")?.call_method1("loads", (body,))
    }

    fn __repr__(&self) -> String {
        format!(
            "Outcome(line={}, url={:?}, outcome_class={:?}, status={})",
            self.line.map_or("None".into(), |l| l.to_string()),
            self.url,
            self.outcome_class,
            self.status.map_or("None".into(), |s| s.to_string()),
        )
    }
}
