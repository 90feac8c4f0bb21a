//! The API's one error type and its mapping to HTTP: Docker clients read the status code
//! (404 no such object, 409 conflict, 304 nothing to do, 400 bad request) and show
//! `{"message": …}` to the user. Every berth error is mapped here and nowhere else.

use hyper::StatusCode;

use berth_node_agent::container::ContainerError;
use berth_node_agent::volume::VolumeError;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 304: the container is already in the asked state (start twice, stop twice).
    pub fn not_modified() -> ApiError {
        ApiError::new(StatusCode::NOT_MODIFIED, "")
    }

    /// The JSON body Docker clients parse.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "message": self.message })).unwrap_or_default()
    }
}

impl From<ContainerError> for ApiError {
    fn from(e: ContainerError) -> ApiError {
        let status = match &e {
            ContainerError::NotFound(_) | ContainerError::ImageNotFound(_) => StatusCode::NOT_FOUND,
            ContainerError::NameInUse { .. } | ContainerError::State { .. } => StatusCode::CONFLICT,
            ContainerError::Ambiguous(_)
            | ContainerError::BadOption { .. }
            | ContainerError::NoCommand
            | ContainerError::User { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &e {
            // the CLI recognizes this exact wording and pulls the image
            ContainerError::ImageNotFound(image) => format!("No such image: {image}"),
            ContainerError::NotFound(c) => format!("No such container: {c}"),
            ContainerError::NameInUse { name, id } => format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
            ),
            _ => e.to_string(),
        };
        ApiError::new(status, message)
    }
}

impl From<VolumeError> for ApiError {
    fn from(e: VolumeError) -> ApiError {
        let status = match &e {
            VolumeError::NotFound(_) => StatusCode::NOT_FOUND,
            VolumeError::BadName(_) => StatusCode::BAD_REQUEST,
            VolumeError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<berth_image::StoreError> for ApiError {
    fn from(e: berth_image::StoreError) -> ApiError {
        match &e {
            berth_image::StoreError::ImageNotFound { reference } => {
                ApiError::not_found(format!("No such image: {reference}"))
            }
            berth_image::StoreError::Ambiguous { .. } => ApiError::bad_request(e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<berth_network::networks::NetworksError> for ApiError {
    fn from(e: berth_network::networks::NetworksError) -> ApiError {
        match &e {
            berth_network::networks::NetworksError::UnknownNetwork(n) => {
                ApiError::not_found(format!("network {n} not found"))
            }
            berth_network::networks::NetworksError::AlreadyConnected { .. } => {
                ApiError::conflict(e.to_string())
            }
            _ => ApiError::internal(e.to_string()),
        }
    }
}

/// A blocking task that panicked or was cancelled.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("background task failed: {e}"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_errors_map_to_docker_codes() {
        let e: ApiError = ContainerError::NotFound("web".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.message, "No such container: web");
        let e: ApiError = ContainerError::ImageNotFound("busybox".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert!(e.message.starts_with("No such image"));
        let e: ApiError = ContainerError::NameInUse {
            name: "a".into(),
            id: "b".into(),
        }
        .into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(
            String::from_utf8(ApiError::bad_request("x").body()).unwrap(),
            r#"{"message":"x"}"#
        );
    }
}
