//! The gRPC services of berthd (`berth.v1.Compose`, `berth.v1.System`) over the controller's
//! applied state and this node's containers. Each handler validates its request, proposes
//! commands or reads state, and maps errors to status codes in one place ([`status`]).

mod compose;
mod convert;
mod system;

use std::path::PathBuf;
use std::sync::Arc;

use berth_controller::store::ApplyError;
use tonic::Status;

use crate::agent::Agent;
use crate::controller::{Controller, ControllerError};
use crate::dispatcher::Dispatcher;
use crate::events::Events;
use crate::metrics::Metrics;

pub use compose::ComposeService;
pub use system::SystemService;

/// Everything a handler may use.
pub struct Node {
    pub controller: Arc<Controller>,
    pub dispatcher: Arc<Dispatcher>,
    pub agent: Arc<Agent>,
    pub events: Arc<Events>,
    pub metrics: Arc<Metrics>,
    pub data_root: PathBuf,
    /// The projects whose `down` is under way on this node.
    pub downs: Arc<crate::takedown::Claims>,
}

/// The one place controller errors become gRPC statuses.
pub(crate) fn status(error: ControllerError) -> Status {
    match error {
        ControllerError::Refused(e) => match e {
            ApplyError::UnknownApp { .. }
            | ApplyError::UnknownService { .. }
            | ApplyError::UnknownTask { .. }
            | ApplyError::UnknownNode { .. }
            | ApplyError::UnknownSecret { .. } => Status::not_found(e.to_string()),
            ApplyError::InvalidApp { .. }
            | ApplyError::TooManyReplicas { .. }
            | ApplyError::ScaleGlobal { .. }
            | ApplyError::InvalidSecret { .. }
            | ApplyError::Decode { .. } => Status::invalid_argument(e.to_string()),
            _ => Status::failed_precondition(e.to_string()),
        },
        ControllerError::Forbidden(message) => Status::permission_denied(message),
        other => Status::unavailable(other.to_string()),
    }
}
