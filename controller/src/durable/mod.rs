//! Durable Raft storage: the write-ahead log and snapshot file under the controller's Raft
//! group. Survives kill -9 at any instant: what a call acknowledged is on disk, a torn final
//! write is dropped on the next open, and corruption of acknowledged data is refused loudly.

mod storage;
mod wal;

pub use storage::{DiskStorage, OpenReport, StorageFault};
pub use wal::{Recovery, WalError};
