//! The HTTP GET client of `timebucket health`, the soak's metric samples
//! and the tests: hyper's HTTP/1 client (the crate the server already
//! uses), on a current-thread tokio runtime made for the call, so callers
//! stay synchronous. It replaces a hand-written HTTP/1.0 request and
//! response split, which read whatever a server sent without bound, did not
//! understand chunked bodies, and took any first line for a status line.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::HOST;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;

/// Largest response body read: far above a worker's `/metrics` (tens of
/// KiB); a larger answer is an error, not a bigger buffer.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Why a GET got no answer: the URL, and what went wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("{url}: {source}")]
    BadUrl {
        url: String,
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    #[error("{url}: only http:// URLs")]
    NotHttp { url: String },
    #[error("{url}: no host")]
    NoHost { url: String },
    #[error("{url}: cannot start the client's runtime: {source}")]
    Runtime {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: {source}")]
    Exchange {
        url: String,
        #[source]
        source: ExchangeError,
    },
}

/// A step of the exchange itself that failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Connect(std::io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error(transparent)]
    Request(#[from] hyper::http::Error),
    /// The body failed, or outgrew [`MAX_BODY_BYTES`].
    #[error(transparent)]
    Body(Box<dyn std::error::Error + Send + Sync>),
}

/// `GET url` (`http://HOST:PORT/PATH` only): the status and the body (UTF-8,
/// lossy). The whole exchange, connect included, must end within `timeout`.
/// No redirects, no TLS.
pub fn get(url: &str, timeout: Duration) -> Result<(u16, String), GetError> {
    let url_of = || url.to_string();
    let uri: Uri = url.parse().map_err(|source| GetError::BadUrl {
        url: url_of(),
        source,
    })?;
    if uri.scheme_str() != Some("http") {
        return Err(GetError::NotHttp { url: url_of() });
    }
    let authority = uri
        .authority()
        .ok_or_else(|| GetError::NoHost { url: url_of() })?
        .clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| GetError::Runtime {
            url: url_of(),
            source,
        })?;
    let exchange = async {
        let address = (authority.host(), authority.port_u16().unwrap_or(80));
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(ExchangeError::Connect)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Drives the connection; it ends with the exchange.
        tokio::spawn(connection);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = Request::get(path)
            .header(HOST, authority.as_str())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(ExchangeError::Body)?
            .to_bytes();
        Ok::<_, ExchangeError>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    runtime
        .block_on(async { tokio::time::timeout(timeout, exchange).await })
        .map_err(|_| GetError::Timeout {
            url: url_of(),
            timeout,
        })?
        .map_err(|source| GetError::Exchange {
            url: url_of(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A server that answers one connection with `answer`, then holds it
    /// open for `hold`.
    fn serve_once(answer: &'static [u8], hold: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0; 1024];
            let _ = s.read(&mut buf);
            s.write_all(answer).unwrap();
            std::thread::sleep(hold);
        });
        format!("http://{addr}/metrics")
    }

    #[test]
    fn reads_a_chunked_body_and_the_status() {
        let url = serve_once(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nnot\r\n6\r\n ready\r\n0\r\n\r\n",
            Duration::ZERO,
        );
        assert_eq!(
            get(&url, Duration::from_secs(5)).unwrap(),
            (503, "not ready".to_string())
        );
    }

    #[test]
    fn an_answer_that_never_ends_is_an_error_at_the_timeout() {
        let url = serve_once(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
            Duration::from_secs(5),
        );
        let err = get(&url, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, GetError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("no answer within"), "{err}");
    }

    #[test]
    fn refuses_what_is_not_plain_http() {
        for url in ["https://127.0.0.1:1/", "127.0.0.1:1/metrics", "http://"] {
            assert!(get(url, Duration::from_secs(1)).is_err(), "{url}");
        }
    }
}
