//! The container log: splitting a byte stream into lines, encoding each as one JSON object
//! in the shape of Docker's json-file driver (`{"log":"line\n","stream":"stdout","time":…}`),
//! and appending to `container.log` with size-based rotation (`container.log.1` is the
//! newest rotated file). It knows nothing about processes, pipes or sockets.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest line kept whole; a longer line is written as several records, all but the last
/// without a trailing newline (Docker's json-file does the same at 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One log record as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

#[derive(Serialize)]
struct RecordRef<'a> {
    log: &'a str,
    stream: Stream,
    time: &'a str,
}

/// Errors of the log files.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: malformed log record: {source}")]
    Malformed {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// Appends one encoded record (with its trailing newline) to `out`. Bytes that are not
/// UTF-8 are replaced, as JSON strings must be text.
pub fn encode_record(out: &mut Vec<u8>, stream: Stream, time: &str, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let rec = RecordRef {
        log: &text,
        stream,
        time,
    };
    // Serializing a struct of strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &rec);
    out.push(b'\n');
}

/// Cuts a byte stream into lines. Bytes without a newline yet are held until one arrives,
/// the held part reaches [`MAX_LINE`], or the stream ends.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds `data`, calling `emit` with each finished line (newline included) or chunk.
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) {
        let mut rest = data;
        while !rest.is_empty() {
            // Never look further than what still fits in one record.
            let room = MAX_LINE - self.pending.len();
            let window = &rest[..rest.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let line = &window[..=i];
                    if self.pending.is_empty() {
                        emit(line);
                    } else {
                        self.pending.extend_from_slice(line);
                        emit(&self.pending);
                        self.pending.clear();
                    }
                    rest = &rest[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(window);
                    rest = &rest[window.len()..];
                    if self.pending.len() == MAX_LINE {
                        emit(&self.pending);
                        self.pending.clear();
                    }
                }
            }
        }
    }

    /// Emits whatever is held, at the end of the stream.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending = Vec::new();
        }
    }
}

/// Appends records to `container.log`, rotating by size. With `max_size` 0 the file grows
/// without bound. `max_files` counts the current file too (Docker's `max-file`), so 3 keeps
/// `container.log`, `.1` and `.2`.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl LogWriter {
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> Result<Self, LogError> {
        let file = open_append(path)?;
        let size = file
            .metadata()
            .map_err(|source| LogError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// Appends already encoded records. Records are never split across files: when `data`
    /// would push the current file past the limit, the file is rotated first.
    pub fn append(&mut self, data: &[u8]) -> Result<(), LogError> {
        if data.is_empty() {
            return Ok(());
        }
        if self.max_size == 0 || self.size + data.len() as u64 <= self.max_size {
            return self.write(data);
        }
        // Write as many whole records as fit, rotate, and go on with the rest.
        let mut rest = data;
        while !rest.is_empty() {
            let room = self.max_size.saturating_sub(self.size) as usize;
            let fit = whole_records_within(rest, room);
            if fit > 0 {
                self.write(&rest[..fit])?;
                rest = &rest[fit..];
                continue;
            }
            if self.size == 0 {
                // A single record larger than the limit still has to go somewhere.
                let one = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1);
                self.write(&rest[..one])?;
                rest = &rest[one..];
            } else {
                self.rotate()?;
            }
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<(), LogError> {
        self.file.write_all(data).map_err(|source| LogError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.size += data.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Io { path, source }
        };
        let n = self.max_files;
        if n > 1 {
            let oldest = rotated(&self.path, n - 1);
            match fs::remove_file(&oldest) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&oldest)(e)),
                _ => {}
            }
            for i in (1..n - 1).rev() {
                let from = rotated(&self.path, i);
                match fs::rename(&from, rotated(&self.path, i + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&from)(e)),
                    _ => {}
                }
            }
            fs::rename(&self.path, rotated(&self.path, 1)).map_err(io_err(&self.path))?;
        } else {
            fs::remove_file(&self.path).map_err(io_err(&self.path))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Length of the longest prefix of `data` made of whole records (ending in `\n`) that is at
/// most `room` bytes long.
fn whole_records_within(data: &[u8], room: usize) -> usize {
    let window = &data[..room.min(data.len())];
    window
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| LogError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The path of rotated file number `i` (`container.log.1` is the newest).
pub fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// The log files of the container whose current log is `path`, oldest first.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut i = 1;
    while rotated(path, i).exists() {
        files.push(rotated(path, i));
        i += 1;
    }
    files.reverse();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    files
}

/// Reads every record of the log at `path` and its rotated files, oldest first.
pub fn read_records(path: &Path) -> Result<Vec<LogRecord>, LogError> {
    let mut out = Vec::new();
    for file in log_files(path) {
        let f = match File::open(&file) {
            Ok(f) => f,
            // Rotated away between listing and opening.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(LogError::Io { path: file, source }),
        };
        for (n, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|source| LogError::Io {
                path: file.clone(),
                source,
            })?;
            let rec = serde_json::from_str(&line).map_err(|source| LogError::Malformed {
                path: file.clone(),
                line: n + 1,
                source,
            })?;
            out.push(rec);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l| out.push(l.to_vec()));
        }
        s.finish(|l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_are_joined_across_chunks_and_tail_flushed() {
        let out = split(&[b"ab", b"c\nde\nf", b"g"]);
        assert_eq!(
            out,
            vec![b"abc\n".to_vec(), b"de\n".to_vec(), b"fg".to_vec()]
        );
    }

    #[test]
    fn overlong_lines_are_cut() {
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let mut data = long.clone();
        data.push(b'\n');
        let out = split(&[&data]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(out[2], b"xxxxx\n".to_vec());
    }

    #[test]
    fn record_shape_matches_docker() {
        let mut out = Vec::new();
        encode_record(&mut out, Stream::Stderr, "2024-01-01T00:00:00Z", b"a\"b\n");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"log\":\"a\\\"b\\n\",\"stream\":\"stderr\",\"time\":\"2024-01-01T00:00:00Z\"}\n"
        );
    }

    #[test]
    fn rotation_keeps_bounded_files_and_newest_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::state::LOG);
        let mut w = LogWriter::open(&path, 300, 3).unwrap();
        for i in 0..100 {
            let mut rec = Vec::new();
            encode_record(
                &mut rec,
                Stream::Stdout,
                "t",
                format!("line {i}\n").as_bytes(),
            );
            w.append(&rec).unwrap();
        }
        let files = log_files(&path);
        assert_eq!(files.len(), 3);
        for f in &files {
            assert!(fs::metadata(f).unwrap().len() <= 300);
        }
        let recs = read_records(&path).unwrap();
        assert_eq!(recs.last().unwrap().log, "line 99\n");
        let first: usize = recs[0].log[5..recs[0].log.len() - 1].parse().unwrap();
        for (k, r) in recs.iter().enumerate() {
            assert_eq!(r.log, format!("line {}\n", first + k));
        }
    }
}
