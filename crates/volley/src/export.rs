//! Export: a job's outcomes as JSON Lines or CSV, streamed in input order.
//!
//! JSON Lines nests the JSON-valued columns (`headers`, `meta`, `extracted`)
//! as objects; CSV keeps them as JSON text in their cells.

use std::io::Write;

use crate::store::StoreError;
use crate::store::{ExportRow, ItemRow, Reader};

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line; absent values are `null`.
    Jsonl,
    /// RFC 4180 CSV with a header row; absent values are empty.
    Csv,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed (for example a closed pipe).
    #[error("writing the export failed: {0}")]
    Write(#[from] std::io::Error),
    /// Encoding a row failed.
    #[error("encoding a row failed: {0}")]
    Encode(String),
}

/// Writes every outcome of `job` to `out`; returns the number of rows.
///
/// # Errors
/// See [`ExportError`].
pub fn export(
    reader: &impl Reader,
    job: i64,
    format: Format,
    out: impl Write,
) -> Result<u64, ExportError> {
    let mut rows = 0u64;
    match format {
        Format::Jsonl => {
            let mut out = std::io::BufWriter::new(out);
            reader.for_each_outcome(job, |row: &ExportRow| {
                serde_json::to_writer(&mut out, &json_row(row)?).map_err(json_error)?;
                out.write_all(b"\n")?;
                rows += 1;
                Ok::<(), ExportError>(())
            })?;
            out.flush()?;
        }
        Format::Csv => {
            let mut out = csv::Writer::from_writer(out);
            reader.for_each_outcome(job, |row: &ExportRow| {
                out.serialize(row).map_err(csv_error)?;
                rows += 1;
                Ok::<(), ExportError>(())
            })?;
            out.flush()?;
        }
    }
    Ok(rows)
}

/// Writes every `--items` element of `job` to `out`, page by page; returns
/// the number of items.
///
/// JSON Lines: each element exactly as the API sent it, one per line: the
/// dataset itself. CSV: one column per top-level key of the *first* element
/// (later elements' other keys are left out; nested values are JSON text;
/// elements that are not objects go in a single `item` column).
///
/// # Errors
/// See [`ExportError`].
pub fn export_items(
    reader: &impl Reader,
    job: i64,
    format: Format,
    out: impl Write,
) -> Result<u64, ExportError> {
    let mut rows = 0u64;
    match format {
        Format::Jsonl => {
            let mut out = std::io::BufWriter::new(out);
            reader.for_each_item(job, |row: &ItemRow| {
                out.write_all(row.item.as_bytes())?;
                out.write_all(b"\n")?;
                rows += 1;
                Ok::<(), ExportError>(())
            })?;
            out.flush()?;
        }
        Format::Csv => {
            let mut out = csv::Writer::from_writer(out);
            let mut columns: Option<Vec<String>> = None;
            reader.for_each_item(job, |row: &ItemRow| {
                let value: serde_json::Value =
                    serde_json::from_str(&row.item).map_err(json_error)?;
                let columns = match &mut columns {
                    Some(c) => c,
                    None => {
                        let names = match &value {
                            serde_json::Value::Object(map) => map.keys().cloned().collect(),
                            _ => vec!["item".to_owned()],
                        };
                        out.write_record(&names).map_err(csv_error)?;
                        columns.insert(names)
                    }
                };
                let record: Vec<String> = columns
                    .iter()
                    .map(|name| match (&value, name.as_str()) {
                        (serde_json::Value::Object(map), _) => {
                            map.get(name).map(cell).unwrap_or_default()
                        }
                        (other, "item") => cell(other),
                        _ => String::new(),
                    })
                    .collect();
                out.write_record(&record).map_err(csv_error)?;
                rows += 1;
                Ok::<(), ExportError>(())
            })?;
            out.flush()?;
        }
    }
    Ok(rows)
}

/// The fields that hold JSON objects (headers, metadata, extracted fields).
/// CSV keeps them as JSON text in a cell; JSON Lines nests them as objects,
/// so that `jq '.headers["content-type"]'` reads them.
const JSON_FIELDS: [&str; 3] = ["headers", "meta", "extracted"];

/// `row` as a JSON object, in field order, with [`JSON_FIELDS`] nested.
pub fn json_row(row: &ExportRow) -> Result<serde_json::Value, ExportError> {
    let mut value = serde_json::to_value(row).map_err(json_error)?;
    for field in JSON_FIELDS {
        if let Some(slot) = value.get_mut(field)
            && let serde_json::Value::String(text) = slot
            && let Ok(parsed) = serde_json::from_str::<serde_json::Value>(text)
        {
            *slot = parsed;
        }
    }
    Ok(value)
}

/// A JSON value as a CSV cell: strings bare, null empty, the rest as JSON.
fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Keeps I/O failures (a closed pipe) apart from encoding failures.
fn json_error(e: serde_json::Error) -> ExportError {
    if e.is_io() {
        ExportError::Write(e.into())
    } else {
        ExportError::Encode(e.to_string())
    }
}

/// Keeps I/O failures (a closed pipe) apart from encoding failures.
fn csv_error(e: csv::Error) -> ExportError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => ExportError::Write(io),
        other => ExportError::Encode(format!("{other:?}")),
    }
}
