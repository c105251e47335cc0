//! WARC/1.1 records (ISO 28500:2017; the WARC 1.1 specification, §4–§6),
//! each written as its own gzip member (annex D.2), so that an index can
//! point at any record and a reader can start there.
//!
//! A record is the version line, named fields, a blank line, the block of
//! exactly `Content-Length` bytes, and two CRLFs (§4). [`Fields`] builds the
//! header; [`write_member`] compresses header, block and trailer into one
//! member.

use std::io::{self, Write};
use std::time::SystemTime;

use flate2::Compression;
use flate2::write::GzEncoder;

/// The media type of a block holding an HTTP response (§6.3.2).
pub const HTTP_RESPONSE: &str = "application/http;msgtype=response";
/// The media type of a block holding an HTTP request (§6.3.2).
pub const HTTP_REQUEST: &str = "application/http;msgtype=request";

/// The profile of a revisit whose payload equals an earlier capture's
/// (§6.7.2).
pub const PROFILE_IDENTICAL: &str =
    "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest";
/// The profile of a revisit the server answered `304 Not Modified` (§6.7.3).
pub const PROFILE_NOT_MODIFIED: &str =
    "http://netpreserve.org/warc/1.1/revisit/server-not-modified";

/// The gzip level of each member: zlib's default, the size/speed balance
/// wget and warcio use.
pub const GZIP_LEVEL: u32 = 6;

/// A record's named fields, in the order written.
#[derive(Debug, Default, Clone)]
pub struct Fields(Vec<(&'static str, String)>);

impl Fields {
    /// Fields of a record of `kind` (`response`, `request`, `revisit`,
    /// `warcinfo`) with its id and date.
    pub fn new(kind: &str, id: &str, date: &str) -> Fields {
        Fields(vec![
            ("WARC-Type", kind.to_owned()),
            ("WARC-Record-ID", id.to_owned()),
            ("WARC-Date", date.to_owned()),
        ])
    }

    /// Adds a field.
    pub fn add(mut self, name: &'static str, value: impl Into<String>) -> Fields {
        self.0.push((name, value.into()));
        self
    }

    /// Adds a field when there is a value.
    pub fn maybe(self, name: &'static str, value: Option<impl Into<String>>) -> Fields {
        match value {
            Some(value) => self.add(name, value),
            None => self,
        }
    }

    /// The header: version line, fields (values stripped of CR and LF, which
    /// would end the field), blank line.
    pub fn header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"WARC/1.1\r\n");
        for (name, value) in &self.0 {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            for part in value.split(['\r', '\n']) {
                out.extend_from_slice(part.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// A new record id, `<urn:uuid:…>` (§5.2), from a random (version 4) UUID.
pub fn record_id() -> String {
    format!("<urn:uuid:{}>", uuid::Uuid::new_v4())
}

/// `time` as `WARC-Date` writes it (§5.4): UTC, to the microsecond,
/// `2026-12-05T16:19:04.123456Z`.
pub fn warc_date(time: SystemTime) -> String {
    let t = time::OffsetDateTime::from(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// The 14-digit timestamp of an index line (`20261205161904`) from a
/// `WARC-Date`.
pub fn index_timestamp(warc_date: &str) -> String {
    warc_date
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect()
}

/// Writes one record as one gzip member to `out`: `fields`' header (which
/// must carry `Content-Length` = `block_len`), the block written by
/// `block`, and the closing CRLF CRLF.
///
/// Returns the member's length in bytes (compressed).
///
/// # Errors
/// Writing to `out`, or `block`'s own error; a block that wrote other
/// than `block_len` bytes is an error too, as the record would lie.
pub fn write_member(
    out: &mut impl Write,
    fields: &Fields,
    block_len: u64,
    block: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<u64> {
    let mut gz = GzEncoder::new(Counted { out, n: 0 }, Compression::new(GZIP_LEVEL));
    gz.write_all(&fields.header())?;
    let mut counter = Counting {
        inner: &mut gz,
        n: 0,
    };
    block(&mut counter)?;
    let written = counter.n;
    if written != block_len {
        return Err(io::Error::other(format!(
            "record block is {written} bytes, not the {block_len} its header says"
        )));
    }
    gz.write_all(b"\r\n\r\n")?;
    Ok(gz.finish()?.n)
}

struct Counted<'a, W: Write> {
    out: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

struct Counting<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn a_member_is_one_gzip_stream_holding_header_block_and_trailer() {
        let fields = Fields::new("resource", "<urn:uuid:x>", "2026-01-01T00:00:00Z")
            .add("Content-Length", "5")
            .maybe("WARC-Truncated", None::<String>);
        let mut out = Vec::new();
        write_member(&mut out, &fields, 5, |w| w.write_all(b"hello")).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(
            text,
            "WARC/1.1\r\nWARC-Type: resource\r\nWARC-Record-ID: <urn:uuid:x>\r\nWARC-Date: 2026-01-01T00:00:00Z\r\nContent-Length: 5\r\n\r\nhello\r\n\r\n"
        );
        let short = write_member(&mut Vec::new(), &fields, 6, |w| w.write_all(b"hello"));
        assert!(short.is_err(), "a block shorter than its Content-Length");
    }

    #[test]
    fn dates_are_utc_to_the_microsecond_and_index_timestamps_14_digits() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_780_000_000_123_456);
        let date = warc_date(t);
        assert_eq!(date, "2026-05-28T20:26:40.123456Z");
        assert_eq!(index_timestamp(&date), "20260528202640");
    }

    #[test]
    fn field_values_cannot_break_the_header() {
        let header = Fields::new("response", "<id>", "d")
            .add("WARC-Target-URI", "http://h/\r\nX: y")
            .header();
        assert!(
            String::from_utf8(header)
                .unwrap()
                .contains("WARC-Target-URI: http://h/X: y\r\n")
        );
    }
}
