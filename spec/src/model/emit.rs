//! Renders the canonical model as text exactly the way `docker compose config` does: YAML in
//! go-yaml v3's style (two-space indent, sequences indented under their key, strings quoted
//! only when they would read back as another type) and JSON with two-space indent.
//!
//! Works on a `serde_json::Value` of the model; knows nothing of Compose itself.

use serde_json::{Map, Number, Value};

/// Go prints integral floats without a fraction (`cpus: 2`), so they become integers here.
pub fn integral_floats(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    *n = Number::from(f as i64);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral_floats),
        Value::Object(o) => o.values_mut().for_each(integral_floats),
        _ => {}
    }
}

/// YAML text of `v` (a mapping at the top).
pub fn yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => mapping(&mut out, m, 0),
        other => {
            out.push_str(&inline(other, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn mapping(out: &mut String, m: &Map<String, Value>, indent: usize) {
    let mut first = true;
    for (k, v) in m {
        if !first {
            pad(out, indent);
        }
        first = false;
        out.push_str(&scalar_str(k, indent));
        out.push(':');
        value_after_key(out, v, indent);
    }
}

/// Writes what follows `key:` — inline for scalars and empty collections, else a block.
fn value_after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            pad(out, indent + 2);
            mapping(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            pad(out, indent + 2);
            sequence(out, a, indent + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other, indent));
            out.push('\n');
        }
    }
}

fn sequence(out: &mut String, a: &[Value], indent: usize) {
    let mut first = true;
    for item in a {
        if !first {
            pad(out, indent);
        }
        first = false;
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => mapping(out, m, indent + 2),
            Value::Array(inner) if !inner.is_empty() => sequence(out, inner, indent + 2),
            other => {
                out.push_str(&inline(other, indent));
                out.push('\n');
            }
        }
    }
}

fn inline(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_str(s, indent),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Would a plain scalar read back as something other than this string?
fn resolves_to_other_type(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y",
        "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF", ".inf", ".Inf", ".INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    let digits = t.replace('_', "");
    if !t.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    if let Some(h) = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0o"))
        .or_else(|| t.strip_prefix("0b"))
    {
        if !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit() || b == b'_') {
            return true;
        }
    }
    // Floats, including `1e3`, `.5`, and Go's base-60 floats such as `1:20`.
    if t.parse::<f64>().is_ok()
        && t.bytes().any(|b| b.is_ascii_digit())
        && !t.contains(['i', 'n', 'I', 'N'])
    {
        return true;
    }
    // Timestamps (`2024-01-31`, optionally with a time) resolve to dates.
    let b = s.as_bytes();
    if b.len() >= 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && s[5..]
            .split(['-', 'T', 't', ' '])
            .take(2)
            .all(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|c| c.is_ascii_digit()))
    {
        return true;
    }
    t.split(':').count() > 1
        && t.split(':').enumerate().all(|(i, p)| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (i > 0 && b == b'.'))
        })
}

fn plain_allowed(s: &str) -> bool {
    let first = s.chars().next().unwrap_or(' ');
    let second = s.chars().nth(1);
    if matches!(
        first,
        '[' | ']'
            | '{'
            | '}'
            | '#'
            | '&'
            | '*'
            | '!'
            | '|'
            | '>'
            | '\''
            | '"'
            | '%'
            | '@'
            | '`'
            | ','
    ) {
        return false;
    }
    if matches!(first, '-' | '?' | ':') && second.is_none_or(|c| c == ' ') {
        return false;
    }
    if s.starts_with(' ') || s.ends_with(' ') || s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.contains('\t') {
        return false;
    }
    s.chars().all(|c| !c.is_control())
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn scalar_str(s: &str, indent: usize) -> String {
    if s.contains('\n')
        && !s.contains(['\r', '\t'])
        && !s.starts_with(' ')
        && s.chars().all(|c| c == '\n' || !c.is_control())
    {
        // Literal block, chomped like go-yaml: `|-` without a final newline, `|` with one.
        let trailing = s.len() - s.trim_end_matches('\n').len();
        let head = match trailing {
            0 => "|-",
            1 => "|",
            _ => "|+",
        };
        let body = s.strip_suffix('\n').unwrap_or(s);
        let mut out = String::from(head);
        for line in body.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&" ".repeat(indent + 2));
                out.push_str(line);
            }
        }
        return out;
    }
    if resolves_to_other_type(s) {
        return double_quoted(s);
    }
    if plain_allowed(s) {
        return s.to_string();
    }
    if s.chars().any(char::is_control) {
        return double_quoted(s);
    }
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn emits_go_yaml_style() {
        let v = json!({
            "name": "demo",
            "services": {
                "web": {
                    "command": ["nginx", "-g", "daemon off;"],
                    "environment": {"A": "1", "B": null, "C": "yes", "D": "x: y", "E": "*star", "F": ""},
                    "ports": [{"mode": "ingress", "target": 80, "published": "8080"}],
                    "nested": [["a", "b"]],
                    "volume": {},
                    "script": "line1\nline2\n",
                }
            }
        });
        let want = "name: demo\n\
services:\n  web:\n    command:\n      - nginx\n      - -g\n      - daemon off;\n    environment:\n      A: \"1\"\n      B: null\n      C: \"yes\"\n      D: 'x: y'\n      E: '*star'\n      F: \"\"\n    ports:\n      - mode: ingress\n        target: 80\n        published: \"8080\"\n    nested:\n      - - a\n        - b\n    volume: {}\n    script: |\n      line1\n      line2\n";
        assert_eq!(yaml(&v), want);
    }

    #[test]
    fn quotes_what_would_change_type() {
        for s in [
            "1",
            "-1",
            "0.5",
            "1e3",
            "true",
            "No",
            "null",
            "~",
            "0x1F",
            "1:20",
            "2024-01-31",
        ] {
            assert!(resolves_to_other_type(s), "{s}");
        }
        for s in [
            "nginx",
            "1.2.3",
            "8080/tcp",
            "v1",
            "a:b",
            "-g",
            "service:db",
            "0-1",
        ] {
            assert!(!resolves_to_other_type(s), "{s}");
        }
    }

    #[test]
    fn integral_floats_print_as_integers() {
        let mut v = json!({"cpus": 2.0, "ratio": 0.5});
        integral_floats(&mut v);
        assert_eq!(v.to_string(), r#"{"cpus":2,"ratio":0.5}"#);
    }
}
