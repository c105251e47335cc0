//! Export: a job's outcomes as JSON Lines or CSV, streamed in input order.
//!
//! JSON Lines nests the JSON-valued columns (`headers`, `meta`, `extracted`)
//! as objects; CSV keeps them as JSON text in their cells.

pub mod parquet;

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
    /// Writing Parquet failed.
    #[error(transparent)]
    Parquet(#[from] parquet::ParquetError),
    /// A CSV export of items met a key (or a non-object element, named by
    /// its column) that its first pass had not seen: items were recorded
    /// while it ran. Nothing was dropped; export again once the job is done.
    #[error(
        "an item with the new column '{0}' was recorded during the export (the job is running); export again when it has finished, or use JSON Lines"
    )]
    ItemsChanged(String),
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
/// dataset itself. CSV: one column per top-level key found in *any*
/// element, in the order the keys first appear, so no value is left out
/// (a key an element lacks is an empty cell; nested values are JSON text).
/// Elements that are not objects go in one more column, `item` (or
/// `item_`, `item__`… when an object has a key of that name). The CSV is
/// written in two passes over the items: the first finds the columns.
///
/// # Errors
/// See [`ExportError`]; [`ExportError::ItemsChanged`] when an item with a
/// key the first pass did not see was recorded between the passes (the job
/// is running): nothing is dropped, the export fails.
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
            let columns = item_columns(reader, job)?;
            let mut out = csv::Writer::from_writer(out);
            if !columns.names.is_empty() {
                out.write_record(&columns.names).map_err(csv_error)?;
            }
            reader.for_each_item(job, |row: &ItemRow| {
                let value: serde_json::Value =
                    serde_json::from_str(&row.item).map_err(json_error)?;
                let mut record = vec![String::new(); columns.names.len()];
                match &value {
                    serde_json::Value::Object(map) => {
                        for (key, field) in map {
                            let at = columns
                                .index
                                .get(key)
                                .ok_or_else(|| ExportError::ItemsChanged(key.clone()))?;
                            record[*at] = cell(field);
                        }
                    }
                    other => {
                        let at = columns
                            .scalar
                            .ok_or_else(|| ExportError::ItemsChanged(columns.scalar_name()))?;
                        record[at] = cell(other);
                    }
                }
                out.write_record(&record).map_err(csv_error)?;
                rows += 1;
                Ok::<(), ExportError>(())
            })?;
            out.flush()?;
        }
    }
    Ok(rows)
}

/// The CSV columns of a job's items: every top-level key, in first-seen
/// order, and the column of elements that are not objects, if any.
struct ItemColumns {
    names: Vec<String>,
    index: std::collections::HashMap<String, usize>,
    scalar: Option<usize>,
}

impl ItemColumns {
    /// The name the column of non-object elements has (or would have).
    fn scalar_name(&self) -> String {
        let mut name = "item".to_owned();
        while self.index.contains_key(&name) {
            name.push('_');
        }
        name
    }
}

/// The first pass of a CSV export of items: the union of their keys.
fn item_columns(reader: &impl Reader, job: i64) -> Result<ItemColumns, ExportError> {
    let mut columns = ItemColumns {
        names: Vec::new(),
        index: std::collections::HashMap::new(),
        scalar: None,
    };
    let mut scalars = false;
    reader.for_each_item(job, |row: &ItemRow| {
        match serde_json::from_str(&row.item).map_err(json_error)? {
            serde_json::Value::Object(map) => {
                for key in map.keys() {
                    if !columns.index.contains_key(key) {
                        columns.index.insert(key.clone(), columns.names.len());
                        columns.names.push(key.clone());
                    }
                }
            }
            _ => scalars = true,
        }
        Ok::<(), ExportError>(())
    })?;
    if scalars {
        let name = columns.scalar_name();
        columns.scalar = Some(columns.names.len());
        columns.names.push(name);
    }
    Ok(columns)
}

/// The columns of an outcome export, in order: the fields of
/// [`ExportRow`], as the CSV header names them.
pub fn columns() -> Vec<String> {
    let mut header = csv::Writer::from_writer(Vec::new());
    if header.serialize(ExportRow::default()).is_err() {
        return Vec::new();
    }
    let Ok(bytes) = header.into_inner() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let first = text.lines().next().unwrap_or_default();
    first.split(',').map(str::to_owned).collect()
}

/// The fields that hold JSON objects (headers, metadata, extracted fields).
/// CSV keeps them as JSON text in a cell; JSON Lines nests them as objects,
/// so that `jq '.headers["content-type"]'` reads them.
const JSON_FIELDS: [&str; 3] = ["headers", "meta", "extracted"];

/// `row` as a JSON object, in field order, with `JSON_FIELDS` nested.
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
/// Writes the broken URLs of `job` (a crawl's link check) to `out`, each
/// with the pages linking to it; returns the number of rows. JSON Lines:
/// `{"url", "class", "status", "message", "linked_from": [page URLs]}`.
/// CSV: the same columns, `linked_from` as the page URLs separated by
/// spaces (a URL holds none). See [`Reader::broken`] for what is broken.
///
/// # Errors
/// See [`ExportError`].
pub fn export_broken(
    reader: &impl Reader,
    job: i64,
    format: Format,
    out: impl Write,
) -> Result<u64, ExportError> {
    let rows = reader.broken(job)?;
    match format {
        Format::Jsonl => {
            let mut out = std::io::BufWriter::new(out);
            for row in &rows {
                serde_json::to_writer(&mut out, row).map_err(json_error)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        Format::Csv => {
            let mut out = csv::Writer::from_writer(out);
            out.write_record(["url", "class", "status", "message", "linked_from"])
                .map_err(csv_error)?;
            for row in &rows {
                let status = row.status.map(|s| s.to_string()).unwrap_or_default();
                out.write_record([
                    row.url.as_str(),
                    &row.class,
                    &status,
                    row.message.as_deref().unwrap_or_default(),
                    &row.linked_from.join(" "),
                ])
                .map_err(csv_error)?;
            }
            out.flush()?;
        }
    }
    Ok(rows.len() as u64)
}

/// The Parquet columns of an outcome export: those of [`columns`], typed
/// ([`parquet`]).
fn outcome_columns() -> Vec<parquet::Column> {
    use parquet::Kind::{Bool, Int32, Int64, Text, TimestampMs};
    columns()
        .into_iter()
        .map(|name| {
            let (kind, required) = match name.as_str() {
                "page" | "attempts" => (Int32, true),
                "url" | "class" => (Text, true),
                "finished_at_ms" => (TimestampMs, true),
                "started_at_ms" => (TimestampMs, false),
                "status" => (Int32, false),
                "line" | "bytes" | "wire_bytes" | "elapsed_ms" | "ttfb_ms"
                | "duplicate_of_line" => (Int64, false),
                "changed" => (Bool, false),
                _ => (Text, false),
            };
            parquet::Column {
                name,
                kind,
                required,
            }
        })
        .collect()
}

/// Writes every outcome of `job` as Parquet ([`parquet`]), in row groups
/// as rows stream; returns the number of rows. The columns are those of
/// the CSV export, typed: integers, `TIMESTAMP(MILLIS, UTC)` for
/// `started_at_ms` and `finished_at_ms`, a boolean `changed`, and the
/// JSON-valued ones (`headers`, `meta`, `extracted`) as JSON text.
///
/// # Errors
/// See [`ExportError`].
pub fn export_parquet(
    reader: &impl Reader,
    job: i64,
    out: impl Write + Send,
) -> Result<u64, ExportError> {
    use parquet::Cell;
    let columns = outcome_columns();
    let mut writer = parquet::ParquetWriter::new(out, columns.clone())?;
    let mut rows = 0u64;
    reader.for_each_outcome(job, |row: &ExportRow| {
        let value = serde_json::to_value(row).map_err(json_error)?;
        let cells = columns.iter().map(|c| Cell::of(&value[&c.name])).collect();
        writer.push(cells)?;
        rows += 1;
        Ok::<(), ExportError>(())
    })?;
    writer.finish()?.flush()?;
    Ok(rows)
}

/// Writes every `--items` element of `job` as Parquet, in two passes: the
/// first learns the columns, the union of every element's top-level keys
/// (as the CSV export), each typed by every value it holds
/// ([`parquet::Learnt`]: a key with mixed types becomes JSON text), so no
/// value is left out. The page's `line`, `page`, `url` and the element's
/// `idx` come first (named with a leading `_` should an element have a key
/// of that name). Returns the number of items.
///
/// # Errors
/// See [`ExportError`]; [`ExportError::ItemsChanged`] when an item with a
/// key the first pass did not see was recorded between the passes.
pub fn export_items_parquet(
    reader: &impl Reader,
    job: i64,
    out: impl Write + Send,
) -> Result<u64, ExportError> {
    use parquet::{Cell, Column, Kind, Learnt};
    let keys = item_columns(reader, job)?;
    let mut learnt = vec![Learnt::Nothing; keys.names.len()];
    reader.for_each_item(job, |row: &ItemRow| {
        match raw_fields(&row.item)? {
            Some(map) => {
                for (key, value) in &map {
                    if let Some(&at) = keys.index.get(key) {
                        learnt[at] = learnt[at].with(value.get());
                    }
                }
            }
            None => {
                if let Some(at) = keys.scalar {
                    learnt[at] = learnt[at].with(&row.item);
                }
            }
        }
        Ok::<(), ExportError>(())
    })?;
    let page_name = |name: &str| {
        let mut name = name.to_owned();
        while keys.index.contains_key(&name) {
            name.insert(0, '_');
        }
        name
    };
    let mut columns = vec![
        Column {
            name: page_name("line"),
            kind: Kind::Int64,
            required: false,
        },
        Column {
            name: page_name("page"),
            kind: Kind::Int32,
            required: true,
        },
        Column {
            name: page_name("url"),
            kind: Kind::Text,
            required: true,
        },
        Column {
            name: page_name("idx"),
            kind: Kind::Int64,
            required: true,
        },
    ];
    columns.extend(keys.names.iter().zip(&learnt).map(|(name, l)| Column {
        name: name.clone(),
        kind: l.kind(),
        required: false,
    }));
    let mut writer = parquet::ParquetWriter::new(out, columns)?;
    let mut rows = 0u64;
    reader.for_each_item(job, |row: &ItemRow| {
        let mut cells = vec![
            row.line.map_or(Cell::Null, |l| Cell::Int(l as i64)),
            Cell::Int(i64::from(row.page)),
            Cell::Text(row.url.clone()),
            Cell::Int(row.idx as i64),
        ];
        let mut fields = vec![Cell::Null; keys.names.len()];
        match raw_fields(&row.item)? {
            Some(map) => {
                for (key, field) in &map {
                    let at = *keys
                        .index
                        .get(key)
                        .ok_or_else(|| ExportError::ItemsChanged(key.clone()))?;
                    fields[at] = learnt[at].cell(field.get());
                }
            }
            None => {
                let at = keys
                    .scalar
                    .ok_or_else(|| ExportError::ItemsChanged(keys.scalar_name()))?;
                fields[at] = learnt[at].cell(&row.item);
            }
        }
        cells.extend(fields);
        writer.push(cells)?;
        rows += 1;
        Ok::<(), ExportError>(())
    })?;
    writer.finish()?.flush()?;
    Ok(rows)
}

/// An item's top-level fields, each as its JSON text as sent; `None` for
/// an element that is not an object.
fn raw_fields(item: &str) -> Result<Option<RawFields>, ExportError> {
    if !item.trim_start().starts_with('{') {
        return Ok(None);
    }
    serde_json::from_str(item).map(Some).map_err(json_error)
}

/// An item's fields as their JSON texts.
type RawFields = std::collections::HashMap<String, Box<serde_json::value::RawValue>>;

/// Writes the CDXJ index of the records `job` archived (`--warc`), sorted
/// as pywb binary-searches it ([`crate::warc::cdxj`]); returns the number
/// of lines. Each line names its file by file name: put the files and the
/// index in one pywb collection (`archive/` and `indexes/`).
///
/// # Errors
/// See [`ExportError`].
pub fn export_cdxj(reader: &impl Reader, job: i64, out: impl Write) -> Result<u64, ExportError> {
    let mut out = std::io::BufWriter::new(out);
    let mut n = 0;
    reader.for_each_warc_record(job, |r| {
        let filename = std::path::Path::new(&r.file)
            .file_name()
            .map_or_else(|| r.file.clone(), |f| f.to_string_lossy().into_owned());
        let line = crate::warc::cdxj::line(
            &r.urlkey,
            &crate::warc::record::index_timestamp(&r.date),
            &r.target_uri,
            r.kind,
            r.mime.as_deref(),
            r.status,
            r.payload_digest.as_deref(),
            (r.offset, r.length),
            &filename,
        );
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        n += 1;
        Ok::<(), ExportError>(())
    })?;
    out.flush()?;
    Ok(n)
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_columns_are_the_export_row_in_order() {
        let columns = super::columns();
        assert_eq!(columns.first().map(String::as_str), Some("line"));
        assert_eq!(columns.len(), 23, "{columns:?}");
        // The JSON form has the same fields in the same order.
        let row = super::json_row(&crate::store::ExportRow::default()).expect("a row");
        let keys: Vec<&String> = row.as_object().expect("an object").keys().collect();
        let mut sorted = columns.clone();
        sorted.sort();
        let mut json: Vec<String> = keys.into_iter().cloned().collect();
        json.sort();
        assert_eq!(json, sorted);
    }

    use super::*;
    use crate::store::{Job, JobSummary};

    /// A reader whose one job has `items`, as JSON texts.
    struct Items(Vec<&'static str>);

    impl Reader for Items {
        fn broken(&self, _job: i64) -> Result<Vec<crate::store::BrokenRow>, StoreError> {
            Ok(Vec::new())
        }
        fn jobs(&self) -> Result<Vec<JobSummary>, StoreError> {
            Ok(Vec::new())
        }
        fn job(&self, name: &str) -> Result<Job, StoreError> {
            Err(StoreError::NoSuchJob(name.to_owned()))
        }
        fn for_each_outcome<E: From<StoreError>>(
            &self,
            _job: i64,
            _each: impl FnMut(&ExportRow) -> Result<(), E>,
        ) -> Result<(), E> {
            Ok(())
        }
        fn for_each_warc_record<E: From<StoreError>>(
            &self,
            _job: i64,
            _each: impl FnMut(&crate::store::WarcRecordRow) -> Result<(), E>,
        ) -> Result<(), E> {
            Ok(())
        }
        fn for_each_item<E: From<StoreError>>(
            &self,
            _job: i64,
            mut each: impl FnMut(&ItemRow) -> Result<(), E>,
        ) -> Result<(), E> {
            for (idx, item) in self.0.iter().enumerate() {
                each(&ItemRow {
                    line: Some(1),
                    page: 1,
                    url: "http://h.test/".into(),
                    idx: idx as u64,
                    item: (*item).to_owned(),
                })?;
            }
            Ok(())
        }
    }

    fn csv_of(items: Vec<&'static str>) -> String {
        let mut out = Vec::new();
        let n = export_items(&Items(items.clone()), 1, Format::Csv, &mut out).expect("export");
        assert_eq!(n, items.len() as u64);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn a_csv_of_items_has_a_column_for_every_key_of_any_item() {
        assert_eq!(
            csv_of(vec![r#"{"a":1}"#, r#"{"a":2,"c":"x"}"#, r#"{"b":3}"#]),
            "a,c,b\n1,,\n2,x,\n,,3\n"
        );
        // Nested values stay JSON text; null is an empty cell.
        assert_eq!(
            csv_of(vec![
                r#"{"id":1,"tags":["x","y"]}"#,
                r#"{"id":null,"d":{"k":1}}"#
            ]),
            "id,tags,d\n1,\"[\"\"x\"\",\"\"y\"\"]\",\n,,\"{\"\"k\"\":1}\"\n"
        );
    }

    #[test]
    fn elements_that_are_not_objects_get_a_column_of_their_own() {
        assert_eq!(csv_of(vec!["1", "\"two\""]), "item\n1\ntwo\n");
        assert_eq!(
            csv_of(vec![r#"{"item":1}"#, "2"]),
            "item,item_\n1,\n,2\n",
            "a key named item keeps its column"
        );
        assert_eq!(csv_of(Vec::new()), "");
    }
}
