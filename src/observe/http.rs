//! A small synchronous HTTP server on a thread of its own (tiny_http), for
//! the endpoints of a worker or an ingest (`/metrics`, `/healthz`,
//! `/readyz`) and for the dashboard; and a minimal HTTP/1.0 GET client for
//! `timebucket health` and the tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{info, warn};

use crate::error::Error;

/// What a handler sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The path, without the query string.
    pub path: &'a str,
    /// The `Accept` header, if any.
    pub accept: Option<&'a str>,
}

/// What a handler answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    /// A plain-text answer (a line is added).
    pub fn text(status: u16, text: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{text}\n"))
    }

    pub fn not_found() -> Response {
        Response::text(404, "not found")
    }
}

/// A running server; stops (and joins its thread) when dropped.
pub struct Server {
    inner: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (`HOST:PORT`; port 0 picks a free one) and answers every
    /// GET with `handler` on a thread named `name`. A bind error is a
    /// configuration error (exit 2).
    pub fn start(
        addr: &str,
        name: &str,
        handler: impl Fn(&Request<'_>) -> Response + Send + 'static,
    ) -> Result<Server, Error> {
        let inner = tiny_http::Server::http(addr)
            .map(Arc::new)
            .map_err(|e| Error::Config(format!("cannot listen on {addr} for {name}: {e}")))?;
        let addr = inner
            .server_addr()
            .to_ip()
            .ok_or_else(|| Error::Config(format!("{addr} is not an IP address")))?;
        let server = inner.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || serve(&server, &handler))
            .map_err(|e| Error::Config(format!("cannot start the {name} thread: {e}")))?;
        info!(%addr, "{name} listening");
        Ok(Server {
            inner,
            addr,
            thread: Some(thread),
        })
    }

    /// The address actually bound (with the port the system chose for 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.inner.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &tiny_http::Server, handler: &dyn Fn(&Request<'_>) -> Response) {
    for request in server.incoming_requests() {
        let url = request.url().to_string();
        let path = url.split('?').next().unwrap_or("/");
        let accept = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Accept"))
            .map(|h| h.value.as_str().to_string());
        let response = if matches!(request.method(), tiny_http::Method::Get) {
            handler(&Request {
                path,
                accept: accept.as_deref(),
            })
        } else {
            Response::text(405, "only GET")
        };
        let header = tiny_http::Header::from_bytes("Content-Type", response.content_type)
            .expect("a valid header");
        let reply = tiny_http::Response::from_data(response.body)
            .with_status_code(response.status)
            .with_header(header);
        if let Err(e) = request.respond(reply) {
            warn!(error = %e, path, "cannot answer an HTTP request");
        }
    }
}

/// `GET url` (`http://HOST:PORT/PATH` only) with HTTP/1.0: the status and
/// the body. For `timebucket health` and tests; no redirects, no TLS.
pub fn get(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{url}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{url}: {e}"))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")
        .map_err(|e| format!("{url}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("{url}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_get_and_stops_when_dropped() {
        let server = Server::start("127.0.0.1:0", "test-http", |r| match r.path {
            "/hello" => Response::text(200, &format!("accept={:?}", r.accept)),
            _ => Response::not_found(),
        })
        .unwrap();
        let base = format!("http://{}", server.addr());
        let t = Duration::from_secs(5);
        assert_eq!(
            get(&format!("{base}/hello?x=1"), t).unwrap(),
            (200, "accept=None\n".to_string())
        );
        assert_eq!(get(&format!("{base}/nope"), t).unwrap().0, 404);
        drop(server);
        assert!(get(&format!("{base}/hello"), t).is_err());
        assert!(get("https://x/", t).is_err());
    }
}
