//! Hostile input against a real worker (issue 18, the state budget): a
//! stream of thousands of distinct huge uids and far-future frames leaves
//! the worker alive with its memory bounded and every honest window exact;
//! the state budget stops a worker loudly (exit 13, the metric past the
//! budget); and a window far ahead no longer pins the committed offset, so
//! a restart replays about a minute, not the whole stream (measured before
//! and after, recorded in BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use timebucket::cmd::aggregate::{aggregate as aggregate_lib, AggregateOptions, Summary};
use timebucket::cmd::worker::{Phase, WorkerReport};
use timebucket::core::bucket::Routing;
use timebucket::core::compare::WindowSet;
use timebucket::core::frame::{default_max_ts, FrameParser, DEFAULT_MAX_UID_BYTES, DEFAULT_MIN_TS};
use timebucket::core::window::WatermarkRule;

use crate::common::pipeline::{
    assert_same_windows, emitted_once, read_topic, Pipeline, PARTITIONS,
};
use crate::common::tools::get;
use crate::common::{unique_name, wait_until};

/// Where the generated input starts: a bucket boundary (B = 900 s), so its
/// ~11 minutes at 15 frames/s all fall in one bucket of one partition.
const START: u64 = 1_468_243_800;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The honest stream: `frames` generated frames (15/s, 5,000 users).
fn honest(p: &Pipeline, frames: u64) -> Vec<String> {
    let path = p.input_file(frames, &[]);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// `aggregate` (the library, as the CLI runs it) over `path`, with the
/// horizon given or the routing's cycle by default.
fn offline(path: &Path, horizon: Option<u64>) -> (WindowSet, Summary) {
    let opts = AggregateOptions {
        routing: Routing::new(900, PARTITIONS as u32).unwrap(),
        rule: WatermarkRule::default().with_horizon(horizon),
        parser: FrameParser::new(DEFAULT_MIN_TS, default_max_ts(now())),
        log_invalid: 0,
    };
    let mut out = Vec::new();
    let summary = aggregate_lib(std::fs::File::open(path).unwrap(), &mut out, &opts).unwrap();
    (WindowSet::from_json_lines(&out).unwrap(), summary)
}

fn write(p: &Pipeline, name: &str, lines: &[String]) -> PathBuf {
    let path = p.dir.path().join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// The worker's report written at `path`, once it is there in `phase`
/// (any phase: `None`).
fn report(path: &Path, phase: Option<Phase>) -> WorkerReport {
    let mut found = None;
    wait_until(Duration::from_secs(60), "the worker's report", || {
        found = WorkerReport::read(path)
            .unwrap()
            .filter(|r| phase.is_none_or(|p| r.phase == p));
        found.is_some()
    });
    found.unwrap()
}

/// A worker process with its report at `report`, and its extra options.
fn worker(p: &Pipeline, report: &Path, args: &[&str]) -> Child {
    let log =
        std::fs::File::create(p.dir.path().join(format!("{}.log", unique_name("w")))).unwrap();
    p.command(&["worker", "--commit-interval-ms", "200"])
        .arg("--report-file")
        .arg(report)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The value of an unlabelled sample in a Prometheus exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Thousands of distinct huge uids, thousands of distinct uids at the cap,
/// and frames hours ahead, spread through an honest stream: the worker
/// stays alive with its RSS bounded, every honest window is exact, every
/// huge uid is dead-lettered as `uid_too_long`, and the far-ahead frames
/// are counted (in windows dropped beyond the horizon, or in their own).
#[test]
fn distinct_huge_uids_and_far_future_frames_leave_the_worker_alive_and_exact() {
    let p = Pipeline::new("budget-attack");
    let mut lines = honest(&p, 12_000);
    let (huge, at_cap, far) = (3_000, 3_000, 400);
    let mut hostile = Vec::new();
    for i in 0..huge {
        // 20 KB each: 60 MB of uids that would each be kept in full.
        let uid = format!("{i:08x}{}", "h".repeat(20_000));
        hostile.push(format!(
            r#"{{"ts":{},"uid":"{uid}"}}"#,
            START + 60 + i % 500
        ));
    }
    for i in 0..at_cap {
        let uid = format!("{i:08x}{}", "c".repeat(DEFAULT_MAX_UID_BYTES - 8));
        hostile.push(format!(
            r#"{{"ts":{},"uid":"{uid}"}}"#,
            START + 60 + i % 500
        ));
    }
    for i in 0..far {
        // One to twenty hours ahead of the honest stream.
        let ts = START + 3_600 * (1 + i % 20) + i;
        hostile.push(format!(r#"{{"ts":{ts},"uid":"far-{i}"}}"#));
    }
    // Interleave: one hostile frame after every few honest ones.
    let every = lines.len() / hostile.len();
    let mut mixed = Vec::new();
    let mut hostile = hostile.into_iter();
    for (i, line) in lines.drain(..).enumerate() {
        mixed.push(line);
        if i % every.max(1) == 0 {
            mixed.extend(hostile.next());
        }
    }
    mixed.extend(hostile);
    let path = write(&p, "attack.jsonl", &mixed);
    // Ingest lets the huge uids through, as a foreign producer would: the
    // worker must hold against them itself.
    let out = p
        .command(&["ingest", "--max-uid-bytes", "1000000"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let report_path = p.dir.path().join("attack.report.json");
    let mut child = worker(
        &p,
        &report_path,
        &["--until-end", "--state-budget", "256MiB"],
    );
    let pid = child.id();
    let mut peak_rss_kb = 0;
    let started = Instant::now();
    let status = loop {
        if let Some(rss) = vm_rss_kb(pid) {
            peak_rss_kb = peak_rss_kb.max(rss);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the worker did not finish\n{}",
            p.worker_logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "worker: {status}\n{}", p.worker_logs());
    let r = report(&report_path, Some(Phase::Finished));
    eprintln!(
        "attack: peak RSS sampled {peak_rss_kb} kB (VmHWM {:?} kB), state peak {} bytes",
        r.peak_rss_kb, r.summary.state_bytes_peak
    );
    // The huge uids alone are 60 MB: none of them is held.
    assert!(
        peak_rss_kb < 200_000,
        "worker RSS {peak_rss_kb} kB under attack"
    );
    assert!(r.summary.state_bytes_peak > 0 && r.summary.state_bytes_peak < 16 << 20);

    // Honest windows exact: the windows equal aggregate's of the same file.
    let (want, offline_summary) = offline(&path, None);
    assert_same_windows(&emitted_once(&p), &want, || p.worker_logs());
    // Every hostile frame accounted for.
    let reasons = &r.summary.invalid_reasons;
    assert_eq!(reasons.get("uid_too_long"), Some(&huge));
    assert_eq!(
        offline_summary.invalid[timebucket::core::frame::Invalid::UidTooLong.index()],
        huge
    );
    let dead = read_topic(&p.bootstrap, &p.dead_letter);
    let too_long = dead
        .iter()
        .filter(|d| d.headers.get("timebucket.reason").map(String::as_str) == Some("uid_too_long"))
        .count();
    assert_eq!(too_long, huge as usize);
    assert_eq!(r.summary.frames, offline_summary.valid);
    assert_eq!(r.summary.beyond_horizon, offline_summary.beyond_horizon);
    assert!(
        r.summary.beyond_horizon > 0 && r.summary.beyond_horizon <= far,
        "{:?}",
        r.summary
    );
}

/// A budget far too small for the stream: the worker stops with exit code
/// 13, and its metrics (served on after the stop, `--metrics-linger`) show
/// the state past the budget.
#[test]
fn the_state_budget_stops_the_worker_loudly() {
    let p = Pipeline::new("budget-limit");
    let lines = honest(&p, 3_000);
    let path = write(&p, "honest.jsonl", &lines);
    p.ingest(&path);
    let budget: u64 = 8 << 10;
    let report_path = p.dir.path().join("limit.report.json");
    let mut child = worker(
        &p,
        &report_path,
        &[
            "--until-end",
            "--state-budget",
            "8KiB",
            "--metrics-addr",
            "127.0.0.1:0",
            "--metrics-linger",
            "60",
        ],
    );
    let addr = report(&report_path, None)
        .metrics_addr
        .expect("metrics served");
    let url = format!("http://{addr}/metrics");
    let mut text = String::new();
    wait_until(Duration::from_secs(60), "the state past the budget", || {
        text = get(&url).1;
        sample(&text, "timebucket_state_bytes").is_some_and(|b| b > budget as f64)
    });
    assert_eq!(
        sample(&text, "timebucket_state_budget_bytes"),
        Some(budget as f64)
    );
    let r = report(&report_path, Some(Phase::Finished));
    assert!(!r.ok);
    assert!(r.summary.state_bytes_peak > budget, "{:?}", r.summary);
    assert!(sample(&get(&url).1, "timebucket_state_peak_bytes").is_some_and(|b| b > budget as f64));
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(13), "{}", p.worker_logs());
}

/// One frame an hour ahead, early in the stream: live workers are stopped
/// once they consumed everything (their windows still open), and a second
/// worker resumes from the committed checkpoint. Returns how many offsets
/// it replayed, and checks its windows against `aggregate`'s.
fn replay_after_a_far_window(horizon: Option<u64>) -> u64 {
    let p = Pipeline::new("budget-replay");
    let mut lines = honest(&p, 10_000);
    // START + 1 h is 4 buckets on: the same partition.
    lines.insert(100, format!(r#"{{"ts":{},"uid":"far"}}"#, START + 3_700));
    let path = write(&p, "far.jsonl", &lines);
    p.ingest(&path);
    let horizon_args: Vec<String> = horizon
        .map(|h| vec!["--horizon-seconds".into(), h.to_string()])
        .unwrap_or_default();
    let horizon_args: Vec<&str> = horizon_args.iter().map(String::as_str).collect();

    let live_report = p.dir.path().join("live.report.json");
    let mut args = vec!["--idle-flush", "0", "--metrics-addr", "127.0.0.1:0"];
    args.extend(&horizon_args);
    let mut live = worker(&p, &live_report, &args);
    let addr = report(&live_report, None).metrics_addr.unwrap();
    let url = format!("http://{addr}/metrics");
    let total = lines.len() as f64;
    wait_until(
        Duration::from_secs(120),
        "the live worker to consume all",
        || sample(&get(&url).1, "timebucket_frames_consumed_total").is_some_and(|n| n >= total),
    );
    let _ = Command::new("kill").arg(live.id().to_string()).status();
    assert!(live.wait().unwrap().success(), "{}", p.worker_logs());

    let resumed = p.dir.path().join("resumed.report.json");
    let mut args = vec!["--until-end"];
    args.extend(&horizon_args);
    let mut second = worker(&p, &resumed, &args);
    assert!(second.wait().unwrap().success(), "{}", p.worker_logs());
    let r = report(&resumed, Some(Phase::Finished));
    let replayed: u64 = r
        .resumes
        .iter()
        .map(|resume| resume.handled_until - resume.resume)
        .sum();
    let (want, _) = offline(&path, horizon);
    assert_same_windows(&emitted_once(&p), &want, || p.worker_logs());
    replayed
}

#[test]
fn a_window_far_ahead_no_longer_pins_the_committed_offset() {
    // Before: a horizon longer than the frame's lead keeps its window open
    // through the whole stream, and the restart replays nearly all of it.
    let before = replay_after_a_far_window(Some(86_400));
    // After (the default, the routing's cycle: one hour here): the next
    // honest frame drops the far window, and the restart replays the open
    // minute (15 frames/s) and the lateness.
    let after = replay_after_a_far_window(None);
    eprintln!("replayed after a restart: {before} offsets before, {after} after");
    assert!(before > 9_000, "before: {before}");
    assert!(after < 1_500, "after: {after}");
}
