//! Routes raft-rs's `slog` records into `tracing`, so the daemon has one log.

use slog::{Drain, Level, OwnedKVList, Record};

/// A `slog` drain that re-emits every record as a `tracing` event.
#[derive(Debug, Clone, Copy)]
pub struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, _values: &OwnedKVList) -> Result<(), slog::Never> {
        let message = record.msg();
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{message}"),
            Level::Warning => tracing::warn!(target: "raft", "{message}"),
            Level::Info => tracing::info!(target: "raft", "{message}"),
            Level::Debug | Level::Trace => tracing::debug!(target: "raft", "{message}"),
        }
        Ok(())
    }
}
