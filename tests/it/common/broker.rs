//! A Kafka of a test's own, from `scripts/kafka` with its own data folder and
//! ports, for fault tests that stop and restart brokers and for the secure
//! broker (`secure.rs`), without disturbing the broker the rest of the suite
//! shares. Stopped and purged on drop.

use std::path::PathBuf;
use std::process::Command;

pub struct OwnKafka {
    dir: tempfile::TempDir,
    pub bootstrap: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka")
}

impl OwnKafka {
    /// Starts `nodes` brokers on 127.0.0.1 from `port` up.
    pub fn start(port: u16, nodes: u32) -> OwnKafka {
        OwnKafka::launch(&[
            "start",
            "--port",
            &port.to_string(),
            "--cluster",
            &nodes.to_string(),
        ])
    }

    /// Three brokers, node N listening on and advertising the Nth of
    /// `hosts` and running in the Nth network namespace of `namespaces`
    /// (both comma-separated; see [`super::netns::Net::kafka`]).
    pub fn start_on(port: u16, hosts: &str, namespaces: &str) -> OwnKafka {
        OwnKafka::launch(&[
            "start",
            "--port",
            &port.to_string(),
            "--cluster",
            "3",
            "--hosts",
            hosts,
            "--netns",
            namespaces,
        ])
    }

    /// One secure broker (`scripts/kafka start --secure`: SASL_SSL with
    /// SCRAM, ACLs enforced) on `port`; its controller and inter-broker
    /// listeners take `port` + 10000 and + 20000.
    pub fn start_secure(port: u16) -> OwnKafka {
        OwnKafka::launch(&["start", "--secure", "--port", &port.to_string()])
    }

    /// Runs `scripts/kafka start ...` in a fresh folder and keeps the
    /// bootstrap address it prints last.
    fn launch(args: &[&str]) -> OwnKafka {
        let mut kafka = OwnKafka {
            dir: tempfile::tempdir().unwrap(),
            bootstrap: String::new(),
        };
        let out = kafka.run(args);
        kafka.bootstrap = out
            .lines()
            .last()
            .expect("scripts/kafka start prints the bootstrap")
            .trim()
            .to_string();
        kafka
    }

    /// A file of the secure broker (`scripts/kafka secure-info WHAT`): `ca`,
    /// or a user's librdkafka properties (`admin`, `timebucket`, `limited`).
    pub fn secure_file(&self, what: &str) -> std::path::PathBuf {
        PathBuf::from(self.run(&["secure-info", what]).trim())
    }

    /// `scripts/kafka acls grant USER ARGS...` on the secure broker.
    pub fn grant(&self, user: &str, args: &[&str]) {
        let mut all = vec!["acls", "grant", user];
        all.extend_from_slice(args);
        self.run(&all);
    }

    /// The folder of this broker's data, logs and (secure) files.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(script())
            .args(args)
            .env("TIMEBUCKET_KAFKA_DIR", self.dir.path())
            .output()
            .expect("run scripts/kafka");
        assert!(
            out.status.success(),
            "scripts/kafka {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stop_broker(&self, node: u32) {
        self.run(&["stop-broker", &node.to_string()]);
    }

    /// The node id of the active controller (the KRaft quorum's leader).
    pub fn active_controller(&self) -> u32 {
        self.try_active_controller()
            .unwrap_or_else(|e| panic!("no active controller: {e}"))
    }

    /// [`Self::active_controller`], or why the quorum did not name one (it
    /// may be electing a leader).
    pub fn try_active_controller(&self) -> Result<u32, String> {
        let out = Command::new(script())
            .args([
                "tool",
                "kafka-metadata-quorum",
                "--bootstrap-server",
                &self.bootstrap,
                "describe",
                "--status",
            ])
            .env("TIMEBUCKET_KAFKA_DIR", self.dir.path())
            .output()
            .map_err(|e| format!("cannot run scripts/kafka: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.trim().strip_prefix("LeaderId:"))
            .and_then(|id| id.trim().parse().ok())
            .ok_or_else(|| {
                format!(
                    "no LeaderId in kafka-metadata-quorum's answer:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }

    /// kill -9 of broker `node`: a crash.
    pub fn kill_broker(&self, node: u32) {
        self.run(&["kill-broker", &node.to_string()]);
    }

    pub fn start_broker(&self, node: u32) {
        self.run(&["start-broker", &node.to_string()]);
    }
}

impl Drop for OwnKafka {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", "--purge"])
            .env("TIMEBUCKET_KAFKA_DIR", self.dir.path())
            .output();
    }
}
