//! Every partition's windows fed from one ordered stream, routed by time
//! bucket (and shard) as `ingest` routes frames to partitions: the offline `aggregate`
//! computes exactly what the Kafka workers compute partition by partition.

use crate::bucket::Routing;
use crate::window::{Closed, LateCounts, Watermark, WatermarkRule, Windows};

/// The event-time windows of every partition, fed from one ordered stream.
pub struct PartitionedWindows {
    routing: Routing,
    windows: Vec<Windows>,
    next_seq: Vec<u64>,
    scratch: Vec<Closed>,
    /// Windows closed and not yet taken by [`PartitionedWindows::take_closed`].
    closed: Vec<(u32, Closed)>,
}

impl PartitionedWindows {
    /// `rule`'s horizon defaults to the routing's cycle, as in the worker.
    pub fn new(routing: Routing, rule: WatermarkRule) -> Self {
        let p = routing.partitions() as usize;
        let rule = rule.resolved(&routing);
        PartitionedWindows {
            routing,
            windows: (0..p).map(|_| Windows::new(rule)).collect(),
            next_seq: vec![0; p],
            scratch: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// Routes and counts one frame, closing what its watermark passed.
    pub fn record(&mut self, ts: u64, uid: &str) {
        let p = self.routing.route(ts, uid);
        let w = &mut self.windows[p as usize];
        let seq = &mut self.next_seq[p as usize];
        w.record(*seq, ts, uid);
        *seq += 1;
        if let Some(wm) = w.watermark() {
            w.flush(wm, &mut self.scratch);
            self.closed.extend(self.scratch.drain(..).map(|c| (p, c)));
        }
    }

    /// End of input: closes every window, partition by partition.
    pub fn finish(&mut self) {
        for (p, w) in self.windows.iter_mut().enumerate() {
            w.flush(Watermark::END, &mut self.scratch);
            self.closed
                .extend(self.scratch.drain(..).map(|c| (p as u32, c)));
        }
    }

    /// Windows closed since the last call, in closing order, with their partition.
    pub fn take_closed(&mut self) -> std::vec::Drain<'_, (u32, Closed)> {
        self.closed.drain(..)
    }

    /// Frames dropped with windows beyond the horizon, over every partition.
    pub fn beyond_horizon(&self) -> u64 {
        self.windows.iter().map(|w| w.beyond_horizon().frames).sum()
    }

    pub fn late(&self) -> LateCounts {
        self.windows
            .iter()
            .fold(LateCounts::default(), |acc, w| LateCounts {
                seconds: acc.seconds + w.late().seconds,
                minutes: acc.minutes + w.late().minutes,
            })
    }
}
