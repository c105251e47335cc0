//! Parquet output of outcomes and items, written in row groups as rows
//! stream from the database, so that memory stays bounded by a row group
//! ([`ROW_GROUP_ROWS`] rows, or [`ROW_GROUP_BYTES`] of text) whatever the
//! job's size.
//!
//! Columns are typed: integers as `INT64` (`INT32` for a page number),
//! times as `TIMESTAMP(MILLIS, UTC)`, flags as `BOOLEAN`, text as `STRING`;
//! JSON values (headers, metadata, nested item fields) as their JSON text.
//! Written with the `parquet` crate's column writer (no Arrow), compressed
//! with zstd.

use std::io::Write;
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

/// Most rows in one row group.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Most bytes of text buffered for one row group.
pub const ROW_GROUP_BYTES: usize = 32 << 20;

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `INT32`.
    Int32,
    /// `INT64`.
    Int64,
    /// `INT64` as `TIMESTAMP(MILLIS, UTC)` (Unix milliseconds).
    TimestampMs,
    /// `DOUBLE`.
    Double,
    /// `BOOLEAN`.
    Bool,
    /// `BYTE_ARRAY` as `STRING` (UTF-8), JSON text included.
    Text,
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value (`null`).
    Null,
    /// An integer (`Int32`, `Int64`, `TimestampMs`).
    Int(i64),
    /// A number (`Double`).
    Double(f64),
    /// A flag.
    Bool(bool),
    /// Text.
    Text(String),
}

impl Cell {
    /// A JSON value as a cell: `null`, a boolean, an integer (one past
    /// `INT64` as its digits), text, or anything else as its JSON text.
    pub fn of(value: &serde_json::Value) -> Cell {
        use serde_json::Value as V;
        match value {
            V::Null => Cell::Null,
            V::Bool(b) => Cell::Bool(*b),
            V::Number(n) => n
                .as_i64()
                .map_or_else(|| Cell::Text(n.to_string()), Cell::Int),
            V::String(s) => Cell::Text(s.clone()),
            other => Cell::Text(other.to_string()),
        }
    }
}

/// A column of the file: its name, type, and whether it may be null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: Kind,
    /// Whether every row has a value.
    pub required: bool,
}

/// Why the file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// The writer failed (I/O errors come wrapped in it).
    #[error("writing Parquet failed: {0}")]
    Write(#[from] parquet::errors::ParquetError),
    /// A cell does not fit its column (a bug in the caller).
    #[error("column {column}: a {cell} does not fit")]
    Mismatch {
        /// The column.
        column: String,
        /// What the cell was.
        cell: &'static str,
    },
}

/// Buffered values of one column for the row group being built.
enum Values {
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Double(Vec<f64>),
    Bool(Vec<bool>),
    Text(Vec<ByteArray>),
}

/// Writes rows of `columns` to a Parquet file; see the module docs.
pub struct ParquetWriter<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    columns: Vec<Column>,
    values: Vec<Values>,
    levels: Vec<Vec<i16>>,
    rows: usize,
    text_bytes: usize,
}

impl<W: Write + Send> ParquetWriter<W> {
    /// A writer of `columns` into `out`.
    ///
    /// # Errors
    /// [`ParquetError::Write`] for a schema the format refuses.
    pub fn new(out: W, columns: Vec<Column>) -> Result<ParquetWriter<W>, ParquetError> {
        let fields = columns
            .iter()
            .map(|c| {
                let (physical, logical) = match c.kind {
                    Kind::Int32 => (Physical::INT32, None),
                    Kind::Int64 => (Physical::INT64, None),
                    Kind::TimestampMs => (
                        Physical::INT64,
                        Some(LogicalType::timestamp(true, TimeUnit::MILLIS)),
                    ),
                    Kind::Double => (Physical::DOUBLE, None),
                    Kind::Bool => (Physical::BOOLEAN, None),
                    Kind::Text => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
                };
                let repetition = if c.required {
                    Repetition::REQUIRED
                } else {
                    Repetition::OPTIONAL
                };
                Type::primitive_type_builder(&c.name, physical)
                    .with_repetition(repetition)
                    .with_logical_type(logical)
                    .build()
                    .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schema = Type::group_type_builder("volley")
            .with_fields(fields)
            .build()?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props))?;
        let values = columns.iter().map(|c| empty(c.kind)).collect();
        let levels = vec![Vec::new(); columns.len()];
        Ok(ParquetWriter {
            writer,
            columns,
            values,
            levels,
            rows: 0,
            text_bytes: 0,
        })
    }

    /// Adds one row, a cell per column in order; writes a row group when
    /// one is full.
    ///
    /// # Errors
    /// [`ParquetError::Mismatch`] for a cell of another type than its
    /// column, or `null` in a required column; [`ParquetError::Write`].
    pub fn push(&mut self, row: Vec<Cell>) -> Result<(), ParquetError> {
        for (i, cell) in row.into_iter().enumerate() {
            let Some(column) = self.columns.get(i) else {
                break;
            };
            let mismatch = |cell: &'static str| ParquetError::Mismatch {
                column: column.name.clone(),
                cell,
            };
            let present = !matches!(cell, Cell::Null);
            if !present && column.required {
                return Err(mismatch("null"));
            }
            match (&mut self.values[i], cell) {
                (_, Cell::Null) => {}
                (Values::Int32(v), Cell::Int(n)) => {
                    v.push(i32::try_from(n).map_err(|_| mismatch("number past INT32"))?);
                }
                (Values::Int64(v), Cell::Int(n)) => v.push(n),
                (Values::Double(v), Cell::Double(n)) => v.push(n),
                (Values::Double(v), Cell::Int(n)) => v.push(n as f64),
                (Values::Bool(v), Cell::Bool(b)) => v.push(b),
                (Values::Text(v), Cell::Text(s)) => {
                    self.text_bytes += s.len();
                    v.push(ByteArray::from(s.into_bytes()));
                }
                (_, Cell::Int(_)) => return Err(mismatch("integer")),
                (_, Cell::Double(_)) => return Err(mismatch("number")),
                (_, Cell::Bool(_)) => return Err(mismatch("boolean")),
                (_, Cell::Text(_)) => return Err(mismatch("text")),
            }
            if !column.required {
                self.levels[i].push(i16::from(present));
            }
        }
        self.rows += 1;
        if self.rows >= ROW_GROUP_ROWS || self.text_bytes >= ROW_GROUP_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered rows as a row group.
    fn flush(&mut self) -> Result<(), ParquetError> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        let mut i = 0;
        while let Some(mut column) = group.next_column()? {
            let levels = if self.columns[i].required {
                None
            } else {
                Some(self.levels[i].as_slice())
            };
            match &self.values[i] {
                Values::Int32(v) => {
                    column.typed::<Int32Type>().write_batch(v, levels, None)?;
                }
                Values::Int64(v) => {
                    column.typed::<Int64Type>().write_batch(v, levels, None)?;
                }
                Values::Double(v) => {
                    column.typed::<DoubleType>().write_batch(v, levels, None)?;
                }
                Values::Bool(v) => {
                    column.typed::<BoolType>().write_batch(v, levels, None)?;
                }
                Values::Text(v) => {
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(v, levels, None)?;
                }
            }
            column.close()?;
            i += 1;
        }
        group.close()?;
        for (values, column) in self.values.iter_mut().zip(&self.columns) {
            *values = empty(column.kind);
        }
        for levels in &mut self.levels {
            levels.clear();
        }
        self.rows = 0;
        self.text_bytes = 0;
        Ok(())
    }

    /// Writes the last row group and the footer; returns the output.
    ///
    /// # Errors
    /// [`ParquetError::Write`].
    pub fn finish(mut self) -> Result<W, ParquetError> {
        self.flush()?;
        Ok(self.writer.into_inner()?)
    }
}

fn empty(kind: Kind) -> Values {
    match kind {
        Kind::Int32 => Values::Int32(Vec::new()),
        Kind::Int64 | Kind::TimestampMs => Values::Int64(Vec::new()),
        Kind::Double => Values::Double(Vec::new()),
        Kind::Bool => Values::Bool(Vec::new()),
        Kind::Text => Values::Text(Vec::new()),
    }
}

/// The kind of values one item key holds, learnt over every item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Learnt {
    /// Only `null` so far.
    #[default]
    Nothing,
    /// Integers that fit `INT64`.
    Int,
    /// Numbers, some not integers.
    Double,
    /// Booleans.
    Bool,
    /// Strings.
    Text,
    /// Anything mixed, arrays and objects: JSON text.
    Json,
}

impl Learnt {
    /// What one JSON value is, read from its text (`raw`, as the API sent
    /// it: an integer's digits are seen before any float conversion could
    /// round them).
    pub fn of(raw: &str) -> Learnt {
        let raw = raw.trim();
        match raw.as_bytes().first() {
            None | Some(b'n') => Learnt::Nothing,
            Some(b't' | b'f') => Learnt::Bool,
            Some(b'"') => Learnt::Text,
            Some(b'[' | b'{') => Learnt::Json,
            Some(_) if raw.contains(['.', 'e', 'E']) => Learnt::Double,
            Some(_) if raw.parse::<i64>().is_ok() => Learnt::Int,
            // An integer past INT64 keeps its digits as JSON text.
            Some(_) => Learnt::Json,
        }
    }

    /// What the key holds once the value `raw` is seen too.
    pub fn with(self, raw: &str) -> Learnt {
        match (self, Learnt::of(raw)) {
            (a, Learnt::Nothing) => a,
            (Learnt::Nothing, b) => b,
            (a, b) if a == b => a,
            (Learnt::Int, Learnt::Double) | (Learnt::Double, Learnt::Int) => Learnt::Double,
            _ => Learnt::Json,
        }
    }

    /// The column kind: JSON text for mixed values, text for a key that
    /// was only ever `null`.
    pub fn kind(self) -> Kind {
        match self {
            Learnt::Int => Kind::Int64,
            Learnt::Double => Kind::Double,
            Learnt::Bool => Kind::Bool,
            Learnt::Nothing | Learnt::Text | Learnt::Json => Kind::Text,
        }
    }

    /// The value `raw` as a cell of this kind: a string unescaped, a
    /// number or flag as itself, and, in a JSON-text column, the value's
    /// JSON text as sent.
    pub fn cell(self, raw: &str) -> Cell {
        let raw = raw.trim();
        let parsed = match (self, Learnt::of(raw)) {
            (_, Learnt::Nothing) => return Cell::Null,
            (Learnt::Int, Learnt::Int) => raw.parse().ok().map(Cell::Int),
            (Learnt::Double, Learnt::Int | Learnt::Double) => raw.parse().ok().map(Cell::Double),
            (Learnt::Bool, Learnt::Bool) => Some(Cell::Bool(raw == "true")),
            (Learnt::Text, Learnt::Text) => serde_json::from_str(raw).ok().map(Cell::Text),
            _ => None,
        };
        parsed.unwrap_or_else(|| Cell::Text(raw.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_typed_by_every_value_it_holds() {
        let learn = |values: &[&str]| values.iter().fold(Learnt::Nothing, |l, v| l.with(v));
        assert_eq!(learn(&["1", "null", "2"]).kind(), Kind::Int64);
        assert_eq!(learn(&["1", "2.5"]).kind(), Kind::Double);
        assert_eq!(learn(&["true"]).kind(), Kind::Bool);
        assert_eq!(learn(&["1", "\"a\""]), Learnt::Json, "mixed: JSON text");
        assert_eq!(Learnt::Json.cell("\"a\""), Cell::Text("\"a\"".into()));
        assert_eq!(Learnt::Text.cell("\"a\\u00e9\""), Cell::Text("aé".into()));
        let big = "1180591620717411303424";
        assert_eq!(learn(&[big]), Learnt::Json, "past INT64");
        assert_eq!(
            Learnt::Json.cell(big),
            Cell::Text(big.into()),
            "its digits kept"
        );
        assert_eq!(Learnt::Double.cell("2"), Cell::Double(2.0));
    }

    #[test]
    fn a_null_in_a_required_column_is_refused() {
        let columns = vec![Column {
            name: "n".into(),
            kind: Kind::Int64,
            required: true,
        }];
        let mut w = ParquetWriter::new(Vec::new(), columns).expect("a writer");
        assert!(w.push(vec![Cell::Null]).is_err());
        w.push(vec![Cell::Int(3)]).expect("a value");
        let bytes = w.finish().expect("the file");
        assert_eq!(&bytes[..4], b"PAR1");
    }
}
