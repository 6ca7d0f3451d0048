//! System tools some tests drive (Debian's `prometheus`, `promtool`,
//! `chromium`), processes stopped when a test ends however it ends, and the
//! small HTTP chores around them.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use super::wait_until;

/// Panics, saying how to install it, if `tool` is not on PATH.
#[track_caller]
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `{tool}`, from Debian's `{package}` package: \
         `apt-get install {package}` (scripts/test installs it when it runs as root)"
    );
}

/// A child process killed (and reaped) when dropped.
pub struct Running(pub Child);

impl Running {
    pub fn is_running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit; panics after `deadline`.
    pub fn wait(&mut self, deadline: Duration) -> ExitStatus {
        let mut status = None;
        wait_until(deadline, "the process to exit", || {
            status = self.0.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on 127.0.0.1 now (the system picks it; the listener closes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first `http://` URL ending in `suffix` that the log at `path` names,
/// waiting up to 60 s for it (a process started with port 0 logs where it
/// listens).
pub fn url_in_log(path: &Path, suffix: &str) -> String {
    let mut url = None;
    wait_until(
        Duration::from_secs(60),
        &format!("a URL ending in {suffix} in {}", path.display()),
        || {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            url = log
                .split(|c: char| c.is_whitespace() || c == '"' || c == '=')
                .find(|w| w.starts_with("http://") && w.ends_with(suffix))
                .map(String::from);
            url.is_some()
        },
    );
    url.unwrap()
}

/// `GET url`: status and body.
pub fn get(url: &str) -> (u16, String) {
    timebucket::observe::http::get(url, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Percent-encodes a query parameter value.
pub fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `program args` and returns its stdout; panics with its stderr if it
/// fails.
pub fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
