//! Time buckets: how a frame's `ts` picks its partition of the input topic.
//!
//! `bucket = ts div B`, `partition = bucket mod P`. B is a multiple of 60, so
//! a minute never straddles two buckets and every window is counted whole in
//! one partition: exact results with no cross-worker merge.

/// Routing options that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRouting(String);

/// Default bucket length: 15 minutes.
pub const DEFAULT_BUCKET_SECS: u64 = 900;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    bucket_secs: u64,
    partitions: u32,
}

impl Routing {
    pub fn new(bucket_secs: u64, partitions: u32) -> Result<Routing, BadRouting> {
        if bucket_secs == 0 || !bucket_secs.is_multiple_of(60) {
            return Err(BadRouting(format!(
                "bucket length must be a positive multiple of 60 seconds, got {bucket_secs}"
            )));
        }
        if partitions == 0 {
            return Err(BadRouting("partition count must be at least 1".into()));
        }
        Ok(Routing {
            bucket_secs,
            partitions,
        })
    }

    pub fn bucket_secs(&self) -> u64 {
        self.bucket_secs
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    pub fn bucket(&self, ts: u64) -> u64 {
        ts / self.bucket_secs
    }

    pub fn partition(&self, ts: u64) -> u32 {
        (self.bucket(ts) % u64::from(self.partitions)) as u32
    }

    /// The partition a frame belongs to: the one `ingest` writes it to and
    /// the only one whose worker may count it (the routing guard). Today the
    /// `uid` plays no part; routing that spreads a bucket over several
    /// partitions by `uid` changes only this method.
    pub fn route(&self, ts: u64, _uid: &str) -> u32 {
        self.partition(ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_bucket() {
        let r = Routing::new(900, 8).unwrap();
        assert_eq!(r.bucket(1468244384), 1631382);
        assert_eq!(r.partition(1468244384), (1631382 % 8) as u32);
        assert_eq!(r.partition(1468244399), r.partition(1468244384));
    }

    #[test]
    fn a_minute_never_straddles_a_bucket() {
        let r = Routing::new(900, 7).unwrap();
        for m in (0..100_000u64).step_by(60) {
            assert_eq!(r.partition(m), r.partition(m + 59));
        }
    }

    #[test]
    fn route_is_the_partition_of_the_bucket_whatever_the_uid() {
        let r = Routing::new(900, 8).unwrap();
        for ts in [0, 899, 900, 1468244384] {
            assert_eq!(r.route(ts, "a"), r.partition(ts));
            assert_eq!(r.route(ts, "zz"), r.route(ts, "a"));
        }
    }

    #[test]
    fn rejects_bad_config() {
        assert!(Routing::new(90, 4).is_err());
        assert!(Routing::new(0, 4).is_err());
        assert!(Routing::new(900, 0).is_err());
    }
}
