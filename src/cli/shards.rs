//! Options of sharded buckets shared by `worker` and `merge`: the shard
//! count (as the input topic's definition says, `shards=` in
//! `topics/input.properties`) and the partials topic between the stages.

use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct ShardArgs {
    /// Shards per time bucket: each bucket spread over S input partitions by
    /// murmur2(uid). Must equal the input topic's definition (`shards=`) and
    /// divide its partition count. 1: no shards, no partials, no merge.
    #[arg(long, env = "INPUT_SHARDS", default_value_t = 1)]
    pub shards: u32,
    /// Topic of the shards' partial windows and progress (S > 1), read by
    /// `timebucket merge`.
    #[arg(long, env = "PARTIALS_TOPIC", default_value = "metrics-partials")]
    pub partials_topic: String,
}
