//! A Kafka of a test's own, from `scripts/kafka` with its own data folder and
//! ports, for fault tests that stop and restart brokers without disturbing
//! the broker the rest of the suite shares. Stopped and purged on drop.

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
        let dir = tempfile::tempdir().unwrap();
        let mut kafka = OwnKafka {
            dir,
            bootstrap: String::new(),
        };
        let out = kafka.run(&[
            "start",
            "--port",
            &port.to_string(),
            "--cluster",
            &nodes.to_string(),
        ]);
        kafka.bootstrap = out
            .lines()
            .last()
            .expect("scripts/kafka start prints the bootstrap")
            .trim()
            .to_string();
        kafka
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
