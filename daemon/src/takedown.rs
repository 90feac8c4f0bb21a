//! Finishing `down`s: one `down` of a project at a time on this node ([`Claims`]), and the
//! loop that completes a `down` cut short by a berthd restart ([`run`]). `down` records
//! the takedown in the replicated state (`Command::BeginTakedown`) before it removes the
//! app; once the app's tasks and this node's containers of the project are gone, the loop
//! removes the project's networks (and, when asked, volumes) through the same code `down`
//! ends with (`ComposeService::finish_down`) and ends the takedown.
//!
//! It never decides what to remove: that is the recorded takedown's and the worker's
//! project records'. It skips a project whose `down` is still running here.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_controller::store::Command;
use tokio::sync::watch;

use crate::api::{ComposeService, Node};
use crate::controller::ControllerError;

/// Projects whose `down` is under way on this node.
#[derive(Debug, Default)]
pub struct Claims {
    held: Mutex<BTreeSet<String>>,
}

/// One project's `down` under way; released on drop.
#[derive(Debug)]
pub struct Claim {
    claims: Arc<Claims>,
    project: String,
}

impl Claims {
    /// The project's claim, unless someone holds it.
    pub fn try_claim(self: &Arc<Self>, project: &str) -> Option<Claim> {
        let mut held = self.held.lock().expect("takedown claims lock");
        held.insert(project.to_owned()).then(|| Claim {
            claims: self.clone(),
            project: project.to_owned(),
        })
    }

    /// The project's claim, waiting up to `bound` for its holder to let go.
    pub async fn claim(self: &Arc<Self>, project: &str, bound: Duration) -> Option<Claim> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            if let Some(claim) = self.try_claim(project) {
                return Some(claim);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut held) = self.claims.held.lock() {
            held.remove(&self.project);
        }
    }
}

/// Completes pending takedowns whose app is gone, checked on every applied change and
/// every half second (a container's removal is no state change), until `shutdown`.
pub async fn run(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = node.controller.watch();
    let compose = ComposeService::new(node.clone());
    // finished here, but this node may not end takedowns (a cluster worker): a manager will
    let mut done_here: BTreeSet<String> = BTreeSet::new();
    while !*shutdown.borrow() {
        changes.borrow_and_update();
        let ready = node.controller.read(|s| s.takedowns_ready());
        done_here.retain(|p| ready.iter().any(|(r, _)| r == p));
        for (project, takedown) in ready {
            if done_here.contains(&project) {
                continue;
            }
            let Some(_claim) = node.downs.try_claim(&project) else {
                continue;
            };
            // a `down` may have ended it between the read and the claim
            let ready = node
                .controller
                .read(|s| s.takedowns_ready().iter().any(|(p, _)| *p == project));
            if !ready {
                continue;
            }
            let Ok(Some(held)) = compose.down_leftovers(&project).await else {
                continue;
            };
            match compose
                .finish_down(
                    &project,
                    &held,
                    takedown.remove_volumes,
                    takedown.timeout_seconds,
                )
                .await
            {
                Ok((networks, volumes)) => {
                    if let Err(e) = node
                        .controller
                        .propose(Command::EndTakedown {
                            app: project.clone(),
                        })
                        .await
                    {
                        if matches!(e, ControllerError::Forbidden(_)) {
                            done_here.insert(project.clone());
                        }
                        tracing::debug!(%project, "ending the takedown: {e}");
                        continue;
                    }
                    node.events.app("remove", &project, "");
                    tracing::info!(%project, ?networks, ?volumes, "finished an interrupted down");
                }
                Err(e) => {
                    tracing::warn!(%project, "finishing an interrupted down: {}", e.message())
                }
            }
        }
        tokio::select! {
            gone = shutdown.changed() => if gone.is_err() { return },
            closed = changes.changed() => if closed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
