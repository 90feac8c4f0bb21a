//! Variable interpolation in Compose values, with the full grammar: `$VAR`, `${VAR}`,
//! `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`,
//! `${VAR+alt}`, nesting (`${A:-${B:-x}}`) and `$$` for a literal `$`.
//!
//! Applied to values only, never to mapping keys, one file at a time before merging. An
//! unset variable is reported through a callback (the loader turns it into a warning) and
//! becomes the empty string. Pure: the environment comes in as a lookup function.

use serde_yaml::Value;

use crate::path::PathSeg;

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// `${VAR:?message}` / `${VAR?message}` with the variable unset (or empty for `:?`).
    #[error("required variable {variable} is missing a value: {message}")]
    Required { variable: String, message: String },
    /// `${` without a valid name or closing brace.
    #[error(
        "invalid interpolation format for {input:?}: {reason}; you may need to escape any $ with another $"
    )]
    Malformed { input: String, reason: String },
}

/// Interpolates one string. `lookup` gives a variable's value; `missing` is told each
/// unset variable whose value was needed (no default).
pub fn interpolate_str(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    missing: &mut dyn FnMut(&str),
) -> Result<String, InterpolateError> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let Some(offset) = input[i..].find('$') else {
            out.push_str(&input[i..]);
            break;
        };
        out.push_str(&input[i..i + offset]);
        i += offset;
        // bytes[i] == '$'
        match bytes.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(b'{') => {
                let end =
                    closing_brace(input, i + 2).ok_or_else(|| InterpolateError::Malformed {
                        input: input.to_string(),
                        reason: "missing closing brace".into(),
                    })?;
                let body = &input[i + 2..end];
                out.push_str(&braced(input, body, lookup, missing)?);
                i = end + 1;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_')
                {
                    end += 1;
                }
                let name = &input[start..end];
                match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => missing(name),
                }
                i = end;
            }
            // `$` before anything else (`$1`, `$ `, end of text) is literal, as in Compose.
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Index of the `}` closing a `${` whose body starts at `from`, honouring nested `${…}`.
fn closing_brace(input: &str, from: usize) -> Option<usize> {
    let bytes = input.as_bytes();
    let mut depth = 0usize;
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn braced(
    input: &str,
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    missing: &mut dyn FnMut(&str),
) -> Result<String, InterpolateError> {
    let name_len = body
        .bytes()
        .enumerate()
        .take_while(|(n, c)| {
            c.is_ascii_alphabetic() || *c == b'_' || (*n > 0 && c.is_ascii_digit())
        })
        .count();
    let name = &body[..name_len];
    let rest = &body[name_len..];
    let malformed = |reason: &str| InterpolateError::Malformed {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(malformed(if body.is_empty() {
            "empty variable name in ${}"
        } else {
            "a variable name must start with a letter or `_`"
        }));
    }
    let value = lookup(name);
    let (op, arg) = if rest.is_empty() {
        ("", "")
    } else if let Some(arg) = rest.strip_prefix(":-") {
        (":-", arg)
    } else if let Some(arg) = rest.strip_prefix(":?") {
        (":?", arg)
    } else if let Some(arg) = rest.strip_prefix(":+") {
        (":+", arg)
    } else if let Some(arg) = rest.strip_prefix('-') {
        ("-", arg)
    } else if let Some(arg) = rest.strip_prefix('?') {
        ("?", arg)
    } else if let Some(arg) = rest.strip_prefix('+') {
        ("+", arg)
    } else {
        return Err(malformed(&format!(
            "unexpected {rest:?} after variable name {name}"
        )));
    };
    // The argument is itself interpolated, but only when it is used.
    let arg_value = |missing: &mut dyn FnMut(&str)| interpolate_str(arg, lookup, missing);
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    match op {
        "" => match value {
            Some(v) => Ok(v),
            None => {
                missing(name);
                Ok(String::new())
            }
        },
        ":-" => {
            if non_empty {
                Ok(value.unwrap_or_default())
            } else {
                arg_value(missing)
            }
        }
        "-" => {
            if set {
                Ok(value.unwrap_or_default())
            } else {
                arg_value(missing)
            }
        }
        ":+" => {
            if non_empty {
                arg_value(missing)
            } else {
                Ok(String::new())
            }
        }
        "+" => {
            if set {
                arg_value(missing)
            } else {
                Ok(String::new())
            }
        }
        _ => {
            let ok = if op == ":?" { non_empty } else { set };
            if ok {
                Ok(value.unwrap_or_default())
            } else {
                Err(InterpolateError::Required {
                    variable: name.to_string(),
                    message: arg_value(missing)?,
                })
            }
        }
    }
}

/// Interpolates every string value of `value` in place (keys are left alone).
/// `missing(var, path)` is told of unset variables; an error comes back with its path.
pub fn interpolate_value(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    missing: &mut dyn FnMut(&str, &[PathSeg]),
) -> Result<(), (InterpolateError, Vec<PathSeg>)> {
    let mut path = Vec::new();
    walk(value, &mut path, lookup, missing)
}

fn walk(
    value: &mut Value,
    path: &mut Vec<PathSeg>,
    lookup: &dyn Fn(&str) -> Option<String>,
    missing: &mut dyn FnMut(&str, &[PathSeg]),
) -> Result<(), (InterpolateError, Vec<PathSeg>)> {
    match value {
        Value::String(s) if s.contains('$') => {
            let mut report = |name: &str| missing(name, path);
            *s = interpolate_str(s, lookup, &mut report).map_err(|e| (e, path.clone()))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(PathSeg::Index(i));
                walk(item, path, lookup, missing)?;
                path.pop();
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                path.push(PathSeg::Key(crate::merge::scalar_text(key)));
                walk(item, path, lookup, missing)?;
                path.pop();
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, lookup, missing)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("A", "a"),
            ("EMPTY", ""),
            ("B", "bee"),
            ("N", "3"),
            ("_U", "u"),
        ])
    }

    fn run(input: &str) -> (Result<String, InterpolateError>, Vec<String>) {
        let env = env();
        let lookup = |name: &str| env.get(name).map(|v| v.to_string());
        let mut missed = Vec::new();
        let out = interpolate_str(input, &lookup, &mut |n: &str| missed.push(n.to_string()));
        (out, missed)
    }

    #[test]
    fn table_of_cases() {
        // (input, output, unset variables reported)
        let cases: &[(&str, &str, &[&str])] = &[
            ("plain", "plain", &[]),
            ("$A", "a", &[]),
            ("${A}", "a", &[]),
            ("x${A}y", "xay", &[]),
            ("$A$B", "abee", &[]),
            ("$A-$B", "a-bee", &[]),
            ("${_U}", "u", &[]),
            ("$_U.x", "u.x", &[]),
            ("$$", "$", &[]),
            ("$$A", "$A", &[]),
            ("$${A}", "${A}", &[]),
            ("$$$A", "$a", &[]),
            ("cost: 5$", "cost: 5$", &[]),
            ("$1 $ $-", "$1 $ $-", &[]),
            ("$MISSING", "", &["MISSING"]),
            ("${MISSING}", "", &["MISSING"]),
            ("a${MISSING}b$MISSING", "ab", &["MISSING", "MISSING"]),
            ("${A:-d}", "a", &[]),
            ("${EMPTY:-d}", "d", &[]),
            ("${MISSING:-d}", "d", &[]),
            ("${A-d}", "a", &[]),
            ("${EMPTY-d}", "", &[]),
            ("${MISSING-d}", "d", &[]),
            ("${MISSING:-}", "", &[]),
            ("${A:+alt}", "alt", &[]),
            ("${EMPTY:+alt}", "", &[]),
            ("${MISSING:+alt}", "", &[]),
            ("${A+alt}", "alt", &[]),
            ("${EMPTY+alt}", "alt", &[]),
            ("${MISSING+alt}", "", &[]),
            ("${A:?boom}", "a", &[]),
            ("${EMPTY?boom}", "", &[]),
            ("${MISSING:-${B}}", "bee", &[]),
            ("${MISSING:-${OTHER:-x}}", "x", &[]),
            ("${MISSING:-${OTHER:-${N}}}", "3", &[]),
            ("${MISSING:-${OTHER}}", "", &["OTHER"]),
            ("${A:-${OTHER}}", "a", &[]),
            ("${MISSING:-a b:c/d}", "a b:c/d", &[]),
            ("${MISSING:-$$}", "$", &[]),
            ("${MISSING:-{x}}", "{x}", &[]),
            ("${N}0", "30", &[]),
            ("http://${A}:${N:-80}/x", "http://a:3/x", &[]),
            (
                "${MISSING:-default with $A inside}",
                "default with a inside",
                &[],
            ),
            ("é${A}ü", "éaü", &[]),
        ];
        for (input, want, want_missing) in cases {
            let (got, missed) = run(input);
            assert_eq!(got.as_deref(), Ok(*want), "input {input:?}");
            assert_eq!(
                missed,
                want_missing
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn required_variables() {
        let cases: &[(&str, &str, &str)] = &[
            ("${MISSING:?set it}", "MISSING", "set it"),
            ("${EMPTY:?must not be empty}", "EMPTY", "must not be empty"),
            ("${MISSING?need}", "MISSING", "need"),
            ("${MISSING:?}", "MISSING", ""),
            ("${MISSING:?value of $A}", "MISSING", "value of a"),
        ];
        for (input, variable, message) in cases {
            let (got, _) = run(input);
            assert_eq!(
                got,
                Err(InterpolateError::Required {
                    variable: variable.to_string(),
                    message: message.to_string()
                }),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn malformed_templates() {
        for input in [
            "${",
            "${A",
            "${}",
            "${1A}",
            "${A B}",
            "${A:x}",
            "x ${A:-${B}",
            "${-x}",
            "${A!}",
        ] {
            let (got, _) = run(input);
            let err = got.unwrap_err();
            assert!(
                matches!(err, InterpolateError::Malformed { .. }),
                "{input:?}: {err:?}"
            );
            assert!(
                err.to_string().contains("invalid interpolation format"),
                "{err}"
            );
        }
    }

    #[test]
    fn values_not_keys() {
        let mut v: Value =
            serde_yaml::from_str("$A: ${A}\nl: [$B, 1, {k: $$x}]\nt: !reset $A\n").unwrap();
        let env = env();
        let lookup = |name: &str| env.get(name).map(|v| v.to_string());
        interpolate_value(&mut v, &lookup, &mut |_, _| {}).unwrap();
        let want: Value =
            serde_yaml::from_str("$A: a\nl: [bee, 1, {k: $x}]\nt: !reset a\n").unwrap();
        assert_eq!(v, want);
    }

    #[test]
    fn error_paths_and_missing_paths() {
        let mut v: Value =
            serde_yaml::from_str("services: {web: {image: $NOPE, ports: [x, '${P:?no port}']}}")
                .unwrap();
        let lookup = |_: &str| None;
        let mut seen = Vec::new();
        let (err, path) = interpolate_value(&mut v, &lookup, &mut |n, p| {
            seen.push((n.to_string(), p.to_vec()))
        })
        .unwrap_err();
        assert!(matches!(err, InterpolateError::Required { ref variable, .. } if variable == "P"));
        assert_eq!(
            crate::path::DisplayPath(&path).to_string(),
            "services.web.ports[1]"
        );
        assert_eq!(seen[0].0, "NOPE");
        assert_eq!(
            crate::path::DisplayPath(&seen[0].1).to_string(),
            "services.web.image"
        );
    }
}
