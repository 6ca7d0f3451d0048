//! The first contact with the cluster, and the refusals that no retry cures.
//!
//! librdkafka treats a refused login or an untrusted certificate like any
//! broken connection: it reconnects with backoff, reports the cause only as
//! an error event, and a blocking call just times out. So every Kafka
//! command starts with [`check`]: metadata requests in short steps through
//! a small client whose error events are read between the steps. A refused
//! login or TLS handshake ends the command within about a second (exit code
//! 5, naming the cause); a cluster that does not answer ends it after
//! [`CONNECT_TIMEOUT`] with librdkafka's last reason (connection refused,
//! name not resolved, ...).
//!
//! Authorization (ACLs) is checked per request, so the calls that need it
//! report it themselves; [`refusal`] says which error codes mean "the
//! cluster says no" and what to do about it, and [`explain`] words them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tracing::debug;

use crate::error::Error;
use crate::kafka::config::KafkaSettings;

/// How long [`check`] waits for a cluster that does not answer at all.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The first metadata request of [`check`]; error events are read in
/// between. Each next request may take twice as long, up to [`LAST_STEP`]:
/// a cluster 400 ms of round trip away never answers within 250 ms.
const STEP: Duration = Duration::from_millis(250);
const LAST_STEP: Duration = Duration::from_secs(4);

/// What the cluster's answer means when it says no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// SASL: wrong user, password or mechanism.
    Authentication,
    /// TLS: the handshake failed (an untrusted certificate, a wrong
    /// protocol).
    Tls,
    /// An ACL is missing for a topic, group, transactional id or the cluster.
    Authorization,
}

/// Whether `code` is a refusal, and which.
pub fn refusal(code: RDKafkaErrorCode) -> Option<Refusal> {
    use RDKafkaErrorCode as C;
    match code {
        C::Authentication | C::SaslAuthenticationFailed | C::IllegalSASLState => {
            Some(Refusal::Authentication)
        }
        C::SSL => Some(Refusal::Tls),
        C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::DelegationTokenAuthorizationFailed => Some(Refusal::Authorization),
        _ => None,
    }
}

/// [`refusal`] of an error event, also when librdkafka codes a failed TLS
/// handshake as a transport failure (`_TRANSPORT` with an "SSL handshake
/// failed" reason: it does so when the peer disconnects mid-handshake).
/// The slow untrusted-CA refusal this was first written for was the
/// events left queued, fixed in [`drain`]; this stays as a second net.
fn refusal_in(code: RDKafkaErrorCode, reason: &str) -> Option<Refusal> {
    refusal(code).or_else(|| {
        let tls = matches!(code, RDKafkaErrorCode::BrokerTransportFailure)
            && (reason.contains("SSL routines") || reason.contains("SSL handshake failed"));
        tls.then_some(Refusal::Tls)
    })
}

/// The refusal behind a failed call, if it was one.
pub fn refusal_of(error: &KafkaError) -> Option<Refusal> {
    error.rdkafka_error_code().and_then(refusal)
}

/// `code` with what to do about it, when it is a refusal: for error
/// messages of calls that can be refused.
pub fn explain(code: RDKafkaErrorCode) -> String {
    use RDKafkaErrorCode as C;
    let hint = match code {
        C::TopicAuthorizationFailed => {
            "not authorized: the user has no ACL for this topic (see docs/operations.md, \"ACLs\")"
        }
        C::GroupAuthorizationFailed => {
            "not authorized: the user has no ACL for this consumer group (see docs/operations.md, \"ACLs\")"
        }
        C::TransactionalIdAuthorizationFailed => {
            "not authorized: the user has no ACL for this transactional id prefix (see docs/operations.md, \"ACLs\"; \
             a worker with --at-least-once needs none)"
        }
        C::ClusterAuthorizationFailed => {
            "not authorized: the user has no ACL for this cluster operation (see docs/operations.md, \"ACLs\")"
        }
        _ => return match refusal(code) {
            Some(r) => format!("{code} ({})", hint_of(r, "")),
            None => code.to_string(),
        },
    };
    format!("{code} ({hint})")
}

/// The error message of a refused call: `what` failed, why, and what to do.
pub fn refused(what: &str, error: &KafkaError) -> Error {
    match error.rdkafka_error_code() {
        Some(code) if refusal(code).is_some() => Error::KafkaCode {
            what: what.to_string(),
            code,
        },
        _ => Error::kafka_at(what, error.clone()),
    }
}

fn hint_of(refusal: Refusal, reason: &str) -> &'static str {
    match refusal {
        Refusal::Authentication => {
            "authentication failed: check sasl.mechanism, sasl.username and sasl.password \
             (in the -F file or TIMEBUCKET_CLIENT_SASL_PASSWORD)"
        }
        Refusal::Tls if reason.contains("certificate verify failed") => {
            "TLS: the broker's certificate is not signed by a CA this client trusts: \
             set ssl.ca.location to the CA certificate (PEM) that signed it"
        }
        Refusal::Tls => {
            "TLS handshake failed: check security.protocol, ssl.ca.location and, for \
             mutual TLS, ssl.certificate.location and ssl.key.location"
        }
        Refusal::Authorization => {
            "not authorized: the user lacks an ACL (see docs/operations.md, \"ACLs\")"
        }
    }
}

/// Error events of the probe client, as librdkafka reports them, and how
/// many log lines it served.
#[derive(Default)]
struct Watch {
    events: Mutex<Vec<(RDKafkaErrorCode, String)>>,
    logs: AtomicU64,
}

impl ClientContext for Watch {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.logs.fetch_add(1, Ordering::Relaxed);
        DefaultClientContext.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        debug!(%error, reason, "while connecting");
        if let Some(code) = error.rdkafka_error_code() {
            self.events
                .lock()
                .expect("poisoned")
                .push((code, reason.to_string()));
        }
    }
}

impl ConsumerContext for Watch {}

/// Connects to the cluster once and asks for its metadata: `Ok` once a
/// broker answers; [`Error::ConnectionRefused`] naming the cause as soon as librdkafka
/// reports a refused login or TLS handshake, or [`Error::NoBroker`] after
/// [`CONNECT_TIMEOUT`] without an answer.
pub fn check(settings: &KafkaSettings) -> Result<(), Error> {
    check_within(settings, CONNECT_TIMEOUT)
}

/// [`check`] with another time limit.
pub fn check_within(settings: &KafkaSettings, timeout: Duration) -> Result<(), Error> {
    let bootstrap = &settings.bootstrap;
    // No group.id: polling serves the main queue (its error events), and no
    // group coordinator is looked up.
    let probe: BaseConsumer<Watch> = settings
        .client_config(&[])
        .create_with_context(Watch::default())
        .map_err(|e| Error::kafka_at(format!("cannot create a Kafka client for {bootstrap}"), e))?;
    let deadline = Instant::now() + timeout;
    // What went wrong last: librdkafka's own reason (an error event, e.g.
    // "Connect to ... failed: Connection refused") if there was one, else
    // the failed call's.
    let mut last_call: LastSeen;
    let mut last_event: Option<LastSeen> = None;
    let mut next_step = STEP;
    loop {
        let step = next_step.min(deadline.saturating_duration_since(Instant::now()));
        next_step = (next_step * 2).min(LAST_STEP);
        match probe.fetch_metadata(None, step.max(Duration::from_millis(1))) {
            Ok(md) if !md.brokers().is_empty() => return Ok(()),
            Ok(_) => last_call = LastSeen::NoBrokers,
            Err(e) => last_call = LastSeen::Call(e),
        }
        drain(&probe);
        let events = std::mem::take(&mut *probe.context().events.lock().expect("poisoned"));
        for (code, reason) in &events {
            if let Some(r @ (Refusal::Authentication | Refusal::Tls)) = refusal_in(*code, reason) {
                return Err(Error::ConnectionRefused {
                    bootstrap: bootstrap.clone(),
                    hint: hint_of(r, reason),
                    code: *code,
                    reason: reason.clone(),
                });
            }
        }
        if let Some((code, reason)) = events
            .iter()
            .rev()
            .find(|(code, _)| *code != RDKafkaErrorCode::AllBrokersDown)
        {
            last_event = Some(LastSeen::Event {
                code: *code,
                reason: reason.clone(),
            });
        }
        if Instant::now() >= deadline {
            return Err(Error::NoBroker {
                bootstrap: bootstrap.clone(),
                timeout,
                last: last_event.unwrap_or(last_call),
            });
        }
    }
}

/// What went wrong last while [`check`] waited for a broker: librdkafka's
/// own reason if it gave one, else the failed call's error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LastSeen {
    /// An error event (e.g. "Connect to ... failed: Connection refused").
    #[error("{code}: {reason}")]
    Event {
        #[source]
        code: RDKafkaErrorCode,
        reason: String,
    },
    /// The metadata request failed.
    #[error("{0}")]
    Call(#[source] KafkaError),
    /// The cluster answered, but with no brokers in its metadata.
    #[error("the metadata lists no brokers")]
    NoBrokers,
}

/// Serves every event queued on the probe's main queue. A log line and an
/// error event share that queue (librdkafka logs "FAIL" just before it
/// queues the error), and `poll` answers `None` both for an empty queue and
/// for a log line it served; stopping at the first `None` left the TLS
/// refusal behind the log line until the next step, and under load past
/// [`CONNECT_TIMEOUT`] (the secure test's untrusted-CA case, 30 s instead
/// of one).
fn drain(probe: &BaseConsumer<Watch>) {
    loop {
        let logs = probe.context().logs.load(Ordering::Relaxed);
        if probe.poll(Duration::ZERO).is_none()
            && probe.context().logs.load(Ordering::Relaxed) == logs
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_apart_from_transient_errors() {
        use RDKafkaErrorCode as C;
        assert_eq!(refusal(C::Authentication), Some(Refusal::Authentication));
        assert_eq!(refusal(C::SSL), Some(Refusal::Tls));
        for code in [
            C::TopicAuthorizationFailed,
            C::GroupAuthorizationFailed,
            C::TransactionalIdAuthorizationFailed,
            C::ClusterAuthorizationFailed,
        ] {
            assert_eq!(refusal(code), Some(Refusal::Authorization), "{code}");
            assert!(
                explain(code).contains("not authorized"),
                "{}",
                explain(code)
            );
        }
        // What a broker restart looks like: never a refusal.
        for code in [
            C::AllBrokersDown,
            C::BrokerTransportFailure,
            C::NotCoordinator,
            C::CoordinatorLoadInProgress,
            C::NotLeaderForPartition,
            C::RequestTimedOut,
            C::OperationTimedOut,
        ] {
            assert_eq!(refusal(code), None, "{code}");
        }
        let e = refused(
            "cannot start transactions",
            &KafkaError::MetadataFetch(C::TransactionalIdAuthorizationFailed),
        );
        assert_eq!(e.exit_code(), 5);
        assert!(e.to_string().contains("transactional id"), "{e}");
        // A failed handshake on a reconnect comes as a transport failure.
        let verify = "sasl_ssl://127.0.0.1:9592/bootstrap: error:0A000086:SSL routines::\
                      certificate verify failed (after 6ms in state SSL_HANDSHAKE)";
        assert_eq!(
            refusal_in(C::BrokerTransportFailure, verify),
            Some(Refusal::Tls)
        );
        let refused_tcp = "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: \
                           Connection refused";
        assert_eq!(refusal_in(C::BrokerTransportFailure, refused_tcp), None);
    }

    #[test]
    fn an_unreachable_cluster_fails_within_the_timeout_naming_the_address() {
        // A port nothing listens on (the discard port, closed on test machines).
        let settings = KafkaSettings::new("127.0.0.1:9");
        let started = Instant::now();
        let e = check_within(&settings, Duration::from_secs(2)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(e.exit_code(), 5);
        assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
    }
}
