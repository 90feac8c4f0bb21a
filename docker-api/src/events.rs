//! The event bus behind `GET /events` and the `wait` conditions: every change this server
//! makes (create, start, die, destroy, pull, network create, …) is published once here and
//! fanned out to subscribers. A short history is kept so `since` can replay recent events.
//! Changes made by other processes on the same data root are not seen (berthd will feed its
//! own events in when it hosts this server).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::filters::Filters;

const HISTORY: usize = 1024;

/// One event, as Docker reports it.
#[derive(Debug, Clone)]
pub struct Event {
    /// `container`, `image`, `network`, `volume`.
    pub kind: &'static str,
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    pub time_nano: i128,
}

impl Event {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local",
            "time": self.time_nano / 1_000_000_000,
            "timeNano": self.time_nano,
        });
        if self.kind == "container" {
            // the pre-1.22 fields some clients (docker-py's event helpers) still read
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            v["from"] = json!(self.attributes.get("image").cloned().unwrap_or_default());
        }
        v
    }

    /// Docker's event filters: type, event (action), container/image/network/volume (id or
    /// name), label.
    pub fn matches(&self, f: &Filters) -> bool {
        let name = self.attributes.get("name").map(String::as_str);
        let id_or_name = |v: &str| self.id.starts_with(v) || name == Some(v);
        f.any("type", |t| t == self.kind)
            && f.any("event", |a| {
                self.action == a || self.action.starts_with(&format!("{a}:"))
            })
            && (self.kind != "container" || f.any("container", id_or_name))
            && (self.kind != "image" || f.any("image", id_or_name))
            && (self.kind != "network" || f.any("network", id_or_name))
            && (self.kind != "volume" || f.any("volume", id_or_name))
            && f.get("label").iter().all(|l| match l.split_once('=') {
                Some((k, v)) => self.attributes.get(k).is_some_and(|x| x == v),
                None => self.attributes.contains_key(l.as_str()),
            })
    }
}

/// Publishes events to live subscribers and keeps the recent ones.
pub struct Bus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(HISTORY).0,
            history: Mutex::new(VecDeque::new()),
        }
    }
}

impl Bus {
    pub fn publish(
        &self,
        kind: &'static str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let e = Event {
            kind,
            action: action.to_string(),
            id: id.to_string(),
            attributes,
            time_nano: crate::time::now_nanos(),
        };
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(e.clone());
        // no subscriber is not an error
        let _ = self.tx.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Recorded events at or after `since_nanos`.
    pub fn since(&self, since_nanos: i128) -> Vec<Event> {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        h.iter()
            .filter(|e| e.time_nano >= since_nanos)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_select_events() {
        let bus = Bus::default();
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), "web".to_string());
        attrs.insert("com.example".to_string(), "x".to_string());
        bus.publish("container", "start", "abc123", attrs);
        bus.publish("network", "create", "net1", BTreeMap::new());
        let all = bus.since(0);
        assert_eq!(all.len(), 2);
        let f = Filters::parse(Some(r#"{"type":["container"],"container":["web"]}"#)).unwrap();
        assert!(all[0].matches(&f));
        assert!(!all[1].matches(&f));
        let f = Filters::parse(Some(r#"{"event":["die"]}"#)).unwrap();
        assert!(!all[0].matches(&f));
        let f = Filters::parse(Some(r#"{"label":["com.example=x"]}"#)).unwrap();
        assert!(all[0].matches(&f));
        assert_eq!(all[0].to_json()["Actor"]["Attributes"]["name"], "web");
    }
}
