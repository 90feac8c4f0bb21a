//! The connection to `berthd`: one tokio runtime for the command, the Compose, System and
//! Services clients over one channel, and the daemon's auto-start when none answers
//! ([`super::daemon_start`]).

use berth_api::v1::compose_client::ComposeClient;
use berth_api::v1::services_client::ServicesClient;
use berth_api::v1::system_client::SystemClient;
use tonic::transport::Channel;

use super::Connection;
use super::daemon_start;

/// A connected daemon, with the runtime its calls run on.
pub struct Session {
    pub rt: tokio::runtime::Runtime,
    pub compose: ComposeClient<Channel>,
    #[allow(dead_code)]
    pub system: SystemClient<Channel>,
    /// Rolling-update state of services (`up` stops waiting when an update gave up).
    pub services: ServicesClient<Channel>,
}

impl Session {
    /// Connects to the daemon of `conn`, starting one when allowed.
    pub fn open(conn: &Connection) -> anyhow::Result<Session> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let address = conn
            .host
            .clone()
            .unwrap_or_else(|| berth_api::DEFAULT_HOST.to_owned());
        let channel = rt.block_on(daemon_start::connect_or_start(
            &address,
            &conn.tls,
            &conn.data_root,
        ))?;
        Ok(Session {
            rt,
            compose: ComposeClient::new(channel.clone()),
            system: SystemClient::new(channel.clone()),
            services: ServicesClient::new(channel),
        })
    }

    /// Runs one call on the runtime, turning a gRPC status into one clear error line.
    pub fn call<T>(
        &self,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> anyhow::Result<T> {
        self.rt
            .block_on(fut)
            .map(tonic::Response::into_inner)
            .map_err(status_error)
    }
}

/// A daemon's refusal as one line: its message, else the status code.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    let message = status.message().trim();
    if message.is_empty() {
        anyhow::anyhow!("berthd: {:?}", status.code())
    } else {
        anyhow::anyhow!("{message}")
    }
}
