//! `timebucket ingest` on the real broker with bad input: invalid and
//! oversized lines are dead-lettered with reason and line, a valid frame too
//! large for the input topic too (`too_large_for_topic`), and nothing else
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

/// Issue 18: a valid frame of about 999,970 bytes passes the parser's
/// 1,000,000-byte limit but used to exceed the producer's own
/// message.max.bytes (which counts record framing): it landed nowhere and
/// every rerun exited 7. Now the producer takes what the topic takes, and a
/// frame too large for the topic (here 1.5 MB, the parser's limit raised)
/// is dead-lettered with its line, and ingest goes on.
#[test]
fn a_frame_too_large_for_the_input_topic_is_dead_lettered_by_line_and_ingest_goes_on() {
    let p = Pipeline::new("ingest-big");
    let path = p.dir.path().join("big.jsonl");
    let near_limit = valid(1468244385, "b", 999_970 - valid(1468244385, "b", 0).len());
    let lines = [
        valid(1468244384, "a", 10),
        near_limit,
        valid(1468244386, "c", 1_500_000),
        valid(1468244387, "d", 10),
    ];
    assert_eq!(lines[1].len(), 999_970);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let ingest = || {
        p.command(&["ingest", "--max-frame-bytes", "3000000"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = ingest();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("4 frames"), "{stderr}");
    assert!(stderr.contains("1 valid frame(s) too large"), "{stderr}");

    let frames = read_topic(&p.bootstrap, &p.input);
    let mut sizes: Vec<usize> = frames.iter().map(|r| r.payload.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [lines[0].len(), lines[3].len(), 999_970]);
    let dead = read_topic(&p.bootstrap, &p.dead_letter);
    assert_eq!(dead.len(), 1);
    let h = &dead[0].headers;
    assert_eq!(h["timebucket.reason"], "too_large_for_topic");
    assert_eq!(h["timebucket.line"], "3");
    assert_eq!(h["timebucket.topic"], p.input);
    assert_eq!(h["timebucket.size"], lines[2].len().to_string());
    assert_eq!(h["timebucket.truncated"], "true");
    assert_eq!(lines[2].as_bytes()[..1000], dead[0].payload[..1000]);

    // A rerun finds everything committed and succeeds too.
    let again = ingest();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert_eq!(read_topic(&p.bootstrap, &p.input).len(), 3);
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

/// Issue 18: a commit interval that cannot fit the transaction timeout
/// (the broker would abort every transaction, and the job replay for ever)
/// is refused at start with exit code 2, naming both values, before any
/// connection; raising the timeout with `-X` makes it fit.
#[test]
fn a_commit_interval_that_cannot_fit_the_transaction_timeout_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.jsonl");
    std::fs::write(&path, valid(1468244384, "a", 1) + "\n").unwrap();
    let file = path.to_str().unwrap();
    for (args, timeout) in [
        (vec!["worker", "--commit-interval-ms", "15000"], "10000"),
        (
            vec!["merge", "--shards", "2", "--commit-interval-ms", "15000"],
            "10000",
        ),
        (
            vec!["ingest", file, "--commit-interval-ms", "40000"],
            "60000",
        ),
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .env("BOOTSTRAP_SERVERS", "127.0.0.1:1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let interval = args.last().unwrap();
        assert!(
            stderr.contains("--commit-interval-ms")
                && stderr.contains(&format!(" {interval} cannot fit the transaction timeout")),
            "{args:?} names the interval: {stderr}"
        );
        assert!(
            stderr.contains(&format!("transaction.timeout.ms {timeout}")),
            "{args:?} names the timeout: {stderr}"
        );
    }
    // With the transaction timeout raised, the worker gets past the check
    // (and fails on the unreachable broker instead).
    let out = Command::new(BIN)
        .args(["worker", "--until-end", "--commit-interval-ms", "15000"])
        .args(["-X", "transaction.timeout.ms=60000"])
        .env("BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
}
