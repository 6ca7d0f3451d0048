//! What an operator sees of a running process: its Prometheus registry and
//! metric families ([`worker`], [`ingest`]), and the endpoints served on
//! `--metrics-addr` by [`Exporter`]:
//!
//! - `/metrics`: the registry, in OpenMetrics text when the scraper asks for
//!   it (`Accept: application/openmetrics-text`, as Prometheus does), else in
//!   the Prometheus text format 0.0.4 (what `promtool check metrics` reads);
//! - `/healthz`: 200 while the process runs;
//! - `/readyz`: 200 once the process does its job (a worker: it has joined
//!   its consumer group, with or without partitions), 503 before and after.
//!
//! Metrics are updated from the process's own loop, per poll batch or about
//! once a second, never per record; the server runs on a thread of its own
//! ([`http`]), with limits against hostile clients whose refusals are
//! counted in the same registry (`http_*`, docs/http.md).

pub mod http;
pub mod ingest;
pub mod worker;

use std::sync::Arc;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::core::frame::Invalid;
use crate::error::Error;
use http::{HttpCounters, Request, Response, Server};

/// Every metric name starts with this.
pub const PREFIX: &str = "timebucket";

/// What `/readyz` answers, and why: a state of the process, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// 200 `ready: why`.
    Yes(String),
    /// 503 `not ready: why`.
    No(String),
}

impl Ready {
    pub fn is_ready(&self) -> bool {
        matches!(self, Ready::Yes(_))
    }

    /// Why (ready or not).
    pub fn why(&self) -> &str {
        match self {
            Ready::Yes(why) | Ready::No(why) => why,
        }
    }
}

/// How a process tells `/readyz` whether it is ready.
pub type Readiness = Arc<dyn Fn() -> Ready + Send + Sync>;

/// `/metrics`, `/healthz` and `/readyz` of one process, served until dropped.
pub struct Exporter {
    server: Server,
}

impl Exporter {
    /// Serves `registry` on `addr` (`HOST:PORT`; port 0 picks a free one,
    /// logged and in [`Exporter::addr`]); the server counts its refusals in
    /// `http` (registered in `registry`).
    pub fn serve(
        addr: &str,
        registry: Arc<Registry>,
        http: HttpCounters,
        ready: Readiness,
    ) -> Result<Exporter, Error> {
        let server = Server::start(addr, "metrics", http, move |r| answer(r, &registry, &ready))?;
        Ok(Exporter { server })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }
}

fn answer(request: &Request<'_>, registry: &Registry, ready: &Readiness) -> Response {
    match request.path {
        "/metrics" => exposition(registry, request.accept),
        "/healthz" => Response::text(200, "ok: alive"),
        "/readyz" => match ready() {
            Ready::Yes(why) => Response::text(200, &format!("ready: {why}")),
            Ready::No(why) => Response::text(503, &format!("not ready: {why}")),
        },
        "/" => Response::text(
            200,
            "timebucket: /metrics (Prometheus), /healthz (alive), /readyz (ready)",
        ),
        _ => Response::not_found(),
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry in the format the scraper asked for.
pub fn exposition(registry: &Registry, accept: Option<&str>) -> Response {
    let mut body = String::new();
    let openmetrics = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
    let (encoded, content_type) = if openmetrics {
        (text::encode(&mut body, registry), OPENMETRICS)
    } else {
        (
            prometheus_text::encode(&mut body, registry),
            prometheus_text::CONTENT_TYPE,
        )
    };
    match encoded {
        Ok(()) => Response::new(200, content_type, body),
        Err(e) => Response::text(500, &format!("cannot encode the metrics: {e}")),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// A counter family by invalid-frame reason, registered as `name`, with
/// every reason's series created at zero; the counters by `Invalid::index`.
fn by_reason(registry: &mut Registry, name: &str, help: &str) -> Vec<Counter> {
    let family = Family::<ReasonLabel, Counter>::default();
    registry.register(name, help, family.clone());
    Invalid::ALL
        .iter()
        .map(|reason| {
            family.get_or_create_owned(&ReasonLabel {
                reason: reason.code(),
            })
        })
        .collect()
}

/// Stores `value` into a counter that mirrors a count kept elsewhere (the
/// process's own summary, which only grows): one relaxed store, no delta.
fn mirror(counter: &Counter, value: u64) {
    counter
        .inner()
        .store(value, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_text_formats_by_accept_header() {
        let mut registry = Registry::with_prefix(PREFIX);
        let c = Counter::<u64>::default();
        registry.register("things", "Things seen", c.clone());
        mirror(&c, 7);
        let plain = exposition(&registry, None);
        let text = String::from_utf8(plain.body).unwrap();
        assert!(plain.content_type.starts_with("text/plain; version=0.0.4"));
        assert!(text.contains("# TYPE timebucket_things_total counter"));
        assert!(text.contains("timebucket_things_total 7"));
        let om = exposition(
            &registry,
            Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
        );
        assert_eq!(om.content_type, OPENMETRICS);
        assert!(String::from_utf8(om.body).unwrap().ends_with("# EOF\n"));
    }

    #[test]
    fn readiness_and_health_answer() {
        let registry = Arc::new(Registry::default());
        let flip = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = flip.clone();
        let ready: Readiness = Arc::new(move || {
            if f.load(std::sync::atomic::Ordering::SeqCst) {
                Ready::Yes("joined".into())
            } else {
                Ready::No("joining".into())
            }
        });
        let exporter =
            Exporter::serve("127.0.0.1:0", registry, HttpCounters::default(), ready).unwrap();
        let url = |p: &str| format!("http://{}{p}", exporter.addr());
        let t = std::time::Duration::from_secs(5);
        assert_eq!(http::get(&url("/healthz"), t).unwrap().0, 200);
        assert_eq!(
            http::get(&url("/readyz"), t).unwrap(),
            (503, "not ready: joining\n".into())
        );
        flip.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            http::get(&url("/readyz"), t).unwrap(),
            (200, "ready: joined\n".into())
        );
        assert_eq!(http::get(&url("/metrics"), t).unwrap().0, 200);
    }
}
