//! `timebucket dashboard`: a small web page with live charts of distinct
//! users per minute and frames per second, and the invalid and late counts.
//!
//! A background thread keeps a `read_committed` consumer assigned to every
//! partition of the metric topics, the dead-letter topic and (if given) the
//! late topic, from their beginning, outside any group; each record updates
//! the [`View`]. The page (`index.html` and `dashboard.js`, embedded in the
//! binary: it needs no internet access) polls `/api/windows` every second
//! and draws its charts as SVG.
//!
//! Invalid counts are the dead letters on the topic (from `ingest` and the
//! workers), by their reason header; late counts are the records on the late
//! topic (workers run with `--late-topic`), by their `timebucket.late`
//! header. What the page shows is what a `read_committed` reader of the
//! topics sees, nothing the workers merely claim.

mod view;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{info, warn};

pub use view::{MinuteRow, SecondRow, Snapshot, View};

use crate::core::metric::MetricRecord;
use crate::error::Error;
use crate::kafka::config::{KafkaSettings, TopicNames};
use crate::kafka::producer::{HEADER_LATE, HEADER_REASON};
use crate::kafka::read::partitions_of;
use crate::observe::http::{HttpCounters, Request, Response, Server};

const INDEX_HTML: &str = include_str!("index.html");
const DASHBOARD_JS: &str = include_str!("dashboard.js");

#[derive(Debug, Clone)]
pub struct DashboardOptions {
    pub settings: KafkaSettings,
    pub topics: TopicNames,
    /// The workers' late topic, if they have one.
    pub late_topic: Option<String>,
    /// `HOST:PORT` to serve the page on.
    pub listen: String,
}

/// What the reader thread and the page share.
struct Shared {
    view: Mutex<View>,
    topics: BTreeMap<&'static str, String>,
    late_topic: bool,
}

/// Serves the dashboard until `stop` is set (SIGINT/SIGTERM).
pub fn run(opts: DashboardOptions, stop: Arc<AtomicBool>) -> Result<(), Error> {
    let mut topics = BTreeMap::from([
        ("minutes", opts.topics.minutes.clone()),
        ("seconds", opts.topics.seconds.clone()),
        ("dead_letter", opts.topics.dead_letter.clone()),
    ]);
    if let Some(late) = &opts.late_topic {
        topics.insert("late", late.clone());
    }
    let shared = Arc::new(Shared {
        view: Mutex::new(View::default()),
        topics,
        late_topic: opts.late_topic.is_some(),
    });
    let consumer = reader(&opts)?;
    let page = shared.clone();
    let server = Server::start(
        &opts.listen,
        "dashboard",
        HttpCounters::default(),
        move |r| answer(r, &page),
    )?;
    info!(url = %format!("http://{}/", server.addr()), "dashboard");
    while !stop.load(Ordering::SeqCst) {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            match message {
                Ok(m) => read(&shared, &opts, &m),
                Err(e) => warn!(error = %e, "consumer error; librdkafka retries"),
            }
        }
    }
    info!("dashboard stopped");
    Ok(())
}

/// A `read_committed` consumer assigned to every partition of the topics
/// the page shows, from their beginning.
fn reader(opts: &DashboardOptions) -> Result<BaseConsumer, Error> {
    let consumer: BaseConsumer = opts
        .settings
        .client_config(&[
            ("group.id", "timebucket-dashboard"),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
        ])
        .create()
        .map_err(|e| Error::kafka_at("cannot create the dashboard's consumer", e))?;
    let mut tpl = TopicPartitionList::new();
    let t = &opts.topics;
    let topics = [&t.minutes, &t.seconds, &t.dead_letter]
        .into_iter()
        .chain(&opts.late_topic);
    for topic in topics {
        for p in partitions_of(&consumer, topic, Duration::from_secs(30))? {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

fn read(shared: &Shared, opts: &DashboardOptions, m: &BorrowedMessage<'_>) {
    let now = unix_ms();
    let header = |name: &str| -> Option<String> {
        let headers = m.headers()?;
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let topic = m.topic();
    let mut view = shared.view.lock().expect("poisoned");
    if topic == opts.topics.minutes || topic == opts.topics.seconds {
        match m.payload().map(serde_json::from_slice::<MetricRecord>) {
            Some(Ok(record)) => view.window(&record, now),
            _ => warn!(topic, offset = m.offset(), "not a metric record"),
        }
    } else if topic == opts.topics.dead_letter {
        view.dead_letter(header(HEADER_REASON).as_deref(), now);
    } else if Some(topic) == opts.late_topic.as_deref() {
        view.late(header(HEADER_LATE).as_deref() == Some("minute"), now);
    }
}

fn answer(request: &Request<'_>, shared: &Shared) -> Response {
    match request.path {
        "/" | "/index.html" => Response::new(200, "text/html; charset=utf-8", INDEX_HTML),
        "/dashboard.js" => Response::new(200, "text/javascript; charset=utf-8", DASHBOARD_JS),
        "/api/windows" => {
            let view = shared.view.lock().expect("poisoned");
            let json = serde_json::to_vec(&view.snapshot(&shared.topics, shared.late_topic))
                .expect("a snapshot always serializes");
            Response::new(200, "application/json", json)
        }
        "/healthz" => Response::text(200, "ok: alive"),
        _ => Response::not_found(),
    }
}

use super::unix_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_its_script_and_its_data_are_served() {
        let shared = Shared {
            view: Mutex::new(View::default()),
            topics: BTreeMap::from([("minutes", "m".to_string())]),
            late_topic: false,
        };
        let get = |path| answer(&Request { path, accept: None }, &shared);
        let page = get("/");
        assert_eq!(page.status, 200);
        let html = String::from_utf8(page.body).unwrap();
        assert!(html.contains("dashboard.js"));
        assert!(
            !html.contains("http"),
            "the page loads nothing from elsewhere"
        );
        assert_eq!(get("/dashboard.js").status, 200);
        let json: serde_json::Value = serde_json::from_slice(&get("/api/windows").body).unwrap();
        assert_eq!(json["topics"]["minutes"], "m");
        assert_eq!(get("/nope").status, 404);
    }
}
