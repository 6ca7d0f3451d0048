//! Smoke test of the real broker and of the test harness: a 4-partition
//! topic, 10,000 keyed records produced and acknowledged, then consumed by two
//! consumers of one group on two threads. Both must own partitions, and every
//! record must arrive exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

const PARTITIONS: i32 = 4;
const RECORDS: usize = 10_000;
const DEADLINE: Duration = Duration::from_secs(120);

/// Counts acknowledged and failed deliveries.
#[derive(Default)]
struct Deliveries {
    ok: AtomicUsize,
    failed: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, msg)) => {
                self.failed
                    .lock()
                    .unwrap()
                    .push(format!("partition {}: {e}", msg.partition()));
            }
        }
    }
}

/// What one consumer saw.
struct Seen {
    /// (key, payload) of every record received, duplicates included.
    records: Vec<(String, String)>,
    /// Every partition this consumer was assigned at some point.
    partitions: BTreeSet<i32>,
}

fn key(i: usize) -> String {
    format!("key-{i:05}")
}

fn payload(run: &str, i: usize) -> String {
    format!("payload-{i:05}-{run}")
}

#[test]
fn two_consumers_in_one_group_get_every_record_exactly_once() {
    let started = Instant::now();
    let bootstrap = crate::common::bootstrap();
    let topic = crate::common::unique_name("smoke");
    let group = crate::common::unique_name("smoke-group");
    crate::common::create_topic(&bootstrap, &topic, PARTITIONS, 1);

    // Consumers first: both must hold partitions before anything is produced,
    // so that no rebalance hands a partition over mid-stream (which, without
    // committed offsets, would replay records).
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicUsize::new(0));
    let assigned: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let consumers: Vec<_> = (0..2)
        .map(|n| {
            let (bootstrap, topic, group) = (bootstrap.clone(), topic.clone(), group.clone());
            let (stop, received, assigned) = (stop.clone(), received.clone(), assigned.clone());
            thread::Builder::new()
                .name(format!("consumer-{n}"))
                .spawn(move || {
                    let consumer: BaseConsumer = crate::common::consumer_config(&bootstrap, &group)
                        .set("client.id", format!("smoke-consumer-{n}"))
                        .create()
                        .expect("consumer");
                    consumer.subscribe(&[&topic]).expect("subscribe");
                    let mut seen = Seen {
                        records: Vec::new(),
                        partitions: BTreeSet::new(),
                    };
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(result) = consumer.poll(Duration::from_millis(100)) {
                            let msg = result.unwrap_or_else(|e| panic!("consumer {n}: {e}"));
                            let k = String::from_utf8(msg.key().expect("key").to_vec())
                                .expect("utf-8 key");
                            let p = String::from_utf8(msg.payload().expect("payload").to_vec())
                                .expect("utf-8 payload");
                            seen.records.push((k, p));
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        let owned = consumer.assignment().expect("assignment");
                        for e in owned.elements() {
                            seen.partitions.insert(e.partition());
                        }
                        assigned[n].store(owned.count(), Ordering::Relaxed);
                    }
                    seen
                })
                .expect("spawn consumer")
        })
        .collect();

    crate::common::wait_until(
        Duration::from_secs(60),
        "both consumers to be assigned partitions",
        || {
            consumers.iter().any(|c| c.is_finished())
                || assigned
                    .iter()
                    .map(|a| a.load(Ordering::Relaxed))
                    .filter(|&c| c > 0)
                    .count()
                    == 2
                    && assigned
                        .iter()
                        .map(|a| a.load(Ordering::Relaxed))
                        .sum::<usize>()
                        == PARTITIONS as usize
        },
    );
    if consumers.iter().any(|c| c.is_finished()) {
        stop.store(true, Ordering::Relaxed);
        for c in consumers {
            c.join().expect("a consumer thread panicked");
        }
        panic!("a consumer thread ended early");
    }

    // Produce with distinct keys and payloads and wait for every delivery.
    let run = topic.clone();
    let producer: BaseProducer<Deliveries> = crate::common::producer_config(&bootstrap)
        .create_with_context(Deliveries::default())
        .expect("producer");
    for i in 0..RECORDS {
        let (k, p) = (key(i), payload(&run, i));
        let mut record = BaseRecord::to(&topic).key(&k).payload(&p);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    assert!(started.elapsed() < DEADLINE, "producing record {i}: {e}");
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let failed = producer.context().failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} deliveries failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        producer.context().ok.load(Ordering::Relaxed),
        RECORDS,
        "acknowledged deliveries"
    );

    // Consume everything, then keep polling a little longer so that a
    // duplicate would show up.
    let remaining = DEADLINE.saturating_sub(started.elapsed());
    crate::common::wait_until(
        remaining,
        &format!("{RECORDS} records to be consumed"),
        || received.load(Ordering::Relaxed) >= RECORDS || consumers.iter().any(|c| c.is_finished()),
    );
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = consumers
        .into_iter()
        .map(|c| c.join().expect("a consumer thread panicked"))
        .collect();

    for (n, s) in seen.iter().enumerate() {
        assert!(
            !s.partitions.is_empty(),
            "consumer {n} was never assigned a partition"
        );
        assert!(
            !s.records.is_empty(),
            "consumer {n} received no record (partitions {:?})",
            s.partitions
        );
    }
    let mut counts: BTreeMap<&(String, String), usize> = BTreeMap::new();
    for r in seen.iter().flat_map(|s| &s.records) {
        *counts.entry(r).or_default() += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).take(5).collect();
    assert!(
        duplicates.is_empty(),
        "records received more than once, e.g. {duplicates:?}"
    );
    let expected: BTreeSet<(String, String)> =
        (0..RECORDS).map(|i| (key(i), payload(&run, i))).collect();
    let got: BTreeSet<(String, String)> = counts.keys().map(|&r| r.clone()).collect();
    let missing: Vec<_> = expected.difference(&got).take(5).collect();
    let unexpected: Vec<_> = got.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "{} of {RECORDS} records missing (e.g. {missing:?}), {} unexpected (e.g. {unexpected:?})",
        expected.difference(&got).count(),
        got.difference(&expected).count()
    );
    let total: usize = seen.iter().map(|s| s.records.len()).sum();
    assert_eq!(total, RECORDS, "records received in all");
    eprintln!(
        "kafka_smoke: {RECORDS} records, consumer 0 got {} from partitions {:?}, consumer 1 got {} from partitions {:?}, {:.1}s",
        seen[0].records.len(),
        seen[0].partitions,
        seen[1].records.len(),
        seen[1].partitions,
        started.elapsed().as_secs_f64()
    );
    crate::common::delete_topics(&bootstrap, &[&topic]);
}
