//! The parse of a poll batch's records on several threads. The parse is
//! pure and about three quarters of the polling thread's work (BENCHMARKS.md,
//! "Speed at the limit"), so a worker that reads faster than one core
//! parses splits each batch into contiguous chunks, one per thread, the
//! polling thread parsing the first. The lines come back in the records'
//! order; counting them stays on the polling thread, one partition's
//! records in offset order, so the results do not depend on the threads.

use crate::cmd::driver::Record;
use crate::core::frame::Line;
use crate::error::Error;

/// Fewer records than this are parsed on the polling thread alone: handing
/// a chunk to another thread costs about what 30 frames of 2 KB take to
/// parse.
const MIN_PARALLEL: usize = 64;

/// The threads that parse a worker's batches: the polling thread and a
/// pool of the others. rayon's scoped tasks let the pool's threads borrow
/// the batch's records (they live only as long as the batch) without a
/// copy and without a thread started per batch: starting one per batch
/// (`std::thread::scope`) made a worker 5-10 % slower on 2 cores,
/// BENCHMARKS.md.
pub(super) struct BatchParser {
    /// `None`: the polling thread parses alone.
    pool: Option<rayon::ThreadPool>,
}

impl BatchParser {
    /// Parses on `threads` threads, the polling thread one of them.
    pub fn new(threads: usize) -> Result<BatchParser, Error> {
        let pool = (threads > 1)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads - 1)
                    .thread_name(|i| format!("parse-{i}"))
                    .build()
                    .map_err(|source| Error::ParseThreads { threads, source })
            })
            .transpose()?;
        Ok(BatchParser { pool })
    }

    /// The threads that parse, the polling thread included.
    pub fn threads(&self) -> usize {
        self.pool
            .as_ref()
            .map_or(1, |p| p.current_num_threads() + 1)
    }

    /// `parse` of each of `records`, in their order.
    pub fn parse_all<'a, F>(&self, records: &[Record<'a>], parse: F) -> Vec<Line<'a>>
    where
        F: Fn(&Record<'a>) -> Line<'a> + Sync,
    {
        let pool = match &self.pool {
            Some(pool) if records.len() >= MIN_PARALLEL => pool,
            _ => return records.iter().map(&parse).collect(),
        };
        let parts = (pool.current_num_threads() + 1).min(records.len() / MIN_PARALLEL);
        let chunk = records.len().div_ceil(parts);
        let parse = &parse;
        let mut parsed: Vec<Vec<Line<'a>>> = (0..parts).map(|_| Vec::new()).collect();
        pool.in_place_scope(|scope| {
            let (mine, theirs) = parsed.split_first_mut().expect("one part at least");
            let mut chunks = records.chunks(chunk);
            let first = chunks.next().expect("records");
            for (c, out) in chunks.zip(theirs) {
                scope.spawn(move |_| *out = c.iter().map(parse).collect());
            }
            *mine = first.iter().map(parse).collect();
        });
        parsed.into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::{FrameParser, Invalid};

    fn records(payloads: &[Vec<u8>]) -> Vec<Record<'_>> {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Record {
                partition: 0,
                offset: i as u64,
                time: None,
                key: &[],
                payload: p,
            })
            .collect()
    }

    #[test]
    fn every_thread_count_gives_the_lines_in_order() {
        let payloads: Vec<Vec<u8>> = (0..1_000u64)
            .map(|i| match i % 7 {
                0 => b"not json".to_vec(),
                1 => b"   ".to_vec(),
                _ => format!(r#"{{"ts":{},"uid":"u{}"}}"#, 1_468_244_384 + i, i % 13).into_bytes(),
            })
            .collect();
        let records = records(&payloads);
        let parser = FrameParser::new(0, 4_000_000_000);
        let alone = BatchParser::new(1)
            .unwrap()
            .parse_all(&records, |r| parser.parse(r.payload));
        assert_eq!(alone.len(), records.len());
        assert!(matches!(alone[0], Line::Invalid(Invalid::NotJson)));
        assert!(matches!(alone[1], Line::Blank));
        for threads in [2, 3, 4, 16, 64] {
            let lines = BatchParser::new(threads)
                .unwrap()
                .parse_all(&records, |r| parser.parse(r.payload));
            assert_eq!(lines, alone, "{threads} threads");
        }
    }

    #[test]
    fn a_small_batch_stays_on_the_polling_thread() {
        let payloads = vec![br#"{"ts":1,"uid":"a"}"#.to_vec(); MIN_PARALLEL - 1];
        let records = records(&payloads);
        let me = std::thread::current().id();
        let lines = BatchParser::new(4).unwrap().parse_all(&records, |r| {
            assert_eq!(std::thread::current().id(), me);
            FrameParser::new(0, 10).parse(r.payload)
        });
        assert_eq!(lines.len(), MIN_PARALLEL - 1);
    }
}
