//! `timebucket health`: one HTTP GET, exit 0 on a 2xx answer and 9
//! otherwise; the container health check of the compose file (the image
//! has no curl).

use std::time::Duration;

use clap::Args;

use crate::error::Error;
use crate::observe::http::get;

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// What to ask: a worker's /readyz or /healthz.
    #[arg(default_value = "http://127.0.0.1:9180/readyz")]
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

impl HealthArgs {
    pub fn run(self) -> Result<(), Error> {
        let (status, body) =
            get(&self.url, Duration::from_secs(self.timeout)).map_err(Error::Unreachable)?;
        let body = body.trim();
        if (200..300).contains(&status) {
            println!("{status} {body}");
            Ok(())
        } else {
            Err(Error::Unhealthy(format!(
                "{} answered {status}: {body}",
                self.url
            )))
        }
    }
}
