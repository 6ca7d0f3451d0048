//! Kafka's murmur2: the hash of Kafka's default partitioner for keyed records
//! (`Utils.murmur2` in the Java client, librdkafka's `murmur2` partitioner).
//! Shards of a time bucket are chosen by it over the uid's bytes, so that any
//! Kafka producer that keys frames by uid can route them as `ingest` does.

/// Kafka's `Utils.murmur2` of `data`, as the signed 32-bit value Java returns.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    // Java's switch falls through from 3 to 2 to 1.
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive(murmur2(data))`: what the default partitioner
/// takes modulo the partition count.
pub fn positive_murmur2(data: &[u8]) -> u32 {
    (murmur2(data) as u32) & 0x7fff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apache Kafka's own test values (clients `UtilsTest.testMurmur2`).
    #[test]
    fn equals_kafkas_utils_murmur2() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, want) in cases {
            assert_eq!(murmur2(data), want, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn positive_clears_only_the_sign_bit() {
        assert_eq!(
            positive_murmur2(b"21"),
            (-973_932_308i32 as u32) & 0x7fff_ffff
        );
        assert_eq!(positive_murmur2(b"abc"), 479_470_107);
    }
}
