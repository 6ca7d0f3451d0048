//! The data file of a loadtest: generated once per parameter set and cached,
//! with the facts a run needs (frames per partition, bytes, the sample for
//! Kafka's producer perf tool).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use tracing::info;

use super::{io_error, parser, DataSet, LoadtestOptions, PerfPayload, PERF_SAMPLE_FRAMES};
use crate::cmd::generate::{generate, GenerateOptions};
use crate::core::bucket::DEFAULT_BUCKET_SECS;
use crate::core::frame::Line;
use crate::error::Error;
use crate::input::{LineReader, RawLine};

/// The generated file for `opts`, from the cache when it is there (a file
/// with a `.meta.json` whose size matches), generated otherwise.
pub fn prepare_data(opts: &LoadtestOptions) -> Result<DataSet, Error> {
    std::fs::create_dir_all(&opts.cache_dir)
        .map_err(io_error(format!("create {}", opts.cache_dir.display())))?;
    let stem = format!(
        "frames-c{}-l{}-r{}-n{}-s{}-t{}",
        opts.frames, opts.frame_size, opts.rate, opts.users, opts.seed, opts.start
    );
    let path = opts.cache_dir.join(format!("{stem}.jsonl"));
    let meta_path = opts.cache_dir.join(format!("{stem}.meta.json"));
    let cached = std::fs::read(&meta_path)
        .ok()
        .and_then(|m| serde_json::from_slice::<DataSet>(&m).ok())
        .filter(|d| std::fs::metadata(&path).is_ok_and(|m| m.len() == d.bytes));
    let mut data = match cached {
        Some(d) => {
            info!(path = %path.display(), frames = d.frames, "using the cached data file");
            d
        }
        None => {
            let gen = GenerateOptions {
                count: opts.frames,
                rate: opts.rate,
                users: opts.users,
                seed: opts.seed,
                frame_len: opts.frame_size,
                max_delay: 0,
                delay_percent: 0.0,
                start: opts.start,
            };
            info!(path = %path.display(), frames = opts.frames, "generating the data file (cached for later runs)");
            let tmp = opts
                .cache_dir
                .join(format!("{stem}.jsonl.tmp-{}", std::process::id()));
            let file = File::create(&tmp).map_err(io_error(format!("create {}", tmp.display())))?;
            let summary =
                generate(&gen, file).map_err(io_error(format!("write {}", tmp.display())))?;
            std::fs::rename(&tmp, &path).map_err(io_error(format!("rename {}", tmp.display())))?;
            let mut d = scan_data(&path)?;
            if d.frames != summary.frames || d.bytes != summary.bytes {
                return Err(Error::Config(format!(
                    "{}: {} valid frames and {} bytes read back, {} and {} written",
                    path.display(),
                    d.frames,
                    d.bytes,
                    summary.frames,
                    summary.bytes
                )));
            }
            d.users = opts.users;
            d.rate = opts.rate;
            d.seed = opts.seed;
            d.frame_size = opts.frame_size;
            let meta = serde_json::to_vec_pretty(&d).expect("serializable");
            let tmp = meta_path.with_extension(format!("json.tmp-{}", std::process::id()));
            std::fs::write(&tmp, meta)
                .and_then(|()| std::fs::rename(&tmp, &meta_path))
                .map_err(io_error(format!("write {}", meta_path.display())))?;
            d
        }
    };
    data.path = path;
    if opts.kafka_tool.is_some() && opts.perf_payload == PerfPayload::Frames {
        let sample = opts.cache_dir.join(format!("{stem}.sample.txt"));
        if !sample.exists() {
            write_sample(&data.path, &sample, PERF_SAMPLE_FRAMES)?;
        }
        data.sample = Some(sample);
    }
    Ok(data)
}

/// Counts the file's frames per time bucket (every line must be a frame).
pub(super) fn scan_data(path: &Path) -> Result<DataSet, Error> {
    let parser = parser();
    let file = File::open(path).map_err(io_error(format!("open {}", path.display())))?;
    let mut reader = LineReader::new(file, parser.max_frame_bytes);
    let mut d = DataSet {
        path: path.to_path_buf(),
        frames: 0,
        bytes: 0,
        payload_bytes: 0,
        first_ts: u64::MAX,
        last_ts: 0,
        last_frame_ts: 0,
        buckets: BTreeMap::new(),
        users: 0,
        rate: 0,
        seed: 0,
        frame_size: 0,
        sample: None,
    };
    while let Some(line) = reader
        .next_line()
        .map_err(io_error(format!("read {}", path.display())))?
    {
        let RawLine::Line(bytes) = line.raw else {
            return Err(Error::Config(format!(
                "{}: oversized line {}",
                path.display(),
                line.number
            )));
        };
        match parser.parse(bytes) {
            Line::Frame(frame) => {
                d.frames += 1;
                d.payload_bytes += bytes.len() as u64;
                d.first_ts = d.first_ts.min(frame.ts);
                d.last_ts = d.last_ts.max(frame.ts);
                d.last_frame_ts = frame.ts;
                *d.buckets.entry(frame.ts / DEFAULT_BUCKET_SECS).or_default() += 1;
            }
            other => {
                return Err(Error::Config(format!(
                    "{}: line {} is not a valid frame ({other:?})",
                    path.display(),
                    line.number
                )))
            }
        }
    }
    d.bytes = reader.bytes();
    if d.frames == 0 {
        d.first_ts = 0;
    }
    Ok(d)
}

pub(super) fn write_sample(data: &Path, sample: &Path, frames: u64) -> Result<(), Error> {
    let input = File::open(data).map_err(io_error(format!("open {}", data.display())))?;
    let tmp = sample.with_extension(format!("txt.tmp-{}", std::process::id()));
    let mut out =
        BufWriter::new(File::create(&tmp).map_err(io_error(format!("create {}", tmp.display())))?);
    for line in BufReader::new(input).split(b'\n').take(frames as usize) {
        let line = line.map_err(io_error(format!("read {}", data.display())))?;
        out.write_all(&line)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(io_error(format!("write {}", tmp.display())))?;
    }
    out.flush()
        .map_err(io_error(format!("write {}", tmp.display())))?;
    drop(out);
    std::fs::rename(&tmp, sample).map_err(io_error(format!("rename {}", tmp.display())))
}
