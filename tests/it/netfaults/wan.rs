//! Scenario 4 (docs/faults.md): delay and loss on every link for a whole
//! run, with the client settings a slow, lossy network needs.

use super::*;

/// Client settings for a slow, lossy network (docs/faults.md): the default
/// 10 s for a transaction and its records is too short when a connection
/// moves 20 KB/s; ingest and the workers then fail naming the records not
/// delivered (measured: ingest of 4,000 frames of 2 KB, 3,044 not delivered
/// with 10 s and with 60 s). The workers' 6 s group session is too short
/// as well: with 5 % loss a heartbeat sometimes takes longer (TCP's
/// retransmission backs off), the member is evicted, its transaction's
/// offsets are refused and it replays; seen to repeat for minutes, so the
/// scenario failed 1 run in 3. Kafka's own default (45 s) holds.
const WAN: [&str; 6] = [
    "-X",
    "transaction.timeout.ms=120000",
    "-X",
    "message.timeout.ms=120000",
    "-X",
    "session.timeout.ms=45000",
];

/// Every link delays each packet by 200 ms +- 50 ms and loses 5 % of them,
/// for a whole run (brokers' replication and controller traffic included):
/// ingest, two workers, exact outputs.
#[test]
fn delay_and_loss_on_every_link_for_a_whole_run() {
    let _serial = serial();
    // Small: at 400 ms round trips and 5 % loss, TCP moves about 20 KB/s
    // per connection (measured between two of these hosts: 10 KB in 1.3 s,
    // 2 MB not within 60 s), and these frames are 2 KB each.
    let frames = 400;
    let s = setup("netslow", 10250, frames);
    s.net.netem(
        "all",
        &["--delay-ms", "200", "--jitter-ms", "50", "--loss", "5"],
    );
    let started = Instant::now();
    ingest_with(&s, &WAN);
    let ingested = started.elapsed();
    inject_invalid(&s.p);
    let processing = Instant::now();
    let probe = output_probe(&s);
    let started_ms = unix_ms();
    let args = [&WAN[..], &["--forward"]].concat();
    let mut workers = vec![worker(&s, "w1", &args), worker(&s, "w2", &args)];
    wait_workers(&s, &mut workers);
    let processed = processing.elapsed();
    // The fault is the whole run: no baseline before it.
    let seen = probe.finish();
    println!(
        "measured: netslow: outputs: first readable {:.1} s after the workers started; \
         the longest time no new record of a partition became readable: {:.1} s",
        seen.first_ms()
            .map_or(f64::NAN, |t| t.saturating_sub(started_ms) as f64 / 1000.0),
        seen.longest_stall_ms() as f64 / 1000.0,
    );
    println!(
        "measured: netslow: {frames} frames ingested in {:.1} s ({:.0} frames/s), \
         processed by two workers in {:.1} s ({:.0} frames/s)",
        ingested.as_secs_f64(),
        frames as f64 / ingested.as_secs_f64(),
        processed.as_secs_f64(),
        frames as f64 / processed.as_secs_f64(),
    );
    s.net.heal();
    assert_exactly_once(&s.p, &s.path);
}
