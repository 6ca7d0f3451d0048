//! The worker's hooks for the bounds on its state (docs/limits.md): after
//! each record it notes its partition's window bytes against the state
//! budget ([`crate::core::budget`]), stopping the worker past it, and logs
//! and counts the windows the partition dropped beyond the horizon
//! ([`crate::core::window::WatermarkRule::horizon`]).

use tracing::warn;

use super::State;
use crate::error::Error;

/// After the record at `offset` of `partition`: `dropped_before` is the
/// partition's count of frames dropped beyond the horizon before it.
pub(super) fn after_record(
    state: &mut State,
    partition: i32,
    offset: u64,
    dropped_before: u64,
) -> Result<(), Error> {
    let Some(owned) = state.partitions.get(&partition) else {
        return Ok(());
    };
    let windows = owned.partition.windows();
    let dropped = windows.beyond_horizon();
    if dropped.frames > dropped_before {
        state.local.summary.beyond_horizon += dropped.frames - dropped_before;
        let (window, first_offset) = dropped.last.unwrap_or_default();
        warn!(
            partition,
            offset,
            window,
            first_offset,
            frames = dropped.frames - dropped_before,
            watermark = owned.partition.watermark().map_or(0, |w| w.0),
            "dropped windows beyond the horizon: the partition's frames go on near its \
             watermark, far behind them (bad clocks or a hostile producer)"
        );
    }
    let bytes = windows.state_bytes() as u64;
    let charged = state.local.budget.charge(partition, bytes);
    if charged.is_err() {
        publish(state);
    }
    charged.map_err(|e| {
        Error::StateBudget(format!(
            "{e}, at input offset {offset}: raise --state-budget (STATE_BUDGET) or spread \
             the partitions over more workers (docs/limits.md)"
        ))
    })
}

/// After windows of `partition` closed: its bytes went down.
pub(super) fn after_close(state: &mut State, partition: i32) {
    if let Some(owned) = state.partitions.get(&partition) {
        let bytes = owned.partition.windows().state_bytes() as u64;
        state.local.budget.set(partition, bytes);
    }
}

/// Mirrors the state's size into the summary (once per poll batch).
pub(super) fn publish(state: &mut State) {
    state.local.summary.state_bytes = state.local.budget.total();
    state.local.summary.state_bytes_peak = state.local.budget.peak();
}
