//! Kafka's own perf tools (`kafka-producer-perf-test`,
//! `kafka-consumer-perf-test`), run beside ours and parsed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::failure::tail;
use super::report::{ConsumerPerf, ProducerPerf};
use super::topics::RunTopics;
use super::{DataSet, KafkaTool, LoadtestOptions, PerfPayload};

/// Why a perf tool gave no figures (the run goes on without them, with a
/// warning). `name` is the tool's, `tool` how it was started.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {tool} {name}: {source}")]
    Start {
        tool: String,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot wait for {name}: {source}")]
    Wait {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} did not finish within {timeout:?}")]
    Timeout { name: String, timeout: Duration },
    /// `stdout` and `stderr`: the last lines of each.
    #[error("{tool} {name} exited with {status}:\n{stdout}\n{stderr}")]
    Exited {
        tool: String,
        name: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    #[error("no summary in {name}'s output:\n{stdout}")]
    NoSummary { name: &'static str, stdout: String },
    #[error("kafka-consumer-perf-test read {read} of {expected} records")]
    TooFewRecords { read: u64, expected: u64 },
}

pub(super) fn run_tool(
    tool: &KafkaTool,
    name: &str,
    args: &[String],
    log: &Path,
    timeout: Duration,
) -> Result<(String, f64), PerfError> {
    let mut cmd = tool.command(name);
    cmd.args(args).stdin(Stdio::null());
    let started = Instant::now();
    let out_path = log.with_extension("out");
    let create = |path: &Path| {
        File::create(path).map_err(|source| PerfError::Create {
            path: path.to_path_buf(),
            source,
        })
    };
    let (out, err) = (create(&out_path)?, create(log)?);
    let mut child = cmd
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|source| PerfError::Start {
            tool: tool.describe(),
            name: name.into(),
            source,
        })?;
    let status = loop {
        let exited = child.try_wait().map_err(|source| PerfError::Wait {
            name: name.into(),
            source,
        })?;
        if let Some(status) = exited {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(PerfError::Timeout {
                name: name.into(),
                timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let secs = started.elapsed().as_secs_f64();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        return Err(PerfError::Exited {
            tool: tool.describe(),
            name: name.into(),
            status,
            stdout: tail(&out_path, 5),
            stderr: tail(log, 10),
        });
    }
    Ok((stdout, secs))
}

/// The numbers in `kafka-producer-perf-test`'s final summary line:
/// `N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, ...`.
pub fn parse_producer_perf(stdout: &str) -> Option<ProducerPerf> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.contains("records sent") && l.contains("max latency"))?;
    let number_before = |marker: &str| -> Option<f64> {
        let at = line.find(marker)?;
        line[..at]
            .trim_end()
            .rsplit([' ', '(', ','])
            .next()?
            .parse()
            .ok()
    };
    Some(ProducerPerf {
        records: number_before(" records sent")? as u64,
        records_per_sec: number_before(" records/sec")?,
        mb_per_sec: number_before(" MB/sec")? * 1.048_576,
        avg_latency_ms: number_before(" ms avg latency")?,
        max_latency_ms: number_before(" ms max latency")?,
        wall_seconds: 0.0,
    })
}

/// `kafka-consumer-perf-test`'s header and values lines.
pub fn parse_consumer_perf(stdout: &str) -> Option<ConsumerPerf> {
    let mut lines = stdout.lines().map(str::trim).filter(|l| !l.is_empty());
    let header_at = lines.clone().position(|l| l.starts_with("start.time"))?;
    let header: Vec<&str> = lines.nth(header_at)?.split(',').map(str::trim).collect();
    let values: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    let get = |name: &str| -> Option<f64> {
        let i = header.iter().position(|h| *h == name)?;
        values.get(i)?.parse().ok()
    };
    Some(ConsumerPerf {
        records: get("data.consumed.in.nMsg")? as u64,
        records_per_sec: get("nMsg.sec")?,
        mb_per_sec: get("MB.sec")? * 1.048_576,
        rebalance_ms: get("rebalance.time.ms").unwrap_or(0.0),
        fetch_ms: get("fetch.time.ms").unwrap_or(0.0),
        fetch_records_per_sec: get("fetch.nMsg.sec")?,
        fetch_mb_per_sec: get("fetch.MB.sec")? * 1.048_576,
        wall_seconds: 0.0,
    })
}

/// Producer settings of the perf test: those of `ingest` (see
/// [`crate::kafka::producer::INGEST_DEFAULTS`]) in the Java client's names.
pub const PERF_PRODUCER_PROPS: &[&str] = &[
    "acks=all",
    "enable.idempotence=true",
    "compression.type=lz4",
    "linger.ms=25",
    "batch.size=1000000",
    "buffer.memory=268435456",
];

pub(super) fn producer_perf(
    opts: &LoadtestOptions,
    tool: &KafkaTool,
    data: &DataSet,
    topics: &RunTopics,
    dir: &Path,
) -> Result<ProducerPerf, PerfError> {
    let mut args: Vec<String> = vec![
        "--bootstrap-server".into(),
        opts.settings.bootstrap.clone(),
        "--topic".into(),
        topics.perf.clone(),
        "--num-records".into(),
        data.frames.to_string(),
        "--throughput".into(),
        "-1".into(),
    ];
    match (&data.sample, opts.perf_payload) {
        (Some(sample), PerfPayload::Frames) => {
            args.push("--payload-file".into());
            args.push(sample.display().to_string());
        }
        _ => {
            args.push("--record-size".into());
            args.push(format!("{:.0}", data.mean_frame_bytes()));
        }
    }
    args.push("--command-property".into());
    args.extend(PERF_PRODUCER_PROPS.iter().map(|s| s.to_string()));
    let (stdout, secs) = run_tool(
        tool,
        "kafka-producer-perf-test",
        &args,
        &dir.join("producer-perf.log"),
        opts.phase_timeout,
    )?;
    let mut perf = parse_producer_perf(&stdout).ok_or_else(|| PerfError::NoSummary {
        name: "kafka-producer-perf-test",
        stdout: stdout.clone(),
    })?;
    perf.wall_seconds = secs;
    Ok(perf)
}

pub(super) fn consumer_perf(
    opts: &LoadtestOptions,
    tool: &KafkaTool,
    data: &DataSet,
    topics: &RunTopics,
    dir: &Path,
) -> Result<ConsumerPerf, PerfError> {
    let args: Vec<String> = vec![
        "--bootstrap-server".into(),
        opts.settings.bootstrap.clone(),
        "--topic".into(),
        topics.names.input.clone(),
        "--num-records".into(),
        data.frames.to_string(),
        "--group".into(),
        topics.perf_group.clone(),
        "--timeout".into(),
        "60000".into(),
    ];
    let (stdout, secs) = run_tool(
        tool,
        "kafka-consumer-perf-test",
        &args,
        &dir.join("consumer-perf.log"),
        opts.phase_timeout,
    )?;
    let mut perf = parse_consumer_perf(&stdout).ok_or_else(|| PerfError::NoSummary {
        name: "kafka-consumer-perf-test",
        stdout: stdout.clone(),
    })?;
    perf.wall_seconds = secs;
    if perf.records < data.frames {
        return Err(PerfError::TooFewRecords {
            read: perf.records,
            expected: data.frames,
        });
    }
    Ok(perf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_producer_perf_summary() {
        let out = "500000 records sent, 99990.0 records/sec (195.30 MB/sec), 10.2 ms avg latency, 950.0 ms max latency.\n\
                   1000000 records sent, 123456.7 records/sec (241.13 MB/sec), 45.20 ms avg latency, 812.00 ms max latency, 30 ms 50th, 120 ms 95th, 300 ms 99th, 700 ms 99.9th.\n";
        let p = parse_producer_perf(out).unwrap();
        assert_eq!(p.records, 1_000_000);
        assert!((p.records_per_sec - 123456.7).abs() < 1e-6);
        assert!((p.mb_per_sec - 241.13 * 1.048576).abs() < 1e-6);
        assert!((p.avg_latency_ms - 45.2).abs() < 1e-9);
        assert!((p.max_latency_ms - 812.0).abs() < 1e-9);
        assert!(parse_producer_perf("nothing here").is_none());
    }

    #[test]
    fn parses_consumer_perf_summary() {
        let out = "WARN something\nstart.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
                   2026-11-28 15:30:46:717, 2026-11-28 15:30:48:941, 1983.3147, 891.7782, 1000000, 449640.2878, 299, 1925, 1030.2933, 519480.5195\n";
        let c = parse_consumer_perf(out).unwrap();
        assert_eq!(c.records, 1_000_000);
        assert!((c.records_per_sec - 449640.2878).abs() < 1e-6);
        assert!((c.fetch_records_per_sec - 519480.5195).abs() < 1e-6);
        assert!((c.rebalance_ms - 299.0).abs() < 1e-9);
        assert!(parse_consumer_perf("").is_none());
    }
}
