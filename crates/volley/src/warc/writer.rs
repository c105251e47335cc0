//! Appending a job's records to its files, and cutting files back to what
//! the database committed (see the crash-safety note in [`crate::warc`]).
//!
//! The fetch stage hands each capture to [`Encoders`], one thread per core,
//! which compress its records ([`encode`]). A [`WarcWriter`] is blocking
//! code: the pipeline's writer stage runs it on tokio's blocking pool, one
//! batch at a time, before the batch's outcomes commit; it decides which
//! responses are revisits and appends. It holds at most one file open,
//! locked, and appends to it until the file reaches `--warc-max-size`; the
//! writer stage then asks the database for the next file's serial and
//! hands the name in ([`WarcWriter::begin_file`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::SystemTime;

use super::capture::{Capture, Exchange, lock};
use super::record::{
    self, Deflater, Fields, HTTP_REQUEST, HTTP_RESPONSE, PROFILE_IDENTICAL, PROFILE_NOT_MODIFIED,
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
    /// The deflate state of the records compressed as they are appended.
    deflater: Deflater,
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
            deflater: Deflater::new(),
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
    fn appending(&mut self, mut open: Open) -> Result<Open, WarcError> {
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
            let n = write_info(&self.info, &mut self.deflater, &mut open.out).map_err(io)?;
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

    /// Writes the records of `slots` in order, from the first, until all
    /// are written or the file is full; each written slot becomes
    /// [`Slot::Placed`] (or [`Slot::Empty`] when it had no response to
    /// archive). Returns how many were written; the writer stage begins a
    /// new file ([`WarcWriter::needs_file`]) and calls again with the rest.
    /// The file is flushed to the operating system before returning, so
    /// the records are in it before their outcomes commit.
    ///
    /// The records come compressed from the fetch stage ([`encode`]); here,
    /// in order, each exchange is decided: a payload archived before (in
    /// `earlier`, or earlier in this batch) and a `304` to a conditional
    /// request become revisit records, compressed now (they are small), and
    /// the response compressed ahead is dropped.
    ///
    /// # Errors
    /// [`WarcError::Io`] when writing fails (a full disk): the run must
    /// stop; the torn tail is cut by the next run.
    pub fn write(
        &mut self,
        slots: &mut [Slot],
        earlier: &EarlierCaptures,
    ) -> Result<usize, WarcError> {
        let mut done = 0;
        for slot in slots.iter_mut() {
            if self.needs_file() {
                break;
            }
            let Slot::Encoded(exchanges) = std::mem::replace(slot, Slot::Empty) else {
                done += 1;
                continue;
            };
            let Some(open) = self.current.as_mut() else {
                break;
            };
            let io = |source| WarcError::Io {
                path: open.path.clone(),
                source,
            };
            let mut placement: Option<WarcPlacement> = None;
            for mut encoded in exchanges {
                let start = open.len;
                let member = match encoded.plan.revisit(earlier, &mut self.seen) {
                    Some(revisit) => {
                        encoded.indexed.kind = RecordKind::Revisit;
                        encoded.indexed.payload_digest.clone_from(&revisit.digest);
                        encoded
                            .plan
                            .encode_revisit(&revisit, &mut open.out, &mut self.deflater)
                            .map_err(io)?
                    }
                    None => match encoded.main {
                        Member::Ready(bytes) => {
                            open.out.write_all(&bytes).map_err(io)?;
                            bytes.len() as u64
                        }
                        Member::Later => encoded
                            .plan
                            .encode_response(&mut open.out, &mut self.deflater)
                            .map_err(io)?,
                    },
                };
                open.out.write_all(&encoded.request).map_err(io)?;
                let mut indexed = encoded.indexed;
                indexed.offset = start;
                indexed.length = member;
                open.len += member + encoded.request.len() as u64;
                let p = placement.get_or_insert_with(|| WarcPlacement {
                    file_id: open.id,
                    file: open.path.clone(),
                    offset: start,
                    length: 0,
                    records: Vec::new(),
                });
                p.length = open.len - p.offset;
                p.records.push(indexed);
            }
            *slot = placement.map_or(Slot::Empty, Slot::Placed);
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
}

/// Writes the `warcinfo` record (WARC 1.1 §6.2) that begins each file.
fn write_info(info: &str, deflater: &mut Deflater, out: &mut impl Write) -> std::io::Result<u64> {
    let block = info.as_bytes();
    let fields = Fields::new(
        "warcinfo",
        &record::record_id(),
        &record::warc_date(SystemTime::now()),
    )
    .add("Content-Type", "application/warc-fields")
    .add("Content-Length", block.len().to_string());
    record::write_member(out, deflater, &fields, block.len() as u64, |w| {
        w.write_all(block)
    })
}

/// One capture's place in a batch, as the writer stage hands it over and
/// gets it back.
#[derive(Debug)]
pub enum Slot {
    /// Encoded by the fetch stage ([`encode`]), waiting to be appended.
    Encoded(Vec<Encoded>),
    /// Written: where.
    Placed(WarcPlacement),
    /// Nothing to archive (no response arrived).
    Empty,
}

/// Payloads at most this long are compressed by the fetch stage; longer
/// ones (and spilled ones) as they are appended, streaming from where
/// they wait.
const ENCODE_AHEAD_BYTES: u64 = 4 << 20;

/// Compresses the records of `capture`'s exchanges with `deflater`: the
/// request records, and each response record as if it were new (the
/// writer replaces it by a revisit if its payload turns out archived). A
/// payload compressed here is let go of at once; a long or spilled one
/// waits to be compressed as it is appended.
///
/// # Errors
/// Reading a spilled payload back.
pub fn encode(
    capture: Capture,
    algo: super::DigestAlgorithm,
    deflater: &mut Deflater,
) -> std::io::Result<Vec<Encoded>> {
    capture
        .exchanges
        .into_iter()
        .filter_map(|e| Plan::new(algo, e))
        .map(|plan| plan.encode(deflater))
        .collect()
}

/// A job sent to an [`Encoders`] thread.
type EncodeJob = (
    Capture,
    tokio::sync::oneshot::Sender<std::io::Result<Vec<Encoded>>>,
);

/// The threads that compress a run's records, one per core, fed by the
/// fetch stage ([`Encoders::encode`]): every core compresses, the writer
/// stage only appends, and a run never has more compressing threads (nor
/// deflate states) than cores.
#[derive(Debug)]
pub struct Encoders {
    jobs: tokio::sync::mpsc::Sender<EncodeJob>,
}

impl Encoders {
    /// Starts one thread per core, compressing with `algo`'s digests. The
    /// threads end when the last clone of the sender (this value) is
    /// dropped.
    ///
    /// # Errors
    /// A thread could not be started.
    pub fn start(algo: super::DigestAlgorithm) -> std::io::Result<Encoders> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (jobs, rx) = tokio::sync::mpsc::channel::<EncodeJob>(threads * 4);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads {
            let rx = std::sync::Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("volley-warc-{i}"))
                .spawn(move || {
                    let mut deflater = Deflater::new();
                    loop {
                        let job = rx
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .blocking_recv();
                        let Some((capture, reply)) = job else { return };
                        let _ = reply.send(encode(capture, algo, &mut deflater));
                    }
                })?;
        }
        Ok(Encoders { jobs })
    }

    /// Compresses `capture`'s records on one of the threads ([`encode`]).
    /// Waits for room when every thread is busy (backpressure).
    ///
    /// # Errors
    /// [`encode`]'s; an error too if the threads are gone.
    pub async fn encode(&self, capture: Capture) -> std::io::Result<Vec<Encoded>> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.jobs
            .send((capture, reply))
            .await
            .map_err(|_| std::io::Error::other("the WARC encoders stopped"))?;
        done.await
            .map_err(|_| std::io::Error::other("a WARC encoder stopped"))?
    }
}

/// One exchange with a response: its records' fields and what goes in
/// them.
#[derive(Debug)]
struct Plan {
    algo: super::DigestAlgorithm,
    exchange: Exchange,
    id: String,
    date: String,
    ip: Option<String>,
    digest: String,
    whole: bool,
    empty: bool,
}

/// What a revisit record points at.
#[derive(Debug)]
struct Revisit {
    profile: &'static str,
    refers: Option<Earlier>,
    digest: Option<String>,
}

/// One exchange's records, compressed by the fetch stage (a long payload's
/// response record excepted).
#[derive(Debug)]
pub struct Encoded {
    main: Member,
    request: Vec<u8>,
    indexed: IndexedRecord,
    plan: Plan,
}

impl Encoded {
    /// What the writer stage asks the database about this exchange before
    /// archiving it: the URI of a `304` to a conditional request (its
    /// revisit points at the capture it confirms), or the digest of a
    /// whole, non-empty payload (archived before, it is a revisit).
    pub fn lookup(&self) -> Lookup<'_> {
        let plan = &self.plan;
        if plan.not_modified() {
            Lookup::Uri(&plan.exchange.target_uri)
        } else if plan.whole && !plan.empty {
            Lookup::Digest(&plan.digest)
        } else {
            Lookup::Nothing
        }
    }
}

/// See [`Encoded::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// A payload digest.
    Digest(&'a str),
    /// A target URI.
    Uri(&'a str),
    /// Nothing to ask.
    Nothing,
}

#[derive(Debug)]
enum Member {
    /// Compressed ahead.
    Ready(Vec<u8>),
    /// Compressed when appended (a long or spilled payload, or a `304`
    /// that will be a revisit).
    Later,
}

impl Plan {
    /// The plan of `exchange`; `None` when no response arrived.
    fn new(algo: super::DigestAlgorithm, exchange: Exchange) -> Option<Plan> {
        let response = exchange.response.as_ref()?;
        let (digest, whole, empty) = {
            let payload = lock(&response.payload);
            (
                payload.payload_digest(),
                payload.complete && payload.truncated.is_none(),
                payload.is_empty(),
            )
        };
        Some(Plan {
            algo,
            id: record::record_id(),
            date: record::warc_date(exchange.date),
            ip: exchange.ip.map(|ip| ip.to_string()),
            exchange,
            digest,
            whole,
            empty,
        })
    }

    fn not_modified(&self) -> bool {
        self.exchange.revalidated
            && self
                .exchange
                .response
                .as_ref()
                .is_some_and(|r| r.status == 304)
    }

    /// Whether this exchange is a revisit, and of what: a `304` to a
    /// conditional request (of the capture its URI last had, in
    /// `earlier`), or a whole payload archived before (in `seen`, this
    /// batch's, or `earlier`); a new payload is added to `seen`.
    fn revisit(
        &self,
        earlier: &EarlierCaptures,
        seen: &mut HashMap<String, Earlier>,
    ) -> Option<Revisit> {
        if self.not_modified() {
            let refers = earlier.by_uri.get(&self.exchange.target_uri).cloned();
            let digest = refers.as_ref().and_then(|e| e.payload_digest.clone());
            return Some(Revisit {
                profile: PROFILE_NOT_MODIFIED,
                refers,
                digest,
            });
        }
        if !self.whole || self.empty {
            return None;
        }
        if let Some(e) = seen
            .get(&self.digest)
            .or_else(|| earlier.by_digest.get(&self.digest))
        {
            return Some(Revisit {
                profile: PROFILE_IDENTICAL,
                refers: Some(e.clone()),
                digest: Some(self.digest.clone()),
            });
        }
        seen.insert(
            self.digest.clone(),
            Earlier {
                target_uri: self.exchange.target_uri.clone(),
                date: self.date.clone(),
                record_id: self.id.clone(),
                payload_digest: Some(self.digest.clone()),
            },
        );
        None
    }

    /// Compresses the request record, and the response record unless its
    /// payload is long or spilled ([`ENCODE_AHEAD_BYTES`]) or the response
    /// is a `304` to a conditional request (a revisit).
    fn encode(self, deflater: &mut Deflater) -> std::io::Result<Encoded> {
        let response = self.exchange.response.as_ref();
        let (status, mime) = response.map_or((0, None), |r| (r.status, r.mime.clone()));
        let ahead = !self.not_modified()
            && response.is_some_and(|r| {
                let payload = lock(&r.payload);
                payload.len() <= ENCODE_AHEAD_BYTES && !payload.spilled()
            });
        let indexed = IndexedRecord {
            kind: RecordKind::Response,
            offset: 0,
            length: 0,
            urlkey: cdxj::urlkey(&self.exchange.target_uri),
            target_uri: self.exchange.target_uri.clone(),
            date: self.date.clone(),
            status,
            mime,
            payload_digest: Some(self.digest.clone()),
            record_id: self.id.clone(),
            complete: self.whole,
        };
        let request = self.encode_request(deflater)?;
        let main = if ahead {
            let mut bytes = Vec::new();
            self.encode_response(&mut bytes, deflater)?;
            if let Some(response) = &self.exchange.response {
                lock(&response.payload).release();
            }
            Member::Ready(bytes)
        } else {
            Member::Later
        };
        Ok(Encoded {
            main,
            request,
            indexed,
            plan: self,
        })
    }

    fn base(&self, kind: &str) -> Fields {
        Fields::new(kind, &self.id, &self.date)
            .add("WARC-Target-URI", self.exchange.target_uri.clone())
            .maybe("WARC-IP-Address", self.ip.clone())
    }

    /// Writes the response record to `out`; returns its member's length.
    fn encode_response(
        &self,
        out: &mut impl Write,
        deflater: &mut Deflater,
    ) -> std::io::Result<u64> {
        let Some(response) = &self.exchange.response else {
            return Ok(0);
        };
        let head = &response.head;
        let mut payload = lock(&response.payload);
        let len = head.len() as u64 + payload.len();
        let fields = self
            .base("response")
            .add("Content-Type", HTTP_RESPONSE)
            .add("WARC-Block-Digest", payload.block_digest())
            .add("WARC-Payload-Digest", self.digest.clone())
            .maybe("WARC-Truncated", payload.truncated.map(|t| t.as_str()))
            .add("Content-Length", len.to_string());
        record::write_member(out, deflater, &fields, len, |w| {
            w.write_all(head)?;
            payload.write_to(w)
        })
    }

    /// Writes the revisit record (WARC 1.1 §6.7: the response's head as
    /// its block) to `out`; returns its member's length.
    fn encode_revisit(
        &self,
        revisit: &Revisit,
        out: &mut impl Write,
        deflater: &mut Deflater,
    ) -> std::io::Result<u64> {
        let Some(response) = &self.exchange.response else {
            return Ok(0);
        };
        let head = &response.head;
        let mut block_digest = self.algo.hasher();
        block_digest.update(head);
        let refers = revisit.refers.as_ref();
        let fields = self
            .base("revisit")
            .add("WARC-Profile", revisit.profile)
            .maybe(
                "WARC-Refers-To-Target-URI",
                refers.map(|e| e.target_uri.clone()),
            )
            .maybe("WARC-Refers-To-Date", refers.map(|e| e.date.clone()))
            .maybe("WARC-Refers-To", refers.map(|e| e.record_id.clone()))
            .add("Content-Type", HTTP_RESPONSE)
            .add("WARC-Block-Digest", block_digest.labelled())
            .maybe("WARC-Payload-Digest", revisit.digest.clone())
            .add("Content-Length", head.len().to_string());
        record::write_member(out, deflater, &fields, head.len() as u64, |w| {
            w.write_all(head)
        })
    }

    /// The request record, compressed, pointing at the response
    /// (`WARC-Concurrent-To`).
    fn encode_request(&self, deflater: &mut Deflater) -> std::io::Result<Vec<u8>> {
        let request = &self.exchange.request;
        let mut digest = self.algo.hasher();
        digest.update(request);
        let fields = Fields::new("request", &record::record_id(), &self.date)
            .add("WARC-Target-URI", self.exchange.target_uri.clone())
            .maybe("WARC-IP-Address", self.ip.clone())
            .add("WARC-Concurrent-To", self.id.clone())
            .add("Content-Type", HTTP_REQUEST)
            .add("WARC-Block-Digest", digest.labelled())
            .add("Content-Length", request.len().to_string());
        let mut out = Vec::new();
        record::write_member(&mut out, deflater, &fields, request.len() as u64, |w| {
            w.write_all(request)
        })?;
        Ok(out)
    }
}
