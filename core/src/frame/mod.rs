//! Frames: one line of `stream.jsonl`, and the normative parser that turns it
//! into a [`Frame`] (its root `ts` and `uid`) or names why it is [`Invalid`].
//!
//! This is the hot path of the whole product, so instead of building a DOM
//! the parser makes one validating pass over the bytes: the whole line must be
//! valid JSON, but only the two root keys we need are decoded. String bodies,
//! which are most of a 2 KB frame, are never walked: a SIMD pass over the
//! whole line first (stage 1, AVX2 / SSE4.2 / scalar picked at run time)
//! checks their characters and escapes and marks where each one ends.

use std::borrow::Cow;
use std::fmt;

/// Default lower bound of `ts`: 2000-01-01T00:00:00Z.
pub const DEFAULT_MIN_TS: u64 = 946_684_800;
/// Default upper bound of a frame in bytes (Kafka's default `message.max.bytes`
/// is about 1 MB, so a larger frame could not travel through the pipeline).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1_000_000;
/// Default upper bound of a decoded `uid` in bytes. Every distinct uid of an
/// open minute is kept in full, so this bounds what one frame can add to a
/// worker's state. Real uids are 19 hex digits; 256 leaves room for UUIDs,
/// e-mail addresses (at most 254) and the like.
pub const DEFAULT_MAX_UID_BYTES: usize = 256;
/// A valid frame: the root `ts` and `uid` of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Event time, unix seconds.
    pub ts: u64,
    /// User id with JSON escapes decoded; borrowed from the line when it had none.
    pub uid: Cow<'a, str>,
}

/// Why a line is not a frame. A small fixed set, so that counters and
/// dead-letter headers stay comparable across runs and versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Invalid {
    TooLarge,
    NotUtf8,
    NotJson,
    NotObject,
    MissingTs,
    DuplicateTs,
    BadTs,
    TsOutOfRange,
    MissingUid,
    DuplicateUid,
    BadUid,
    /// A `uid` longer than [`FrameParser::max_uid_bytes`] (decoded UTF-8
    /// bytes): it would be kept in full in its minute's set of distinct users.
    UidTooLong,
    /// A valid frame read from a partition its `ts` does not route to (a
    /// foreign producer, or a partition count changed under a running
    /// ingest): counting it would split its minute over two partitions.
    /// The parser never returns it; the worker's routing guard does.
    WrongPartition,
}

impl Invalid {
    pub const ALL: [Invalid; 13] = [
        Invalid::TooLarge,
        Invalid::NotUtf8,
        Invalid::NotJson,
        Invalid::NotObject,
        Invalid::MissingTs,
        Invalid::DuplicateTs,
        Invalid::BadTs,
        Invalid::TsOutOfRange,
        Invalid::MissingUid,
        Invalid::DuplicateUid,
        Invalid::BadUid,
        Invalid::UidTooLong,
        Invalid::WrongPartition,
    ];

    /// Stable machine name, used in counters and dead-letter headers.
    pub fn code(self) -> &'static str {
        match self {
            Invalid::TooLarge => "too_large",
            Invalid::NotUtf8 => "not_utf8",
            Invalid::NotJson => "not_json",
            Invalid::NotObject => "not_object",
            Invalid::MissingTs => "missing_ts",
            Invalid::DuplicateTs => "duplicate_ts",
            Invalid::BadTs => "bad_ts",
            Invalid::TsOutOfRange => "ts_out_of_range",
            Invalid::MissingUid => "missing_uid",
            Invalid::DuplicateUid => "duplicate_uid",
            Invalid::BadUid => "bad_uid",
            Invalid::UidTooLong => "uid_too_long",
            Invalid::WrongPartition => "wrong_partition",
        }
    }

    /// Human explanation for logs.
    pub fn describe(self) -> &'static str {
        match self {
            Invalid::TooLarge => "line is larger than the maximum frame size",
            Invalid::NotUtf8 => "line is not valid UTF-8",
            Invalid::NotJson => "line is not valid JSON",
            Invalid::NotObject => "JSON value is not an object",
            Invalid::MissingTs => "root object has no \"ts\"",
            Invalid::DuplicateTs => "root object has more than one \"ts\"",
            Invalid::BadTs => "\"ts\" is not a non-negative integer or a string of digits",
            Invalid::TsOutOfRange => "\"ts\" is outside the accepted range",
            Invalid::MissingUid => "root object has no \"uid\"",
            Invalid::DuplicateUid => "root object has more than one \"uid\"",
            Invalid::BadUid => "\"uid\" is not a non-empty string",
            Invalid::UidTooLong => "\"uid\" is longer than the maximum uid length",
            Invalid::WrongPartition => {
                "frame's time bucket routes to another partition of the input topic"
            }
        }
    }

    /// Dense index into per-reason counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.describe())
    }
}

/// What one input line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    Frame(Frame<'a>),
    /// Only whitespace: skipped, not an error.
    Blank,
    Invalid(Invalid),
}

/// The normative frame parser with its configurable bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameParser {
    pub min_ts: u64,
    pub max_ts: u64,
    pub max_frame_bytes: usize,
    /// Longest accepted `uid`, in bytes of its decoded UTF-8.
    pub max_uid_bytes: usize,
}

impl FrameParser {
    /// Bounds are data: the caller decides what "now" is (see [`default_max_ts`]).
    /// `max_ts` is capped at [`crate::window::MAX_TS`].
    pub fn new(min_ts: u64, max_ts: u64) -> Self {
        FrameParser {
            min_ts,
            max_ts: max_ts.min(crate::window::MAX_TS),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_uid_bytes: DEFAULT_MAX_UID_BYTES,
        }
    }

    /// This parser with its upper bound at `now + max_future` (never above
    /// [`crate::window::MAX_TS`]): the validity bound of a frame whose "now"
    /// is `now`, for example its Kafka record's timestamp. A bound given as
    /// data decides the same on every replay, however long a process runs.
    pub fn bounded_at(&self, now: u64, max_future: u64) -> FrameParser {
        FrameParser {
            max_ts: now.saturating_add(max_future).min(crate::window::MAX_TS),
            ..*self
        }
    }

    /// Parses one line (without its `\n`; a trailing `\r` is JSON whitespace).
    pub fn parse<'a>(&self, line: &'a [u8]) -> Line<'a> {
        match self.parse_inner(line) {
            Ok(Some(frame)) => Line::Frame(frame),
            Ok(None) => Line::Blank,
            Err(reason) => Line::Invalid(reason),
        }
    }

    fn parse_inner<'a>(&self, b: &'a [u8]) -> Result<Option<Frame<'a>>, Invalid> {
        if b.len() > self.max_frame_bytes {
            return Err(Invalid::TooLarge);
        }
        let start = skip_ws(b, 0);
        if start == b.len() {
            return Ok(None);
        }
        if simdutf8::basic::from_utf8(b).is_err() {
            return Err(Invalid::NotUtf8);
        }
        let root = stage1::with_quotes(b, |q| {
            // Some(Some(root)): an object; Some(None): one JSON value that
            // is not an object; None (or Err): not JSON.
            if b[start] != b'{' {
                let end = skip_value(b, q, start)?;
                return Ok((skip_ws(b, end) == b.len()).then_some(None));
            }
            scan_root(b, q, start + 1).map(|root| Some(Some(root)))
        });
        let root = match root {
            Ok(Some(Some(root))) => root,
            Ok(Some(None)) => return Err(Invalid::NotObject),
            Ok(None) | Err(_) => return Err(Invalid::NotJson),
        };
        let ts = match root.ts {
            RootKey::Missing => return Err(Invalid::MissingTs),
            RootKey::Duplicate => return Err(Invalid::DuplicateTs),
            RootKey::Bad => return Err(Invalid::BadTs),
            RootKey::Found(TsValue::Overflow) => return Err(Invalid::TsOutOfRange),
            RootKey::Found(TsValue::Secs(ts)) => ts,
        };
        if ts < self.min_ts || ts > self.max_ts {
            return Err(Invalid::TsOutOfRange);
        }
        let uid = match root.uid {
            RootKey::Missing => return Err(Invalid::MissingUid),
            RootKey::Duplicate => return Err(Invalid::DuplicateUid),
            RootKey::Bad => return Err(Invalid::BadUid),
            RootKey::Found((s, e, escaped)) => {
                let raw = &b[s..e];
                if raw.is_empty() {
                    return Err(Invalid::BadUid);
                }
                // Escapes never decode to more bytes than they take, so a
                // raw span within the cap needs no further check.
                if raw.len() > self.max_uid_bytes && !escaped {
                    return Err(Invalid::UidTooLong);
                }
                if escaped {
                    let uid = unescape(raw).ok_or(Invalid::BadUid)?;
                    if uid.len() > self.max_uid_bytes {
                        return Err(Invalid::UidTooLong);
                    }
                    Cow::Owned(uid)
                } else {
                    // The whole line passed the UTF-8 check and the span lies between quotes.
                    Cow::Borrowed(std::str::from_utf8(raw).map_err(|_| Invalid::BadUid)?)
                }
            }
        };
        if uid.is_empty() {
            return Err(Invalid::BadUid);
        }
        Ok(Some(Frame { ts, uid }))
    }
}

/// How far ahead of "now" a `ts` may be: one day. "Now" is the record's
/// timestamp on Kafka and the start of the run offline (see
/// [`FrameParser::bounded_at`]).
pub const DEFAULT_MAX_FUTURE: u64 = 86_400;

/// "now + 1 day", the documented default upper bound of `ts`. Lives outside the
/// parser so that the core never reads the clock.
pub fn default_max_ts(now_unix: u64) -> u64 {
    now_unix.saturating_add(DEFAULT_MAX_FUTURE)
}

impl Default for FrameParser {
    fn default() -> Self {
        FrameParser::new(DEFAULT_MIN_TS, crate::window::MAX_TS)
    }
}

mod scan;
mod stage1;

use scan::{scan_root, skip_value, skip_ws, unescape, RootKey, TsValue};
pub use stage1::{best_simd_level, with_simd_level, SimdLevel, SIMD_ENV};

#[cfg(test)]
mod tests {
    use super::scan::escaped_mask;
    use super::*;

    fn p() -> FrameParser {
        FrameParser::new(DEFAULT_MIN_TS, 2_000_000_000)
    }

    fn frame(line: &str) -> (u64, String) {
        match p().parse(line.as_bytes()) {
            Line::Frame(f) => (f.ts, f.uid.into_owned()),
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn invalid(line: &[u8]) -> Invalid {
        match p().parse(line) {
            Line::Invalid(r) => r,
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(line)),
        }
    }

    /// A string's closing quote is looked up in its own bitmap word and the
    /// next at once, and beyond them by a search: strings that end in the
    /// same word, the next, and two or more words later, on every path.
    #[test]
    fn strings_across_empty_bitmap_words() {
        for level in SimdLevel::ALL.into_iter().filter(|l| l.available()) {
            with_simd_level(level, || {
                for n in [0, 1, 62, 63, 64, 65, 127, 128, 129, 191, 192, 300, 700] {
                    let pad = "x".repeat(n);
                    let uid = "u".repeat(n.clamp(1, 100));
                    let line =
                        format!(r#"{{"pad":"{pad}","ts":1468244384,"n":["{pad}"],"uid":"{uid}"}}"#);
                    assert_eq!(frame(&line), (1468244384, uid.clone()), "{level:?} {n}");
                    let open = format!(r#"{{"ts":1468244384,"uid":"u","pad":"{pad}}}"#);
                    assert_eq!(invalid(open.as_bytes()), Invalid::NotJson, "{level:?} {n}");
                }
            })
        }
    }

    #[test]
    fn plain_frame() {
        assert_eq!(
            frame(r#"{"ts":1468244384,"uid":"1b2c3d4e5f6a7b8c9d0"}"#),
            (1468244384, "1b2c3d4e5f6a7b8c9d0".into())
        );
    }

    #[test]
    fn ts_as_digit_string_and_uid_escapes_decoded() {
        assert_eq!(
            frame(r#"{"uid":"a\"b\u0041","ts":"1468244384"}"#),
            (1468244384, "a\"bA".into())
        );
        assert_eq!(
            frame(r#"{"uid":"\ud83d\ude00","ts":1468244384}"#),
            (1468244384, "😀".into())
        );
    }

    #[test]
    fn nested_ts_and_uid_never_count() {
        let line = r#"{"a":{"ts":1,"uid":2},"b":[{"ts":"x"},{"uid":null}],"ts":1468244384,"c":"\"ts\":5","uid":"u"}"#;
        assert_eq!(frame(line), (1468244384, "u".into()));
        assert_eq!(
            invalid(br#"{"a":{"ts":1468244384},"uid":"u"}"#),
            Invalid::MissingTs
        );
        assert_eq!(
            invalid(br#"{"a":[{"uid":"x"}],"ts":1468244384}"#),
            Invalid::MissingUid
        );
    }

    #[test]
    fn whitespace_crlf_and_blank_lines() {
        assert_eq!(
            frame(" {\t\"ts\" : 1468244384 ,\r\n \"uid\":\"u\" } \r"),
            (1468244384, "u".into())
        );
        assert_eq!(p().parse(b""), Line::Blank);
        assert_eq!(p().parse(b"  \t \r"), Line::Blank);
    }

    #[test]
    fn escaped_key_names_are_the_key() {
        assert_eq!(
            frame(r#"{"t\u0073":1468244384,"uid":"u"}"#),
            (1468244384, "u".into())
        );
        assert_eq!(
            invalid(br#"{"ts":1468244384,"\u0074s":1468244384,"uid":"u"}"#),
            Invalid::DuplicateTs
        );
    }

    #[test]
    fn every_reason() {
        let mut parser = p();
        parser.max_frame_bytes = 64;
        let big = format!(
            r#"{{"ts":1468244384,"uid":"u","pad":"{}"}}"#,
            "x".repeat(64)
        );
        assert_eq!(
            parser.parse(big.as_bytes()),
            Line::Invalid(Invalid::TooLarge)
        );
        assert_eq!(
            invalid(b"{\"ts\":1468244384,\"uid\":\"\xff\"}"),
            Invalid::NotUtf8
        );
        assert_eq!(invalid(br#"{"ts":1468244384,"uid":"u""#), Invalid::NotJson);
        // truncated after its ts and uid: still invalid
        assert_eq!(
            invalid(br#"{"ts":1468244384,"uid":"u","x":[1,2"#),
            Invalid::NotJson
        );
        assert_eq!(
            invalid(br#"{"ts":1468244384,"uid":"u"} x"#),
            Invalid::NotJson
        );
        assert_eq!(
            invalid(br#"{"ts":1468244384,"uid":"u",}"#),
            Invalid::NotJson
        );
        assert_eq!(
            invalid(b"{\"ts\":1468244384,\"uid\":\"a\tb\"}"),
            Invalid::NotJson
        );
        assert_eq!(
            invalid(br#"{"ts":01468244384,"uid":"u"}"#),
            Invalid::NotJson
        );
        assert_eq!(
            invalid(br#"{"ts":1468244384,"uid":"\x"}"#),
            Invalid::NotJson
        );
        assert_eq!(
            invalid(br#"[{"ts":1468244384,"uid":"u"}]"#),
            Invalid::NotObject
        );
        assert_eq!(invalid(b"42"), Invalid::NotObject);
        assert_eq!(invalid(b"nul"), Invalid::NotJson);
        assert_eq!(invalid(br#"{"uid":"u"}"#), Invalid::MissingTs);
        assert_eq!(
            invalid(br#"{"ts":1468244384,"uid":"u","ts":1468244384}"#),
            Invalid::DuplicateTs
        );
        for bad in [
            r#"-1"#,
            r#"1468244384.0"#,
            r#"1.5e9"#,
            r#""""#,
            r#""14a""#,
            r#""-5""#,
            r#"null"#,
            r#"[1]"#,
            r#"true"#,
        ] {
            let line = format!(r#"{{"ts":{bad},"uid":"u"}}"#);
            assert_eq!(invalid(line.as_bytes()), Invalid::BadTs, "{line}");
        }
        assert_eq!(
            invalid(br#"{"ts":946684799,"uid":"u"}"#),
            Invalid::TsOutOfRange
        );
        assert_eq!(
            invalid(br#"{"ts":2000000001,"uid":"u"}"#),
            Invalid::TsOutOfRange
        );
        assert_eq!(
            invalid(br#"{"ts":99999999999999999999999,"uid":"u"}"#),
            Invalid::TsOutOfRange
        );
        assert_eq!(invalid(br#"{"ts":1468244384}"#), Invalid::MissingUid);
        assert_eq!(
            invalid(br#"{"ts":1468244384,"uid":"a","uid":"b"}"#),
            Invalid::DuplicateUid
        );
        for bad in [r#""""#, r#"12"#, r#"null"#, r#"{"a":1}"#, r#""\udc00""#] {
            let line = format!(r#"{{"ts":1468244384,"uid":{bad}}}"#);
            assert_eq!(invalid(line.as_bytes()), Invalid::BadUid, "{line}");
        }
    }

    /// The cap counts decoded bytes: escapes that decode within it pass,
    /// and a uid exactly at the cap is valid.
    #[test]
    fn uid_length_cap_counts_decoded_bytes() {
        let mut parser = p();
        parser.max_uid_bytes = 4;
        let parse = |line: &'static str| parser.parse(line.as_bytes());
        assert!(matches!(
            parse(r#"{"ts":1468244384,"uid":"abcd"}"#),
            Line::Frame(_)
        ));
        assert_eq!(
            parse(r#"{"ts":1468244384,"uid":"abcde"}"#),
            Line::Invalid(Invalid::UidTooLong)
        );
        // 12 raw bytes, 4 decoded: valid; 5 decoded: too long.
        assert!(matches!(
            parse(r#"{"ts":1468244384,"uid":"\u0041\u0042cd"}"#),
            Line::Frame(_)
        ));
        assert_eq!(
            parse(r#"{"ts":1468244384,"uid":"\u0041\u0042cde"}"#),
            Line::Invalid(Invalid::UidTooLong)
        );
        // Cyrillic: 2 bytes a letter.
        assert_eq!(
            parse(r#"{"ts":1468244384,"uid":"ПрП"}"#),
            Line::Invalid(Invalid::UidTooLong)
        );
        // A bad uid stays bad, whatever its length.
        assert_eq!(
            parse(r#"{"ts":1468244384,"uid":"\udc00\udc00"}"#),
            Line::Invalid(Invalid::BadUid)
        );
        assert_eq!(p().max_uid_bytes, DEFAULT_MAX_UID_BYTES);
    }

    #[test]
    fn range_bounds_are_inclusive() {
        let parser = FrameParser::new(100, 200);
        assert!(matches!(
            parser.parse(br#"{"ts":100,"uid":"u"}"#),
            Line::Frame(_)
        ));
        assert!(matches!(
            parser.parse(br#"{"ts":200,"uid":"u"}"#),
            Line::Frame(_)
        ));
        assert_eq!(
            parser.parse(br#"{"ts":201,"uid":"u"}"#),
            Line::Invalid(Invalid::TsOutOfRange)
        );
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed() {
        let deep = format!(
            r#"{{"ts":1468244384,"uid":"u","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(invalid(deep.as_bytes()), Invalid::NotJson);
        let ok = format!(
            r#"{{"ts":1468244384,"uid":"u","x":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(frame(&ok).0, 1468244384);
    }

    /// `escaped_mask` against the left-to-right definition: a backslash
    /// that is not itself escaped escapes the next byte.
    #[test]
    fn escaped_mask_matches_a_scalar_walk() {
        fn walk(backslash: u64, carry: bool) -> u64 {
            let mut escaped = u64::from(carry);
            for k in 0..63 {
                if backslash >> k & 1 == 1 && escaped >> k & 1 == 0 {
                    escaped |= 1 << (k + 1);
                }
            }
            escaped
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in 0..200_000 {
            // Dense runs of backslashes as well as sparse ones.
            let backslash = match n % 3 {
                0 => next(),
                1 => next() | next(),
                _ => next() & next(),
            };
            for carry in [false, true] {
                let own = backslash & !u64::from(carry);
                let got = escaped_mask(own) | u64::from(carry);
                assert_eq!(
                    got,
                    walk(backslash, carry),
                    "{backslash:064b} carry {carry}"
                );
            }
        }
    }

    #[test]
    fn codes_are_distinct_and_indexes_round_trip() {
        let codes: std::collections::HashSet<&str> =
            Invalid::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), Invalid::ALL.len());
        for r in Invalid::ALL {
            assert_eq!(Invalid::ALL[r.index()], r);
        }
    }
}
