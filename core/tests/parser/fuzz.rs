//! Mutation fuzzing of the frame parser (issue 18, point 4): arbitrary
//! bytes, and real or generated frames under several random edits (byte
//! flips, deletions, duplicated or swapped spans, truncation). The parser
//! must never panic, and must still agree with the serde_json oracle.
//!
//! Runs in the suite with a fixed seed and a bounded number of cases;
//! `PROPTEST_CASES=1000000` (and another `PROPTEST_RNG_SEED`) runs longer
//! (docs/boundaries.md). A case that ever fails becomes a test in
//! `regressions` below.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed};
use timebucket_core::frame::{FrameParser, DEFAULT_MIN_TS};

use super::gen::{render, valid_frame_members, Case, Mutation};
use super::{check, real_lines};

/// `cases` unless `PROPTEST_CASES` asks for more (or fewer); the seed is
/// fixed unless `PROPTEST_RNG_SEED` names another.
pub fn config(cases: u32) -> Config {
    let env = |name: &str| std::env::var(name).ok();
    Config {
        cases: env("PROPTEST_CASES")
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        rng_seed: RngSeed::Fixed(
            env("PROPTEST_RNG_SEED")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0x7b18_f022),
        ),
        failure_persistence: None,
        ..Config::default()
    }
}

fn parser() -> FrameParser {
    FrameParser::new(DEFAULT_MIN_TS, 2_000_000_000)
}

/// One edit of a line.
#[derive(Debug, Clone)]
enum Edit {
    Flip(Index, u8),
    Delete(Index),
    Insert(Index, u8),
    /// Copies the span `[a, a+len)` to `b`.
    Duplicate(Index, usize, Index),
    Swap(Index, Index),
    Truncate(Index),
}

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(b"{}[]\",:\\/u0123456789-+.eE \t\r\x0c\x00tfn".to_vec()),
        1 => any::<u8>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), byte()).prop_map(|(i, b)| Edit::Flip(i, b)),
        any::<Index>().prop_map(Edit::Delete),
        (any::<Index>(), byte()).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), 1usize..40, any::<Index>()).prop_map(|(a, n, b)| Edit::Duplicate(a, n, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        any::<Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(line: &mut Vec<u8>, edit: &Edit) {
    let len = line.len();
    match edit {
        Edit::Flip(i, b) if len > 0 => line[i.index(len)] = *b,
        Edit::Delete(i) if len > 0 => {
            line.remove(i.index(len));
        }
        Edit::Insert(i, b) => line.insert(i.index(len + 1), *b),
        Edit::Duplicate(a, n, b) if len > 0 => {
            let from = a.index(len);
            let span = line[from..(from + n).min(len)].to_vec();
            let at = b.index(len + 1);
            line.splice(at..at, span);
        }
        Edit::Swap(a, b) if len > 0 => line.swap(a.index(len), b.index(len)),
        Edit::Truncate(i) => line.truncate(i.index(len + 1)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(config(2000))]

    /// Arbitrary bytes: never a panic, and the oracle's outcome.
    #[test]
    fn arbitrary_bytes(line in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&parser(), &line).map_err(TestCaseError::fail)?;
    }

    /// Arbitrary JSON-ish bytes (the parser's own alphabet) get further
    /// into the parser than uniform bytes do.
    #[test]
    fn arbitrary_json_alphabet(line in prop::collection::vec(byte(), 0..200)) {
        check(&parser(), &line).map_err(TestCaseError::fail)?;
    }

    /// Real challenge frames under up to 8 edits.
    #[test]
    fn real_frames_under_several_edits(which in any::<Index>(), edits in prop::collection::vec(edit(), 1..8)) {
        let lines = real_lines();
        let mut line = lines[which.index(lines.len())].clone();
        for e in &edits {
            apply(&mut line, e);
        }
        check(&parser(), &line).map_err(TestCaseError::fail)?;
    }

    /// Generated valid frames (escapes, nesting, numbers) under up to 8 edits.
    #[test]
    fn generated_frames_under_several_edits(members in valid_frame_members(), edits in prop::collection::vec(edit(), 1..8)) {
        let case = Case { lead: String::new(), members, trail: String::new(), other_root: None, mutation: Mutation::None };
        let mut line = render(&case);
        for e in &edits {
            apply(&mut line, e);
        }
        check(&parser(), &line).map_err(TestCaseError::fail)?;
    }
}

/// Crashes or disagreements the fuzzing above ever found, kept as tests.
mod regressions {
    use super::*;

    /// None found so far; these pin the edges the edits aim at.
    #[test]
    fn edges() {
        for line in [
            &b""[..],
            b"{",
            b"\"",
            b"{\"ts\":",
            b"{\"ts\":1468244384,\"uid\":\"\\u",
            b"{\"ts\":1468244384,\"uid\":\"\\ud83d\"}",
            b"{\"ts\":-0,\"uid\":\"u\"}",
            b"{\"ts\":1e400,\"uid\":\"u\"}",
            b"\xef\xbb\xbf{\"ts\":1468244384,\"uid\":\"u\"}",
            b"{\"ts\":1468244384,\"uid\":\"u\"}\x00",
        ] {
            check(&parser(), line).unwrap();
        }
    }
}
