//! `logs`: the shim's JSON-lines log, filtered (`--since`, `--tail`) and optionally followed
//! until the container exits. Reading only; the shim is the only writer.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::time::Duration;

use berth_shim::log::LogRecord;

use super::record::{Record, Status};
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
        // Follow from the end of what was read (no rotation: berth sets no size limit). The
        // file stays open from then on, so what the container wrote last can still be read
        // once a removal has deleted it (`docker run` without `-d` through docker-py reads
        // the followed logs only after its `DELETE`).
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut reader: Option<BufReader<std::fs::File>> = None;
        let mut partial = String::new();
        loop {
            // whether it still runs, decided before the read, so the last read sees all
            let running = self.still_running(&record.id);
            if reader.is_none() {
                if let Ok(mut f) = std::fs::File::open(&path) {
                    f.seek(SeekFrom::Start(offset))
                        .map_err(io_err("seek", &path))?;
                    reader = Some(BufReader::new(f));
                }
            }
            if let Some(reader) = reader.as_mut() {
                // an incomplete last line stays in `partial` until its end is written
                while reader
                    .read_line(&mut partial)
                    .map_err(io_err("read", &path))?
                    > 0
                    && partial.ends_with('\n')
                {
                    if let Ok(rec) = serde_json::from_str::<LogRecord>(&partial) {
                        if !emit(&rec) {
                            return Ok(());
                        }
                    }
                    partial.clear();
                }
            }
            if !running {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether container `id` exists and runs; a removed one (even one renamed out of the
    /// listing a moment ago) does not.
    fn still_running(&self, id: &str) -> bool {
        match Record::load(&self.container_dir(id)) {
            Ok(mut r) => {
                self.observe(&mut r);
                r.state.status == Status::Running
            }
            Err(_) => false,
        }
    }
}
