//! Realistic challenge-like frames, deterministic by seed (`timebucket generate`).
//!
//! This module owns the synthetic input: JSON lines that look like the public
//! challenge `stream.jsonl` (see `tests/data/README.md` and
//! `data/README.md`), so that the parser, the offline aggregate and the Kafka
//! pipeline can be exercised at full scale without the original file.
//!
//! ## What a frame looks like
//!
//! One line, `\n`-terminated, valid JSON and UTF-8: a root object with exactly
//! one `ts` (unix seconds) and exactly one `uid` (19 lowercase hex characters),
//! preceded by 0-3 filler members, `ts` or `uid` first, sometimes a filler
//! member between them. The rest are filler members drawn from the same
//! vocabulary as the original: lorem-ipsum key names (which repeat at the
//! root), strings with the escapes `\t \f \b \r \n \\ \"`, Cyrillic lines,
//! small integers, floats, booleans, empty and nested objects and arrays.
//! Nested objects reuse the key names `ts` and `uid` with unrelated values
//! (including plausible 10-digit timestamps and 19-hex-char ids), so only a
//! real root-level parse finds the right pair. About 5% of frames carry the
//! root `ts` as a string of digits (`"ts":"1468244384"`).
//!
//! ## Size
//!
//! Sizes are counted **without** the trailing newline. Filler members are
//! appended until the frame exceeds `frame_len`, and a member that would push
//! it beyond `frame_len + 76` is drawn again, so every frame has between
//! `frame_len + 1` and `frame_len + 76` bytes (for 2048: 2,049-2,124 bytes,
//! mean about 2,079, like the original). The upper bound needs a target of
//! about 300 bytes or more (room for `ts`, `uid` and up to four filler
//! members before the fill starts); targets below about 1,200 bytes get a
//! smaller nested member or none. Frames are never shorter than
//! `frame_len + 1`.
//!
//! ## Time and users
//!
//! The first frame is at `start`. After each frame the clock advances by one
//! second with probability `1/rate`. A frame is delayed with probability
//! `delay_percent/100` (when `max_delay > 0`): its written `ts` is the clock
//! minus a uniform 1..=`max_delay` seconds, saturating at 0; the clock itself
//! is not affected. The user of each frame is drawn uniformly from a pool of
//! `users` distinct uids ([`uid_for`]), itself derived from the seed.
//!
//! ## Determinism
//!
//! Same options, same bytes, on every machine and version: randomness comes
//! only from `rand_pcg::Pcg64Mcg::next_u64` (a fixed algorithm) seeded by a
//! fixed mix of `seed`, and bounded draws are computed here (multiply-high),
//! not by `rand`'s distribution code. `count` does not influence the draws, so
//! the first `k` frames of a run are the same for every `count >= k`.
//!
//! ## Speed
//!
//! Frames are built in one reused buffer from pre-rendered fragments (keys
//! with their quotes and colon, JSON-escaped strings) and hand-formatted
//! integers, and written through a 1 MiB `BufWriter`: no allocation per frame.

use std::io::{self, BufWriter, Write};

use rand::RngCore;
use rand_pcg::Pcg64Mcg;

/// First `ts` of the original challenge file (2016-07-11 13:39:44 UTC).
pub const DEFAULT_START: u64 = 1_468_244_384;

/// Default seed (`-s`). The `1/rate` clock makes a minute's frame count vary
/// by about ±7,700, so most seeds have some full minute outside the original
/// file's 40,000-52,000 distinct users; this one (like the original, one draw
/// of the same model) keeps every full minute inside it with
/// `-c 1000000 -r 1000 -n 100000`: 986 seconds, 41,583-50,343 per minute.
/// Of seeds 1-40 only 5 and 12 do.
pub const DEFAULT_SEED: u64 = 5;

/// Largest overshoot of a frame over its target size, in bytes
/// (the original file: 2,124 - 2,048).
pub const MAX_OVERSHOOT: usize = 76;

/// Options of [`generate`]; the CLI flags are in brackets.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Frames to write (`-c`).
    pub count: u64,
    /// Frames per second on average (`-r`): after each frame the clock
    /// advances by one second with probability `1/rate`. Must be >= 1.
    pub rate: u32,
    /// Size of the pool of distinct users (`-n`). Must be >= 1.
    pub users: u32,
    /// Seed (`-s`): same options and seed, same bytes.
    pub seed: u64,
    /// Target frame size in bytes (`-l`); frames have `frame_len + 1 ..=
    /// frame_len + 76` bytes, newline excluded (see the module docs).
    pub frame_len: usize,
    /// Largest delay in seconds (`-d`); 0 disables delays.
    pub max_delay: u32,
    /// Percent of frames delayed (`-p`), 0.0..=100.0.
    pub delay_percent: f64,
    /// `ts` of the first frame (`--start`).
    pub start: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            count: 1000,
            rate: 1000,
            users: 100_000,
            seed: DEFAULT_SEED,
            frame_len: 2048,
            max_delay: 0,
            delay_percent: 0.0,
            start: DEFAULT_START,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Frames written (= `count`).
    pub frames: u64,
    /// Bytes written, newlines included.
    pub bytes: u64,
    /// Smallest root `ts` written (`start` when no frame was delayed below it,
    /// or when `count` is 0).
    pub first_ts: u64,
    /// Largest root `ts` written (`start` when `count` is 0). Without delays,
    /// the `ts` of the last frame.
    pub last_ts: u64,
}

/// Writes `opts.count` frames to `out` (buffered here; `out` may be
/// unbuffered) and flushes it.
///
/// Errors: `InvalidInput` for `rate == 0`, `users == 0` or a `delay_percent`
/// outside 0..=100; otherwise the errors of `out`.
pub fn generate<W: Write>(opts: &GenerateOptions, out: W) -> io::Result<GenerateSummary> {
    let mut gen = FrameGen::new(opts)?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut buf = Vec::with_capacity(opts.frame_len + 4096);
    let mut summary = GenerateSummary {
        frames: 0,
        bytes: 0,
        first_ts: opts.start,
        last_ts: opts.start,
    };
    for i in 0..opts.count {
        buf.clear();
        let ts = gen.frame(&mut buf);
        out.write_all(&buf)?;
        summary.bytes += buf.len() as u64;
        if i == 0 {
            summary.first_ts = ts;
            summary.last_ts = ts;
        } else {
            summary.first_ts = summary.first_ts.min(ts);
            summary.last_ts = summary.last_ts.max(ts);
        }
        summary.frames += 1;
    }
    out.flush()?;
    Ok(summary)
}

/// The uid of user `index` (0-based) in the pool of `seed`: 19 lowercase hex
/// characters. Distinct indexes give distinct uids for the same seed.
pub fn uid_for(index: u32, seed: u64) -> String {
    let mut out = Vec::with_capacity(19);
    write_uid(&mut out, index, uid_keys(seed));
    String::from_utf8(out).expect("hex is ASCII")
}

mod builder;
mod vocabulary;

use builder::FrameGen;

pub(super) fn write_root_ts(buf: &mut Vec<u8>, ts: u64, as_string: bool) {
    if as_string {
        buf.extend_from_slice(b"\"ts\":\"");
        write_u64(buf, ts);
        buf.push(b'"');
    } else {
        buf.extend_from_slice(b"\"ts\":");
        write_u64(buf, ts);
    }
}

/// Appends the decimal digits of `n`.
#[inline]
pub(super) fn write_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// SplitMix64's finalizer: a bijection of u64 with good avalanche.
#[inline]
pub(super) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub(super) fn uid_keys(seed: u64) -> (u64, u64) {
    (
        mix64(seed ^ 0xa409_3822_299f_31d0),
        mix64(seed ^ 0x082e_fa98_ec4e_6c89),
    )
}

pub(super) const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the 19 hex characters of user `index`: 3 characters from a hash,
/// then 16 from a bijection of the index (so distinct indexes, distinct uids).
#[inline]
pub(super) fn write_uid(buf: &mut Vec<u8>, index: u32, (k1, k2): (u64, u64)) {
    let a = mix64(k1.wrapping_add(u64::from(index)));
    let b = mix64(a ^ k2);
    let mut out = [0u8; 19];
    for (i, o) in out[..3].iter_mut().enumerate() {
        *o = HEX[((b >> (4 * i)) & 15) as usize];
    }
    for (i, o) in out[3..].iter_mut().enumerate() {
        *o = HEX[((a >> (60 - 4 * i)) & 15) as usize];
    }
    buf.extend_from_slice(&out);
}

#[cfg(test)]
mod tests {
    use super::vocabulary::{CYRILLIC, ENGLISH, LOREM};
    use super::*;
    use std::collections::HashSet;

    fn run(opts: &GenerateOptions) -> (Vec<u8>, GenerateSummary) {
        let mut out = Vec::new();
        let summary = generate(opts, &mut out).unwrap();
        (out, summary)
    }

    #[test]
    fn vocabulary_is_valid_json() {
        for s in ENGLISH.iter().chain(CYRILLIC.iter()) {
            let v: serde_json::Value = serde_json::from_str(s).unwrap();
            assert!(v.is_string(), "{s}");
        }
        assert_eq!(LOREM.split_whitespace().count(), 68);
        assert!(!LOREM
            .split_whitespace()
            .any(|w| w == "id" || w == "ts" || w == "uid"));
    }

    #[test]
    fn uids_are_19_hex_and_distinct() {
        let mut seen = HashSet::new();
        for i in 0..100_000 {
            let u = uid_for(i, 1);
            assert_eq!(u.len(), 19);
            assert!(
                u.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{u}"
            );
            assert!(seen.insert(u));
        }
        assert_ne!(uid_for(0, 1), uid_for(0, 2));
        // Pinned: a change of the pool changes every committed sample and figure.
        assert_eq!(uid_for(0, 1), "b218d9c4e2b5ff5c39b");
        assert_eq!(uid_for(99_999, 1), "5774d853b5f766ad7c7");
    }

    #[test]
    fn integers_and_floats_format() {
        let mut b = Vec::new();
        write_u64(&mut b, 0);
        b.push(b' ');
        write_u64(&mut b, 1_468_244_384);
        b.push(b' ');
        write_u64(&mut b, u64::MAX);
        assert_eq!(b, b"0 1468244384 18446744073709551615");
        let mut g = FrameGen::new(&GenerateOptions::default()).unwrap();
        for _ in 0..10_000 {
            let mut b = Vec::new();
            g.write_float(&mut b);
            let s = std::str::from_utf8(&b).unwrap();
            let v: f64 = serde_json::from_str(s).unwrap();
            assert!((0.0..1.0).contains(&v), "{s}");
            assert!(!s.ends_with('0') || s == "0.0", "{s}");
        }
    }

    #[test]
    fn below_is_in_range_and_uniform_enough() {
        let mut g = FrameGen::new(&GenerateOptions::default()).unwrap();
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[g.below(7) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn invalid_options_are_rejected() {
        let bad = [
            GenerateOptions {
                rate: 0,
                ..Default::default()
            },
            GenerateOptions {
                users: 0,
                ..Default::default()
            },
            GenerateOptions {
                delay_percent: 101.0,
                ..Default::default()
            },
            GenerateOptions {
                delay_percent: -1.0,
                ..Default::default()
            },
            GenerateOptions {
                delay_percent: f64::NAN,
                ..Default::default()
            },
        ];
        for opts in bad {
            let err = generate(&opts, Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{opts:?}");
        }
    }

    #[test]
    fn count_zero_writes_nothing() {
        let (out, s) = run(&GenerateOptions {
            count: 0,
            ..Default::default()
        });
        assert!(out.is_empty());
        assert_eq!(
            s,
            GenerateSummary {
                frames: 0,
                bytes: 0,
                first_ts: DEFAULT_START,
                last_ts: DEFAULT_START
            }
        );
    }

    #[test]
    fn prefix_does_not_depend_on_count() {
        let (a, _) = run(&GenerateOptions {
            count: 50,
            ..Default::default()
        });
        let (b, _) = run(&GenerateOptions {
            count: 120,
            ..Default::default()
        });
        assert!(b.starts_with(&a));
    }

    #[test]
    fn sizes_stay_in_the_band_for_other_targets() {
        for frame_len in [300usize, 400, 700, 1100, 1500, 2048, 4096, 16384] {
            let (out, s) = run(&GenerateOptions {
                count: 300,
                frame_len,
                ..Default::default()
            });
            assert_eq!(s.bytes as usize, out.len());
            for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert!(
                    line.len() > frame_len && line.len() <= frame_len + MAX_OVERSHOOT,
                    "{frame_len}: {}",
                    line.len()
                );
            }
        }
        // Tiny targets: still valid frames, at least frame_len + 1 bytes.
        for frame_len in [0usize, 10, 100, 200] {
            let (out, _) = run(&GenerateOptions {
                count: 300,
                frame_len,
                ..Default::default()
            });
            for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert!(line.len() > frame_len);
                let _: serde_json::Value = serde_json::from_slice(line).unwrap();
            }
        }
    }

    #[test]
    fn summary_tracks_ts_range() {
        let (out, s) = run(&GenerateOptions {
            count: 5000,
            rate: 10,
            max_delay: 8,
            delay_percent: 10.0,
            ..Default::default()
        });
        let ts: Vec<u64> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_slice(l).unwrap();
                match &v["ts"] {
                    serde_json::Value::Number(n) => n.as_u64().unwrap(),
                    serde_json::Value::String(s) => s.parse().unwrap(),
                    other => panic!("{other}"),
                }
            })
            .collect();
        assert_eq!(s.frames, 5000);
        assert_eq!(s.first_ts, *ts.iter().min().unwrap());
        assert_eq!(s.last_ts, *ts.iter().max().unwrap());
    }
}
