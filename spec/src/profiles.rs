//! Profiles: which services are enabled. A service without `profiles` is always enabled;
//! one with `profiles` only when one of them is active (`*` activates all). A service named
//! explicitly (the selection) is enabled whatever its profiles, and so are the services it
//! depends on. Pure: works on the merged document.

use std::collections::BTreeSet;

use serde_yaml::{Mapping, Value};

use crate::error::Error;
use crate::merge::scalar_text;

/// Every profile any service mentions, sorted.
pub fn all_profiles(document: &Value) -> Vec<String> {
    let mut set = BTreeSet::new();
    if let Some(Value::Mapping(services)) = document.get("services") {
        for service in services.values() {
            set.extend(service_profiles(service));
        }
    }
    set.into_iter().collect()
}

fn service_profiles(service: &Value) -> Vec<String> {
    match service.get("profiles") {
        Some(Value::Sequence(items)) => items.iter().map(scalar_text).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The services a service needs started first: `depends_on`, `links`,
/// `network_mode: service:x`, `volumes_from: [x]` (not `container:x`).
pub fn dependencies(service: &Value) -> Vec<String> {
    let mut deps = Vec::new();
    match service.get("depends_on") {
        Some(Value::Sequence(items)) => deps.extend(items.iter().map(scalar_text)),
        Some(Value::Mapping(map)) => deps.extend(map.keys().map(scalar_text)),
        _ => {}
    }
    if let Some(Value::Sequence(links)) = service.get("links") {
        deps.extend(links.iter().map(|l| {
            scalar_text(l)
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string()
        }));
    }
    for key in ["network_mode", "pid", "ipc"] {
        if let Some(Value::String(mode)) = service.get(key)
            && let Some(name) = mode.strip_prefix("service:")
        {
            deps.push(name.to_string());
        }
    }
    if let Some(Value::Sequence(froms)) = service.get("volumes_from") {
        for from in froms {
            let text = scalar_text(from);
            if !text.starts_with("container:") {
                deps.push(text.split(':').next().unwrap_or_default().to_string());
            }
        }
    }
    deps
}

/// `selected` and, transitively, what they depend on, among `services`.
pub fn with_dependencies(
    services: &Mapping,
    selected: &[String],
) -> Result<BTreeSet<String>, Error> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<String> = selected.to_vec();
    while let Some(name) = todo.pop() {
        if out.contains(&name) {
            continue;
        }
        let Some(service) = services.get(name.as_str()) else {
            if selected.contains(&name) {
                return Err(Error::Project(format!("no such service: {name}")));
            }
            // A dependency on an undefined service is the model's validation error.
            continue;
        };
        todo.extend(dependencies(service));
        out.insert(name);
    }
    Ok(out)
}

/// Removes the services not enabled by `active` profiles or the selection; returns the
/// removed ones (Compose keeps them aside as "disabled services").
pub fn apply_profiles(
    document: &mut Value,
    active: &[String],
    selected: &[String],
) -> Result<Mapping, Error> {
    let Some(Value::Mapping(services)) = document.get_mut("services") else {
        if let Some(name) = selected.first() {
            return Err(Error::Project(format!("no such service: {name}")));
        }
        return Ok(Mapping::new());
    };
    let all = active.iter().any(|p| p == "*");
    let forced = with_dependencies(services, selected)?;
    let mut disabled = Mapping::new();
    let names: Vec<Value> = services.keys().cloned().collect();
    for name in names {
        let service = &services[&name];
        let profiles = service_profiles(service);
        let enabled = profiles.is_empty()
            || all
            || profiles.iter().any(|p| active.contains(p))
            || forced.contains(&scalar_text(&name));
        if !enabled && let Some(v) = services.shift_remove(&name) {
            disabled.insert(name, v);
        }
    }
    Ok(disabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        serde_yaml::from_str(
            "services:\n  web: {depends_on: [api]}\n  api: {profiles: [backend], links: ['db:database']}\n  db: {profiles: [backend, data]}\n  debug: {profiles: [debug], network_mode: 'service:web'}\n  tools: {profiles: [tools]}\n",
        )
        .unwrap()
    }

    fn enabled(active: &[&str], selected: &[&str]) -> Vec<String> {
        let mut d = doc();
        let active: Vec<String> = active.iter().map(|s| s.to_string()).collect();
        let selected: Vec<String> = selected.iter().map(|s| s.to_string()).collect();
        apply_profiles(&mut d, &active, &selected).unwrap();
        d["services"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(scalar_text)
            .collect()
    }

    #[test]
    fn profile_rules() {
        assert_eq!(enabled(&[], &[]), vec!["web"]);
        assert_eq!(enabled(&["backend"], &[]), vec!["web", "api", "db"]);
        assert_eq!(enabled(&["data"], &[]), vec!["web", "db"]);
        assert_eq!(
            enabled(&["*"], &[]),
            vec!["web", "api", "db", "debug", "tools"]
        );
        // Naming a service enables it and what it depends on.
        assert_eq!(enabled(&[], &["tools"]), vec!["web", "tools"]);
        assert_eq!(enabled(&[], &["web"]), vec!["web", "api", "db"]);
        assert_eq!(enabled(&[], &["debug"]), vec!["web", "api", "db", "debug"]);
        assert_eq!(
            all_profiles(&doc()),
            vec!["backend", "data", "debug", "tools"]
        );
    }

    #[test]
    fn unknown_selected_service() {
        let mut d = doc();
        let err = apply_profiles(&mut d, &[], &["nope".to_string()]).unwrap_err();
        assert_eq!(err.to_string(), "no such service: nope");
    }
}
