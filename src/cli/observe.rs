//! Options every long-running command shares for being observed: where to
//! serve its Prometheus metrics, `/healthz` and `/readyz`.

use std::time::Duration;

use clap::Args;

#[derive(Args, Clone, Debug, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics on http://HOST:PORT/metrics, with /healthz
    /// and /readyz (port 0 picks a free one, logged at start).
    #[arg(long, env = "METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Keep serving the metrics this many seconds after the job is done, so
    /// that a scraper sees the final counts of a batch run.
    #[arg(
        long,
        env = "METRICS_LINGER_SECONDS",
        default_value_t = 0,
        requires = "metrics_addr"
    )]
    pub metrics_linger: u64,
}

impl MetricsArgs {
    pub fn linger(&self) -> Duration {
        Duration::from_secs(self.metrics_linger)
    }
}
