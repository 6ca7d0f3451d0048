//! Offline `aggregate`: the same parser, routing and windows as the workers,
//! over a file or stdin, with no Kafka. Its output is the reference every
//! Kafka test compares against.

use std::io::{Read, Write};

use tracing::warn;

use crate::bucket::Routing;
use crate::error::Error;
use crate::frame::{FrameParser, Invalid, Line};
use crate::input::{LineReader, RawLine};
use crate::metric::MetricRecord;
use crate::window::{Closed, LateCounts, Watermark, Windows};

#[derive(Debug, Clone, Copy)]
pub struct AggregateOptions {
    pub routing: Routing,
    pub lateness: u64,
    pub parser: FrameParser,
    /// How many invalid lines to log one by one before only counting them.
    pub log_invalid: u64,
}

/// What a run saw, for the summary on stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub bytes: u64,
    pub valid: u64,
    pub blank: u64,
    pub invalid: [u64; Invalid::ALL.len()],
    pub late: LateCounts,
    pub seconds_emitted: u64,
    pub minutes_emitted: u64,
}

impl Summary {
    pub fn invalid_total(&self) -> u64 {
        self.invalid.iter().sum()
    }

    pub fn count_invalid(&mut self, reason: Invalid) {
        self.invalid[reason.index()] += 1;
    }

    /// `reason=count` pairs of the non-zero invalid counters.
    pub fn invalid_breakdown(&self) -> String {
        let parts: Vec<String> = Invalid::ALL
            .iter()
            .filter(|r| self.invalid[r.index()] > 0)
            .map(|r| format!("{}={}", r.code(), self.invalid[r.index()]))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" ")
        }
    }
}

/// The event-time windows of every partition, fed from one ordered stream.
pub struct PartitionedWindows {
    routing: Routing,
    windows: Vec<Windows>,
    next_seq: Vec<u64>,
    scratch: Vec<Closed>,
    /// Windows closed and not yet taken by [`PartitionedWindows::take_closed`].
    closed: Vec<(u32, Closed)>,
}

impl PartitionedWindows {
    pub fn new(routing: Routing, lateness: u64) -> Self {
        let p = routing.partitions() as usize;
        PartitionedWindows {
            routing,
            windows: (0..p).map(|_| Windows::new(lateness)).collect(),
            next_seq: vec![0; p],
            scratch: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// Routes and counts one frame, closing what its watermark passed.
    pub fn record(&mut self, ts: u64, uid: &str) {
        let p = self.routing.partition(ts);
        let w = &mut self.windows[p as usize];
        let seq = &mut self.next_seq[p as usize];
        w.record(*seq, ts, uid);
        *seq += 1;
        if let Some(wm) = w.watermark() {
            w.flush(wm, &mut self.scratch);
            self.closed.extend(self.scratch.drain(..).map(|c| (p, c)));
        }
    }

    /// End of input: closes every window, partition by partition.
    pub fn finish(&mut self) {
        for (p, w) in self.windows.iter_mut().enumerate() {
            w.flush(Watermark::END, &mut self.scratch);
            self.closed.extend(self.scratch.drain(..).map(|c| (p as u32, c)));
        }
    }

    /// Windows closed since the last call, in closing order, with their partition.
    pub fn take_closed(&mut self) -> std::vec::Drain<'_, (u32, Closed)> {
        self.closed.drain(..)
    }

    pub fn late(&self) -> LateCounts {
        self.windows.iter().fold(LateCounts::default(), |acc, w| LateCounts {
            seconds: acc.seconds + w.late().seconds,
            minutes: acc.minutes + w.late().minutes,
        })
    }
}

fn write_closed(
    windows: &mut PartitionedWindows,
    summary: &mut Summary,
    out: &mut impl Write,
) -> Result<(), Error> {
    for (p, c) in windows.take_closed() {
        match c {
            Closed::Second { .. } => summary.seconds_emitted += 1,
            Closed::Minute { .. } => summary.minutes_emitted += 1,
        }
        let mut json = MetricRecord::new(c, p as i32).to_json();
        json.push('\n');
        out.write_all(json.as_bytes()).map_err(Error::Output)?;
    }
    Ok(())
}

/// Reads every line of `input`, writes one JSON record per closed window to
/// `out`, and returns what it saw. Invalid lines are counted, never fatal.
pub fn aggregate(input: impl Read, out: impl Write, opts: &AggregateOptions) -> Result<Summary, Error> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut reader = LineReader::new(input, opts.parser.max_frame_bytes);
    let mut windows = PartitionedWindows::new(opts.routing, opts.lateness);
    let mut summary = Summary::default();
    loop {
        let raw = reader
            .next_line()
            .map_err(|source| Error::Input { path: "input".into(), source })?;
        let Some(line) = raw else { break };
        let reason = match line.raw {
            RawLine::Oversized { .. } => Some(Invalid::TooLarge),
            RawLine::Line(bytes) => match opts.parser.parse(bytes) {
                Line::Frame(frame) => {
                    summary.valid += 1;
                    windows.record(frame.ts, &frame.uid);
                    write_closed(&mut windows, &mut summary, &mut out)?;
                    None
                }
                Line::Blank => {
                    summary.blank += 1;
                    None
                }
                Line::Invalid(reason) => Some(reason),
            },
        };
        if let Some(reason) = reason {
            summary.count_invalid(reason);
            if summary.invalid_total() <= opts.log_invalid {
                warn!(line = line.number, reason = reason.code(), "invalid frame: {}", reason.describe());
            }
        }
    }
    windows.finish();
    write_closed(&mut windows, &mut summary, &mut out)?;
    out.flush().map_err(Error::Output)?;
    summary.lines = reader.line_no();
    summary.bytes = reader.bytes();
    summary.late = windows.late();
    Ok(summary)
}
