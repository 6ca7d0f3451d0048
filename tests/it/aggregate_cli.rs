//! The `timebucket aggregate` binary as users run it: inputs (file, stdin,
//! `.gz`), the summary on stderr, and exit codes (0 ok, even with invalid
//! lines; 2 bad configuration; 3 unreadable input).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::common::files::{data_path, golden};
use flate2::write::GzEncoder;
use flate2::Compression;

fn timebucket(args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_timebucket"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        // The CLI reads these from the environment too; keep CI's out of it.
        .env_remove("PARTITIONS")
        .env_remove("LATENESS")
        .env_remove("BUCKET_SECONDS")
        .env_remove("MIN_TS")
        .env_remove("MAX_TS")
        .env_remove("MAX_FRAME_BYTES")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn timebucket");
    let writer = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            // The child may exit early on an error; a broken pipe is fine then.
            let _ = pipe.write_all(&bytes);
        })
    });
    let out = child.wait_with_output().expect("wait for timebucket");
    if let Some(w) = writer {
        w.join().unwrap();
    }
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(out));
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn file_stdin_and_gz_give_identical_output() {
    let path = data_path("challenge-tail.jsonl");
    let bytes = std::fs::read(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("tail.jsonl.gz");
    std::fs::write(&gz, gzip(&bytes)).unwrap();
    // `cat a.gz b.gz` is a valid gzip file of both halves.
    let multi = dir.path().join("tail-multi.jsonl.gz");
    let half = bytes.len() / 2;
    let mut two = gzip(&bytes[..half]);
    two.extend(gzip(&bytes[half..]));
    std::fs::write(&multi, two).unwrap();

    let args = |input: &str| {
        vec![
            "aggregate".to_owned(),
            input.to_owned(),
            "-P".into(),
            "8".into(),
            "-L".into(),
            "5".into(),
        ]
    };
    let run = |input: &str, stdin: Option<Vec<u8>>| {
        let a = args(input);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = timebucket(&a, stdin);
        assert_ok(&out);
        stdout(&out)
    };
    let from_file = run(path.to_str().unwrap(), None);
    assert_eq!(from_file, golden("challenge-tail.P8.L5.jsonl"));
    assert_eq!(run("-", Some(bytes.clone())), from_file, "stdin (-)");
    assert_eq!(run(gz.to_str().unwrap(), None), from_file, ".gz");
    assert_eq!(
        run(multi.to_str().unwrap(), None),
        from_file,
        "multi-member .gz"
    );

    // No input argument reads stdin; -P 8 and -L 5 are the defaults.
    let out = timebucket(&["aggregate"], Some(bytes));
    assert_ok(&out);
    assert_eq!(stdout(&out), from_file, "defaults and implicit stdin");
}

#[test]
fn invalid_blank_and_late_lines_exit_zero_with_a_summary() {
    let input = concat!(
        "{\"ts\":1468245300,\"uid\":\"a\"}\n",
        "{\"ts\":1468245301,\"uid\":\"b\"}\r\n",
        "\n",
        "{\"ts\":1468245400,\"uid\":\"c\"}\n", // watermark 1468245395: closes minute 1468245300
        "not json\n",
        "{\"uid\":\"x\",\"y\":{\"ts\":1468245301}}\n",
        "{\"ts\":1468245305,\"uid\":\"d\"}\n", // late for its second and its minute
        "[1]",                                 // last line, no newline
    );
    // One user moves the clock here: the plain largest-ts rule (quorum 1).
    let out = timebucket(
        &[
            "aggregate",
            "-",
            "-P",
            "1",
            "-L",
            "5",
            "--watermark-quorum",
            "1",
        ],
        Some(input.as_bytes().to_vec()),
    );
    assert_ok(&out);
    let records: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let brief: Vec<(String, u64, u64, Option<u64>)> = records
        .iter()
        .map(|r| {
            (
                r["metric"].as_str().unwrap().to_owned(),
                r["window_start"].as_u64().unwrap(),
                r["frames"].as_u64().unwrap(),
                r.get("unique_users").and_then(|u| u.as_u64()),
            )
        })
        .collect();
    let w = |m: &str, s: u64, f: u64, u: Option<u64>| (m.to_owned(), s, f, u);
    assert_eq!(
        brief,
        vec![
            w("second", 1468245300, 1, None),
            w("second", 1468245301, 1, None),
            w("minute", 1468245300, 2, Some(2)),
            w("second", 1468245400, 1, None),
            w("minute", 1468245360, 1, Some(1)),
        ]
    );
    let err = stderr(&out);
    for needle in [
        "8 lines",
        "4 valid frames",
        "1 blank",
        "3 invalid",
        "not_json=1",
        "not_object=1",
        "missing_ts=1",
        "late frames: 1 for their second, 1 for their minute",
        "emitted: 3 seconds, 2 minutes",
    ] {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
    assert!(
        !err.contains("bad_ts"),
        "only non-zero reasons are listed:\n{err}"
    );
}

#[test]
fn a_missing_file_exits_3_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-frames.jsonl");
    for path in [missing.clone(), dir.path().join("no-such-frames.jsonl.gz")] {
        let out = timebucket(&["aggregate", path.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(path.to_str().unwrap()),
            "message does not name the file:\n{err}"
        );
        assert!(err.contains("No such file"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

/// Files that open but cannot be read through: a directory, a truncated
/// gzip, a `.gz` that is not gzip. All exit 3.
#[test]
fn unreadable_inputs_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(data_path("challenge-tail.jsonl")).unwrap();
    let truncated = dir.path().join("truncated.jsonl.gz");
    let gz = gzip(&bytes);
    std::fs::write(&truncated, &gz[..gz.len() / 2]).unwrap();
    let not_gzip = dir.path().join("plain.jsonl.gz");
    std::fs::write(&not_gzip, &bytes[..4096]).unwrap();
    for path in [dir.path().to_path_buf(), truncated, not_gzip] {
        let out = timebucket(&["aggregate", path.to_str().unwrap(), "-P", "1"], None);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}: {}",
            path.display(),
            stderr(&out)
        );
        assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    }
}

/// BUG (src/cmd/aggregate.rs): a read error after the file was opened is
/// reported as `cannot read input: ...` (aggregate() hard-codes the path
/// "input"), so the message does not say which file; e.g. for a truncated
/// gzip: `error: cannot read input: incomplete deflate stream: ...`.
#[test]
fn read_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(data_path("challenge-tail.jsonl")).unwrap();
    let truncated = dir.path().join("truncated.jsonl.gz");
    let gz = gzip(&bytes);
    std::fs::write(&truncated, &gz[..gz.len() / 2]).unwrap();
    for path in [dir.path().to_path_buf(), truncated] {
        let out = timebucket(&["aggregate", path.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(3));
        assert!(
            stderr(&out).contains(path.to_str().unwrap()),
            "{}",
            stderr(&out)
        );
    }
}

/// BUG (src/error.rs + src/main.rs): `Error::Input`'s message embeds its
/// `source` and also declares it as the error source, and main prints the
/// whole chain (`{e:#}`), so the OS error appears twice:
/// `error: cannot read F: No such file or directory (os error 2): No such file or directory (os error 2)`.
#[test]
fn the_cause_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jsonl");
    let out = timebucket(&["aggregate", missing.to_str().unwrap()], None);
    let err = stderr(&out);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn bad_configuration_exits_2() {
    let head = data_path("challenge-head.jsonl");
    let head = head.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["aggregate", head, "--bucket-seconds", "90"],
            "multiple of 60",
        ),
        (
            vec!["aggregate", head, "--bucket-seconds", "0"],
            "multiple of 60",
        ),
        (vec!["aggregate", head, "-P", "0"], "partition"),
    ] {
        let out = timebucket(&args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?} wrote output");
    }
    // Bad configuration is reported before the input is even opened.
    let out = timebucket(
        &[
            "aggregate",
            "/nonexistent/frames.jsonl",
            "--bucket-seconds",
            "90",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // The environment variable is checked the same way.
    let out = Command::new(env!("CARGO_BIN_EXE_timebucket"))
        .args(["aggregate", head])
        .env("BUCKET_SECONDS", "90")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A multiple of 60 other than the default is fine: same windows.
    let out = timebucket(
        &["aggregate", head, "--bucket-seconds", "120", "-P", "1"],
        None,
    );
    assert_ok(&out);
    assert_eq!(stdout(&out), golden("challenge-head.P1.L5.jsonl"));
}
