//! `logs`: the shim's JSON-lines log, filtered (`--since`, `--tail`) and optionally followed
//! until the container exits. Reading only; the shim is the only writer.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::time::Duration;

use berth_shim::log::LogRecord;

use super::record::Status;
use super::{ContainerError, Containers, io_err};

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// Only the last N records.
    pub tail: Option<usize>,
    /// Only records at or after this RFC 3339 time.
    pub since: Option<String>,
}

impl Containers {
    /// Calls `emit` for each log record of container `query`, oldest first. With `follow`,
    /// keeps reading new records until the container is no longer running.
    pub fn logs(
        &self,
        query: &str,
        opts: &LogOptions,
        mut emit: impl FnMut(&LogRecord) -> bool,
    ) -> Result<(), ContainerError> {
        let record = self.resolve(query)?;
        let path = self.shim_dir(&record.id).join(berth_shim::state::LOG);
        let mut records = if path.exists() {
            berth_shim::log::read_records(&path).map_err(|e| ContainerError::Runtime {
                id: record.short_id().into(),
                what: "read logs",
                reason: e.to_string(),
            })?
        } else {
            Vec::new()
        };
        if let Some(since) = &opts.since {
            records.retain(|r| r.time.as_str() >= since.as_str());
        }
        if let Some(n) = opts.tail {
            let skip = records.len().saturating_sub(n);
            records.drain(..skip);
        }
        for r in &records {
            if !emit(r) {
                return Ok(());
            }
        }
        if !opts.follow {
            return Ok(());
        }
        // Follow from the end of what was read (no rotation: berth sets no size limit).
        let mut offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut partial = String::new();
        loop {
            let mut r = record.clone();
            self.observe(&mut r);
            let running = r.state.status == Status::Running;
            if let Ok(mut f) = std::fs::File::open(&path) {
                f.seek(SeekFrom::Start(offset))
                    .map_err(io_err("seek", &path))?;
                let mut reader = BufReader::new(f);
                loop {
                    let n = reader
                        .read_line(&mut partial)
                        .map_err(io_err("read", &path))?;
                    if n == 0 {
                        break;
                    }
                    if !partial.ends_with('\n') {
                        break;
                    }
                    offset += partial.len() as u64;
                    if let Ok(rec) = serde_json::from_str::<LogRecord>(&partial) {
                        if !emit(&rec) {
                            return Ok(());
                        }
                    }
                    partial.clear();
                }
                if !partial.is_empty() {
                    // an incomplete last line: read it again whole next time
                    partial.clear();
                }
            }
            if !running {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
