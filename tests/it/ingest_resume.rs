//! `timebucket ingest` rerun on the real broker: exactly once from file to
//! topic. A rerun after `kill -9`, after a completed run, after an
//! undeliverable record (exit 7, the topic's limit lowered mid-run) or on an appended file continues after the
//! last committed line, so every line is in the input or dead-letter topic
//! exactly once (read_committed); `--restart`, another file and a rewritten
//! file start over.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::common::pipeline::{read_topic, Pipeline};
use crate::common::{admin, end_offsets, runtime, wait_until};

fn frame(ts: u64, uid: &str) -> String {
    format!(r#"{{"ts":{ts},"uid":"{uid}"}}"#)
}

/// `n` distinct frames from line number `first` on (1-based); every 997th
/// line is malformed.
fn lines(first: u64, n: u64) -> Vec<String> {
    (first..first + n)
        .map(|i| match i % 997 {
            0 => format!("not json {i}"),
            _ => frame(1468244384 + i / 50, &format!("u{i}")),
        })
        .collect()
}

fn write(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn append(path: &Path, lines: &[String]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
}

/// Commits every 500 records: several transactions even in small files.
/// (Set through the environment, which older builds ignore, so that these
/// tests fail on them at their assertions, not at an unknown option.)
fn ingest(p: &Pipeline, path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["ingest"];
    args.extend(extra);
    p.command(&args)
        .env("INGEST_COMMIT_RECORDS", "500")
        .arg(path)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ingest failed\n{stderr}");
    stderr
}

/// The input and dead-letter topics hold exactly `want` (valid lines in the
/// first, malformed ones in the second), each line `times` times.
fn assert_topics_hold(p: &Pipeline, want: &[String], times: usize, context: &str) {
    // Records keyed `probe` are a test's own, not ingest's.
    let mut frames: Vec<String> = read_topic(&p.bootstrap, &p.input)
        .into_iter()
        .filter(|r| r.key.as_deref() != Some("probe"))
        .map(|r| String::from_utf8(r.payload).unwrap())
        .collect();
    frames.extend(
        read_topic(&p.bootstrap, &p.dead_letter)
            .into_iter()
            .map(|r| String::from_utf8(r.payload).unwrap()),
    );
    frames.sort();
    let mut expected: Vec<String> = want
        .iter()
        .flat_map(|l| std::iter::repeat_n(l.clone(), times))
        .collect();
    expected.sort();
    if frames != expected {
        let mut dup = frames.clone();
        dup.dedup();
        panic!(
            "{context}: the topics hold {} records ({} distinct), expected {} ({} lines x{times})",
            frames.len(),
            dup.len(),
            expected.len(),
            want.len()
        );
    }
}

#[test]
fn kill_9_mid_file_then_a_rerun_leaves_every_line_exactly_once() {
    let p = Pipeline::new("eos-kill");
    let path = p.dir.path().join("big.jsonl");
    // About 50 MB of 2 KB lines, committed every 2,000 records.
    let pad = "x".repeat(2000);
    let all: Vec<String> = lines(1, 25_000)
        .into_iter()
        .map(|l| match l.strip_suffix('}') {
            Some(head) => format!(r#"{head},"pad":"{pad}"}}"#),
            None => l,
        })
        .collect();
    write(&path, &all);
    let mut child = p
        .command(&["ingest"])
        .env("INGEST_COMMIT_RECORDS", "2000")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(60),
        "ingest to produce 5,000 records",
        || end_offsets(&p.bootstrap, &p.input).values().sum::<i64>() >= 5000,
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "ingest finished before it could be killed mid-file"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let produced: i64 = end_offsets(&p.bootstrap, &p.input).values().sum();
    assert!(produced < 25_000, "killed mid-file: {produced} records");

    let stderr = ok(&ingest(&p, &path, &[]));
    assert_topics_hold(&p, &all, 1, "after kill -9 and a rerun");
    assert!(stderr.contains("(resumed after line "), "{stderr}");
    let invalid = all.iter().filter(|l| l.starts_with("not json")).count();
    assert!(
        stderr.contains(&format!(
            "source total: 25000 lines, {} bytes, {} frames, 0 blank, {invalid} invalid",
            std::fs::metadata(&path).unwrap().len(),
            25_000 - invalid
        )),
        "the source's totals cover both runs\n{stderr}"
    );
}

#[test]
fn a_rerun_adds_nothing_and_an_appended_file_only_its_new_lines() {
    let p = Pipeline::new("eos-rerun");
    let path = p.dir.path().join("feed.jsonl");
    let mut all = lines(1, 3000);
    write(&path, &all);
    let first = ok(&ingest(&p, &path, &[]));
    assert!(first.contains("ingest: 3000 lines, 2997 frames"), "{first}");
    let again = ok(&ingest(&p, &path, &[]));
    assert_topics_hold(&p, &all, 1, "after a rerun of a complete run");
    assert!(
        again.contains("ingest: 0 lines (resumed after line 3000), 0 frames"),
        "{again}"
    );

    let more = lines(3001, 1000);
    append(&path, &more);
    all.extend(more);
    let appended = ok(&ingest(&p, &path, &[]));
    assert_topics_hold(&p, &all, 1, "after appending");
    assert!(
        appended.contains("ingest: 1000 lines (resumed after line 3000), 999 frames"),
        "{appended}"
    );
    assert!(appended.contains("source total: 4000 lines"), "{appended}");
    assert_topics_hold(&p, &all, 1, "after appending");
}

#[test]
fn restart_another_file_and_a_rewritten_file_start_over() {
    let p = Pipeline::new("eos-restart");
    let path = p.dir.path().join("feed.jsonl");
    let one = lines(1, 2000);
    write(&path, &one);
    ok(&ingest(&p, &path, &[]));
    let restarted = ok(&ingest(&p, &path, &["--restart"]));
    assert!(
        restarted.contains("ingest: 2000 lines, 1998 frames"),
        "{restarted}"
    );
    assert_topics_hold(&p, &one, 2, "--restart ingests the file again");

    // Another file (another path), and the same path rewritten.
    let other = p.dir.path().join("other.jsonl");
    let two = lines(5001, 500);
    write(&other, &two);
    ok(&ingest(&p, &other, &[]));
    let three = lines(9001, 700);
    write(&path, &three);
    let rewritten = ok(&ingest(&p, &path, &[]));
    assert!(rewritten.contains("ingest: 700 lines, "), "{rewritten}");
    let mut want: Vec<String> = one
        .iter()
        .chain(&one)
        .chain(&two)
        .chain(&three)
        .cloned()
        .collect();
    want.sort();
    assert_topics_hold(&p, &want, 1, "another file and a rewritten one");

    // The same bytes under an explicit id (stdin-like): a source of its own.
    let named = ok(&ingest(&p, &other, &["--source-id", "feed-2"]));
    assert!(named.contains("ingest: 500 lines, "), "{named}");
    let again = ok(&ingest(&p, &other, &["--source-id", "feed-2"]));
    assert!(
        again.contains("ingest: 0 lines (resumed after line 500)"),
        "{again}"
    );
}

/// A frame the broker refuses only at delivery (the topic's limit was
/// lowered after ingest read it): that transaction is aborted and ingest
/// stops with exit 7 once; the rerun reads the limit again, dead-letters
/// the frame as `too_large_for_topic` with its line, and every line ends up
/// exactly once in the input or dead-letter topic.
#[test]
fn a_frame_refused_at_delivery_is_dead_lettered_by_the_rerun_exactly_once() {
    use std::io::Write;
    use std::process::Stdio;
    let p = Pipeline::new("eos-refused");
    let mut all = lines(1, 3000);
    let mut first = p
        .command(&[
            "ingest",
            "-",
            "--source-id",
            "feed",
            "--commit-interval-ms",
            "100",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut feed = first.stdin.take().unwrap();
    // More than the 64 KiB fingerprint, then a line at a time until a
    // transaction committed: ingest has read the topics' limits.
    feed.write_all((all.join("\n") + "\n").as_bytes()).unwrap();
    wait_until(Duration::from_secs(60), "a first commit", || {
        let next = lines(all.len() as u64 + 1, 1);
        feed.write_all((next[0].clone() + "\n").as_bytes()).unwrap();
        all.extend(next);
        std::thread::sleep(Duration::from_millis(150));
        end_offsets(&p.bootstrap, &p.progress).values().sum::<i64>() > 0
    });
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic(&p.input)).set("max.message.bytes", "10000");
    let results = runtime()
        .block_on(admin(&p.bootstrap).alter_configs([&alter], &AdminOptions::new()))
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // The new limit reaches the broker's log config within moments: probe
    // with records keyed `probe` (left out of the checks) until the broker
    // refuses one.
    let probe: FutureProducer = crate::common::producer_config(&p.bootstrap)
        .set("message.max.bytes", "3000000")
        .create()
        .unwrap();
    let payload = noise(50_000);
    wait_until(
        Duration::from_secs(60),
        "the broker to apply the new limit",
        || {
            let record = FutureRecord::to(&p.input).key("probe").payload(&payload);
            runtime()
                .block_on(probe.send(record, Duration::from_secs(10)))
                .is_err()
        },
    );
    let big_line = all.len() + 1;
    all.push(format!(
        r#"{{"ts":1468244424,"uid":"big","pad":"{}"}}"#,
        noise(50_000)
    ));
    all.extend(lines(big_line as u64 + 1, 3));
    feed.write_all((all[big_line - 1..].join("\n") + "\n").as_bytes())
        .unwrap();
    drop(feed);
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("too_large_for_topic"), "{stderr}");

    // The rerun, fed the same lines: it continues after the last commit.
    let mut rerun = p
        .command(&["ingest", "-", "--source-id", "feed"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut feed = rerun.stdin.take().unwrap();
    feed.write_all((all.join("\n") + "\n").as_bytes()).unwrap();
    drop(feed);
    let stderr = ok(&rerun.wait_with_output().unwrap());
    assert!(stderr.contains("1 valid frame(s) too large"), "{stderr}");
    assert_topics_hold(&p, &all, 1, "after exit 7 and a rerun");
    let dead = read_topic(&p.bootstrap, &p.dead_letter);
    let big = dead
        .iter()
        .find(|r| {
            r.headers.get("timebucket.reason").map(String::as_str) == Some("too_large_for_topic")
        })
        .expect("the big frame is dead-lettered");
    assert_eq!(big.headers["timebucket.line"], big_line.to_string());
}

/// `n` random letters (lz4 cannot shrink them below the topic's limit).
fn noise(n: usize) -> String {
    let mut seed = 7u64;
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (b'a' + (seed >> 59) as u8 % 26) as char
        })
        .collect()
}
