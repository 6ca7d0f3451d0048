//! Time buckets: how a frame's `ts` (and, with shards, its `uid`) picks its
//! partition of the input topic.
//!
//! `bucket = ts div B`, `partition = bucket mod P`. B is a multiple of 60, so
//! a minute never straddles two buckets and every window is counted whole in
//! one partition: exact results with no cross-worker merge.
//!
//! With S shards per bucket (`P mod S = 0`, G = P / S bucket groups):
//! `partition = (toPositive(murmur2(uid)) mod S)·G + bucket mod G`, murmur2
//! as Kafka's default partitioner ([`crate::murmur2`]). A uid always lands in
//! one shard of its bucket, so a minute's distinct users are the sum of its
//! shards' distinct counts. The shards of one bucket are G partitions apart,
//! not adjacent: consumer-group assignors hand out runs of adjacent
//! partitions (measured: cooperative-sticky gave one worker both shards of
//! the hot bucket when they were adjacent), so striding spreads the present
//! over the workers. S = 1 is the unsharded routing, unchanged.

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
    shards: u32,
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
            shards: 1,
        })
    }

    /// Each bucket spread over `shards` partitions by the uid's murmur2;
    /// `partitions` must be a multiple of `shards`. One shard is [`Routing::new`].
    pub fn sharded(bucket_secs: u64, partitions: u32, shards: u32) -> Result<Routing, BadRouting> {
        let routing = Routing::new(bucket_secs, partitions)?;
        if shards == 0 || !partitions.is_multiple_of(shards) {
            return Err(BadRouting(format!(
                "{partitions} partitions cannot hold {shards} shards per bucket: \
                 the partition count must be a positive multiple of the shard count"
            )));
        }
        Ok(Routing { shards, ..routing })
    }

    /// Shards per bucket (1: unsharded).
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// The partition of a frame: its bucket's first partition plus its uid's
    /// shard times G. Without shards, [`Routing::partition`].
    pub fn route(&self, ts: u64, uid: &str) -> u32 {
        self.partition(ts) + self.shard_of(uid) * self.groups()
    }

    /// Bucket groups: G = P / S.
    pub fn groups(&self) -> u32 {
        self.partitions / self.shards
    }

    /// The S partitions of the bucket group whose first partition is `first`.
    pub fn shard_partitions(&self, first: u32) -> impl Iterator<Item = u32> {
        let g = self.groups();
        (0..self.shards).map(move |s| first + s * g)
    }

    /// The shard of a uid within its bucket: `toPositive(murmur2(uid)) mod S`.
    pub fn shard_of(&self, uid: &str) -> u32 {
        if self.shards == 1 {
            return 0;
        }
        crate::murmur2::positive_murmur2(uid.as_bytes()) % self.shards
    }

    /// The first partition (shard 0) of the bucket group that holds
    /// `partition`: the partition merged records name.
    pub fn group_first(&self, partition: u32) -> u32 {
        partition % self.groups()
    }

    /// The time from one of a partition's buckets to its next: G·B
    /// seconds. A partition's event time jumps by up to this much when
    /// its next bucket comes (the default horizon of its windows).
    pub fn cycle_secs(&self) -> u64 {
        u64::from(self.groups()) * self.bucket_secs
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

    /// The bucket's partition, or with shards its first (shard 0) partition.
    pub fn partition(&self, ts: u64) -> u32 {
        (self.bucket(ts) % u64::from(self.groups())) as u32
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
    fn shards_spread_a_bucket_by_kafkas_murmur2_of_the_uid() {
        let r = Routing::sharded(900, 8, 4).unwrap();
        // Bucket 1631382: group 1631382 mod 2 = 0. Kafka's UtilsTest:
        // murmur2("21") = -973932308, murmur2("abc") = 479470107.
        let ts = 1468244384;
        let s21 = ((-973_932_308i32 as u32) & 0x7fff_ffff) % 4;
        assert_eq!(r.route(ts, "21"), s21 * 2);
        assert_eq!(r.route(ts, "abc"), 479_470_107 % 4 * 2);
        assert_eq!(r.route(ts + 900, "abc"), 479_470_107 % 4 * 2 + 1);
        assert_eq!(r.group_first(r.route(ts + 900, "21")), 1);
        assert_eq!(r.shard_partitions(1).collect::<Vec<_>>(), vec![1, 3, 5, 7]);
        assert_eq!(r.cycle_secs(), 2 * 900);
        assert_eq!(Routing::new(900, 8).unwrap().cycle_secs(), 8 * 900);
        // Every uid of a bucket stays inside its group's S partitions.
        for i in 0..1000 {
            let uid = format!("{i:x}");
            assert_eq!(r.route(ts, &uid) % 2, 0);
            assert_eq!(r.route(ts, &uid) / 2, r.shard_of(&uid));
        }
        // One shard is the unsharded routing.
        let one = Routing::sharded(900, 8, 1).unwrap();
        assert_eq!(one, Routing::new(900, 8).unwrap());
        assert_eq!(one.route(ts, "abc"), one.partition(ts));
    }

    #[test]
    fn rejects_bad_config() {
        assert!(Routing::sharded(900, 8, 3).is_err());
        assert!(Routing::sharded(900, 8, 0).is_err());
        assert!(Routing::new(90, 4).is_err());
        assert!(Routing::new(0, 4).is_err());
        assert!(Routing::new(900, 0).is_err());
    }
}
