//! Inputs: where they come from (the pipeline's ingest stage streams them
//! into the frontier).
//!
//! A source turns bytes into numbered [`Input`]s, streaming: it holds one
//! line (or CSV record) at a time, whatever the input's size. Four formats:
//!
//! * [`Format::Lines`]: one URL per line; blank lines and lines starting
//!   with `#` are skipped (their numbers still count).
//! * [`Format::Csv`]: a header row, then records; the URL is in a named
//!   column, and the other columns ride along as the input's metadata (a
//!   JSON object). Comma- or tab-separated.
//! * [`Format::Jsonl`]: one JSON object per line; the URL is at a JSON
//!   pointer (RFC 6901), and the whole object rides along as metadata.
//! * [`Template`]: a URL pattern with `{1..100}` ranges and `{a,b,c}` lists,
//!   expanded lazily.
//!
//! Every input has an *ordinal*: its line number, counted across all input
//! files in order (a record's first line, for CSV; its index, for a
//! template). The ordinal is what the job's ingest cursor remembers, so
//! reading the same inputs again resumes exactly where ingest stopped.
//!
//! A bad line or record is not an error of the run: it becomes an
//! [`Input::Invalid`], recorded as an `invalid_url` or `invalid_input`
//! outcome whose message says where it was.

use std::io::{self, BufRead};

use url::Url;

/// Longest line accepted, in bytes. A longer line is recorded as invalid and
/// skipped without being held in memory.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// One meaningful input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An absolute `http`/`https` URL with a host.
    Url {
        /// The input's ordinal (see the module docs).
        line: u64,
        /// The parsed URL (normalised by the WHATWG URL rules).
        url: Url,
        /// The row's other columns or fields, as a JSON object.
        meta: Option<String>,
    },
    /// An input that cannot be fetched.
    Invalid {
        /// The input's ordinal.
        line: u64,
        /// What was read (lossily decoded, trimmed, truncated to 2 KiB).
        raw: String,
        /// Where and why, e.g. `line 4: not a URL: …`.
        reason: String,
        /// Whether the row itself was unreadable (`invalid_input`) rather
        /// than holding a value that is not a URL (`invalid_url`).
        malformed: bool,
    },
}

impl Input {
    /// The ordinal.
    pub fn line(&self) -> u64 {
        match self {
            Input::Url { line, .. } | Input::Invalid { line, .. } => *line,
        }
    }

    /// The outcome class of an input that cannot be fetched: `invalid_input`
    /// for an unreadable row, `invalid_url` for a value that is not a URL;
    /// `None` for a URL.
    pub fn invalid_class(&self) -> Option<crate::outcome::Class> {
        match self {
            Input::Url { .. } => None,
            Input::Invalid {
                malformed: true, ..
            } => Some(crate::outcome::Class::InvalidInput),
            Input::Invalid { .. } => Some(crate::outcome::Class::InvalidUrl),
        }
    }

    fn shift(mut self, by: u64, label: Option<&str>) -> Input {
        match &mut self {
            Input::Url { line, .. } => *line += by,
            Input::Invalid { line, reason, .. } => {
                *line += by;
                if let Some(label) = label {
                    *reason = format!("{label} {reason}");
                }
            }
        }
        self
    }
}

/// How to read an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One URL per line.
    Lines,
    /// CSV (or TSV with `delimiter: b'\t'`) with a header row; the URL is in
    /// `column`.
    Csv {
        /// The header name of the URL column.
        column: String,
        /// The field separator.
        delimiter: u8,
    },
    /// JSON Lines; the URL is at `pointer` (RFC 6901, e.g. `/links/self`).
    Jsonl {
        /// The JSON pointer to the URL.
        pointer: String,
    },
}

/// A stream of inputs that can say how many ordinals it used up.
pub trait InputSource: Iterator<Item = io::Result<Input>> + Send {
    /// Ordinals consumed so far (lines read, skipped ones included).
    fn consumed(&self) -> u64;
}

/// Raw lines with their numbers, each at most [`MAX_LINE_BYTES`].
struct LineReader<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
}

/// A line to parse, or the `invalid_input` outcome of one too long to.
enum Usable<'a> {
    Line(RawLine<'a>),
    TooLong(Input),
}

/// One raw line: its number, its bytes, and whether it was cut.
struct RawLine<'a> {
    line: u64,
    bytes: &'a [u8],
    cut: bool,
}

impl<R: BufRead> LineReader<R> {
    fn new(reader: R) -> Self {
        LineReader {
            reader,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// The next line, or the invalid input for a line over
    /// [`MAX_LINE_BYTES`]; `None` at the end of the input.
    fn next_usable(&mut self) -> Option<io::Result<Usable<'_>>> {
        match self.next_line() {
            Ok(Some(raw)) if raw.cut => Some(Ok(Usable::TooLong(invalid(
                raw.line,
                raw.bytes,
                format!("line longer than {MAX_LINE_BYTES} bytes"),
                true,
            )))),
            Ok(Some(raw)) => Some(Ok(Usable::Line(raw))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// The next line without its newline (and without a leading BOM).
    fn next_line(&mut self) -> io::Result<Option<RawLine<'_>>> {
        self.buf.clear();
        let mut read_any = false;
        let mut cut = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !read_any {
                    return Ok(None);
                }
                break;
            }
            read_any = true;
            let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            let room = (MAX_LINE_BYTES + 1).saturating_sub(self.buf.len());
            if chunk.len() > room {
                cut = true;
            }
            self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.reader.consume(used);
            if done {
                break;
            }
        }
        self.line += 1;
        let mut bytes = &self.buf[..];
        if self.line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        if bytes.ends_with(b"\r") {
            bytes = &bytes[..bytes.len() - 1];
        }
        Ok(Some(RawLine {
            line: self.line,
            cut: cut || bytes.len() > MAX_LINE_BYTES,
            bytes,
        }))
    }
}

/// A URL list: one URL per line (see the module docs).
pub struct LineSource<R> {
    lines: LineReader<R>,
}

impl<R: BufRead> LineSource<R> {
    /// A source over `reader`, starting at line 1.
    pub fn new(reader: R) -> Self {
        LineSource {
            lines: LineReader::new(reader),
        }
    }

    /// Lines read so far, skipped ones included.
    pub fn lines_read(&self) -> u64 {
        self.lines.line
    }
}

impl<R: BufRead + Send> InputSource for LineSource<R> {
    fn consumed(&self) -> u64 {
        self.lines_read()
    }
}

impl<R: BufRead> Iterator for LineSource<R> {
    type Item = io::Result<Input>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let raw = match self.lines.next_usable()? {
                Ok(Usable::Line(raw)) => raw,
                Ok(Usable::TooLong(input)) => return Some(Ok(input)),
                Err(e) => return Some(Err(e)),
            };
            let line = raw.line;
            let Ok(text) = std::str::from_utf8(raw.bytes) else {
                return Some(Ok(invalid(
                    line,
                    raw.bytes,
                    "not valid UTF-8".to_owned(),
                    true,
                )));
            };
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            return Some(Ok(url_input(line, text, None)));
        }
    }
}

/// An [`Input`] for the URL text `text` at `line`.
fn url_input(line: u64, text: &str, meta: Option<String>) -> Input {
    match parse_url(text) {
        Ok(url) => Input::Url { line, url, meta },
        Err(reason) => Input::Invalid {
            line,
            raw: truncate(text),
            reason: format!("line {line}: {reason}"),
            malformed: false,
        },
    }
}

fn invalid(line: u64, bytes: &[u8], reason: String, malformed: bool) -> Input {
    Input::Invalid {
        line,
        raw: truncate(String::from_utf8_lossy(bytes).trim()),
        reason: format!("line {line}: {reason}"),
        malformed,
    }
}

/// JSON Lines with the URL at a JSON pointer.
pub struct JsonlSource<R> {
    lines: LineReader<R>,
    pointer: String,
}

impl<R: BufRead> JsonlSource<R> {
    /// A source over `reader`, taking the URL at `pointer`.
    pub fn new(reader: R, pointer: &str) -> Self {
        JsonlSource {
            lines: LineReader::new(reader),
            pointer: pointer.to_owned(),
        }
    }
}

impl<R: BufRead + Send> InputSource for JsonlSource<R> {
    fn consumed(&self) -> u64 {
        self.lines.line
    }
}

impl<R: BufRead> Iterator for JsonlSource<R> {
    type Item = io::Result<Input>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let raw = match self.lines.next_usable()? {
                Ok(Usable::Line(raw)) => raw,
                Ok(Usable::TooLong(input)) => return Some(Ok(input)),
                Err(e) => return Some(Err(e)),
            };
            let line = raw.line;
            if raw.bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let value: serde_json::Value = match serde_json::from_slice(raw.bytes) {
                Ok(v) => v,
                Err(e) => {
                    return Some(Ok(invalid(line, raw.bytes, format!("not JSON: {e}"), true)));
                }
            };
            let input = match value.pointer(&self.pointer) {
                Some(serde_json::Value::String(text)) => {
                    url_input(line, text.trim(), Some(value.to_string()))
                }
                Some(other) => invalid(
                    line,
                    raw.bytes,
                    format!("the value at {} is {other}, not a URL string", self.pointer),
                    true,
                ),
                None => invalid(
                    line,
                    raw.bytes,
                    format!("no field at {}", self.pointer),
                    true,
                ),
            };
            return Some(Ok(input));
        }
    }
}

/// CSV or TSV with a header row and the URL in a named column.
pub struct CsvSource<R: io::Read> {
    reader: csv::Reader<R>,
    column: Option<usize>,
    name: String,
    headers: Vec<String>,
    record: csv::ByteRecord,
    line: u64,
    header_error: Option<String>,
}

impl<R: io::Read> CsvSource<R> {
    /// A source over `reader`, taking the URL from the column `column`.
    pub fn new(reader: R, column: &str, delimiter: u8) -> Self {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(reader);
        let (headers, header_error) = match reader.headers() {
            Ok(h) => (h.iter().map(str::to_owned).collect::<Vec<_>>(), None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        let index = headers.iter().position(|h| h.trim() == column);
        CsvSource {
            reader,
            column: index,
            name: column.to_owned(),
            headers,
            record: csv::ByteRecord::new(),
            line: 1,
            header_error,
        }
    }

    /// The header row's names.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// Whether the header row has the URL column.
    pub fn has_column(&self) -> bool {
        self.column.is_some()
    }
}

impl<R: io::Read + Send> InputSource for CsvSource<R> {
    fn consumed(&self) -> u64 {
        self.line
    }
}

impl<R: io::Read> Iterator for CsvSource<R> {
    type Item = io::Result<Input>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.header_error.take() {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("cannot read the CSV header row: {e}"),
            )));
        }
        loop {
            match self.reader.read_byte_record(&mut self.record) {
                Ok(false) => {
                    self.line = self.reader.position().line().max(self.line);
                    return None;
                }
                Ok(true) => {}
                Err(e) => {
                    if let csv::ErrorKind::Io(_) = e.kind() {
                        return Some(Err(io::Error::other(e.to_string())));
                    }
                    let line = self.reader.position().line().max(self.line + 1);
                    self.line = line;
                    return Some(Ok(invalid(
                        line,
                        b"",
                        format!("unreadable CSV record: {e}"),
                        true,
                    )));
                }
            }
            let line = self
                .record
                .position()
                .map_or(self.line + 1, csv::Position::line);
            self.line = line;
            if self
                .record
                .iter()
                .all(|f| f.iter().all(u8::is_ascii_whitespace))
            {
                continue;
            }
            let joined = self
                .record
                .iter()
                .map(|f| String::from_utf8_lossy(f))
                .collect::<Vec<_>>()
                .join(",");
            let Some(value) = self.column.and_then(|i| self.record.get(i)) else {
                return Some(Ok(invalid(
                    line,
                    joined.as_bytes(),
                    format!("the row has no column '{}'", self.name),
                    true,
                )));
            };
            let Ok(text) = std::str::from_utf8(value) else {
                return Some(Ok(invalid(line, value, "not valid UTF-8".to_owned(), true)));
            };
            let mut meta = serde_json::Map::new();
            for (i, field) in self.record.iter().enumerate() {
                if Some(i) == self.column {
                    continue;
                }
                let key = self
                    .headers
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("column{}", i + 1));
                meta.insert(key, String::from_utf8_lossy(field).into_owned().into());
            }
            return Some(Ok(url_input(
                line,
                text.trim(),
                Some(serde_json::Value::Object(meta).to_string()),
            )));
        }
    }
}

/// Several sources read one after the other, with ordinals counted across
/// all of them and invalid inputs labelled with their source when there is
/// more than one.
pub struct Inputs {
    sources: Vec<(String, Box<dyn InputSource>)>,
    current: usize,
    offset: u64,
    labelled: bool,
}

impl Inputs {
    /// Reads `sources` (label, source) in order.
    pub fn new(sources: Vec<(String, Box<dyn InputSource>)>) -> Inputs {
        let labelled = sources.len() > 1;
        Inputs {
            sources,
            current: 0,
            offset: 0,
            labelled,
        }
    }
}

impl InputSource for Inputs {
    fn consumed(&self) -> u64 {
        self.offset
            + self
                .sources
                .get(self.current)
                .map_or(0, |(_, s)| s.consumed())
    }
}

impl Iterator for Inputs {
    type Item = io::Result<Input>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (label, source) = self.sources.get_mut(self.current)?;
            match source.next() {
                Some(Ok(input)) => {
                    let label = self.labelled.then_some(label.as_str());
                    return Some(Ok(input.shift(self.offset, label)));
                }
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    self.offset += source.consumed();
                    self.current += 1;
                }
            }
        }
    }
}

/// A URL template: literal text with `{A..B}` numeric ranges (zero-padded
/// when `A` is written with leading zeros) and `{a,b,c}` lists. Several
/// groups expand as a cartesian product, the last group fastest. Expansion
/// is lazy: a template of ten million URLs holds one URL at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Range { start: u64, end: u64, width: usize },
    List(Vec<String>),
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Text(_) => 1,
            Part::Range { start, end, .. } => end - start + 1,
            Part::List(items) => items.len() as u64,
        }
    }

    fn write(&self, index: u64, out: &mut String) {
        match self {
            Part::Text(t) => out.push_str(t),
            Part::Range { start, width, .. } => {
                out.push_str(&format!("{:0width$}", start + index, width = *width));
            }
            Part::List(items) => out.push_str(&items[index as usize]),
        }
    }
}

impl Template {
    /// Parses a template.
    ///
    /// # Errors
    /// A one-line reason: an unclosed `{`, a reversed or non-numeric range,
    /// an empty list, or more than 2^64 expansions.
    pub fn parse(pattern: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = pattern;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| format!("template '{pattern}': '{{' without a closing '}}'"))?;
            let group = &rest[open + 1..close];
            parts.push(Self::group(pattern, group)?);
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        let template = Template { parts };
        template
            .parts
            .iter()
            .try_fold(1u64, |n, p| n.checked_mul(p.len()))
            .ok_or_else(|| format!("template '{pattern}' expands to more than 2^64 URLs"))?;
        Ok(template)
    }

    fn group(pattern: &str, group: &str) -> Result<Part, String> {
        if let Some((a, b)) = group.split_once("..") {
            let (a, b) = (a.trim(), b.trim());
            let parse = |s: &str| {
                s.parse::<u64>()
                    .map_err(|_| format!("template '{pattern}': '{{{group}}}' is not a range of whole numbers like {{1..100}}"))
            };
            let (start, end) = (parse(a)?, parse(b)?);
            if start > end {
                return Err(format!(
                    "template '{pattern}': range {{{group}}} is reversed; write {{{b}..{a}}}"
                ));
            }
            let width = if a.len() > 1 && a.starts_with('0') {
                a.len()
            } else {
                0
            };
            return Ok(Part::Range { start, end, width });
        }
        let items: Vec<String> = group.split(',').map(str::to_owned).collect();
        if items.len() < 2 && items.iter().all(String::is_empty) {
            return Err(format!("template '{pattern}': empty group {{}}"));
        }
        Ok(Part::List(items))
    }

    /// How many URLs the template expands to.
    pub fn len(&self) -> u64 {
        self.parts.iter().map(Part::len).product()
    }

    /// Whether it expands to nothing (never, for a parsed template).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `index`-th expansion (0-based), in order.
    pub fn nth_url(&self, mut index: u64) -> String {
        let mut digits = vec![0u64; self.parts.len()];
        for (i, part) in self.parts.iter().enumerate().rev() {
            let n = part.len();
            digits[i] = index % n;
            index /= n;
        }
        let mut out = String::new();
        for (part, digit) in self.parts.iter().zip(digits) {
            part.write(digit, &mut out);
        }
        out
    }
}

/// The expansions of a [`Template`] as inputs, ordinals 1, 2, …
pub struct TemplateSource {
    template: Template,
    next: u64,
    len: u64,
}

impl TemplateSource {
    /// A source over `template`'s expansions.
    pub fn new(template: Template) -> TemplateSource {
        let len = template.len();
        TemplateSource {
            template,
            next: 0,
            len,
        }
    }
}

impl InputSource for TemplateSource {
    fn consumed(&self) -> u64 {
        self.next
    }
}

impl Iterator for TemplateSource {
    type Item = io::Result<Input>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.len {
            return None;
        }
        let url = self.template.nth_url(self.next);
        self.next += 1;
        Some(Ok(url_input(self.next, &url, None)))
    }
}

/// Keeps at most 2 KiB of a rejected line for the record.
fn truncate(text: &str) -> String {
    const KEEP: usize = 2048;
    if text.len() <= KEEP {
        return text.to_owned();
    }
    let mut end = KEEP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Parses one URL as volley will fetch it: absolute, `http` or `https`, with
/// a host, and no whitespace inside (`text` is trimmed already). The URL
/// standard would percent-encode inner spaces and fetch
/// `http://h/f3.txt%20%20trailing%20words` for a line with words after its
/// URL; such a line is refused instead, since the words were most likely a
/// comment or a second field, not part of the address.
///
/// # Errors
/// A one-line reason suitable for the outcome's message.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if let Some(at) = text.find(char::is_whitespace) {
        return Err(format!(
            "whitespace inside the URL at byte {at} (a URL has none: write a space as %20, and put comments on lines of their own, starting with #)"
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported scheme '{}' (only http and https)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("URL has no host".to_owned());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(source: impl Iterator<Item = io::Result<Input>>) -> Vec<Input> {
        source
            .collect::<io::Result<Vec<_>>>()
            .expect("reading from a slice cannot fail")
    }

    fn reason(input: &Input) -> &str {
        match input {
            Input::Invalid { reason, .. } => reason,
            Input::Url { .. } => "url",
        }
    }

    #[test]
    fn numbers_lines_and_skips_blanks_and_comments() {
        let inputs = read_all(LineSource::new(
            &b"\xEF\xBB\xBFhttp://a.test/1\n\n# note\n  http://b.test/2  \r\nhttp://c.test/3"[..],
        ));
        let lines: Vec<u64> = inputs.iter().map(Input::line).collect();
        assert_eq!(lines, [1, 4, 5]);
        assert!(matches!(&inputs[1], Input::Url { url, .. } if url.as_str() == "http://b.test/2"));
    }

    #[test]
    fn a_url_followed_by_more_text_is_not_a_url() {
        let inputs = read_all(LineSource::new(
            &b"http://h.test/f3.txt   trailing words
http://h.test/a	b
"[..],
        ));
        assert_eq!(inputs.len(), 2);
        for input in &inputs {
            assert!(
                reason(input).contains("whitespace inside the URL"),
                "{input:?}"
            );
        }
        assert!(reason(&inputs[0]).contains("at byte 20"));
    }

    #[test]
    fn bad_lines_become_invalid_inputs_with_reasons() {
        let inputs = read_all(LineSource::new(
            &b"ftp://x.test/\nnot a url\nhttp://\n\xff\xfe\nhttps://ok.test/\n"[..],
        ));
        let reasons: Vec<&str> = inputs.iter().map(reason).collect();
        assert!(
            reasons[0].starts_with("line 1: unsupported scheme 'ftp'"),
            "{reasons:?}"
        );
        assert!(reasons[1].starts_with("line 2: not a URL"), "{reasons:?}");
        assert!(reasons[2].contains("not a URL") || reasons[2].contains("no host"));
        assert_eq!(reasons[3], "line 4: not valid UTF-8");
        assert_eq!(reasons[4], "url");
        assert_eq!(inputs[4].line(), 5);
    }

    #[test]
    fn an_overlong_line_is_invalid_and_the_next_line_still_reads() {
        let mut data = vec![b'x'; MAX_LINE_BYTES * 3];
        data.extend_from_slice(b"\nhttp://after.test/\n");
        let inputs = read_all(LineSource::new(&data[..]));
        assert_eq!(inputs.len(), 2);
        match &inputs[0] {
            Input::Invalid {
                raw, reason, line, ..
            } => {
                assert_eq!(*line, 1);
                assert!(reason.contains("longer than"));
                assert!(raw.len() < 3000, "kept {} bytes", raw.len());
            }
            other => panic!("expected invalid, got {other:?}"),
        }
        assert_eq!(inputs[1].line(), 2);
    }

    #[test]
    fn csv_takes_the_named_column_and_keeps_the_rest_as_metadata() {
        let data = "id,url,title\n1,http://a.test/x,\"A, quoted\"\n2\n3,not a url,c\n\n4,http://b.test/y,d\n";
        let inputs = read_all(CsvSource::new(data.as_bytes(), "url", b','));
        assert_eq!(inputs.len(), 4);
        match &inputs[0] {
            Input::Url { line, url, meta } => {
                assert_eq!((*line, url.as_str()), (2, "http://a.test/x"));
                let meta: serde_json::Value =
                    serde_json::from_str(meta.as_deref().unwrap_or("null")).expect("JSON");
                assert_eq!(meta, serde_json::json!({"id": "1", "title": "A, quoted"}));
            }
            other => panic!("expected a URL, got {other:?}"),
        }
        assert!(
            matches!(
                &inputs[1],
                Input::Invalid {
                    malformed: true,
                    line: 3,
                    ..
                }
            ),
            "{:?}",
            inputs[1]
        );
        assert!(reason(&inputs[1]).contains("no column 'url'"));
        assert!(
            matches!(
                &inputs[2],
                Input::Invalid {
                    malformed: false,
                    line: 4,
                    ..
                }
            ),
            "{:?}",
            inputs[2]
        );
        // The csv crate does not count blank lines: the row on the file's line 6
        // is its line 5. Ordinals stay unique and increasing, which is what
        // the ingest cursor needs.
        assert_eq!(inputs[3].line(), 5);
        let tsv = read_all(CsvSource::new(
            "u\tn\nhttp://t.test/\t1\n".as_bytes(),
            "u",
            b'\t',
        ));
        assert!(matches!(&tsv[0], Input::Url { url, .. } if url.as_str() == "http://t.test/"));
    }

    #[test]
    fn jsonl_takes_the_url_at_a_pointer() {
        let data = "{\"link\":{\"href\":\"http://a.test/\"},\"n\":1}\nnot json\n{\"link\":{}}\n{\"link\":{\"href\":7}}\n";
        let inputs = read_all(JsonlSource::new(data.as_bytes(), "/link/href"));
        assert!(matches!(&inputs[0], Input::Url { meta: Some(m), .. } if m.contains("\"n\":1")));
        assert!(
            reason(&inputs[1]).starts_with("line 2: not JSON"),
            "{}",
            reason(&inputs[1])
        );
        assert!(reason(&inputs[2]).contains("no field at /link/href"));
        assert!(reason(&inputs[3]).contains("not a URL string"));
    }

    #[test]
    fn several_sources_number_lines_across_all_of_them() {
        let a: Box<dyn InputSource> = Box::new(LineSource::new(&b"http://a.test/1\n# c\n"[..]));
        let b: Box<dyn InputSource> = Box::new(LineSource::new(&b"bad\nhttp://b.test/2\n"[..]));
        let mut inputs = Inputs::new(vec![("a.txt".into(), a), ("b.txt".into(), b)]);
        let all: Vec<Input> = inputs
            .by_ref()
            .collect::<io::Result<_>>()
            .expect("slices read");
        assert_eq!(all.iter().map(Input::line).collect::<Vec<_>>(), [1, 3, 4]);
        assert_eq!(
            reason(&all[1]),
            "b.txt line 1: not a URL: relative URL without a base"
        );
        assert_eq!(inputs.consumed(), 4);
    }

    #[test]
    fn templates_expand_ranges_and_lists_lazily_in_order() {
        let t = Template::parse("http://h.test/{a,b}/item/{08..10}").expect("valid template");
        assert_eq!(t.len(), 6);
        let urls: Vec<String> = (0..t.len()).map(|i| t.nth_url(i)).collect();
        assert_eq!(urls[0], "http://h.test/a/item/08");
        assert_eq!(urls[2], "http://h.test/a/item/10");
        assert_eq!(urls[3], "http://h.test/b/item/08");
        assert!(
            Template::parse("http://h.test/{9..1}")
                .expect_err("reversed")
                .contains("reversed")
        );
        assert!(Template::parse("http://h.test/{1..").is_err());
        let million = Template::parse("http://h.test/items/{1..1000000}").expect("valid");
        let mut source = TemplateSource::new(million);
        let last = source
            .by_ref()
            .last()
            .expect("a last input")
            .expect("no I/O");
        assert_eq!(last.line(), 1_000_000);
        assert!(
            matches!(last, Input::Url { url, .. } if url.as_str() == "http://h.test/items/1000000")
        );
        assert_eq!(source.consumed(), 1_000_000);
    }
}
