//! A TCP proxy that adds latency: each chunk read from one side is written
//! to the other `--delay` later, in order, in each direction, so a round
//! trip through it takes at least twice the delay. This machine's kernel has
//! no `netem` (`CONFIG_NET_SCH_NETEM` is not set), so latency on loopback is
//! made here, in user space. tokio's timer has millisecond resolution: a
//! delay is rounded up to the next millisecond tick, so `2.5ms` each way
//! adds 5 to 7 ms to a round trip.
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

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

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
        while let Some((due, chunk)) = rx.recv().await {
            // A due time already passed (and `--delay 0ms`) needs no timer:
            // tokio's would still wait for its next millisecond tick.
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
