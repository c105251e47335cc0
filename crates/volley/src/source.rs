//! Sources: where inputs come from.
//!
//! A source turns bytes into numbered [`Input`]s, one per meaningful line,
//! streaming: it holds one line at a time, whatever the input's size. Blank
//! lines and lines starting with `#` are skipped (their numbers still count,
//! so an outcome's line number is the line in the file). A line that is not
//! a usable URL is not an error of the run: it becomes an
//! [`Input::Invalid`], recorded as an `invalid_url` outcome.

use std::io::{self, BufRead};

use url::Url;

/// Longest input line accepted, in bytes. A longer line is recorded as
/// invalid and skipped without being held in memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One meaningful input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A line holding an absolute `http`/`https` URL with a host.
    Url {
        /// 1-based line number in the input.
        line: u64,
        /// The parsed URL (normalised by the WHATWG URL rules).
        url: Url,
    },
    /// A line that cannot be fetched.
    Invalid {
        /// 1-based line number in the input.
        line: u64,
        /// The line as read (lossily decoded, trimmed, truncated to 2 KiB).
        raw: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl Input {
    /// The 1-based line number.
    pub fn line(&self) -> u64 {
        match self {
            Input::Url { line, .. } | Input::Invalid { line, .. } => *line,
        }
    }
}

/// Reads [`Input`]s from a URL list, one per line.
///
/// Iterating yields `Err` only for I/O errors of the underlying reader; bad
/// lines are [`Input::Invalid`] items.
pub struct LineSource<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> LineSource<R> {
    /// A source over `reader`, starting at line 1.
    pub fn new(reader: R) -> Self {
        LineSource {
            reader,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// Lines read so far, skipped ones included.
    pub fn lines_read(&self) -> u64 {
        self.line
    }

    /// Reads one line into `self.buf` (without its newline), keeping at most
    /// [`MAX_LINE_BYTES`] + 1 bytes. Returns `None` at end of input, else
    /// whether the line was cut.
    fn read_line(&mut self) -> io::Result<Option<bool>> {
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
                return Ok(read_any.then_some(cut));
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
                return Ok(Some(cut));
            }
        }
    }
}

impl<R: BufRead> Iterator for LineSource<R> {
    type Item = io::Result<Input>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let cut = match self.read_line() {
                Ok(Some(cut)) => cut,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            self.line += 1;
            let line = self.line;
            let bytes = if line == 1 {
                self.buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&self.buf)
            } else {
                &self.buf[..]
            };
            if cut || bytes.len() > MAX_LINE_BYTES {
                return Some(Ok(invalid(
                    line,
                    bytes,
                    format!("line longer than {MAX_LINE_BYTES} bytes"),
                )));
            }
            let Ok(text) = std::str::from_utf8(bytes) else {
                return Some(Ok(invalid(line, bytes, "not valid UTF-8".to_owned())));
            };
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            return Some(Ok(match parse_url(text) {
                Ok(url) => Input::Url { line, url },
                Err(reason) => Input::Invalid {
                    line,
                    raw: truncate(text),
                    reason,
                },
            }));
        }
    }
}

fn invalid(line: u64, bytes: &[u8], reason: String) -> Input {
    Input::Invalid {
        line,
        raw: truncate(String::from_utf8_lossy(bytes).trim()),
        reason,
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
/// a host.
///
/// # Errors
/// A one-line reason suitable for the outcome's message.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
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

    fn read_all(input: &[u8]) -> Vec<Input> {
        LineSource::new(input)
            .collect::<io::Result<Vec<_>>>()
            .expect("reading from a slice cannot fail")
    }

    #[test]
    fn numbers_lines_and_skips_blanks_and_comments() {
        let inputs = read_all(
            b"\xEF\xBB\xBFhttp://a.test/1\n\n# note\n  http://b.test/2  \r\nhttp://c.test/3",
        );
        let lines: Vec<u64> = inputs.iter().map(Input::line).collect();
        assert_eq!(lines, [1, 4, 5]);
        assert!(matches!(&inputs[1], Input::Url { url, .. } if url.as_str() == "http://b.test/2"));
    }

    #[test]
    fn bad_lines_become_invalid_inputs_with_reasons() {
        let inputs = read_all(b"ftp://x.test/\nnot a url\nhttp://\n\xff\xfe\nhttps://ok.test/\n");
        let reasons: Vec<String> = inputs
            .iter()
            .map(|i| match i {
                Input::Invalid { reason, .. } => reason.clone(),
                Input::Url { .. } => "url".into(),
            })
            .collect();
        assert!(
            reasons[0].contains("unsupported scheme 'ftp'"),
            "{reasons:?}"
        );
        assert!(reasons[1].starts_with("not a URL"), "{reasons:?}");
        assert!(reasons[2].contains("not a URL") || reasons[2].contains("no host"));
        assert_eq!(reasons[3], "not valid UTF-8");
        assert_eq!(reasons[4], "url");
        assert_eq!(inputs[4].line(), 5);
    }

    #[test]
    fn an_overlong_line_is_invalid_and_the_next_line_still_reads() {
        let mut data = vec![b'x'; MAX_LINE_BYTES * 3];
        data.extend_from_slice(b"\nhttp://after.test/\n");
        let inputs = read_all(&data);
        assert_eq!(inputs.len(), 2);
        match &inputs[0] {
            Input::Invalid { raw, reason, line } => {
                assert_eq!(*line, 1);
                assert!(reason.contains("longer than"));
                assert!(raw.len() < 3000, "kept {} bytes", raw.len());
            }
            other => panic!("expected invalid, got {other:?}"),
        }
        assert_eq!(inputs[1].line(), 2);
    }
}
