//! `timebucket ingest` rerun on the real broker: exactly once from file to
//! topic. A rerun after `kill -9`, after a completed run, after an
//! undeliverable record (exit 7) or on an appended file continues after the
//! last committed line, so every line is in the input or dead-letter topic
//! exactly once (read_committed); `--restart`, another file and a rewritten
//! file start over.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};

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
    let mut frames: Vec<String> = read_topic(&p.bootstrap, &p.input)
        .into_iter()
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

#[test]
fn a_run_stopped_by_an_undeliverable_record_resumes_after_its_last_commit() {
    // The broker takes batches of up to 100 KB; line 2000 is a 300 KB frame
    // (random letters, so lz4 cannot shrink it), which the producer accepts
    // and the broker refuses: that transaction fails and ingest stops.
    let p = Pipeline::on(
        &crate::common::bootstrap(),
        "eos-refused",
        1,
        &[("max.message.bytes", "100000")],
    );
    let path = p.dir.path().join("feed.jsonl");
    let mut all = lines(1, 3000);
    let mut seed = 7u64;
    let noise: String = (0..300_000)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (b'a' + (seed >> 59) as u8 % 26) as char
        })
        .collect();
    all[1999] = format!(r#"{{"ts":1468244424,"uid":"big","pad":"{noise}"}}"#);
    write(&path, &all);

    let out = ingest(&p, &path, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    let committed =
        read_topic(&p.bootstrap, &p.input).len() + read_topic(&p.bootstrap, &p.dead_letter).len();
    assert!(
        committed < 2000,
        "nothing after the failed transaction is committed: {committed}"
    );
    // The broker refuses the whole batch, so the report names its first
    // lines and the stretch of lines that was given up.
    assert!(
        stderr.contains("MessageSizeTooLarge") && stderr.contains("..=2000 was aborted"),
        "{stderr}"
    );
    assert!(
        stderr.contains("run ingest again on the same source to continue from line"),
        "{stderr}"
    );

    // The operator raises the limit; the rerun goes on from the last commit.
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic(&p.input)).set("max.message.bytes", "2097152");
    let results = runtime()
        .block_on(admin(&p.bootstrap).alter_configs([&alter], &AdminOptions::new()))
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let started = Instant::now();
    let rerun = loop {
        // The new limit reaches the broker's log config within moments.
        let out = ingest(&p, &path, &[]);
        if out.status.code() != Some(7) || started.elapsed() > Duration::from_secs(30) {
            break out;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let stderr = ok(&rerun);
    assert_topics_hold(&p, &all, 1, "after exit 7 and a rerun");
    assert!(stderr.contains("(resumed after line "), "{stderr}");
}
