//! A job's input sent from Python: any iterable of URLs, in chunks. Ingest
//! reads it as it reads a file of lines (`volley fetch --input`), so line
//! numbers, invalid lines and the resume check work the same way.

use std::io::{self, BufRead, Read};

use pyo3::prelude::*;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

/// Chunks in flight between Python and ingest. Bounded: the iterable is
/// read only as fast as ingest stores it (backpressure), so an input of any
/// length costs the memory of a few chunks.
const CHUNKS: usize = 4;

/// Lines of URLs, or why the iterable failed.
pub(crate) type Chunk = Result<Vec<u8>, String>;

/// The sending end (the Python side) and the reading end (ingest).
pub(crate) fn channel() -> (mpsc::Sender<Chunk>, Fed) {
    let (tx, rx) = mpsc::channel(CHUNKS);
    let fed = Fed {
        rx,
        chunk: Vec::new(),
        pos: 0,
    };
    (tx, fed)
}

/// Appends the URL `item` (a `str`, or anything as `str(item)`) to `text`
/// as one line. A newline inside a URL would shift every line number after
/// it, so it becomes a space (and the URL an invalid line).
pub(crate) fn push_line(text: &mut String, item: &Bound<'_, PyAny>) -> PyResult<()> {
    let shown = item.str()?;
    let url = shown.to_str()?;
    if url.contains(['\n', '\r']) {
        text.push_str(&url.replace(['\n', '\r'], " "));
    } else {
        text.push_str(url);
    }
    text.push('\n');
    Ok(())
}

/// The stamp of a list of URLs: its length and the SHA-256 of its lines
/// (as [`push_line`] writes them). A rerun of a job with another list gets
/// another stamp, so ingest reads the list again and checks it against the
/// tasks recorded.
#[pyfunction]
pub(crate) fn list_stamp(urls: &Bound<'_, PyAny>) -> PyResult<String> {
    let mut hash = Sha256::new();
    let mut line = String::new();
    let mut count = 0u64;
    for item in urls.try_iter()? {
        line.clear();
        push_line(&mut line, &item?)?;
        hash.update(line.as_bytes());
        count += 1;
    }
    Ok(format!("{count}:{}", hex::encode(hash.finalize())))
}

/// The reading end: the chunks as one stream of bytes. Ingest reads it on
/// tokio's blocking pool, where waiting for the next chunk is allowed.
pub(crate) struct Fed {
    rx: mpsc::Receiver<Chunk>,
    chunk: Vec<u8>,
    pos: usize,
}

impl BufRead for Fed {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Some(Err(why)) => return Err(io::Error::other(why)),
                // The sender ended the input (or went away): end of file.
                None => return Ok(&[]),
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.chunk.len());
    }
}

impl Read for Fed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}
