//! The event stream behind `berth events`: task status changes reported by agents and the
//! app changes made through the API, fanned out to every subscriber. Nothing is stored: a
//! subscriber sees what happens after it subscribed; a slow one loses the oldest events.

use berth_api::v1::Event;
use berth_controller::store::{TaskId, TaskStatus};
use tokio::sync::broadcast;

use crate::controller::{Controller, now_ms};
use crate::dispatcher::state_word;

pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl Events {
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    pub fn emit(&self, event: Event) {
        // No subscriber is not an error.
        let _ = self.tx.send(event);
    }

    /// An app-level event (`deploy`, `remove`, `scale`, `stop`, …).
    pub fn app(&self, action: &str, project: &str, service: &str) {
        self.emit(Event {
            time: now_ms(),
            kind: "app".into(),
            action: action.into(),
            project: project.into(),
            service: service.into(),
            ..Event::default()
        });
    }

    /// A task's new observed status, as an agent reported it.
    pub fn task_status(&self, controller: &Controller, id: &TaskId, status: &TaskStatus) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let (project, service) = controller.read(|s| {
            s.tasks
                .get(id)
                .map(|t| (t.app.clone(), t.service.clone()))
                .unwrap_or_default()
        });
        let mut event = Event {
            time: status.timestamp,
            kind: "task".into(),
            action: state_word(status.state).into(),
            project,
            service,
            task_id: id.clone(),
            ..Event::default()
        };
        if let Some(code) = status.exit_code {
            event
                .attributes
                .insert("exit_code".into(), code.to_string());
        }
        let health = match status.health {
            berth_controller::store::Health::None => None,
            berth_controller::store::Health::Starting => Some("starting"),
            berth_controller::store::Health::Healthy => Some("healthy"),
            berth_controller::store::Health::Unhealthy => Some("unhealthy"),
        };
        if let Some(health) = health {
            event.attributes.insert("health".into(), health.into());
        }
        if !status.message.is_empty() {
            event
                .attributes
                .insert("message".into(), status.message.clone());
        }
        self.emit(event);
    }
}
