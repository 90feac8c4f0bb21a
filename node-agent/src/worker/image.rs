//! Images per `pull_policy`: `missing` (the default) pulls only what is not in the store,
//! `always` pulls every time (falling back to the local image when the registry cannot be
//! reached), `never` and `build` use only the store. Pulls go through `berth-image`'s
//! registry client with the credentials of the worker's credential store; two tasks wanting
//! one image share one pull.

use std::collections::HashMap;
use std::sync::Arc;

use berth_image::Reference;
use berth_image::registry::progress::Silent;
use berth_image::registry::pull::{PullOptions, pull};
use berth_image::registry::transport::default_certs_dirs;
use berth_image::registry::{ClientOptions, CredentialStore, RegistryClient, TransportPolicy};
use tokio::sync::Mutex;

use crate::container::Containers;

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Credentials (`~/.berth/config.json`, then Docker's); `None`: anonymous.
    pub credentials: Option<CredentialStore>,
    /// Registries spoken to over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
}

/// The pull policy of a service, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    Missing,
    Never,
    Build,
}

impl PullPolicy {
    pub fn parse(s: Option<&str>) -> Result<PullPolicy, String> {
        Ok(match s.unwrap_or("missing") {
            "always" => PullPolicy::Always,
            "missing" | "if_not_present" => PullPolicy::Missing,
            "never" => PullPolicy::Never,
            "build" => PullPolicy::Build,
            // `daily`, `weekly`, `every_<duration>`: a refresh interval berth does not track
            // yet; pulling when missing is the safe reading
            p if p == "daily" || p == "weekly" || p.starts_with("every_") => PullPolicy::Missing,
            other => return Err(format!("pull_policy {other:?} is not a known policy")),
        })
    }
}

/// Serializes pulls per reference.
#[derive(Default)]
pub(crate) struct Pulls {
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Pulls {
    fn lock_for(&self, reference: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .expect("pull locks")
            .entry(reference.to_string())
            .or_default()
            .clone()
    }
}

/// Makes sure `image` is in the store per `policy`; the error is one line for the task's
/// `Rejected` report.
pub(crate) async fn ensure(
    containers: &Containers,
    registry: &RegistryConfig,
    pulls: &Pulls,
    image: &str,
    policy: PullPolicy,
) -> Result<(), String> {
    let present = || containers.resolve_image(image).is_ok();
    match policy {
        PullPolicy::Never if present() => return Ok(()),
        PullPolicy::Never => {
            return Err(format!(
                "image {image} not found locally and pull_policy is never"
            ));
        }
        PullPolicy::Build if present() => return Ok(()),
        PullPolicy::Build => {
            return Err(format!(
                "image {image} not found locally; pull_policy is build: build it first (`berth build`)"
            ));
        }
        PullPolicy::Missing if present() => return Ok(()),
        PullPolicy::Missing | PullPolicy::Always => {}
    }
    let reference = Reference::parse(image).map_err(|e| format!("image {image:?}: {e}"))?;
    let lock = pulls.lock_for(&reference.to_string());
    let _guard = lock.lock().await;
    if policy == PullPolicy::Missing && present() {
        // pulled by another task meanwhile
        return Ok(());
    }
    match pull_one(containers, registry, &reference).await {
        Ok(()) => Ok(()),
        Err(e) if policy == PullPolicy::Always && present() => {
            tracing::warn!(image, error = %e, "pull failed; using the local image");
            Ok(())
        }
        Err(e) => Err(format!(
            "image {image} is not in the local store and could not be pulled: {e}"
        )),
    }
}

async fn pull_one(
    containers: &Containers,
    registry: &RegistryConfig,
    reference: &Reference,
) -> Result<(), String> {
    let credentials = match &registry.credentials {
        Some(store) => store.get(reference.domain()).map_err(|e| e.to_string())?,
        None => None,
    };
    let client = RegistryClient::new(
        reference.domain(),
        ClientOptions {
            policy: TransportPolicy::from_env_and(registry.insecure_registries.clone()),
            credentials,
            certs_dirs: default_certs_dirs(),
            ..ClientOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let options = PullOptions::default();
    pull(&client, containers.store(), reference, &options, &Silent)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert_eq!(PullPolicy::parse(None).unwrap(), PullPolicy::Missing);
        assert_eq!(
            PullPolicy::parse(Some("always")).unwrap(),
            PullPolicy::Always
        );
        assert_eq!(PullPolicy::parse(Some("build")).unwrap(), PullPolicy::Build);
        assert_eq!(
            PullPolicy::parse(Some("daily")).unwrap(),
            PullPolicy::Missing
        );
        assert!(PullPolicy::parse(Some("sometimes")).is_err());
    }
}
