//! Hosts of a test on this machine (`scripts/netns`): each process in a
//! network namespace of its own with one address, joined by a bridge, and
//! the faults of a real network between them (partitions, isolation, delay
//! and loss, a link down, a frozen or killed host). Everything is removed
//! on drop, also when the test panics; a run whose test process died
//! without dropping (Ctrl-C) is reaped by the next [`Net::up`].

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::broker::OwnKafka;

pub struct Net {
    /// The run's name: the prefix of its namespaces and links.
    pub run: String,
    /// (host, address) in the order given to [`Net::up`].
    hosts: Vec<(String, String)>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/netns")
}

/// Runs `scripts/netns ARGS`; its stdout. A failure (a missing tool, not
/// root) fails the test with the script's message.
fn netns(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .env("TIMEBUCKET_NETNS_OWNER", std::process::id().to_string())
        .output()
        .expect("run scripts/netns");
    assert!(
        out.status.success(),
        "scripts/netns {args:?} failed (it needs root, iproute2, iptables and python3; \
         see docs/faults.md):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Net {
    /// Namespaces for `hosts` (names of 1-5 lowercase letters or digits)
    /// on a /24 of 10.231.0.0/16 of their own.
    pub fn up(hosts: &[&str]) -> Net {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        netns(&["reap"]);
        let n = RUNS.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let run = format!("tb{:x}", (pid * 8 + n) % 0xFFFFF);
        let subnet = format!("10.231.{}", (pid as usize + n as usize * 7) % 250);
        let mut args = vec!["up", run.as_str(), subnet.as_str()];
        args.extend_from_slice(hosts);
        let listed = netns(&args);
        let hosts = listed
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(h, a)| (h.to_string(), a.to_string()))
            .collect();
        Net { run, hosts }
    }

    pub fn addr(&self, host: &str) -> &str {
        self.hosts
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, a)| a.as_str())
            .unwrap_or_else(|| panic!("no host {host}"))
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.run)
    }

    /// The words that run a program on `host` (`ip netns exec NS`).
    pub fn launcher(&self, host: &str) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns(host)]
    }

    /// Three brokers (KRaft, combined broker and controller) on hosts
    /// `k1`..`k3`, from broker port `port` up.
    pub fn kafka(&self, port: u16) -> OwnKafka {
        let brokers = ["k1", "k2", "k3"];
        let hosts: Vec<&str> = brokers.iter().map(|b| self.addr(b)).collect();
        let namespaces: Vec<String> = brokers.iter().map(|b| self.ns(b)).collect();
        OwnKafka::start_on(port, &hosts.join(","), &namespaces.join(","))
    }

    /// Drops every packet between `a` and `b`, both ways.
    pub fn partition(&self, a: &str, b: &str) {
        netns(&["partition", &self.run, a, b]);
    }

    /// Drops `a`'s packets to `b` only.
    pub fn partition_one_way(&self, a: &str, b: &str) {
        netns(&["partition", &self.run, a, b, "--one-way"]);
    }

    /// Cuts `host` from every other host and from the test itself.
    pub fn isolate(&self, host: &str) {
        netns(&["isolate", &self.run, host]);
    }

    /// Delay, jitter, loss and reordering of `host`'s outgoing packets
    /// (`all`: every host), e.g. `["--delay-ms", "200", "--loss", "5"]`.
    pub fn netem(&self, host: &str, args: &[&str]) {
        let mut all = vec!["netem", self.run.as_str(), host];
        all.extend_from_slice(args);
        netns(&all);
    }

    pub fn link(&self, host: &str, up: bool) {
        netns(&["link", &self.run, host, if up { "up" } else { "down" }]);
    }

    /// SIGSTOP of every process on `host` (a VM freeze); [`Net::resume`].
    pub fn pause(&self, host: &str) {
        netns(&["pause", &self.run, host]);
    }

    pub fn resume(&self, host: &str) {
        netns(&["resume", &self.run, host]);
    }

    /// Undoes every fault on every host.
    pub fn heal(&self) {
        netns(&["heal", &self.run]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["down", &self.run]).output();
    }
}
