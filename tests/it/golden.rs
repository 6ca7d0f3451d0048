//! Golden tests over the real challenge frames in `tests/data/`: the
//! offline `aggregate` (library and binary) must reproduce the committed
//! outputs in `tests/golden/` byte for byte, and the key numbers are asserted
//! explicitly (they were checked by hand against an independent count with
//! Python's json module: tail minute 1468245300 = 862 frames / 859 users,
//! minute 1468245360 = 138 / 138; head = 8 frames / 8 users in 1468244340).
//!
//! Regenerate a golden file (only after checking the new numbers by hand):
//! `timebucket aggregate tests/data/challenge-tail.jsonl -P 8 -L 5 > tests/golden/challenge-tail.P8.L5.jsonl`

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::files::{data_path, golden, read};
use timebucket::cmd::aggregate::{aggregate, AggregateOptions, Summary};
use timebucket::core::bucket::Routing;
use timebucket::core::clock::Quorum;
use timebucket::core::frame::{default_max_ts, FrameParser, Invalid, DEFAULT_MIN_TS};
use timebucket::core::metric::{MetricKind, MetricRecord};
use timebucket::core::window::{LateCounts, WatermarkRule};

const LATENESS: u64 = 5;

fn parser() -> FrameParser {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    FrameParser::new(DEFAULT_MIN_TS, default_max_ts(now))
}

fn options(partitions: u32, parser: FrameParser) -> AggregateOptions {
    AggregateOptions {
        routing: Routing::new(900, partitions).unwrap(),
        rule: WatermarkRule::with_quorum(LATENESS, Quorum::default()),
        parser,
        log_invalid: 0,
    }
}

fn run_lib(input: &[u8], opts: &AggregateOptions) -> (String, Summary) {
    let mut out = Vec::new();
    let summary = aggregate(input, &mut out, opts).expect("aggregate over memory cannot fail");
    (String::from_utf8(out).expect("output is UTF-8"), summary)
}

fn run_bin(path: &Path, partitions: u32) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_timebucket"))
        .args([
            "aggregate",
            path.to_str().unwrap(),
            "-P",
            &partitions.to_string(),
            "-L",
            &LATENESS.to_string(),
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run timebucket");
    assert!(
        out.status.success(),
        "timebucket failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn records(output: &str) -> Vec<MetricRecord> {
    output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output record {l:?}: {e}")))
        .collect()
}

fn find(records: &[MetricRecord], metric: MetricKind, start: u64) -> &MetricRecord {
    records
        .iter()
        .find(|r| r.metric == metric && r.window_start == start)
        .unwrap_or_else(|| panic!("no {metric:?} window at {start} in {records:#?}"))
}

#[test]
fn golden_outputs_library_and_binary() {
    for file in ["challenge-head", "challenge-tail"] {
        let path = data_path(&format!("{file}.jsonl"));
        let input = read(&path);
        for partitions in [1, 8] {
            let name = format!("{file}.P{partitions}.L{LATENESS}.jsonl");
            let want = golden(&name);
            let (got, summary) = run_lib(&input, &options(partitions, parser()));
            assert_eq!(got, want, "library output differs from tests/golden/{name}");
            assert_eq!(summary.invalid_total(), 0);
            assert_eq!(summary.late, LateCounts::default());
            assert_eq!(
                run_bin(&path, partitions),
                want,
                "binary output differs from tests/golden/{name}"
            );
        }
    }
}

#[test]
fn tail_key_numbers() {
    let input = read(&data_path("challenge-tail.jsonl"));
    for partitions in [1, 8] {
        let (out, summary) = run_lib(&input, &options(partitions, parser()));
        let recs = records(&out);
        assert_eq!(recs.len(), 4, "{out}");
        let m = find(&recs, MetricKind::Minute, 1468245300);
        assert_eq!(
            (m.frames, m.unique_users, m.window_end),
            (862, Some(859), 1468245360)
        );
        let m = find(&recs, MetricKind::Minute, 1468245360);
        assert_eq!(
            (m.frames, m.unique_users, m.window_end),
            (138, Some(138), 1468245420)
        );
        let s = find(&recs, MetricKind::Second, 1468245359);
        assert_eq!(
            (s.frames, s.unique_users, s.window_end),
            (862, None, 1468245360)
        );
        let s = find(&recs, MetricKind::Second, 1468245360);
        assert_eq!((s.frames, s.unique_users), (138, None));
        // Routing: bucket 1468245300 / 900 = 1631383, mod 8 = 7.
        let expected_partition = if partitions == 1 { 0 } else { 7 };
        assert!(
            recs.iter().all(|r| r.partition == expected_partition),
            "{recs:#?}"
        );
        assert_eq!(m.start, "2016-07-11T13:56:00Z");
        assert_eq!(
            (
                summary.lines,
                summary.valid,
                summary.blank,
                summary.invalid_total()
            ),
            (1000, 1000, 0, 0)
        );
        assert_eq!((summary.seconds_emitted, summary.minutes_emitted), (2, 2));
    }
}

#[test]
fn head_key_numbers() {
    let input = read(&data_path("challenge-head.jsonl"));
    for partitions in [1, 8] {
        let (out, summary) = run_lib(&input, &options(partitions, parser()));
        let recs = records(&out);
        let minutes: Vec<&MetricRecord> = recs
            .iter()
            .filter(|r| r.metric == MetricKind::Minute)
            .collect();
        assert_eq!(minutes.len(), 1, "{out}");
        assert_eq!(
            (
                minutes[0].window_start,
                minutes[0].frames,
                minutes[0].unique_users
            ),
            (1468244340, 8, Some(8))
        );
        let s = find(&recs, MetricKind::Second, 1468244384);
        assert_eq!(s.frames, 8);
        assert_eq!(recs.len(), 2);
        assert!(recs
            .iter()
            .all(|r| r.partition == if partitions == 1 { 0 } else { 6 }));
        assert_eq!((summary.valid, summary.invalid_total()), (8, 0));
    }
}

/// The tail again, with blank lines, CRLF line ends, a last line without a
/// newline, and invalid lines of every reason in between (some carrying a ts
/// far ahead that would close the windows early if they counted): the same
/// windows, and the invalid lines counted by reason.
#[test]
fn noisy_tail_gives_the_same_windows_and_counts_invalid_reasons() {
    let tail = read(&data_path("challenge-tail.jsonl"));
    let frames: Vec<&[u8]> = tail
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(frames.len(), 1000);

    let mut invalid: Vec<(Vec<u8>, Invalid)> = vec![
        (
            b"{\"ts\":1468245359,\"uid\":\"u\"".to_vec(),
            Invalid::NotJson,
        ),
        (frames[3][..frames[3].len() - 1].to_vec(), Invalid::NotJson),
        (
            br#"[{"ts":1468245359,"uid":"u"}]"#.to_vec(),
            Invalid::NotObject,
        ),
        (
            br#"{"uid":"u","x":{"ts":1468245359}}"#.to_vec(),
            Invalid::MissingTs,
        ),
        (
            br#"{"ts":1468245359,"ts":1468245359,"uid":"u"}"#.to_vec(),
            Invalid::DuplicateTs,
        ),
        (br#"{"ts":1468245359.5,"uid":"u"}"#.to_vec(), Invalid::BadTs),
        (
            br#"{"ts":"1468299999x","uid":"u"}"#.to_vec(),
            Invalid::BadTs,
        ),
        (br#"{"ts":5,"uid":"u"}"#.to_vec(), Invalid::TsOutOfRange),
        (
            br#"{"ts":99999999999,"uid":"u"}"#.to_vec(),
            Invalid::TsOutOfRange,
        ),
        (br#"{"ts":1468299999}"#.to_vec(), Invalid::MissingUid),
        (
            br#"{"ts":1468299999,"uid":"a","uid":"b"}"#.to_vec(),
            Invalid::DuplicateUid,
        ),
        (br#"{"ts":1468299999,"uid":""}"#.to_vec(), Invalid::BadUid),
        (
            format!(r#"{{"ts":1468299999,"uid":"{}"}}"#, "u".repeat(257)).into_bytes(),
            Invalid::UidTooLong,
        ),
        (
            b"{\"ts\":1468299999,\"uid\":\"\xff\"}".to_vec(),
            Invalid::NotUtf8,
        ),
    ];
    // A line over the frame limit (4096 here; real frames are <= 2124 bytes).
    let mut big = br#"{"ts":1468299999,"uid":"big","pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 5000));
    big.extend(br#""}"#);
    invalid.push((big, Invalid::TooLarge));

    let blanks: [&[u8]; 4] = [b"", b"   ", b"\r", b" \t \r"];
    let mut noisy = Vec::new();
    let (mut blank_count, mut invalid_count) = (0u64, [0u64; Invalid::ALL.len()]);
    for (i, frame) in frames.iter().enumerate() {
        noisy.extend_from_slice(frame);
        if i + 1 == frames.len() {
            break; // the last line has no newline at all
        }
        noisy.extend_from_slice(if i % 3 == 0 { b"\r\n" } else { b"\n" });
        if i % 97 == 5 {
            let blank = blanks[i % blanks.len()];
            noisy.extend_from_slice(blank);
            noisy.extend_from_slice(b"\n");
            blank_count += 1;
        }
        if i % 61 == 7 {
            let (line, reason) = &invalid[(i / 61) % invalid.len()];
            noisy.extend_from_slice(line);
            noisy.extend_from_slice(if i % 2 == 0 { b"\r\n" } else { b"\n" });
            invalid_count[reason.index()] += 1;
        }
    }
    // Make sure every reason occurs at least once, at the start.
    let mut head = Vec::new();
    for (line, reason) in &invalid {
        head.extend_from_slice(line);
        head.extend_from_slice(b"\n");
        invalid_count[reason.index()] += 1;
    }
    head.extend_from_slice(b"\n");
    blank_count += 1;
    head.extend_from_slice(&noisy);
    let noisy = head;
    // Every reason the parser gives (`wrong_partition` is the worker's).
    let parsed = || {
        Invalid::ALL
            .into_iter()
            .filter(|&r| r != Invalid::WrongPartition)
    };
    assert!(parsed().all(|r| invalid_count[r.index()] >= 1));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noisy-tail.jsonl");
    std::fs::write(&path, &noisy).unwrap();

    let mut parser = parser();
    parser.max_frame_bytes = 4096;
    for partitions in [1, 8] {
        let input = timebucket::input::open(path.to_str().unwrap()).expect("open the noisy file");
        let mut out = Vec::new();
        let summary = aggregate(input, &mut out, &options(partitions, parser)).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            golden(&format!("challenge-tail.P{partitions}.L{LATENESS}.jsonl")),
            "P={partitions}"
        );
        assert_eq!(summary.valid, 1000);
        assert_eq!(summary.blank, blank_count);
        assert_eq!(
            summary.invalid,
            invalid_count,
            "by reason: {}",
            summary.invalid_breakdown()
        );
        let total_invalid: u64 = invalid_count.iter().sum();
        assert_eq!(summary.lines, 1000 + blank_count + total_invalid);
        assert_eq!(summary.bytes, noisy.len() as u64);
        assert_eq!(summary.late, LateCounts::default());
        let mut breakdown = String::new();
        for r in parsed() {
            write!(
                breakdown,
                "{}{}={}",
                if breakdown.is_empty() { "" } else { " " },
                r.code(),
                invalid_count[r.index()]
            )
            .unwrap();
        }
        assert_eq!(summary.invalid_breakdown(), breakdown);
    }
}
