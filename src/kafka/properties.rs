//! `key=value` files as Kafka's tools (`--command-config`) and kcat (`-F`)
//! read them, and as the topic definitions in `topics/` are written: one
//! property per line, `#` or `!` starts a comment line, blank lines are
//! skipped, spaces around the key and the value are trimmed, and the value
//! is everything after the first `=` (so it may contain `=`). Values are
//! taken literally, as kcat does: no escapes, no continuation lines.

/// One `key=value` line: its 1-based number, the key and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    pub number: usize,
    pub key: &'a str,
    pub value: &'a str,
}

/// A line that is not `key=value`: its number and what is wrong, never
/// the line's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub number: usize,
    pub message: String,
}

/// The property lines of `text`, in file order. A UTF-8 byte order mark
/// at the start and `\r\n` line ends are accepted.
pub fn lines(text: &str) -> impl Iterator<Item = Result<Line<'_>, BadLine>> {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let number = i + 1;
        let line = if number == 1 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        }
        .trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            return None;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Some(Err(BadLine {
                number,
                // Never the line itself: a line that is not `key=value`
                // may still be someone's secret (a password on a line of
                // its own, a value whose `=` went missing).
                message: "expected key=value (the line is not quoted: it may hold a secret)".into(),
            }));
        };
        let key = key.trim();
        if key.is_empty() {
            return Some(Err(BadLine {
                number,
                message: "missing key before '='".into(),
            }));
        }
        Some(Ok(Line {
            number,
            key,
            value: value.trim(),
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blanks_spaces_and_equals_signs() {
        let text = "\u{feff}# comment\n! also a comment\n\n  a.b = c \r\nx=y=z\nempty=\n";
        let got: Vec<_> = lines(text).collect::<Result<_, _>>().unwrap();
        let pairs: Vec<(usize, &str, &str)> =
            got.iter().map(|l| (l.number, l.key, l.value)).collect();
        assert_eq!(pairs, [(4, "a.b", "c"), (5, "x", "y=z"), (6, "empty", "")]);
    }

    #[test]
    fn lines_without_a_key_or_an_equals_sign_are_errors() {
        let bad: Vec<BadLine> = lines("ok=1\nhunter2\n=s3cret\n")
            .filter_map(Result::err)
            .collect();
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].number, 2);
        assert!(bad[0].message.contains("expected key=value"));
        assert_eq!(bad[1].number, 3);
        for b in &bad {
            for secret in ["hunter", "s3cret"] {
                assert!(!b.message.contains(secret), "{b:?} quotes the line");
            }
        }
    }
}
