//! The HTTP server of a worker's or an ingest's endpoints (`/metrics`,
//! `/healthz`, `/readyz`) and of the dashboard, and ([`client`]) the GET
//! client of `timebucket health`, the soak and the tests.
//!
//! The server is hyper 1.x on a current-thread tokio runtime of its own
//! thread: the process's loop stays synchronous and never waits on it. It
//! is built to hold against hostile clients (issue 18), with the limits
//! below (documented in docs/http.md): GET and HEAD only (405), no request
//! body (413), bounded header bytes and count (431), a header read timeout
//! and a deadline on each connection (so a slow reader cannot hold it),
//! one request per connection, and a cap on open connections (a connection
//! over it is closed at once). Every refusal is counted in [`HttpCounters`]
//! (exposed on `/metrics`); the process goes on answering everyone else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{oneshot, Semaphore};
use tracing::{debug, info, warn};

use crate::error::Error;

mod client;
pub use client::{get, ExchangeError, GetError, MAX_BODY_BYTES};

/// Connections open at once; one more is closed at once and counted
/// (`http_connections_refused_total`). Far above what scrapers, probes and
/// a few browsers need; each costs a few KiB.
pub const MAX_CONNECTIONS: usize = 512;
/// Bytes of a request's start line and headers; beyond: 431 and close.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Header lines of a request; beyond: 431 and close.
pub const MAX_HEADERS: usize = 64;
/// Time a client has to send its whole request head, from the moment it
/// connected; then the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may live: its request read, answered and the answer
/// written (the write timeout: a client that does not read is dropped).
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

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

/// Why a request or connection was refused: a fixed set, so the label
/// cannot grow with what clients send.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabel {
    reason: &'static str,
}

/// Refusals of the server, by reason, and its open connections. Clones
/// share their counts.
#[derive(Clone, Debug, Default)]
pub struct HttpCounters {
    /// Connections closed at once: [`MAX_CONNECTIONS`] were open.
    pub refused: Counter,
    rejected: Family<RejectLabel, Counter>,
    /// Connections open now.
    pub open: Gauge,
}

impl HttpCounters {
    /// Reasons a request is refused (`http_requests_rejected_total`).
    pub const REASONS: [&'static str; 5] = ["method", "body", "header", "timeout", "malformed"];

    /// Counters registered in `registry` (every reason's series at zero).
    pub fn register(registry: &mut Registry) -> HttpCounters {
        let c = HttpCounters::default();
        registry.register(
            "http_connections_refused",
            "HTTP connections closed at once because the server's connection cap was reached",
            c.refused.clone(),
        );
        registry.register(
            "http_requests_rejected",
            "HTTP requests refused: a method other than GET/HEAD, a body, headers over the \
             limits, a timeout, or not HTTP",
            c.rejected.clone(),
        );
        registry.register(
            "http_connections_open",
            "HTTP connections open now",
            c.open.clone(),
        );
        for reason in Self::REASONS {
            c.rejected(reason);
        }
        c
    }

    /// The refusal counter of `reason` (one of [`Self::REASONS`]).
    pub fn rejected(&self, reason: &'static str) -> Counter {
        debug_assert!(Self::REASONS.contains(&reason));
        self.rejected
            .get_or_create_owned(&RejectLabel { reason })
            .clone()
    }
}

type Handler = dyn Fn(&Request<'_>) -> Response + Send + Sync;

/// A running server; stops (and joins its thread) when dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (`HOST:PORT`; port 0 picks a free one) and answers every
    /// GET and HEAD with `handler` on a thread named `name`, counting
    /// refusals in `counters`. A bind error is a configuration error (exit 2).
    pub fn start(
        addr: &str,
        name: &str,
        counters: HttpCounters,
        handler: impl Fn(&Request<'_>) -> Response + Send + Sync + 'static,
    ) -> Result<Server, Error> {
        let cannot = |what: &str, source: std::io::Error| Error::System {
            what: format!("{what} on {addr} for {name}"),
            source,
        };
        let listener = std::net::TcpListener::bind(addr).map_err(|e| cannot("listen", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| cannot("listen", e))?;
        let bound = listener.local_addr().map_err(|e| cannot("listen", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| cannot("start a runtime", e))?;
        let (stop, stopped) = oneshot::channel();
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => accept(l, handler, counters, stopped).await,
                        Err(e) => warn!(error = %e, "the HTTP server cannot listen"),
                    }
                });
                // Dropping the runtime ends every connection still open.
            })
            .map_err(|e| cannot("start a thread", e))?;
        info!(addr = %bound, "{name} listening");
        Ok(Server {
            addr: bound,
            stop: Some(stop),
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections until `stopped`, each on a task of its own while
/// fewer than [`MAX_CONNECTIONS`] are open.
async fn accept(
    listener: tokio::net::TcpListener,
    handler: Arc<Handler>,
    counters: HttpCounters,
    mut stopped: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some
                    // to be freed rather than spin.
                    warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            counters.refused.inc();
            drop(stream);
            continue;
        };
        let (handler, counters) = (handler.clone(), counters.clone());
        tokio::spawn(async move {
            counters.open.inc();
            connection(stream, handler, &counters).await;
            counters.open.dec();
            drop(permit);
        });
    }
}

/// Serves one request on `stream`, within [`CONNECTION_DEADLINE`].
async fn connection(stream: tokio::net::TcpStream, handler: Arc<Handler>, counters: &HttpCounters) {
    let _ = stream.set_nodelay(true);
    let service_counters = counters.clone();
    let service = hyper::service::service_fn(move |request| {
        let answer = respond(&request, &*handler, &service_counters);
        std::future::ready(Ok::<_, Infallible>(answer))
    });
    let serving = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .max_headers(MAX_HEADERS)
        .keep_alive(false)
        // A client that sends its request and then closes its side still
        // gets the answer.
        .half_close(true)
        .serve_connection(TokioIo::new(stream), service);
    let reason = match tokio::time::timeout(CONNECTION_DEADLINE, serving).await {
        Ok(Ok(())) => return,
        Err(_) => "timeout",
        Ok(Err(e)) if e.is_timeout() => "timeout",
        Ok(Err(e)) if e.is_parse_too_large() => "header",
        Ok(Err(e)) if e.is_parse() => "malformed",
        Ok(Err(e)) => {
            // The client went away (reset, incomplete request): not a
            // refusal of ours.
            debug!(error = %e, "HTTP connection ended");
            return;
        }
    };
    counters.rejected(reason).inc();
}

/// The answer to one request: the handler's for a GET or HEAD without a
/// body (hyper leaves out the body of a HEAD's answer), else a refusal.
fn respond(
    request: &hyper::Request<Incoming>,
    handler: &Handler,
    counters: &HttpCounters,
) -> hyper::Response<Full<Bytes>> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        counters.rejected("method").inc();
        let mut refusal = reply(Response::text(405, "only GET and HEAD"));
        refusal
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return refusal;
    }
    let headers = request.headers();
    let body = headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0");
    if body {
        // Never read: the connection closes after this answer.
        counters.rejected("body").inc();
        return reply(Response::text(413, "request bodies are refused"));
    }
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    reply(handler(&Request {
        path: request.uri().path(),
        accept,
    }))
}

fn reply(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut reply = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *reply.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(response.content_type),
    );
    reply
}

#[cfg(test)]
mod tests;
