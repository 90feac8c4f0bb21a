//! `net.ipv4.ip_forward` kept as the machine had it: bridges and published ports turn it on,
//! so the first live guard of a test binary records the value and the last one to go writes
//! it back. Tests run in parallel threads, hence one count for the whole process.

use std::sync::Mutex;

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Live guards, and `ip_forward` as it was before the first.
static LIVE: Mutex<(usize, Option<String>)> = Mutex::new((0, None));

/// Held by each test environment that may create a bridge.
#[derive(Debug)]
pub struct IpForward(());

impl IpForward {
    pub fn hold() -> IpForward {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if live.0 == 0 {
            live.1 = std::fs::read_to_string(IP_FORWARD).ok();
        }
        live.0 += 1;
        IpForward(())
    }
}

impl Drop for IpForward {
    fn drop(&mut self) {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.0 -= 1;
        if live.0 == 0 {
            if let Some(v) = live.1.take() {
                let _ = std::fs::write(IP_FORWARD, v.trim());
            }
        }
    }
}
