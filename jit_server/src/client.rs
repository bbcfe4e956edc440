//! A small blocking HTTPS client that trusts exactly one pinned certificate (by the SHA-256 of
//! its DER), for tests and for command-line clients. HTTP/1.1, one request per connection,
//! `Content-Length` responses only, capped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// Largest response read.
pub const MAX_RESPONSE: usize = 8 << 20;

pub use jit_proto::tls_pin::{pinned_config, PinnedVerifier};
use rustls::pki_types::ServerName;

/// A response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One request to `addr` (`IP:PORT`).
pub fn request(
    cfg: &Arc<rustls::ClientConfig>,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<Reply, String> {
    let server_name = ServerName::try_from("jit-server").map_err(|e| e.to_string())?;
    let conn =
        rustls::ClientConnection::new(cfg.clone(), server_name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: jit-server\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // A server may answer (413) and close before the whole body is sent: keep the write error
    // and still read what it said.
    let written = tls
        .write_all(head.as_bytes())
        .and_then(|_| tls.write_all(body))
        .and_then(|_| tls.flush());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_RESPONSE {
                    return Err("response too large".into());
                }
            }
            // The server closing without close_notify after a complete response is tolerated
            // below by the Content-Length check.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                if buf.is_empty() {
                    return Err(written
                        .err()
                        .map(|w| w.to_string())
                        .unwrap_or(e.to_string()));
                }
                break;
            }
        }
    }
    match (parse_response(&buf), written) {
        (Ok(r), _) => Ok(r),
        (Err(_), Err(w)) => Err(w.to_string()),
        (Err(e), Ok(())) => Err(e),
    }
}

fn parse_response(buf: &[u8]) -> Result<Reply, String> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no response header")?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response header not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let mut len = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                len = v.trim().parse::<usize>().ok();
            } else if k == "transfer-encoding" {
                return Err("chunked responses are not supported".into());
            }
        }
    }
    let body = &buf[end + 4..];
    let len = len.ok_or("response without Content-Length")?;
    if body.len() != len {
        return Err(format!(
            "response truncated ({} of {len} bytes)",
            body.len()
        ));
    }
    Ok(Reply {
        status,
        body: body.to_vec(),
    })
}
