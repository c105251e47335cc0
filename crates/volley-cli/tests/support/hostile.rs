//! A raw TCP server on loopback that misbehaves in ways a well-behaved HTTP
//! library will not: it reads one request head, then answers by the path's
//! first segment (`/reset` and `/reset/any/thing` behave alike).
//!
//! - `/reset` — headers promising 100,000 bytes, 1,000 bytes, then a TCP RST.
//! - `/short` — `Content-Length: 1000`, 10 bytes, then a clean close.
//! - `/malformed` — a header line without a colon.
//! - `/huge-headers` — a 1 MiB header field.
//! - `/bad-status` — a status line that is not HTTP.
//! - `/silent` — reads the request and never answers.
//! - `/drip` — headers, then one byte every 200 ms.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A running hostile server.
pub struct Hostile {
    pub addr: SocketAddr,
}

impl Hostile {
    /// Starts it on 127.0.0.1 with a free port, on the current runtime.
    pub async fn start() -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the hostile server");
        let addr = listener.local_addr().expect("hostile server address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        });
        Hostile { addr }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Reads up to the end of the request head; returns the request path.
async fn read_path(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1).map(str::to_owned)
}

async fn serve(mut stream: TcpStream) {
    let Some(path) = read_path(&mut stream).await else {
        return;
    };
    let first = path.split(['/', '?']).nth(1).unwrap_or_default();
    let _ = match format!("/{first}").as_str() {
        "/reset" => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                .await;
            let _ = stream.write_all(&[b'x'; 1000]).await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // SO_LINGER 0: closing sends RST instead of FIN.
            let _ = stream.set_zero_linger();
            drop(stream);
            Ok(())
        }
        "/short" => {
            let r = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n0123456789")
                .await;
            let _ = stream.shutdown().await;
            r
        }
        "/malformed" => {
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nThis line has no colon\r\nContent-Length: 2\r\n\r\nok",
                )
                .await
        }
        "/huge-headers" => {
            let mut response = b"HTTP/1.1 200 OK\r\nX-Huge: ".to_vec();
            response.extend(std::iter::repeat_n(b'a', 1 << 20));
            response.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
            stream.write_all(&response).await
        }
        "/bad-status" => stream.write_all(b"HTTP/1.1 two hundred OK\r\n\r\n").await,
        "/silent" => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            Ok(())
        }
        "/drip" => {
            let r = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                .await;
            for _ in 0..1000 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if stream.write_all(b"d").await.is_err() {
                    break;
                }
            }
            r
        }
        _ => {
            stream
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await
        }
    };
}
