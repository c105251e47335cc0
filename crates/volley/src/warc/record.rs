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

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

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

/// The gzip level of each member. Level 6 (zlib's default, what wget and
/// warcio use) made the Rust docs' WARC 26 % smaller than level 1 but cost
/// twice the CPU, on the one core the archive can use beside the fetching
/// (bench/NOTES.md, W12).
pub const GZIP_LEVEL: u32 = 1;

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

/// A deflate state kept from one record to the next: a new one for each
/// record (as `GzEncoder` makes) zeroes its hash tables and window every
/// time, which cost more than the compression of a small record.
pub struct Deflater {
    compress: Compress,
    /// Output space, zeroed once (`compress_vec` zeroes its spare
    /// capacity on every call).
    buf: Box<[u8]>,
}

impl Default for Deflater {
    fn default() -> Deflater {
        Deflater::new()
    }
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflater")
    }
}

impl Deflater {
    /// A raw deflate state at [`GZIP_LEVEL`].
    pub fn new() -> Deflater {
        Deflater {
            compress: Compress::new(Compression::new(GZIP_LEVEL), false),
            buf: vec![0; 64 << 10].into_boxed_slice(),
        }
    }
}

/// The gzip member header (RFC 1952 §2.3): deflate, no name or time, OS
/// unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Writes one record as one gzip member (RFC 1952) to `out`: `fields`'
/// header (which must carry `Content-Length` = `block_len`), the block
/// written by `block`, and the closing CRLF CRLF. Returns the member's
/// length in bytes (compressed).
///
/// # Errors
/// Writing to `out`, or `block`'s own error; a block that wrote other
/// than `block_len` bytes is an error too, as the record would lie.
pub fn write_member(
    out: &mut impl Write,
    deflater: &mut Deflater,
    fields: &Fields,
    block_len: u64,
    block: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<u64> {
    deflater.compress.reset();
    out.write_all(&GZIP_HEADER)?;
    let mut member = Member {
        deflater,
        out,
        crc: Crc::new(),
        written: GZIP_HEADER.len() as u64,
    };
    member.write_all(&fields.header())?;
    let before = member.crc.amount();
    block(&mut member)?;
    let written = u64::from(member.crc.amount().wrapping_sub(before));
    if written != block_len % (1 << 32) {
        return Err(io::Error::other(format!(
            "record block is {written} bytes, not the {block_len} its header says"
        )));
    }
    member.write_all(b"\r\n\r\n")?;
    member.feed(&[], FlushCompress::Finish)?;
    let Member {
        out, crc, written, ..
    } = member;
    out.write_all(&crc.sum().to_le_bytes())?;
    out.write_all(&crc.amount().to_le_bytes())?;
    Ok(written + 8)
}

/// The body of a gzip member being written: what is written to it is
/// counted in its CRC and deflated into `out`.
struct Member<'a, W: Write> {
    deflater: &'a mut Deflater,
    out: &'a mut W,
    crc: Crc,
    written: u64,
}

impl<W: Write> Member<'_, W> {
    fn feed(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        loop {
            let d = &mut *self.deflater;
            let (before_in, before_out) = (d.compress.total_in(), d.compress.total_out());
            let status = d
                .compress
                .compress(input, &mut d.buf, flush)
                .map_err(io::Error::other)?;
            let consumed =
                usize::try_from(d.compress.total_in() - before_in).unwrap_or(input.len());
            let produced = usize::try_from(d.compress.total_out() - before_out).unwrap_or(0);
            input = &input[consumed.min(input.len())..];
            self.out.write_all(&d.buf[..produced])?;
            self.written += produced as u64;
            let full = produced == d.buf.len();
            match flush {
                FlushCompress::Finish if status == Status::StreamEnd => return Ok(()),
                FlushCompress::Finish => {}
                _ if input.is_empty() && !full => return Ok(()),
                _ => {}
            }
        }
    }
}

impl<W: Write> Write for Member<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.feed(buf, FlushCompress::None)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
        let mut deflater = Deflater::new();
        let n = write_member(&mut out, &mut deflater, &fields, 5, |w| {
            w.write_all(b"hello")
        })
        .unwrap();
        assert_eq!(n, out.len() as u64);
        // A second member with the same deflater: two gzip members in a row.
        write_member(&mut out, &mut deflater, &fields, 5, |w| {
            w.write_all(b"hello")
        })
        .unwrap();
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_string(&mut text)
            .unwrap();
        let text = text.split_at(text.len() / 2).0.to_owned();
        assert_eq!(
            text,
            "WARC/1.1\r\nWARC-Type: resource\r\nWARC-Record-ID: <urn:uuid:x>\r\nWARC-Date: 2026-01-01T00:00:00Z\r\nContent-Length: 5\r\n\r\nhello\r\n\r\n"
        );
        let short = write_member(&mut Vec::new(), &mut deflater, &fields, 6, |w| {
            w.write_all(b"hello")
        });
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
