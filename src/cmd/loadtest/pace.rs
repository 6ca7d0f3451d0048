//! The soak's input: frames generated with `ts` on the wall clock of the run
//! (from a start a little ahead of now, with `generate`'s disorder), cut at
//! the soak's end, and a reader that hands each frame to ingest no earlier
//! than its time, so a worker sees a live stream whose windows close by the
//! watermark as real time passes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cmd::generate::{generate, GenerateOptions};
use crate::core::frame::{FrameParser, Line};
use crate::error::Error;

use super::data::scan_data;
use super::{io_error, parser, unix_ms, DataSet, LoadtestOptions, SoakOptions};

/// Writes the soak's frames to `path`: `generate` from `start` (unix
/// seconds) at `opts.rate`, every frame whose clock is before `start +
/// duration`. The generator's clock is the largest `ts` so far (a delayed
/// frame's `ts` is behind it).
pub(super) fn soak_data(
    opts: &LoadtestOptions,
    soak: &SoakOptions,
    start: u64,
    path: &Path,
) -> Result<DataSet, Error> {
    let secs = soak.duration.as_secs().max(1);
    // The clock advances by one second per `rate` frames on average, give or
    // take; half as much again plus a minute is always enough.
    let gen = GenerateOptions {
        count: u64::from(opts.rate) * (secs * 3 / 2 + 60),
        rate: opts.rate,
        users: opts.users,
        seed: opts.seed,
        frame_len: opts.frame_size,
        max_delay: soak.max_delay,
        delay_percent: soak.delay_percent,
        start,
    };
    let file = File::create(path).map_err(io_error(format!("create {}", path.display())))?;
    let mut cut = CutWriter {
        out: BufWriter::with_capacity(1 << 20, file),
        pending: Vec::new(),
        parser: parser(),
        end: start + secs,
        clock: 0,
        done: false,
    };
    generate(&gen, &mut cut)
        .and_then(|_| cut.out.flush())
        .map_err(io_error(format!("write {}", path.display())))?;
    drop(cut);
    let mut data = scan_data(path)?;
    data.users = opts.users;
    data.rate = opts.rate;
    data.seed = opts.seed;
    data.frame_size = opts.frame_size;
    Ok(data)
}

/// Passes whole lines on until the first one whose clock reaches `end`,
/// then swallows the rest.
struct CutWriter<W: Write> {
    out: W,
    pending: Vec<u8>,
    parser: FrameParser,
    end: u64,
    clock: u64,
    done: bool,
}

impl<W: Write> Write for CutWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(buf.len());
        }
        self.pending.extend_from_slice(buf);
        let mut from = 0;
        while let Some(i) = memchr::memchr(b'\n', &self.pending[from..]) {
            let line = &self.pending[from..from + i + 1];
            self.clock = self.clock.max(line_ts(&self.parser, line).unwrap_or(0));
            if self.clock >= self.end {
                self.done = true;
                break;
            }
            self.out.write_all(line)?;
            from += i + 1;
        }
        self.pending.drain(..from);
        if self.done {
            self.pending = Vec::new();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn line_ts(parser: &FrameParser, line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    match parser.parse(line) {
        Line::Frame(f) => Some(f.ts),
        _ => None,
    }
}

/// Reads a data file line by line and releases each line at its time: the
/// frames whose clock (largest `ts` so far) is second `s` are spread evenly
/// over `[s, s + 1)` of the wall clock. A line is never released before its
/// time; when the machine falls behind, lines go out as fast as they can
/// (how far behind is in [`PacedReader::behind_ms`]).
pub(super) struct PacedReader<R: BufRead> {
    inner: R,
    parser: FrameParser,
    clock: u64,
    /// The lines of the current second, and its size.
    group: VecDeque<Vec<u8>>,
    group_second: u64,
    group_len: usize,
    /// The first line of the next second, read ahead.
    next: Option<(u64, Vec<u8>)>,
    /// The line being handed out, and how much of it is.
    current: Vec<u8>,
    pos: usize,
    eof: bool,
    /// Lines released so far (shared with the soak's sampler).
    pub(super) released: Arc<AtomicU64>,
    /// How late the last line was released, in ms (0: on time).
    pub(super) behind_ms: Arc<AtomicU64>,
    /// Unix ms at which the first line was due (0 until it is read).
    pub(super) first_due_ms: Arc<AtomicU64>,
}

impl<R: BufRead> PacedReader<R> {
    pub(super) fn new(inner: R) -> PacedReader<R> {
        PacedReader {
            inner,
            parser: parser(),
            clock: 0,
            group: VecDeque::new(),
            group_second: 0,
            group_len: 0,
            next: None,
            current: Vec::new(),
            pos: 0,
            eof: false,
            released: Arc::new(AtomicU64::new(0)),
            behind_ms: Arc::new(AtomicU64::new(0)),
            first_due_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The next line and the clock second it belongs to.
    fn read_line(&mut self) -> std::io::Result<Option<(u64, Vec<u8>)>> {
        if let Some(next) = self.next.take() {
            return Ok(Some(next));
        }
        if self.eof {
            return Ok(None);
        }
        let mut line = Vec::new();
        if self.inner.read_until(b'\n', &mut line)? == 0 {
            self.eof = true;
            return Ok(None);
        }
        self.clock = self.clock.max(line_ts(&self.parser, &line).unwrap_or(0));
        Ok(Some((self.clock, line)))
    }

    /// Reads the lines of the next clock second.
    fn load_group(&mut self) -> std::io::Result<bool> {
        let Some((second, first)) = self.read_line()? else {
            return Ok(false);
        };
        self.group_second = second;
        self.group.push_back(first);
        while let Some((s, line)) = self.read_line()? {
            if s != second {
                self.next = Some((s, line));
                break;
            }
            self.group.push_back(line);
        }
        self.group_len = self.group.len();
        Ok(true)
    }
}

impl<R: BufRead> Read for PacedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.current.len() {
            if self.group.is_empty() && !self.load_group()? {
                return Ok(0);
            }
            let k = self.group_len - self.group.len();
            let due = self.group_second * 1000 + (k * 1000 / self.group_len.max(1)) as u64;
            if self.released.load(Ordering::Relaxed) == 0 {
                self.first_due_ms.store(due, Ordering::SeqCst);
            }
            let now = unix_ms();
            if due > now {
                std::thread::sleep(Duration::from_millis(due - now));
            }
            self.behind_ms
                .store(unix_ms().saturating_sub(due), Ordering::Relaxed);
            self.current = self.group.pop_front().expect("a line");
            self.pos = 0;
            self.released.fetch_add(1, Ordering::Relaxed);
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ts: u64, uid: &str) -> String {
        format!("{{\"ts\":{ts},\"uid\":\"{uid}\"}}\n")
    }

    #[test]
    fn cut_writer_stops_at_the_first_line_whose_clock_reaches_the_end() {
        let mut out = Vec::new();
        let mut cut = CutWriter {
            out: &mut out,
            pending: Vec::new(),
            parser: parser(),
            end: 1_700_000_002,
            clock: 0,
            done: false,
        };
        let text: String = [
            frame(1_700_000_000, "a"),
            frame(1_700_000_001, "b"),
            // Delayed: behind the clock, kept.
            frame(1_699_999_990, "c"),
            frame(1_700_000_002, "d"),
            frame(1_700_000_001, "e"),
        ]
        .concat();
        // In pieces that split lines.
        for chunk in text.as_bytes().chunks(7) {
            assert_eq!(cut.write(chunk).unwrap(), chunk.len());
        }
        drop(cut);
        let want: String = [
            frame(1_700_000_000, "a"),
            frame(1_700_000_001, "b"),
            frame(1_699_999_990, "c"),
        ]
        .concat();
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn paced_reader_releases_lines_at_their_time_and_whole() {
        let now = unix_ms() / 1000;
        let past: String = [
            frame(now - 5, "a"),
            frame(now - 9, "b"),
            frame(now - 4, "c"),
        ]
        .concat();
        let future = frame(now + 1, "d");
        let text = past.clone() + &future;
        let mut reader = PacedReader::new(std::io::BufReader::new(text.as_bytes()));
        let started = std::time::Instant::now();
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, text);
        assert_eq!(reader.released.load(Ordering::Relaxed), 4);
        // The last line waited for its second; the others went out at once.
        assert!(unix_ms() >= (now + 1) * 1000);
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(reader.behind_ms.load(Ordering::Relaxed) < 1000);
        // Lines whose time is past go out at once, and say how late.
        let mut reader = PacedReader::new(std::io::BufReader::new(past.as_bytes()));
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, past);
        assert!(reader.behind_ms.load(Ordering::Relaxed) >= 3000);
    }
}
