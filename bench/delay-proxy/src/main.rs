//! A TCP proxy that adds latency: each chunk read from one side is written
//! to the other `--delay` later, in order, in each direction, so a round
//! trip through it takes at least twice the delay. This machine's kernel has
//! no `netem` (`CONFIG_NET_SCH_NETEM` is not set), so latency on loopback is
//! made here, in user space. Each direction waits on a timerfd of its own
//! (the kernel's high-resolution timer, woken through tokio's reactor), so
//! `2.5ms` each way adds 5 ms to a round trip, give or take the wake-up's
//! tens of microseconds. (tokio's own timer rounds every delay up to its
//! next millisecond tick: `2.5ms` each way added 6 to 8 ms.)
//!
//! ```text
//! delay-proxy --delay 20ms --upstream 127.0.0.1:8443 --listen 127.1.0.1:443 --hosts 2000
//! ```
//!
//! listens on 2,000 consecutive loopback addresses from `127.1.0.1`, all on
//! port 443, and forwards every connection to `127.0.0.1:8443`. It prints
//! `ready` on stdout once every address is bound, so a harness can wait for
//! that line instead of sleeping.
//!
//! The delay applies to data only: the kernel completes TCP handshakes with
//! the client at once, and the connection upstream is opened as soon as a
//! client is accepted. A TLS or HTTP handshake, being data, pays the delay
//! on every flight, as it would across a network.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Chunks in flight one way before reading waits for the writer (about
/// 4 MiB at most in flight per direction and connection).
const IN_FLIGHT: usize = 64;

/// Largest chunk read at once (bytes).
const CHUNK: usize = 64 * 1024;

#[derive(Parser)]
#[command(about = "Forwards TCP connections after a fixed delay each way")]
struct Args {
    /// Delay added to each direction, e.g. `20ms` (a round trip gains twice this).
    #[arg(long, value_parser = parse_delay)]
    delay: Duration,
    /// Where every connection is forwarded.
    #[arg(long)]
    upstream: SocketAddr,
    /// The first address to listen on (IPv4).
    #[arg(long)]
    listen: SocketAddrV4,
    /// How many consecutive addresses, from `--listen`'s, to listen on.
    #[arg(long, default_value_t = 1)]
    hosts: u32,
}

fn parse_delay(text: &str) -> Result<Duration, String> {
    let ms = text
        .strip_suffix("ms")
        .ok_or_else(|| format!("{text:?}: give milliseconds, as `20ms` or `2.5ms`"))?;
    let ms: f64 = ms.parse().map_err(|e| format!("{text:?}: {e}"))?;
    if !(0.0..=3_600_000.0).contains(&ms) {
        return Err(format!("{text:?}: give 0 to 3600000 milliseconds"));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let first = u32::from(*args.listen.ip());
    let mut listeners = Vec::with_capacity(args.hosts as usize);
    for i in 0..args.hosts {
        let ip = Ipv4Addr::from(
            first
                .checked_add(i)
                .context("--hosts runs past 255.255.255.255")?,
        );
        let at = SocketAddr::from((ip, args.listen.port()));
        listeners.push(
            TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot listen on {at}"))?,
        );
    }
    println!("ready");
    for listener in listeners {
        tokio::spawn(accept(listener, args.upstream, args.delay));
    }
    std::future::pending::<()>().await;
    Ok(())
}

async fn accept(listener: TcpListener, upstream: SocketAddr, delay: Duration) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                forward(client_read, server_write, delay),
                forward(server_read, client_write, delay)
            );
        });
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read; shuts `to`
/// down for writing once `from` ends.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let read = async move {
        let mut buffer = vec![0; CHUNK];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = buffer[..n].to_vec();
                    if tx.send((Instant::now() + delay, chunk)).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let write = async move {
        let Ok(timer) = Timer::new() else {
            return;
        };
        while let Some((due, chunk)) = rx.recv().await {
            if timer.sleep_until(due).await.is_err() || to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// A one-shot timer with the kernel's resolution: a `timerfd` (Linux),
/// whose expiry wakes its task through tokio's reactor.
struct Timer(AsyncFd<OwnedFd>);

impl Timer {
    fn new() -> io::Result<Timer> {
        // SAFETY: timerfd_create takes no pointers; a descriptor it returns
        // is new and ours alone.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a valid descriptor that nothing else owns; the
        // OwnedFd keeps it open, the same one, for as long as the AsyncFd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Timer(fd))
    }

    /// Returns at `due`, at once when it has passed (`--delay 0ms`).
    async fn sleep_until(&self, due: Instant) -> io::Result<()> {
        let left = due.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(left.subsec_nanos()),
            },
        };
        // SAFETY: the descriptor is open, `spec` outlives the call, and a
        // null old value is allowed.
        if unsafe { libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0
        {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut ready = self.0.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads at most 8 bytes into an 8-byte buffer.
            let read = ready.try_io(|fd| {
                let n = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            if let Ok(done) = read {
                return done;
            }
        }
    }
}
