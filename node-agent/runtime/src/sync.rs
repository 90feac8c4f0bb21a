//! The parent↔child protocol over a socketpair: one text line per message.
//!
//! The child side only writes/reads whole lines on a blocking socket; no allocation-heavy
//! machinery, so it stays sound after fork.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

/// Messages the runtime and the container-to-be exchange, in order of a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Child: I unshared a user namespace, map it.
    UserNs,
    /// Parent: cgroup joined (and ids mapped); go on.
    Go,
    /// Intermediate child: the container process has this host pid.
    Pid(i32),
    /// Container: namespaces and mounts are ready; run prestart/createRuntime hooks.
    Hooks,
    /// Parent: hooks done.
    HooksDone,
    /// Container: set up and waiting on the exec fifo (or about to exec, for `exec`).
    Ready,
    /// Either side: failed, with the reason.
    Error(String),
}

impl Msg {
    fn encode(&self) -> String {
        match self {
            Msg::UserNs => "userns\n".into(),
            Msg::Go => "go\n".into(),
            Msg::Pid(p) => format!("pid {p}\n"),
            Msg::Hooks => "hooks\n".into(),
            Msg::HooksDone => "hooks-done\n".into(),
            Msg::Ready => "ready\n".into(),
            Msg::Error(e) => format!("error {}\n", e.replace('\n', " ")),
        }
    }

    fn decode(line: &str) -> Option<Msg> {
        let line = line.trim_end_matches('\n');
        Some(match line {
            "userns" => Msg::UserNs,
            "go" => Msg::Go,
            "hooks" => Msg::Hooks,
            "hooks-done" => Msg::HooksDone,
            "ready" => Msg::Ready,
            l => {
                if let Some(p) = l.strip_prefix("pid ") {
                    Msg::Pid(p.parse().ok()?)
                } else if let Some(e) = l.strip_prefix("error ") {
                    Msg::Error(e.to_string())
                } else {
                    return None;
                }
            }
        })
    }
}

/// One end of the socketpair.
pub struct Channel {
    reader: BufReader<UnixStream>,
}

impl Channel {
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = UnixStream::pair()?;
        Ok((Channel::new(a), Channel::new(b)))
    }

    pub fn new(s: UnixStream) -> Channel {
        Channel {
            reader: BufReader::with_capacity(256, s),
        }
    }

    pub fn send(&mut self, m: &Msg) -> io::Result<()> {
        self.reader.get_mut().write_all(m.encode().as_bytes())
    }

    /// The next message; `Ok(None)` when the other side closed without a word.
    pub fn recv(&mut self) -> io::Result<Option<Msg>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Msg::decode(&line).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad sync message {line:?}"),
            )
        })
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.reader.get_ref().as_raw_fd()
    }

    /// Reads to EOF (used to wait until every copy of the other end is closed).
    pub fn drain(&mut self) {
        let mut buf = Vec::new();
        let _ = self.reader.read_to_end(&mut buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (mut a, mut b) = Channel::pair().unwrap();
        for m in [
            Msg::UserNs,
            Msg::Go,
            Msg::Pid(42),
            Msg::Hooks,
            Msg::HooksDone,
            Msg::Ready,
            Msg::Error("x y".into()),
        ] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), Some(m));
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}
