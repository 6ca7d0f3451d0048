//! Offline `aggregate`: the same parser, routing and windows as the workers,
//! over a file or stdin, with no Kafka. Its output is the reference every
//! Kafka test compares against. With shards (`--shards S`), every shard's
//! windows are summed per window, as `timebucket merge` does live.

use std::io::{Read, Write};

use tracing::warn;

use crate::core::bucket::Routing;
use crate::core::frame::{FrameParser, Invalid, Line};
use crate::core::merge::OfflineMerge;
use crate::core::metric::MetricRecord;
use crate::core::partitioned::PartitionedWindows;
pub use crate::core::summary::Summary;
use crate::core::window::{Closed, WatermarkRule};
use crate::error::Error;
use crate::input::{Chunk, ChunkReader};

#[derive(Debug, Clone, Copy)]
pub struct AggregateOptions {
    pub routing: Routing,
    pub rule: WatermarkRule,
    pub parser: FrameParser,
    /// How many invalid lines to log one by one before only counting them.
    pub log_invalid: u64,
}

/// Writes the windows closed so far; with shards, adds them to `merge`
/// instead (the merged windows are written at the end).
fn write_closed(
    windows: &mut PartitionedWindows,
    merge: &mut Option<(Routing, OfflineMerge)>,
    summary: &mut Summary,
    out: &mut impl Write,
) -> Result<(), Error> {
    for (p, c) in windows.take_closed() {
        if let Some((routing, merge)) = merge {
            merge.add(routing, p, c);
            continue;
        }
        write_window(summary, out, p, c)?;
    }
    Ok(())
}

fn write_window(
    summary: &mut Summary,
    out: &mut impl Write,
    partition: u32,
    c: Closed,
) -> Result<(), Error> {
    match c {
        Closed::Second { .. } => summary.seconds_emitted += 1,
        Closed::Minute { .. } => summary.minutes_emitted += 1,
    }
    let mut json = MetricRecord::new(c, partition as i32).to_json();
    json.push('\n');
    out.write_all(json.as_bytes()).map_err(Error::Output)
}

/// Bytes per chunk handed to a parse thread.
const CHUNK_BYTES: usize = 2 << 20;

/// A uid inside its chunk's buffer, or decoded (it had escapes).
enum Uid {
    Span(u32, u32),
    Owned(Box<str>),
}

enum Parsed {
    Frame {
        ts: u64,
        uid: Uid,
    },
    /// `line` is 0-based within the chunk.
    Invalid {
        line: u32,
        reason: Invalid,
    },
}

/// One chunk's lines, parsed, ready to be counted in order.
struct ParsedChunk {
    index: u64,
    buf: Vec<u8>,
    lines: u64,
    bytes: u64,
    blank: u64,
    items: Vec<Parsed>,
}

fn parse_chunk(parser: &FrameParser, index: u64, chunk: Chunk) -> ParsedChunk {
    let buf = match chunk {
        Chunk::Lines(buf) => buf,
        Chunk::Oversized { len } => {
            return ParsedChunk {
                index,
                buf: Vec::new(),
                lines: 1,
                bytes: len + 1,
                blank: 0,
                items: vec![Parsed::Invalid {
                    line: 0,
                    reason: Invalid::TooLarge,
                }],
            }
        }
    };
    let mut items = Vec::with_capacity(buf.len() / 1024);
    let (mut lines, mut blank) = (0u64, 0u64);
    let mut start = 0;
    while start < buf.len() {
        let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |p| start + p);
        match parser.parse(&buf[start..end]) {
            Line::Frame(frame) => {
                let uid = match frame.uid {
                    std::borrow::Cow::Borrowed(s) => {
                        let offset = s.as_ptr() as usize - buf.as_ptr() as usize;
                        Uid::Span(offset as u32, s.len() as u32)
                    }
                    std::borrow::Cow::Owned(s) => Uid::Owned(s.into_boxed_str()),
                };
                items.push(Parsed::Frame { ts: frame.ts, uid });
            }
            Line::Blank => blank += 1,
            Line::Invalid(reason) => items.push(Parsed::Invalid {
                line: lines as u32,
                reason,
            }),
        }
        lines += 1;
        start = end + 1;
    }
    ParsedChunk {
        index,
        bytes: buf.len() as u64,
        buf,
        lines,
        blank,
        items,
    }
}

/// Reads every line of `input`, writes one JSON record per closed window to
/// `out`, and returns what it saw. Invalid lines are counted, never fatal.
///
/// Parsing is spread over the machine's cores (chunks of whole lines);
/// counting stays on this thread, in input order, so results are exactly
/// those of a sequential run.
pub fn aggregate(
    input: impl Read + Send,
    out: impl Write,
    opts: &AggregateOptions,
) -> Result<Summary, Error> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let (work_tx, work_rx) = crossbeam_channel::bounded::<(u64, Chunk)>(threads * 2);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<ParsedChunk>(threads * 2);
    let (spare_tx, spare_rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    let parser = opts.parser;

    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> std::io::Result<()> {
            let mut chunks = ChunkReader::new(input, CHUNK_BYTES, parser.max_frame_bytes);
            let mut index = 0;
            while let Some(chunk) = chunks.next_chunk()? {
                while let Ok(buf) = spare_rx.try_recv() {
                    chunks.recycle(buf);
                }
                if work_tx.send((index, chunk)).is_err() {
                    break; // the counting side stopped early (an output error)
                }
                index += 1;
            }
            Ok(())
        });
        for _ in 0..threads {
            let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
            scope.spawn(move || {
                for (index, chunk) in work_rx {
                    if done_tx.send(parse_chunk(&parser, index, chunk)).is_err() {
                        break;
                    }
                }
            });
        }
        drop((work_rx, done_tx));
        let counted = count_in_order(done_rx, spare_tx, out, opts);
        let read = reader.join().expect("reader thread panicked");
        let summary = counted?;
        read.map_err(|source| Error::Input {
            path: "input".into(),
            reason: source,
        })?;
        Ok(summary)
    })
}

fn count_in_order(
    done: crossbeam_channel::Receiver<ParsedChunk>,
    spare: crossbeam_channel::Sender<Vec<u8>>,
    out: impl Write,
    opts: &AggregateOptions,
) -> Result<Summary, Error> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut windows = PartitionedWindows::new(opts.routing, opts.rule);
    // With shards every partition's windows are partials of the merged ones.
    let mut merge = (opts.routing.shards() > 1).then(|| (opts.routing, OfflineMerge::default()));
    let mut summary = Summary::default();
    let mut pending = std::collections::BTreeMap::new();
    let mut next = 0u64;
    for chunk in done {
        pending.insert(chunk.index, chunk);
        while let Some(chunk) = pending.remove(&next) {
            next += 1;
            for item in &chunk.items {
                match item {
                    Parsed::Frame { ts, uid } => {
                        let uid = match uid {
                            Uid::Span(at, len) => {
                                // The parser validated the whole line as UTF-8.
                                std::str::from_utf8(&chunk.buf[*at as usize..(*at + *len) as usize])
                                    .expect("parser returned a UTF-8 uid")
                            }
                            Uid::Owned(s) => s,
                        };
                        summary.valid += 1;
                        windows.record(*ts, uid);
                        write_closed(&mut windows, &mut merge, &mut summary, &mut out)?;
                    }
                    Parsed::Invalid { line, reason } => {
                        summary.count_invalid(*reason);
                        if summary.invalid_total() <= opts.log_invalid {
                            let line_no = summary.lines + u64::from(*line) + 1;
                            warn!(
                                line = line_no,
                                reason = reason.code(),
                                "invalid frame: {}",
                                reason.describe()
                            );
                        }
                    }
                }
            }
            summary.lines += chunk.lines;
            summary.bytes += chunk.bytes;
            summary.blank += chunk.blank;
            let _ = spare.send(chunk.buf);
        }
    }
    windows.finish();
    write_closed(&mut windows, &mut merge, &mut summary, &mut out)?;
    if let Some((_, merge)) = merge {
        for m in merge.finish() {
            write_window(&mut summary, &mut out, m.partition, m.closed)?;
        }
    }
    out.flush().map_err(Error::Output)?;
    summary.late = windows.late();
    summary.beyond_horizon = windows.beyond_horizon();
    Ok(summary)
}
