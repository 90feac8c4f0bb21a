//! `--change` instructions for `import`: a Dockerfile-like subset (`CMD`, `ENTRYPOINT`,
//! `ENV`, `WORKDIR`, `USER`, `EXPOSE`, `LABEL`, `VOLUME`, `STOPSIGNAL`) applied to the
//! `config` object of an image config. Pure JSON editing.

use serde_json::{Map, Value, json};

use super::{ArchiveError, Result};

/// Applies one change line to the image config's `config` object.
pub fn apply(config: &mut Map<String, Value>, change: &str) -> Result<()> {
    let bad = |reason: &str| ArchiveError::BadChange {
        change: change.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = change.trim();
    let (keyword, rest) = trimmed
        .split_once(char::is_whitespace)
        .unwrap_or((trimmed, ""));
    let rest = rest.trim();
    match keyword.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert(
                "Cmd".into(),
                command(rest).ok_or_else(|| bad("expected a JSON array or a command"))?,
            );
        }
        "ENTRYPOINT" => {
            config.insert(
                "Entrypoint".into(),
                command(rest).ok_or_else(|| bad("expected a JSON array or a command"))?,
            );
        }
        "ENV" => {
            let pairs = key_values(rest).ok_or_else(|| bad("expected KEY=VALUE or KEY VALUE"))?;
            let env = config.entry("Env").or_insert_with(|| json!([]));
            let list = env.as_array_mut().ok_or_else(|| bad("Env is not a list"))?;
            for (k, v) in pairs {
                list.retain(|e| {
                    e.as_str()
                        .is_none_or(|s| s.split_once('=').map_or(s, |(a, _)| a) != k)
                });
                list.push(Value::String(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let pairs = key_values(rest).ok_or_else(|| bad("expected KEY=VALUE"))?;
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            let map = labels
                .as_object_mut()
                .ok_or_else(|| bad("Labels is not an object"))?;
            for (k, v) in pairs {
                map.insert(k, Value::String(v));
            }
        }
        "WORKDIR" => {
            if !rest.starts_with('/') {
                return Err(bad("WORKDIR must be an absolute path"));
            }
            config.insert("WorkingDir".into(), Value::String(rest.to_owned()));
        }
        "USER" if !rest.is_empty() => {
            config.insert("User".into(), Value::String(rest.to_owned()));
        }
        "STOPSIGNAL" if !rest.is_empty() => {
            config.insert("StopSignal".into(), Value::String(rest.to_owned()));
        }
        "EXPOSE" if !rest.is_empty() => {
            let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            let map = ports
                .as_object_mut()
                .ok_or_else(|| bad("ExposedPorts is not an object"))?;
            for port in rest.split_whitespace() {
                let (num, proto) = port.split_once('/').unwrap_or((port, "tcp"));
                if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(bad("expected PORT[/tcp|udp|sctp]"));
                }
                map.insert(format!("{num}/{proto}"), json!({}));
            }
        }
        "VOLUME" if !rest.is_empty() => {
            let paths: Vec<String> = match serde_json::from_str::<Vec<String>>(rest) {
                Ok(list) => list,
                Err(_) => rest.split_whitespace().map(str::to_owned).collect(),
            };
            let volumes = config.entry("Volumes").or_insert_with(|| json!({}));
            let map = volumes
                .as_object_mut()
                .ok_or_else(|| bad("Volumes is not an object"))?;
            for p in paths {
                map.insert(p, json!({}));
            }
        }
        "USER" | "STOPSIGNAL" | "EXPOSE" | "VOLUME" => return Err(bad("missing value")),
        _ => {
            return Err(bad(
                "supported: CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, VOLUME, STOPSIGNAL",
            ));
        }
    }
    Ok(())
}

/// Exec form (`["a","b"]`) or shell form (`a b` → `["/bin/sh","-c","a b"]`).
fn command(rest: &str) -> Option<Value> {
    if rest.starts_with('[') {
        let list: Vec<String> = serde_json::from_str(rest).ok()?;
        return Some(json!(list));
    }
    if rest.is_empty() {
        return None;
    }
    Some(json!(["/bin/sh", "-c", rest]))
}

/// `K=V K2="v 2"` or the legacy single `K V` form.
fn key_values(rest: &str) -> Option<Vec<(String, String)>> {
    if rest.is_empty() {
        return None;
    }
    let first = rest.split_whitespace().next()?;
    if !first.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace)?;
        return Some(vec![(k.to_owned(), v.trim().to_owned())]);
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        let mut value = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, '\\') => {
                    chars.next();
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                    continue;
                }
                (_, c) => value.push(c),
            }
            chars.next();
        }
        if key.is_empty() || quote.is_some() {
            return None;
        }
        out.push((key, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_supported_changes() {
        let mut c = Map::new();
        apply(&mut c, r#"CMD ["sh","-c","echo hi"]"#).unwrap();
        apply(&mut c, "ENTRYPOINT /bin/init --x").unwrap();
        apply(&mut c, "ENV A=1 B=\"two words\"").unwrap();
        apply(&mut c, "ENV A 3").unwrap();
        apply(&mut c, "WORKDIR /srv").unwrap();
        apply(&mut c, "USER 1000:1000").unwrap();
        apply(&mut c, "EXPOSE 80 53/udp").unwrap();
        apply(&mut c, "LABEL x=y").unwrap();
        let v = Value::Object(c);
        assert_eq!(v["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(v["Entrypoint"], json!(["/bin/sh", "-c", "/bin/init --x"]));
        assert_eq!(v["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(v["WorkingDir"], "/srv");
        assert_eq!(v["User"], "1000:1000");
        assert_eq!(v["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(v["Labels"], json!({"x": "y"}));
    }

    #[test]
    fn refuses_bad_changes() {
        let mut c = Map::new();
        for bad in [
            "RUN echo",
            "WORKDIR rel",
            "CMD",
            "ENV",
            "EXPOSE http",
            "CMD [\"unterminated\"",
        ] {
            assert!(apply(&mut c, bad).is_err(), "{bad}");
        }
    }
}
