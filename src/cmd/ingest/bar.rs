//! Ingest's progress on the terminal: a bar with bytes, rate and ETA on a
//! terminal, a log line every 5 s otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use tracing::info;

/// A progress bar on a terminal, plain log lines otherwise.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_log: std::cell::Cell<Instant>,
}

impl Progress {
    pub(super) fn new(total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("valid template"),
            );
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
            last_log: std::cell::Cell::new(Instant::now()),
        }
    }

    pub(super) fn update(&self, bytes: u64, frames: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(bytes);
                bar.set_message(format!("{frames} frames"));
            }
            None if self.last_log.get().elapsed() >= Duration::from_secs(5) => {
                self.last_log.set(Instant::now());
                let secs = self.started.elapsed().as_secs_f64();
                info!(
                    frames,
                    mb = bytes / 1_000_000,
                    rate = format!("{:.1} MB/s", bytes as f64 / 1e6 / secs),
                    "ingest progress"
                );
            }
            None => {}
        }
    }

    pub(super) fn finish(&self, bytes: u64, frames: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
            bar.finish_with_message(format!("{frames} frames read"));
        }
    }
}
