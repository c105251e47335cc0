//! Appending a job's records to its files, and cutting files back to what
//! the database committed (see the crash-safety note in [`crate::warc`]).
//!
//! A [`WarcWriter`] is blocking code: the pipeline's writer stage runs it
//! on tokio's blocking pool, one batch at a time, before the batch's
//! outcomes commit. It holds at most one file open, locked, and appends to
//! it until the file reaches `--warc-max-size`; the writer stage then asks
//! the database for the next file's serial and hands the name in
//! ([`WarcWriter::begin_file`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::SystemTime;

use super::capture::{Capture, Exchange, lock};
use super::record::{
    self, Fields, HTTP_REQUEST, HTTP_RESPONSE, PROFILE_IDENTICAL, PROFILE_NOT_MODIFIED,
};
use super::{
    Earlier, EarlierCaptures, IndexedRecord, RecordKind, WarcError, WarcFile, WarcOptions,
    WarcPlacement, cdxj,
};

/// Bytes buffered before a write to the file.
const BUFFER_BYTES: usize = 256 << 10;

/// Writes a job's records; see the module docs.
#[derive(Debug)]
pub struct WarcWriter {
    options: WarcOptions,
    /// The `warcinfo` block's fields (`software`, `format`, the job's
    /// options), as `name: value` lines.
    info: String,
    current: Option<Open>,
    /// Payloads written in this batch: later ones in the batch revisit them.
    seen: HashMap<String, Earlier>,
}

#[derive(Debug)]
struct Open {
    id: i64,
    path: String,
    out: BufWriter<File>,
    len: u64,
}

impl WarcWriter {
    /// A writer for `options`, whose files open with a `warcinfo` record
    /// holding `info` (`name: value` lines, WARC 1.1 §6.2).
    pub fn new(options: WarcOptions, info: String) -> WarcWriter {
        WarcWriter {
            options,
            info,
            current: None,
            seen: HashMap::new(),
        }
    }

    /// Cuts each of the job's `files` found on this machine back to its
    /// committed end, and keeps the newest one with room as the file to
    /// append to. A file another process holds (locked) is left alone, as
    /// is a file not on this machine (another worker's).
    ///
    /// # Errors
    /// [`WarcError::Io`] when a file cannot be opened, locked or cut;
    /// [`WarcError::Shrunk`] when one is shorter than its committed
    /// records.
    pub fn repair(&mut self, files: &[WarcFile]) -> Result<(), WarcError> {
        let mut newest: Option<Open> = None;
        for f in files {
            let io = |source| WarcError::Io {
                path: f.path.clone(),
                source,
            };
            let file = match OpenOptions::new().read(true).write(true).open(&f.path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
            let len = file.metadata().map_err(io)?.len();
            if len < f.committed_end {
                return Err(WarcError::Shrunk {
                    path: f.path.clone(),
                    len,
                    committed: f.committed_end,
                });
            }
            if len > f.committed_end {
                tracing::warn!(
                    file = %f.path,
                    cut = len - f.committed_end,
                    "cutting a WARC file back to its last committed record"
                );
                file.set_len(f.committed_end).map_err(io)?;
                file.sync_all().map_err(io)?;
            }
            if f.committed_end < self.options.max_file_bytes
                && newest.as_ref().is_none_or(|n| n.id < f.id)
            {
                newest = Some(Open {
                    id: f.id,
                    path: f.path.clone(),
                    out: BufWriter::with_capacity(BUFFER_BYTES, file),
                    len: f.committed_end,
                });
            }
        }
        if let Some(open) = newest {
            self.current = Some(self.appending(open)?);
        }
        Ok(())
    }

    /// Positions `open` at its end, writing a `warcinfo` record first if
    /// it is empty.
    fn appending(&self, mut open: Open) -> Result<Open, WarcError> {
        use std::io::Seek as _;
        let io = |source| WarcError::Io {
            path: open.path.clone(),
            source,
        };
        open.out
            .get_mut()
            .seek(std::io::SeekFrom::Start(open.len))
            .map_err(io)?;
        if open.len == 0 {
            let n = self.write_info(&mut open.out).map_err(io)?;
            open.len += n;
        }
        Ok(open)
    }

    /// Whether a new file is needed before the next outcome: none is open,
    /// or the open one reached `--warc-max-size`.
    pub fn needs_file(&self) -> bool {
        self.current
            .as_ref()
            .is_none_or(|open| open.len >= self.options.max_file_bytes)
    }

    /// The prefix of the job's file names.
    pub fn prefix(&self) -> &str {
        &self.options.prefix
    }

    /// Closes the open file (if any) and begins file `id` at `path`,
    /// created new, locked, with its `warcinfo` record.
    ///
    /// # Errors
    /// [`WarcError::Io`].
    pub fn begin_file(&mut self, id: i64, path: &str) -> Result<(), WarcError> {
        self.finish()?;
        let io = |source| WarcError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(path)
            .map_err(io)?;
        file.try_lock().map_err(|e| io(e.into()))?;
        let open = Open {
            id,
            path: path.to_owned(),
            out: BufWriter::with_capacity(BUFFER_BYTES, file),
            len: 0,
        };
        self.current = Some(self.appending(open)?);
        Ok(())
    }

    /// Flushes the open file to the operating system and closes it.
    ///
    /// # Errors
    /// [`WarcError::Io`].
    pub fn finish(&mut self) -> Result<(), WarcError> {
        if let Some(mut open) = self.current.take() {
            open.out.flush().map_err(|source| WarcError::Io {
                path: open.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Forgets the payloads of the last batch (committed now, so the
    /// database finds them).
    pub fn begin_batch(&mut self) {
        self.seen.clear();
    }

    /// Writes the records of `captures` in order, from the first, until
    /// all are written or the file is full; each written capture's slot
    /// becomes its placement (`None` when it had no response to archive).
    /// Returns how many were written; the writer stage begins a new file
    /// ([`WarcWriter::needs_file`]) and calls again with the rest. The
    /// file is flushed to the operating system before returning, so the
    /// records are in it before their outcomes commit.
    ///
    /// # Errors
    /// [`WarcError::Io`] when writing fails (a full disk): the run must
    /// stop; the torn tail is cut by the next run.
    pub fn write(
        &mut self,
        captures: &mut [(Option<Capture>, Option<WarcPlacement>)],
        earlier: &EarlierCaptures,
    ) -> Result<usize, WarcError> {
        let mut done = 0;
        for (capture, placement) in captures.iter_mut() {
            if self.needs_file() {
                break;
            }
            if let Some(capture) = capture.take() {
                *placement = self.write_capture(capture, earlier)?;
            }
            done += 1;
        }
        if let Some(open) = &mut self.current {
            open.out.flush().map_err(|source| WarcError::Io {
                path: open.path.clone(),
                source,
            })?;
        }
        Ok(done)
    }

    fn write_capture(
        &mut self,
        capture: Capture,
        earlier: &EarlierCaptures,
    ) -> Result<Option<WarcPlacement>, WarcError> {
        let mut placement: Option<WarcPlacement> = None;
        for exchange in capture.exchanges {
            let Some(open) = self.current.as_mut() else {
                break;
            };
            let start = open.len;
            let Some(indexed) =
                write_exchange(self.options.digest, open, exchange, earlier, &mut self.seen)?
            else {
                continue;
            };
            let open = self.current.as_ref().map_or(start, |o| o.len);
            let id = self.current.as_ref().map_or(0, |o| o.id);
            let path = self
                .current
                .as_ref()
                .map(|o| o.path.clone())
                .unwrap_or_default();
            let p = placement.get_or_insert_with(|| WarcPlacement {
                file_id: id,
                file: path,
                offset: start,
                length: 0,
                records: Vec::new(),
            });
            p.length = open - p.offset;
            p.records.push(indexed);
        }
        Ok(placement)
    }

    fn write_info(&self, out: &mut impl Write) -> std::io::Result<u64> {
        let block = self.info.as_bytes();
        let fields = Fields::new(
            "warcinfo",
            &record::record_id(),
            &record::warc_date(SystemTime::now()),
        )
        .add("Content-Type", "application/warc-fields")
        .add("Content-Length", block.len().to_string());
        record::write_member(out, &fields, block.len() as u64, |w| w.write_all(block))
    }
}

/// Writes one exchange's records (response or revisit, then request) and
/// returns the response's or revisit's index entry; `None` when no
/// response arrived.
fn write_exchange(
    algo: super::DigestAlgorithm,
    open: &mut Open,
    exchange: Exchange,
    earlier: &EarlierCaptures,
    seen: &mut HashMap<String, Earlier>,
) -> Result<Option<IndexedRecord>, WarcError> {
    let Exchange {
        date,
        target_uri,
        ip,
        request,
        response,
        revalidated,
    } = exchange;
    let Some(response) = response else {
        return Ok(None);
    };
    let io = |source| WarcError::Io {
        path: open.path.clone(),
        source,
    };
    let date = record::warc_date(date);
    let ip = ip.map(|ip| ip.to_string());
    let id = record::record_id();
    let mut payload = lock(&response.payload);
    let digest = payload.payload_digest();
    let whole = payload.complete && payload.truncated.is_none();
    let revisit = if response.status == 304 && revalidated {
        let refers = earlier.by_uri.get(&target_uri);
        let digest = refers.and_then(|e| e.payload_digest.clone());
        Some((PROFILE_NOT_MODIFIED, refers, digest))
    } else if whole && !payload.is_empty() {
        seen.get(&digest)
            .or_else(|| earlier.by_digest.get(&digest))
            .map(|e| (PROFILE_IDENTICAL, Some(e), Some(digest.clone())))
    } else {
        None
    };
    let offset = open.len;
    let base = |kind: &str| {
        Fields::new(kind, &id, &date)
            .add("WARC-Target-URI", target_uri.clone())
            .maybe("WARC-IP-Address", ip.clone())
    };
    let (kind, payload_digest, n) = match revisit {
        Some((profile, refers, digest)) => {
            let mut block_digest = algo.hasher();
            block_digest.update(&response.head);
            let fields = base("revisit")
                .add("WARC-Profile", profile)
                .maybe(
                    "WARC-Refers-To-Target-URI",
                    refers.map(|e| e.target_uri.clone()),
                )
                .maybe("WARC-Refers-To-Date", refers.map(|e| e.date.clone()))
                .maybe("WARC-Refers-To", refers.map(|e| e.record_id.clone()))
                .add("Content-Type", HTTP_RESPONSE)
                .add("WARC-Block-Digest", block_digest.labelled())
                .maybe("WARC-Payload-Digest", digest.clone())
                .add("Content-Length", response.head.len().to_string());
            let head = &response.head;
            let n = record::write_member(&mut open.out, &fields, head.len() as u64, |w| {
                w.write_all(head)
            })
            .map_err(io)?;
            (RecordKind::Revisit, digest, n)
        }
        None => {
            let len = response.head.len() as u64 + payload.len();
            let fields = base("response")
                .add("Content-Type", HTTP_RESPONSE)
                .add("WARC-Block-Digest", payload.block_digest())
                .add("WARC-Payload-Digest", digest.clone())
                .maybe("WARC-Truncated", payload.truncated.map(|t| t.as_str()))
                .add("Content-Length", len.to_string());
            let head = &response.head;
            let n = record::write_member(&mut open.out, &fields, len, |w| {
                w.write_all(head)?;
                payload.write_to(w)
            })
            .map_err(io)?;
            if whole && !payload.is_empty() {
                seen.entry(digest.clone()).or_insert_with(|| Earlier {
                    target_uri: target_uri.clone(),
                    date: date.clone(),
                    record_id: id.clone(),
                    payload_digest: Some(digest.clone()),
                });
            }
            (RecordKind::Response, Some(digest), n)
        }
    };
    open.len += n;
    let mut request_digest = algo.hasher();
    request_digest.update(&request);
    let fields = Fields::new("request", &record::record_id(), &date)
        .add("WARC-Target-URI", target_uri.clone())
        .maybe("WARC-IP-Address", ip)
        .add("WARC-Concurrent-To", id.clone())
        .add("Content-Type", HTTP_REQUEST)
        .add("WARC-Block-Digest", request_digest.labelled())
        .add("Content-Length", request.len().to_string());
    let n = record::write_member(&mut open.out, &fields, request.len() as u64, |w| {
        w.write_all(&request)
    })
    .map_err(io)?;
    open.len += n;
    Ok(Some(IndexedRecord {
        kind,
        offset,
        length: n_of(offset, open.len, n),
        urlkey: cdxj::urlkey(&target_uri),
        target_uri,
        date,
        status: response.status,
        mime: response.mime,
        payload_digest,
        record_id: id,
        complete: whole,
    }))
}

/// The response or revisit member's length: everything from `offset` to
/// the end, less the request member after it.
fn n_of(offset: u64, end: u64, request: u64) -> u64 {
    end - offset - request
}
