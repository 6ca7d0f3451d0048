//! What ingest reads and where it starts: the source's identity (its id and
//! its fingerprint) and the input positioned at a committed byte offset.
//!
//! - The **id** names the source in the progress topic: `--source-id` if
//!   given, else the file's canonical path. Stdin has no id of its own: without
//!   `--source-id` it is not resumable (every run reads it from the start).
//! - The **fingerprint** is a hash (FNV-1a, 64 bit) of the source's first
//!   bytes, up to [`FINGERPRINT_BYTES`], and how many bytes it covers. A
//!   source whose first bytes still match is the same source, perhaps
//!   appended to: ingest continues after the committed offset. One whose
//!   first bytes differ, or that is now shorter than the committed offset,
//!   was rewritten: ingest starts over.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// How many of a source's first bytes its fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 64 * 1024;

/// A hash of a source's first `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u64,
    /// FNV-1a (64 bit) of those bytes, as 16 hex digits.
    pub fnv1a: String,
}

impl Fingerprint {
    pub fn of(bytes: &[u8]) -> Fingerprint {
        Fingerprint {
            len: bytes.len() as u64,
            fnv1a: format!("{:016x}", fnv1a(bytes)),
        }
    }

    /// Whether `head` (a source's first bytes) starts like the source this
    /// fingerprint was taken of.
    pub fn matches(&self, head: &[u8]) -> bool {
        usize::try_from(self.len)
            .ok()
            .and_then(|len| head.get(..len))
            .is_some_and(|prefix| Fingerprint::of(prefix) == *self)
    }
}

/// FNV-1a, 64 bit: stable across versions and machines (unlike std's
/// hasher), which a fingerprint stored in a topic needs.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An opened source: its first bytes read (for the fingerprint), the rest
/// not yet.
pub struct Source {
    /// The path as given (`-` for stdin), for messages.
    pub path: String,
    /// The id its progress is kept under; `None`: not resumable.
    pub id: Option<String>,
    /// The first bytes, up to [`FINGERPRINT_BYTES`].
    pub head: Vec<u8>,
    rest: Rest,
}

enum Rest {
    /// A plain file: seekable, its length known.
    File(File, u64),
    /// Stdin or a decompressed `.gz`: read forward only.
    Stream(Box<dyn Read + Send>),
}

impl Source {
    /// Opens `path` (`-` is stdin, `.gz` is decompressed) and reads its
    /// first bytes. `source_id` overrides the id (required for stdin to be
    /// resumable).
    pub fn open(path: &str, source_id: Option<&str>) -> Result<Source, Error> {
        let input_error = |reason| Error::Input {
            path: path.into(),
            reason,
        };
        let plain = path != "-" && Path::new(path).extension().is_none_or(|e| e != "gz");
        let rest = if plain {
            let file = File::open(path).map_err(input_error)?;
            let len = file.metadata().map_err(input_error)?.len();
            Rest::File(file, len)
        } else {
            Rest::Stream(crate::input::open(path)?)
        };
        let id = match (source_id, path) {
            (Some(id), _) => Some(id.to_string()),
            (None, "-") => None,
            (None, _) => Some(
                std::fs::canonicalize(path)
                    .map_err(input_error)?
                    .display()
                    .to_string(),
            ),
        };
        Source::with_head(path, id, rest)
    }

    /// A source read from `input` (forward only), named `name` in messages;
    /// resumable only with a `source_id`. Loadtest's paced feed is one.
    pub fn stream(
        name: &str,
        input: Box<dyn Read + Send>,
        source_id: Option<&str>,
    ) -> Result<Source, Error> {
        Source::with_head(name, source_id.map(str::to_string), Rest::Stream(input))
    }

    fn with_head(path: &str, id: Option<String>, mut rest: Rest) -> Result<Source, Error> {
        let mut head = Vec::with_capacity(FINGERPRINT_BYTES);
        // A source that cannot be resumed needs no fingerprint, and a live
        // feed must not wait for 64 KiB before its first line is produced.
        if id.is_none() {
            return Ok(Source {
                path: path.to_string(),
                id,
                head,
                rest,
            });
        }
        let reader: &mut dyn Read = match &mut rest {
            Rest::File(f, _) => f,
            Rest::Stream(s) => s,
        };
        reader
            .take(FINGERPRINT_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(|reason| Error::Input {
                path: path.into(),
                reason,
            })?;
        Ok(Source {
            path: path.to_string(),
            id,
            head,
            rest,
        })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.head)
    }

    /// The source's length if it is a plain file (for the progress bar).
    pub fn file_len(&self) -> Option<u64> {
        match self.rest {
            Rest::File(_, len) => Some(len),
            Rest::Stream(_) => None,
        }
    }

    /// The input from byte `offset` on; an error if the source ends before it
    /// (only a stream can: a file's length is checked before).
    pub fn starting_at(self, offset: u64) -> Result<Box<dyn Read + Send>, Error> {
        let head_len = self.head.len() as u64;
        if offset <= head_len {
            let mut head = Cursor::new(self.head);
            head.set_position(offset);
            return Ok(match self.rest {
                Rest::File(f, _) => Box::new(head.chain(f)),
                Rest::Stream(s) => Box::new(head.chain(s)),
            });
        }
        let input_error = |reason| Error::Input {
            path: self.path.clone().into(),
            reason,
        };
        match self.rest {
            Rest::File(mut f, _) => {
                f.seek(SeekFrom::Start(offset)).map_err(input_error)?;
                Ok(Box::new(f))
            }
            Rest::Stream(mut s) => {
                let skip = offset - head_len;
                let skipped =
                    io::copy(&mut (&mut s).take(skip), &mut io::sink()).map_err(input_error)?;
                if skipped < skip {
                    return Err(input_error(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "it ends at byte {}, before the committed offset {offset}: \
                             not the input that was ingested as this source \
                             (rerun with --restart to ingest it from the start)",
                            head_len + skipped
                        ),
                    )));
                }
                Ok(s)
            }
        }
    }

    /// Whether the input is at least `offset` bytes long, if that can be
    /// known before reading it (a plain file).
    pub fn reaches(&self, offset: u64) -> Option<bool> {
        match self.rest {
            Rest::File(_, len) => Some(len >= offset),
            Rest::Stream(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_matches_its_source_and_the_source_appended_to() {
        let first = b"{\"ts\":1}\n{\"ts\":2}\n";
        let fp = Fingerprint::of(first);
        assert!(fp.matches(first));
        assert!(fp.matches(b"{\"ts\":1}\n{\"ts\":2}\n{\"ts\":3}\n"));
        assert!(!fp.matches(b"{\"ts\":9}\n{\"ts\":2}\n"));
        assert!(!fp.matches(b"{\"ts\":1}\n"), "shorter than the fingerprint");
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(
            fnv1a(b"a"),
            0xaf63_dc4c_8601_ec8c,
            "the published FNV-1a vector"
        );
    }

    #[test]
    fn a_file_starts_at_any_offset_before_or_after_its_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let text: Vec<u8> = (0..100_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        std::fs::write(&path, &text).unwrap();
        let path = path.to_str().unwrap();
        for offset in [0, 7, FINGERPRINT_BYTES as u64, 200_000, text.len() as u64] {
            let source = Source::open(path, None).unwrap();
            assert_eq!(source.head.len(), FINGERPRINT_BYTES);
            assert_eq!(source.reaches(offset), Some(true));
            let mut rest = Vec::new();
            source
                .starting_at(offset)
                .unwrap()
                .read_to_end(&mut rest)
                .unwrap();
            assert_eq!(rest, &text[offset as usize..], "offset {offset}");
        }
        let source = Source::open(path, None).unwrap();
        assert!(source.id.as_deref().unwrap().ends_with("in.jsonl"));
        assert_eq!(source.reaches(text.len() as u64 + 1), Some(false));
    }

    #[test]
    fn a_gz_stream_is_skipped_to_the_offset_and_a_short_one_is_refused() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl.gz");
        let text: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let path = path.to_str().unwrap();
        let source = Source::open(path, Some("feed")).unwrap();
        assert_eq!(source.id.as_deref(), Some("feed"));
        assert_eq!(source.reaches(1), None);
        let mut rest = Vec::new();
        source
            .starting_at(100_000)
            .unwrap()
            .read_to_end(&mut rest)
            .unwrap();
        assert_eq!(rest, &text[100_000..]);
        let short = Source::open(path, None).unwrap();
        assert!(matches!(
            short.starting_at(text.len() as u64 + 10),
            Err(Error::Input { .. })
        ));
    }
}
