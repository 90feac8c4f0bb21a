//! Loopback ports for servers a test starts. Nothing here touches another host.

use std::net::TcpListener;

/// A TCP port nobody listens on right now on 127.0.0.1 (someone may take it before the
/// caller binds: callers that can, retry with another).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}
