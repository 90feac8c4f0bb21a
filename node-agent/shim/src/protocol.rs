//! The control protocol spoken on `shim.sock`: one JSON request per line, one JSON response
//! per line, and the binary frames an `attach` connection switches to. Types and framing
//! only; the shim's event loop and the client library both build on it. See `docs/shim.md`.

use serde::{Deserialize, Serialize};

use crate::state::ExitStatus;

/// A request from a client. Each connection carries requests one after the other; `wait`
/// holds its connection until the container has exited, and `attach` turns it into a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Answered at once with [`ContainerState`].
    State,
    /// Runs `runtime start`. Allowed only while the container is `created`.
    Start,
    /// Runs `runtime kill [--all] ID SIGNAL`. Refused once the container has exited.
    Kill {
        signal: i32,
        #[serde(default)]
        all: bool,
    },
    /// Answered with the [`ExitStatus`] once init has exited and its output is drained.
    Wait,
    /// Sets the pty's window size. Only for containers with a terminal.
    Resize { rows: u16, cols: u16 },
    /// Answered with `ok`, then the shim sends [`Frame`]s of live output until the
    /// container's output ends. With `stdin`, bytes the client sends are written to the
    /// container's stdin; with `stdin_once`, the client's end of input closes it.
    Attach {
        #[serde(default)]
        stdin: bool,
        #[serde(default)]
        stdin_once: bool,
    },
    /// Runs `runtime delete [--force] ID`; the shim exits once the exit is recorded.
    Delete {
        #[serde(default)]
        force: bool,
    },
    /// Makes the shim exit. Refused while the container has not exited.
    Shutdown,
}

/// The lifecycle phase, named as the OCI runtime names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Stopped,
}

/// The answer to `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Pid of the shim itself.
    pub shim_pid: i32,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
}

/// Every response: `ok`, and on failure an `error` line; `state` and `exit` when the request
/// asked for them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
}

impl Response {
    pub fn ok() -> Self {
        Response {
            ok: true,
            ..Response::default()
        }
    }

    pub fn error(msg: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(msg.into()),
            ..Response::default()
        }
    }

    /// Serialized as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        v.push(b'\n');
        v
    }
}

/// The one line a starting shim writes to its launcher once the container is created (or
/// creating it failed), on the stdout it inherited; then it lets go of that pipe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Launch {
    #[serde(default)]
    pub shim_pid: i32,
    /// Host pid of the container's init.
    #[serde(default)]
    pub pid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Stream numbers in attach frames (as in Docker's multiplexed attach stream).
pub const FRAME_STDOUT: u8 = 1;
pub const FRAME_STDERR: u8 = 2;
/// Size of a frame header: stream byte, three zero bytes, big-endian u32 payload length.
pub const FRAME_HEADER: usize = 8;

/// Appends one attach frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, stream: u8, payload: &[u8]) {
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Parses a frame header into (stream, payload length).
pub fn decode_frame_header(h: &[u8; FRAME_HEADER]) -> (u8, usize) {
    (h[0], u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_documented_lines() {
        let r: Request = serde_json::from_str(r#"{"op":"kill","signal":9,"all":true}"#).unwrap();
        assert_eq!(
            r,
            Request::Kill {
                signal: 9,
                all: true
            }
        );
        let r: Request = serde_json::from_str(r#"{"op":"attach","stdin":true}"#).unwrap();
        assert_eq!(
            r,
            Request::Attach {
                stdin: true,
                stdin_once: false
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"kill","signal":9,"x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"kill"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
    }

    #[test]
    fn frames_round_trip() {
        let mut v = Vec::new();
        encode_frame(&mut v, FRAME_STDERR, b"hello");
        let h: [u8; FRAME_HEADER] = v[..FRAME_HEADER].try_into().unwrap();
        assert_eq!(decode_frame_header(&h), (FRAME_STDERR, 5));
        assert_eq!(&v[FRAME_HEADER..], b"hello");
    }
}
