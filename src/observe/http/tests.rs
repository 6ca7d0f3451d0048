//! The server's limits, each met by a raw request, and a property test that
//! throws random and hostile requests at it (fixed seed; more cases with
//! `TIMEBUCKET_FUZZ_HTTP_CASES`, see docs/http.md).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use super::*;

const T: Duration = Duration::from_secs(5);

fn start() -> (Server, HttpCounters) {
    let counters = HttpCounters::default();
    let server = Server::start("127.0.0.1:0", "test-http", counters.clone(), |r| {
        match r.path {
            "/hello" => Response::text(200, &format!("accept={:?}", r.accept)),
            "/healthz" => Response::text(200, "ok"),
            _ => Response::not_found(),
        }
    })
    .unwrap();
    (server, counters)
}

/// Sends `bytes`, half-closes, and reads what comes back until the server
/// closes (or `T` passes): the answer, lossily as text.
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect_timeout(&addr, T).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    // The server may answer and close before it read everything: a
    // failed write is an answer too.
    let _ = s
        .write_all(bytes)
        .and_then(|()| s.shutdown(Shutdown::Write));
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn status(answer: &str) -> Option<u16> {
    answer.split_whitespace().nth(1)?.parse().ok()
}

fn healthy(addr: SocketAddr) {
    let t0 = Instant::now();
    let got =
        get(&format!("http://{addr}/healthz"), Duration::from_secs(1)).map_err(|e| e.to_string());
    assert_eq!(
        got,
        Ok((200, "ok\n".to_string())),
        "after {:?}",
        t0.elapsed()
    );
}

#[test]
fn serves_get_and_stops_when_dropped() {
    let (server, _) = start();
    let base = format!("http://{}", server.addr());
    assert_eq!(
        get(&format!("{base}/hello?x=1"), T).unwrap(),
        (200, "accept=None\n".to_string())
    );
    assert_eq!(get(&format!("{base}/nope"), T).unwrap().0, 404);
    drop(server);
    assert!(get(&format!("{base}/hello"), T).is_err());
    assert!(get("https://x/", T).is_err());
}

#[test]
fn head_gets_headers_without_a_body_and_other_methods_405() {
    let (server, counters) = start();
    let a = server.addr();
    let head = raw(a, b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&head), Some(200), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body: {head:?}");
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"] {
        let answer = raw(
            a,
            format!("{method} /hello HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        assert_eq!(status(&answer), Some(405), "{method}: {answer}");
        assert!(answer.to_ascii_lowercase().contains("allow: get, head"));
    }
    counted(|| counters.rejected("method").get(), 6);
    healthy(a);
}

#[test]
fn bodies_are_refused_without_being_read() {
    let (server, counters) = start();
    let a = server.addr();
    for (length, expected) in [
        ("1", 413),
        ("9223372036854775807", 413),
        // Over what hyper can represent: it refuses the head itself.
        ("18446744073709551615", 431),
    ] {
        for method in ["GET", "POST"] {
            let req = format!(
                "{method} /hello HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nab"
            );
            let answer = raw(a, req.as_bytes());
            let want = if method == "POST" && expected == 413 {
                405
            } else {
                expected
            };
            assert_eq!(status(&answer), Some(want), "{req:?}: {answer}");
        }
        healthy(a);
    }
    let chunked = raw(
        a,
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(status(&chunked), Some(413), "{chunked}");
    counted(|| counters.rejected("body").get(), 3);
    counted(|| counters.rejected("header").get(), 2);
    healthy(a);
}

/// Waits until `get` reaches `want` (a refusal is counted once it is
/// written, and the client may read it first), then checks it went no
/// further.
fn counted<N: PartialOrd + std::fmt::Debug>(get: impl Fn() -> N, want: N) {
    let until = Instant::now() + T;
    while get() < want && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(get(), want);
}

#[test]
fn header_bytes_and_count_are_capped() {
    let (server, counters) = start();
    let a = server.addr();
    let long = format!(
        "GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n",
        "a".repeat(MAX_HEADER_BYTES)
    );
    assert_eq!(status(&raw(a, long.as_bytes())), Some(431));
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert_eq!(status(&raw(a, many.as_bytes())), Some(431));
    counted(|| counters.rejected("header").get(), 2);
    healthy(a);
}

#[test]
fn connections_over_the_cap_are_closed_at_once_and_counted() {
    let (server, counters) = start();
    let a = server.addr();
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(a).unwrap())
        .collect();
    let until = Instant::now() + T;
    while counters.open.get() < MAX_CONNECTIONS as i64 {
        assert!(Instant::now() < until, "{} open", counters.open.get());
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut one_more = TcpStream::connect(a).unwrap();
    one_more.set_read_timeout(Some(T)).unwrap();
    let t0 = Instant::now();
    // Closed (end of stream or reset), without an answer, at once.
    assert!(matches!(one_more.read(&mut [0; 16]), Ok(0) | Err(_)));
    assert!(t0.elapsed() < Duration::from_secs(1));
    counted(|| counters.refused.get(), 1);
    drop(idle);
    let until = Instant::now() + T;
    while counters.open.get() > 0 {
        assert!(Instant::now() < until, "{} still open", counters.open.get());
        std::thread::sleep(Duration::from_millis(10));
    }
    healthy(a);
}

#[test]
fn a_silent_client_is_dropped_after_the_header_timeout() {
    let (server, counters) = start();
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    s.set_read_timeout(Some(HEADER_READ_TIMEOUT * 2)).unwrap();
    let t0 = Instant::now();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(t0.elapsed() < HEADER_READ_TIMEOUT + Duration::from_secs(2));
    counted(|| counters.rejected("timeout").get(), 1);
}

/// A request line, headers and maybe a body, each part honest, odd or
/// hostile; or plain random bytes.
fn hostile_request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec![
        "GET", "HEAD", "POST", "PUT", "get", "", "G\0T", "CONNECT", "PRI",
    ]);
    let target = prop_oneof![
        Just("/healthz".to_string()),
        Just("*".to_string()),
        "/[a-z%?#/.]{0,40}",
        "[ -~]{0,60}",
        Just(format!("/{}", "a".repeat(20_000))),
    ];
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9", ""]);
    let header = prop_oneof![
        "[A-Za-z-]{1,20}: [ -~]{0,40}",
        Just("Content-Length: 9223372036854775807".to_string()),
        Just("Content-Length: 18446744073709551615".to_string()),
        Just("Content-Length: -1".to_string()),
        Just("Transfer-Encoding: chunked".to_string()),
        Just("Expect: 100-continue".to_string()),
        Just("Connection: keep-alive, Upgrade".to_string()),
        "\\PC{0,30}",
    ];
    let structured = (
        method,
        target,
        version,
        prop::collection::vec(header, 0..8),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(m, t, v, headers, body, crlf)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut r = format!("{m} {t} {v}{eol}");
            for h in headers {
                r.push_str(&h);
                r.push_str(eol);
            }
            r.push_str(eol);
            let mut r = r.into_bytes();
            r.extend(body);
            r
        });
    prop_oneof![
        3 => structured,
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Cases of the fuzz test: `TIMEBUCKET_FUZZ_HTTP_CASES` or 64.
fn fuzz_cases() -> u32 {
    std::env::var("TIMEBUCKET_FUZZ_HTTP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

#[test]
fn fuzz_hostile_requests_leave_the_server_answering() {
    let (server, counters) = start();
    let a = server.addr();
    let config = Config {
        cases: fuzz_cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[18; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    runner
        .run(&hostile_request(), |request| {
            let answer = raw(a, &request);
            if let Some(code) = status(&answer) {
                prop_assert!((200..600).contains(&code), "{answer}");
            }
            let got = get(&format!("http://{a}/healthz"), Duration::from_secs(1))
                .map_err(|e| e.to_string());
            prop_assert_eq!(got, Ok((200, "ok\n".to_string())));
            Ok(())
        })
        .unwrap();
    let until = Instant::now() + T;
    while counters.open.get() > 0 {
        assert!(Instant::now() < until, "{} still open", counters.open.get());
        std::thread::sleep(Duration::from_millis(10));
    }
}
