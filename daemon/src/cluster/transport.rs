//! The Raft transport and write forwarding between nodes, over mutual-TLS gRPC
//! (`ClusterPeer.Raft`, `ClusterPeer.Propose`).
//!
//! The Raft thread hands messages to [`Peers::send`] without blocking: each destination has a
//! queue and a task that sends whatever has piled up as one batch. A message that cannot be
//! delivered is dropped — Raft retransmits — so a dead peer never blocks the others. The
//! address book maps Raft ids to cluster addresses, seeded from `member.json` and kept in
//! step with the replicated node records.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use berth_api::v1::cluster_peer_client::ClusterPeerClient;
use berth_api::v1::{ProposeRequest, RaftBatch};
use berth_controller::raft_node::{Message, Transport, encode_message};
use rustls::ClientConfig;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::controller::{Controller, ControllerError, Forward};

use super::tls_io;

/// The largest message a peer accepts (snapshots of a big store travel in one).
pub const MAX_MESSAGE: usize = 256 << 20;
const MAX_BATCH: usize = 1024;
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Peers {
    book: RwLock<HashMap<u64, SocketAddr>>,
    client: Arc<ClientConfig>,
    channels: Mutex<HashMap<SocketAddr, Channel>>,
    queues: Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>,
    runtime: tokio::runtime::Handle,
}

impl Peers {
    /// Must be called inside the tokio runtime whose tasks will carry the messages.
    pub fn new(client: Arc<ClientConfig>) -> Arc<Peers> {
        Arc::new(Peers {
            book: RwLock::new(HashMap::new()),
            client,
            channels: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    pub fn set_address(&self, raft_id: u64, address: SocketAddr) {
        let mut book = self.book.write().unwrap_or_else(|e| e.into_inner());
        book.insert(raft_id, address);
    }

    pub fn address(&self, raft_id: u64) -> Option<SocketAddr> {
        let book = self.book.read().unwrap_or_else(|e| e.into_inner());
        book.get(&raft_id).copied()
    }

    /// A channel to `address`, shared by every caller.
    pub fn channel(&self, address: SocketAddr) -> Channel {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(address)
            .or_insert_with(|| tls_io::channel(address, self.client.clone()))
            .clone()
    }

    pub fn client(&self, address: SocketAddr) -> ClusterPeerClient<Channel> {
        ClusterPeerClient::new(self.channel(address))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn enqueue(self: &Arc<Self>, message: Message) {
        let to = message.to;
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = queues.get(&to) {
            if queue.send(message).is_ok() {
                return;
            }
            queues.remove(&to);
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(message);
        queues.insert(to, tx);
        self.runtime.spawn(deliver(self.clone(), to, rx));
    }
}

/// The transport handed to the Raft member.
#[derive(Clone)]
pub struct GrpcTransport(pub Arc<Peers>);

impl Transport for GrpcTransport {
    fn send(&self, messages: Vec<Message>) {
        for message in messages {
            self.0.enqueue(message);
        }
    }
}

async fn deliver(peers: Arc<Peers>, to: u64, mut queue: mpsc::UnboundedReceiver<Message>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![encode_message(&first)];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(message) => batch.push(encode_message(&message)),
                Err(_) => break,
            }
        }
        let Some(address) = peers.address(to) else {
            tracing::debug!(to, "no address for a raft member yet; messages dropped");
            continue;
        };
        let mut client = peers.client(address);
        let count = batch.len();
        let mut request = tonic::Request::new(RaftBatch { messages: batch });
        request.set_timeout(CALL_TIMEOUT);
        if let Err(e) = client.raft(request).await {
            tracing::debug!(to, %address, count, error = %e.message(), "raft messages not delivered");
        }
    }
}

/// Forwards writes to the leader's `ClusterPeer.Propose`, retrying while an election is
/// under way (bounded: a write answers within about 10 s either way).
pub struct Forwarder(pub Arc<Peers>);

impl Forward for Forwarder {
    fn forward<'a>(
        &'a self,
        controller: &'a Controller,
        command: Vec<u8>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<u8>, ControllerError>> + Send + 'a>,
    > {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut last = String::from("no Raft leader is known");
            loop {
                let status = controller.status();
                if status.is_leader {
                    return controller.propose_local(command).await.map_err(Into::into);
                }
                if let Some(address) = self.0.address(status.leader) {
                    let mut request = tonic::Request::new(ProposeRequest {
                        command: command.clone(),
                    });
                    request.set_timeout(Duration::from_secs(10));
                    match self.0.client(address).propose(request).await {
                        Ok(reply) => {
                            let reply = reply.into_inner();
                            wait_applied(controller, reply.applied_index).await;
                            return Ok(reply.reply);
                        }
                        Err(status) if status.code() == tonic::Code::PermissionDenied => {
                            return Err(ControllerError::Forbidden(status.message().to_owned()));
                        }
                        // Only a call that surely did not reach the leader's log is retried.
                        Err(status) if status.code() == tonic::Code::Unavailable => {
                            last = format!("leader at {address}: {}", status.message());
                        }
                        Err(status) => {
                            return Err(ControllerError::Unreachable(format!(
                                "leader at {address}: {}",
                                status.message()
                            )));
                        }
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ControllerError::Unreachable(format!(
                        "the write did not reach a leader: {last}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }
}

/// Waits (up to 5 s) until this member applied `index`, so a caller that wrote through the
/// leader reads its write here.
async fn wait_applied(controller: &Controller, index: u64) {
    let mut watch = controller.watch();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while watch.borrow_and_update().applied < index {
        if tokio::time::timeout_at(deadline, watch.changed())
            .await
            .is_err()
        {
            tracing::debug!(index, "this member lags behind the leader");
            return;
        }
    }
}
