//! Where a reader of one partition is, pure: the start it must begin at
//! (a committed checkpoint's offset or the log start), whether a record is
//! the next one, a re-delivered one, or one to drop with a seek to the
//! start, and the offsets skipped between records. The worker's
//! [`crate::partition::Partition`] and the merge's partials partitions
//! both read through a [`Cursor`].
//!
//! One seek: after it, the first record at or after the start is the first
//! there is (the offsets between hold a commit marker, aborted or
//! compacted records, or were deleted by retention), so a checkpoint at a
//! transaction marker resumes without seeking again and again.

/// Where the consumer must go instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    Offset(u64),
    Beginning,
}

/// Offsets skipped between two records read (or between the start and the
/// first record): `from` up to, not including, `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from: u64,
    pub to: u64,
}

/// Where a reader of one partition is: the start it must begin at, the
/// next offset to take, and the offsets skipped. Shared by the worker's
/// [`Partition`] and the merge's partials partitions: a record from
/// anywhere but the start is dropped with one seek there, after which the
/// first record at or after the start is taken (the offsets between hold
/// nothing to read, a commit marker, or were deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Where it starts: the checkpoint's offset, or the log start (`fresh`).
    start: u64,
    fresh: bool,
    /// Offset of the next record to take; `None` until the start record came.
    next_offset: Option<u64>,
    /// A seek to the start was asked for: the next record is the first
    /// there is from the start on.
    sought: bool,
    /// Offsets skipped by the last record, until [`Cursor::take_gap`].
    gap: Option<Gap>,
}

/// What a [`Cursor`] says of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Not where the reader starts: drop it and seek.
    Seek(SeekTo),
    /// Seen before (re-delivered after a seek).
    Duplicate,
    /// The next record: take it.
    Take,
}

impl Cursor {
    /// At a committed checkpoint's offset.
    pub fn at(offset: u64) -> Cursor {
        Cursor::new(offset, false)
    }

    /// No checkpoint: at the log's first available offset.
    pub fn fresh(log_start: u64) -> Cursor {
        Cursor::new(log_start, true)
    }

    fn new(start: u64, fresh: bool) -> Cursor {
        Cursor {
            start,
            fresh,
            next_offset: None,
            sought: false,
            gap: None,
        }
    }

    /// Judges the record at `offset`; a taken one moves the cursor on.
    pub fn admit(&mut self, offset: u64) -> Admit {
        match self.next_offset {
            None => {
                let (at_start, seek) = if self.fresh {
                    (offset <= self.start, SeekTo::Beginning)
                } else {
                    (offset == self.start, SeekTo::Offset(self.start))
                };
                if !at_start {
                    if !self.sought || offset < self.start {
                        self.sought = true;
                        return Admit::Seek(seek);
                    }
                    self.gap = Some(Gap {
                        from: self.start,
                        to: offset,
                    });
                }
            }
            Some(next) if offset < next => return Admit::Duplicate,
            Some(next) if offset > next => {
                self.gap = Some(Gap {
                    from: next,
                    to: offset,
                })
            }
            Some(_) => {}
        }
        self.next_offset = Some(offset + 1);
        Admit::Take
    }

    /// Whether the start record came (it knows where it is).
    pub fn started(&self) -> bool {
        self.next_offset.is_some()
    }

    /// The offsets the last record skipped, once.
    pub fn take_gap(&mut self) -> Option<Gap> {
        self.gap.take()
    }

    /// The offset of the next record to read.
    pub fn position(&self) -> u64 {
        self.next_offset.unwrap_or(self.start)
    }

    /// Moves on to `offset` without reading; never moves back.
    pub fn skip_to(&mut self, offset: u64) {
        self.next_offset = Some(self.position().max(offset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A checkpoint at a commit marker (offset 10): the record after it is
    /// at 11. One seek, then 11 is taken with the gap reported.
    #[test]
    fn a_checkpoint_at_a_marker_resumes_after_one_seek() {
        let mut c = Cursor::at(10);
        assert_eq!(c.admit(3), Admit::Seek(SeekTo::Offset(10)));
        assert_eq!(c.admit(11), Admit::Take);
        assert_eq!(c.take_gap(), Some(Gap { from: 10, to: 11 }));
        assert_eq!(c.admit(11), Admit::Duplicate);
        assert_eq!(c.admit(12), Admit::Take);
        assert_eq!(c.position(), 13);
    }

    #[test]
    fn a_fresh_start_takes_the_log_start_or_seeks_to_the_beginning() {
        let mut c = Cursor::fresh(4);
        assert_eq!(c.admit(4), Admit::Take);
        let mut c = Cursor::fresh(4);
        assert_eq!(c.admit(9), Admit::Seek(SeekTo::Beginning));
        // The first committed record may lie beyond the log start (an
        // aborted transaction first): taken after the seek.
        assert_eq!(c.admit(6), Admit::Take);
        assert_eq!(c.take_gap(), Some(Gap { from: 4, to: 6 }));
    }

    proptest! {
        /// Whatever is delivered, a cursor takes each offset at most once,
        /// in increasing order, never one below its start, and asks for at
        /// most one seek before its first record past the start.
        #[test]
        fn offsets_are_taken_once_in_order(
            start in 0u64..20,
            fresh in any::<bool>(),
            delivered in proptest::collection::vec(0u64..40, 0..60),
        ) {
            let mut c = if fresh { Cursor::fresh(start) } else { Cursor::at(start) };
            let mut taken: Vec<u64> = Vec::new();
            let mut seeks_past_start = 0;
            for o in delivered {
                match c.admit(o) {
                    Admit::Take => {
                        prop_assert!(taken.last().is_none_or(|&l| o > l));
                        prop_assert!(fresh || o >= start);
                        taken.push(o);
                    }
                    Admit::Seek(_) if o > start => seeks_past_start += 1,
                    Admit::Seek(_) | Admit::Duplicate => {}
                }
                prop_assert!(c.position() >= start || fresh);
            }
            prop_assert!(seeks_past_start <= 1);
        }
    }
}
