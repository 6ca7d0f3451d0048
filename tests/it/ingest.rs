//! `timebucket ingest` on the real broker with bad input: invalid and
//! oversized lines are dead-lettered with reason and line, a frame the broker
//! cannot take is reported by line number with exit code 7, and nothing else
//! is lost. Also: an unreachable broker fails fast with exit code 5.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::pipeline::{read_topic, Pipeline, BIN};

fn valid(ts: u64, uid: &str, pad: usize) -> String {
    format!(r#"{{"ts":{ts},"uid":"{uid}","pad":"{}"}}"#, "x".repeat(pad))
}

#[test]
fn invalid_and_oversized_lines_are_dead_lettered_with_their_line() {
    let p = Pipeline::new("ingest-bad");
    let path = p.dir.path().join("bad.jsonl");
    let lines = [
        valid(1468244384, "a", 10),
        "{\"ts\":1468244384".to_string(), // line 2: not_json
        valid(1468244385, "b", 10),
        valid(1468244386, "c", 1_100_000), // line 4: above --max-frame-bytes
        String::new(),                     // line 5: blank, skipped
        valid(1468244387, "d", 10),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = p.command(&["ingest"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("3 frames"), "{stderr}");

    let frames = read_topic(&p.bootstrap, &p.input);
    assert_eq!(frames.len(), 3);
    let mut dead = read_topic(&p.bootstrap, &p.dead_letter);
    dead.sort_by_key(|r| r.headers["timebucket.line"].parse::<u64>().unwrap());
    let got: Vec<(&str, &str)> = dead
        .iter()
        .map(|r| {
            (
                r.headers["timebucket.line"].as_str(),
                r.headers["timebucket.reason"].as_str(),
            )
        })
        .collect();
    assert_eq!(got, [("2", "not_json"), ("4", "too_large")]);
    assert_eq!(
        dead[0].payload,
        lines[1].as_bytes(),
        "invalid lines keep their bytes"
    );
}

#[test]
fn a_frame_too_large_for_the_broker_is_reported_by_line_and_the_rest_delivered() {
    let p = Pipeline::new("ingest-big");
    let path = p.dir.path().join("big.jsonl");
    // Valid for the parser (its limit raised to 3 MB), too large for the
    // producer's and broker's default limit of about 1 MB.
    let lines = [
        valid(1468244384, "a", 10),
        valid(1468244385, "b", 1_500_000),
        valid(1468244386, "c", 10),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = p
        .command(&["ingest", "--max-frame-bytes", "3000000"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "exit code 7 when a record was not delivered\n{stderr}"
    );
    assert!(stderr.contains("1 record(s) not delivered"), "{stderr}");
    assert!(
        stderr.contains("at 2:"),
        "the failure names line 2\n{stderr}"
    );
    let frames = read_topic(&p.bootstrap, &p.input);
    assert_eq!(frames.len(), 2, "the other frames were delivered");
}

#[test]
fn an_unreachable_broker_fails_fast_with_exit_code_5() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.jsonl");
    std::fs::write(&path, valid(1468244384, "a", 1) + "\n").unwrap();
    for args in [
        vec!["ingest", path.to_str().unwrap()],
        vec!["worker", "--until-end"],
    ] {
        let started = Instant::now();
        let out = Command::new(BIN)
            .args(&args)
            .env("BOOTSTRAP_SERVERS", "127.0.0.1:1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {stderr}");
        assert!(
            stderr.contains("127.0.0.1:1") || stderr.contains("cannot"),
            "{args:?} says what failed: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}
