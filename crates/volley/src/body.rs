//! Bodies: counted, hashed and optionally saved as they stream, never held
//! whole in memory.
//!
//! A [`BodySink`] takes a response body chunk by chunk.
//!
//! * [`BodySink::hashing`] hashes each chunk as it arrives and drops it.
//!   Chunks are small (a few KiB to 64 KiB) so each hash step is a few
//!   microseconds; handing every chunk of every small body to another thread
//!   would cost more than the hashing.
//! * [`BodySink::saving`] moves hashing *and* disk writes to a blocking
//!   thread fed through a bounded channel of [`CHANNEL_CHUNKS`] chunks, so a
//!   slow disk slows the download (backpressure) instead of growing memory.
//!   The body is written to `DIR/.partial/NAME` and, once complete, renamed
//!   to `DIR/<first two hex digits>/<sha256>`: identical bodies share one
//!   file, and a file at a final path is always whole. An abandoned sink
//!   (dropped without [`BodySink::finish`]) deletes its partial file.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use reqwest::header::HeaderValue;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Chunks buffered between a download and its disk writer.
pub const CHANNEL_CHUNKS: usize = 8;

/// Size of the disk writer's buffer, in bytes.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// What a finished body was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// Lower-case hex SHA-256 of the decoded body.
    pub sha256: String,
    /// Where it was saved, if saving.
    pub path: Option<PathBuf>,
}

enum Msg {
    Chunk(bytes::Bytes),
    Finish,
}

/// Receives one body; see the module docs.
pub struct BodySink(Sink);

enum Sink {
    /// Hash in place and drop.
    Hash(Sha256),
    /// Hash and write on a blocking thread.
    Save {
        tx: mpsc::Sender<Msg>,
        writer: JoinHandle<io::Result<Body>>,
    },
}

impl BodySink {
    /// A sink that only hashes.
    pub fn hashing() -> BodySink {
        BodySink(Sink::Hash(Sha256::new()))
    }

    /// A sink that saves into `dir` (which must contain a `.partial`
    /// directory, see [`prepare_dir`]) under the temporary name `name`.
    pub fn saving(dir: &Path, name: &str) -> BodySink {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let dir = dir.to_owned();
        let partial = dir.join(".partial").join(name);
        let writer = tokio::task::spawn_blocking(move || write_body(rx, &dir, &partial));
        BodySink(Sink::Save { tx, writer })
    }

    /// Takes the next chunk.
    ///
    /// # Errors
    /// The disk writer's I/O error, if it failed.
    ///
    /// Cancellation: dropping the future may lose this chunk; the sink must
    /// then be dropped, not finished.
    pub async fn write(&mut self, chunk: bytes::Bytes) -> io::Result<()> {
        match &mut self.0 {
            Sink::Hash(h) => {
                h.update(&chunk);
                Ok(())
            }
            Sink::Save { tx, writer } => {
                if tx.send(Msg::Chunk(chunk)).await.is_err() {
                    // The writer stopped early: it failed. Report its error.
                    return Err(join_writer(writer).await.err().unwrap_or_else(|| {
                        io::Error::other("body writer stopped before the body ended")
                    }));
                }
                Ok(())
            }
        }
    }

    /// Ends the body and returns its hash (and path when saving).
    ///
    /// # Errors
    /// The disk writer's I/O error.
    pub async fn finish(self) -> io::Result<Body> {
        match self.0 {
            Sink::Hash(h) => Ok(Body {
                sha256: hex::encode(h.finalize()),
                path: None,
            }),
            Sink::Save { tx, mut writer } => {
                // If the writer already failed, the send fails and its error
                // surfaces from the join below.
                let _ = tx.send(Msg::Finish).await;
                drop(tx);
                join_writer(&mut writer).await
            }
        }
    }
}

async fn join_writer(writer: &mut JoinHandle<io::Result<Body>>) -> io::Result<Body> {
    writer
        .await
        .map_err(|e| io::Error::other(format!("body writer failed: {e}")))?
}

/// Creates `dir` and `dir/.partial`.
///
/// # Errors
/// I/O errors from creating them.
pub fn prepare_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir.join(".partial"))
}

/// The blocking writer: hashes and writes chunks until `Finish`, then moves
/// the file into place. Deletes the partial file if the channel closes
/// without `Finish` or anything fails.
fn write_body(mut rx: mpsc::Receiver<Msg>, dir: &Path, partial: &Path) -> io::Result<Body> {
    let result = (|| {
        let mut file =
            io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, std::fs::File::create(partial)?);
        let mut hasher = Sha256::new();
        loop {
            match rx.blocking_recv() {
                Some(Msg::Chunk(chunk)) => {
                    hasher.update(&chunk);
                    file.write_all(&chunk)?;
                }
                Some(Msg::Finish) => break,
                None => return Err(io::Error::other("body abandoned")),
            }
        }
        file.into_inner().map_err(io::IntoInnerError::into_error)?;
        let sha256 = hex::encode(hasher.finalize());
        let shard = dir.join(&sha256[..2]);
        std::fs::create_dir_all(&shard)?;
        let path = shard.join(&sha256);
        std::fs::rename(partial, &path)?;
        Ok(Body {
            sha256,
            path: Some(path),
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(partial);
    }
    result
}

/// A header value as text: UTF-8 when it is, else lossily decoded.
pub fn header_text(value: &HeaderValue) -> String {
    match value.to_str() {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[tokio::test]
    async fn hashing_sink_hashes_across_chunks() -> io::Result<()> {
        let mut sink = BodySink::hashing();
        sink.write(bytes::Bytes::from_static(b"he")).await?;
        sink.write(bytes::Bytes::from_static(b"llo")).await?;
        let body = sink.finish().await?;
        assert_eq!(body.sha256, HELLO_SHA256);
        assert_eq!(body.path, None);
        Ok(())
    }

    #[tokio::test]
    async fn saving_sink_names_the_file_by_hash_and_cleans_up_when_abandoned() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("volley-body-{}", std::process::id()));
        prepare_dir(&dir)?;
        let mut sink = BodySink::saving(&dir, "a");
        sink.write(bytes::Bytes::from_static(b"hel")).await?;
        sink.write(bytes::Bytes::from_static(b"lo")).await?;
        let body = sink.finish().await?;
        let path = body.path.expect("saved");
        assert_eq!(path, dir.join("2c").join(HELLO_SHA256));
        assert_eq!(std::fs::read(&path)?, b"hello");

        let mut sink = BodySink::saving(&dir, "b");
        sink.write(bytes::Bytes::from_static(b"partial")).await?;
        let Sink::Save { tx, writer } = sink.0 else {
            panic!("expected a saving sink");
        };
        drop(tx);
        assert!(writer.await.map_err(io::Error::other)?.is_err());
        assert!(!dir.join(".partial").join("b").exists());
        std::fs::remove_dir_all(&dir)
    }
}
