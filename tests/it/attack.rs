//! The HTTP attack suite (issue 18), against a real worker's
//! `--metrics-addr` while it consumes a real topic on the broker, and
//! against a real `timebucket dashboard`: a huge Content-Length, an endless
//! header (fast, and a slow drip), hundreds of idle connections and a
//! burst of thousands of requests. After each, the process is alive and
//! `/healthz` answers within a second; the worker's results are exact and
//! its `/metrics` counted the refusals. The limits are in docs/http.md.
//!
//! With tiny_http (before issue 18), the first attack killed the process:
//! "memory allocation of 9223372036854775807 bytes failed".

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use timebucket::observe::http::{get, HEADER_READ_TIMEOUT, MAX_CONNECTIONS};

use crate::common::pipeline::{aggregate, assert_same_windows, emitted_once, Pipeline};
use crate::common::tools::{url_in_log, Running};
use crate::common::wait_until;

const IDLE: usize = 500;
const BURST: usize = 5_000;
const BURST_THREADS: usize = 16;

/// `/healthz` answers 200 within a second.
#[track_caller]
fn healthy(addr: SocketAddr, after: &str) {
    let t0 = Instant::now();
    let got = get(&format!("http://{addr}/healthz"), Duration::from_secs(1));
    assert!(
        matches!(got, Ok((200, _))),
        "after {after}: /healthz answered {got:?} in {:?}",
        t0.elapsed()
    );
}

/// Sends `bytes`, half-closes, and returns the status the server answered
/// (None if it only closed).
fn send(addr: SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s
        .write_all(bytes)
        .and_then(|()| s.shutdown(Shutdown::Write));
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn huge_content_length(addr: SocketAddr) {
    for length in ["9223372036854775807", "18446744073709551615"] {
        for method in ["POST", "GET"] {
            let request = format!(
                "{method} /api/windows HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nx"
            );
            let status = send(addr, request.as_bytes());
            assert!(
                matches!(status, Some(400 | 405 | 413 | 431)),
                "{method} with Content-Length {length}: {status:?}"
            );
            healthy(addr, &format!("{method} with Content-Length {length}"));
        }
    }
}

/// Header bytes sent as fast as the server takes them: it answers 431 and
/// closes long before a MiB.
fn endless_header(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nX-Endless: ")
        .unwrap();
    let chunk = [b'a'; 1024];
    let mut sent = 0;
    while sent < 64 << 20 && s.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    assert!(sent < 64 << 20, "the server read 64 MiB of one header");
    healthy(addr, "an endless header");
}

/// A header dripped a byte at a time: the server closes the connection at
/// its header read timeout.
fn slow_header(addr: SocketAddr) -> JoinHandle<Duration> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let t0 = Instant::now();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ");
        while s.write_all(b"a").is_ok() && t0.elapsed() < HEADER_READ_TIMEOUT * 3 {
            std::thread::sleep(Duration::from_millis(100));
        }
        t0.elapsed()
    })
}

/// Connections that never send a byte, held while `/healthz` is asked.
fn idle_connections(addr: SocketAddr) {
    const { assert!(IDLE < MAX_CONNECTIONS) };
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    healthy(addr, &format!("{IDLE} idle connections (still open)"));
    drop(idle);
    healthy(addr, &format!("{IDLE} idle connections (closed)"));
}

/// [`BURST`] honest requests from [`BURST_THREADS`] clients at once, all
/// answered.
fn burst(addr: SocketAddr, path: &'static str) {
    let failed = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..BURST_THREADS {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < BURST {
                    let got = get(&format!("http://{addr}{path}"), Duration::from_secs(10));
                    if !matches!(got, Ok((200, _))) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(failed.into_inner(), 0, "of {BURST} GET {path}");
    eprintln!("{BURST} GET {path} in {:?}", t0.elapsed());
    healthy(addr, &format!("a burst of {BURST} requests"));
}

/// Every attack in turn on the server at `addr`; `path` is what the burst
/// asks for.
fn attack(addr: SocketAddr, path: &'static str) {
    let slow = slow_header(addr);
    huge_content_length(addr);
    endless_header(addr);
    idle_connections(addr);
    burst(addr, path);
    let held = slow.join().unwrap();
    assert!(
        held < HEADER_READ_TIMEOUT + Duration::from_secs(2),
        "a dripped header held its connection {held:?}"
    );
    healthy(addr, "a dripped header");
}

fn addr_of(url: &str) -> SocketAddr {
    let rest = url.trim_start_matches("http://");
    rest[..rest.find('/').unwrap()].parse().unwrap()
}

/// The value of one series in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_worker_and_the_dashboard_hold_against_hostile_http_clients() {
    let p = Pipeline::new("attack");
    let path = p.input_file(30_000, &[]);
    p.ingest(&path);
    let mut worker = Running(p.worker(&[
        "--throttle",
        "2500",
        "--metrics-addr",
        "127.0.0.1:0",
        "--metrics-linger",
        "30",
    ]));
    let log = std::fs::read_dir(p.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let metrics = url_in_log(&log, "/metrics");
    let worker_addr = addr_of(&metrics);
    let dashboard_log = p.dir.path().join("dashboard.out");
    let dashboard = p
        .command(&["dashboard", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&dashboard_log).unwrap())
        .spawn()
        .unwrap();
    let mut dashboard = Running(dashboard);
    let dashboard_addr = addr_of(&url_in_log(&dashboard_log, "/"));

    std::thread::scope(|scope| {
        scope.spawn(|| attack(dashboard_addr, "/api/windows"));
        attack(worker_addr, "/metrics");
    });
    assert!(dashboard.is_running(), "the dashboard died");
    assert!(worker.is_running(), "the worker died");

    // The worker counted every refusal, and its results are exact.
    let (status, text) = get(&metrics, Duration::from_secs(5)).unwrap();
    assert_eq!(status, 200);
    let rejected = |reason: &str| {
        let series = format!("timebucket_http_requests_rejected_total{{reason=\"{reason}\"}}");
        sample(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert!(
        rejected("method") >= 1.0 && rejected("body") >= 1.0,
        "{text}"
    );
    assert!(
        rejected("header") >= 1.0 && rejected("timeout") >= 1.0,
        "{text}"
    );
    wait_until(
        Duration::from_secs(120),
        "the worker's final report",
        || !p.reports().is_empty(),
    );
    let report = p.reports().remove(0);
    assert!(report.ok, "{}", p.worker_logs());
    assert_eq!(report.summary.frames, 30_000);
    assert_same_windows(&emitted_once(&p), &aggregate(&path), || p.worker_logs());
}
