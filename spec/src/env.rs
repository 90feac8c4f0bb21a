//! `.env` files with Compose's dotenv rules, and the project environment built from them.
//!
//! Rules: blank lines and `#` comments are skipped; an optional `export ` prefix; `KEY=VALUE`
//! with spaces around `=` ignored; single-quoted values are literal; double-quoted values
//! take the escapes `\n \r \t \\ \" \$` and interpolate `${VAR}` from the variables
//! defined earlier and the process environment; unquoted values end at the line's end or
//! at ` #` and are interpolated too; quoted values may span lines; a bare `KEY` takes the
//! process environment's value if it has one. The `raw` format reads `KEY=VALUE` lines
//! verbatim. Parsing is pure; `read_env_file` is the only file read here.

use std::path::Path;

use indexmap::IndexMap;

use crate::error::{Error, Location};
use crate::interpolate::{InterpolateError, interpolate_str};

pub type EnvMap = IndexMap<String, String>;

/// Parses dotenv text. Interpolation looks up the variables already read from this text
/// first, then `outer` (the process environment), as compose-go does.
pub fn parse_dotenv(
    text: &str,
    file: &Path,
    outer: &dyn Fn(&str) -> Option<String>,
) -> Result<EnvMap, Error> {
    let chars: Vec<char> = text.chars().collect();
    let mut vars = EnvMap::new();
    let mut p = Cursor {
        chars: &chars,
        i: 0,
        line: 1,
    };
    loop {
        p.skip(|c| c.is_whitespace());
        let Some(c) = p.peek() else { break };
        if c == '#' {
            p.skip(|c| c != '\n');
            continue;
        }
        let line = p.line;
        let err = |message: String| Error::Syntax {
            location: Location::at(file, line, 0),
            message,
        };
        let mut key = p.take_while(|c| !c.is_whitespace() && c != '=' && c != '#');
        if key == "export" && matches!(p.peek(), Some(' ' | '\t')) {
            p.skip(|c| c == ' ' || c == '\t');
            key = p.take_while(|c| !c.is_whitespace() && c != '=' && c != '#');
        }
        if key.is_empty() {
            return Err(err("a variable assignment must start with a name".into()));
        }
        if let Some(bad) = key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')))
        {
            return Err(err(format!(
                "unexpected character {bad:?} in variable name {key:?}"
            )));
        }
        p.skip(|c| c == ' ' || c == '\t');
        match p.peek() {
            Some('=') => p.i += 1,
            None | Some('\n' | '\r' | '#') => {
                // A bare name inherits the process environment's value, if any.
                if let Some(v) = outer(&key) {
                    vars.insert(key, v);
                }
                p.skip(|c| c != '\n');
                continue;
            }
            Some(c) => {
                return Err(err(format!(
                    "unexpected character {c:?} after variable name {key:?}"
                )));
            }
        }
        p.skip(|c| c == ' ' || c == '\t');
        let value = match p.peek() {
            Some(q @ ('\'' | '"')) => {
                p.i += 1;
                let mut raw = String::new();
                let mut closed = false;
                while let Some(c) = p.next() {
                    if c == q {
                        closed = true;
                        break;
                    }
                    if q == '"' && c == '\\' {
                        match p.next() {
                            Some('n') => raw.push('\n'),
                            Some('r') => raw.push('\r'),
                            Some('t') => raw.push('\t'),
                            Some('\\') => raw.push('\\'),
                            Some('"') => raw.push('"'),
                            // Escaped `$` stays literal through interpolation.
                            Some('$') => raw.push_str("$$"),
                            Some(other) => {
                                raw.push('\\');
                                raw.push(other);
                            }
                            None => break,
                        }
                    } else if q == '"' && c == '$' && p.peek() == Some('$') {
                        p.i += 1;
                        raw.push_str("$$");
                    } else if q == '\'' && c == '$' {
                        raw.push_str("$$");
                    } else {
                        raw.push(c);
                    }
                }
                if !closed {
                    return Err(err(format!("unterminated {q} quoted value for {key}")));
                }
                p.skip(|c| c == ' ' || c == '\t');
                match p.peek() {
                    None | Some('\n' | '\r' | '#') => {}
                    Some(c) => {
                        return Err(err(format!(
                            "unexpected character {c:?} after the quoted value of {key}"
                        )));
                    }
                }
                p.skip(|c| c != '\n');
                raw
            }
            _ => {
                let mut raw = String::new();
                while let Some(c) = p.peek() {
                    if c == '\n' || (c == '#' && raw.ends_with([' ', '\t'])) {
                        break;
                    }
                    raw.push(c);
                    p.i += 1;
                }
                p.skip(|c| c != '\n');
                raw.trim_end().to_string()
            }
        };
        let lookup = |name: &str| vars.get(name).cloned().or_else(|| outer(name));
        let value = interpolate_str(&value, &lookup, &mut |_| {}).map_err(|e| match e {
            InterpolateError::Required { variable, message } => Error::RequiredVariable {
                location: Location::at(file, line, 0),
                variable,
                message,
            },
            other => err(other.to_string()),
        })?;
        vars.insert(key, value);
    }
    Ok(vars)
}

/// `format: raw`: each non-empty line is `KEY=VALUE`, taken verbatim.
pub fn parse_raw(text: &str) -> EnvMap {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// Reads and parses one env file.
pub fn read_env_file(
    path: &Path,
    raw: bool,
    outer: &dyn Fn(&str) -> Option<String>,
) -> Result<EnvMap, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if raw {
        Ok(parse_raw(&text))
    } else {
        parse_dotenv(&text, path, outer)
    }
}

struct Cursor<'a> {
    chars: &'a [char],
    i: usize,
    line: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip(&mut self, keep_going: impl Fn(char) -> bool) {
        while let Some(c) = self.peek() {
            if !keep_going(c) {
                break;
            }
            self.next();
        }
    }

    fn take_while(&mut self, keep_going: impl Fn(char) -> bool) -> String {
        let start = self.i;
        self.skip(keep_going);
        self.chars[start..self.i].iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EnvMap, Error> {
        let outer = |name: &str| (name == "HOME").then(|| "/root".to_string());
        parse_dotenv(text, Path::new(".env"), &outer)
    }

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap().into_iter().collect()
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn dotenv_rules() {
        let text = r#"
# a comment
A=1
export B = two words  # trailing comment
C='single $A ${A} \n'  # comment
D="double $A ${A:-x} \n\t\"q\" \$A $$ end"
E=unquoted#not-a-comment
F=
G="multi
line"
H='multi
line too'
HOME
I=${HOME}/x
J=${NOPE:-fallback}
K = spaced
L=a=b=c
"#;
        assert_eq!(
            pairs(text),
            vec![
                p("A", "1"),
                p("B", "two words"),
                p("C", "single $A ${A} \\n"),
                p("D", "double 1 1 \n\t\"q\" $A $ end"),
                p("E", "unquoted#not-a-comment"),
                p("F", ""),
                p("G", "multi\nline"),
                p("H", "multi\nline too"),
                p("HOME", "/root"),
                p("I", "/root/x"),
                p("J", "fallback"),
                p("K", "spaced"),
                p("L", "a=b=c"),
            ]
        );
    }

    #[test]
    fn earlier_definitions_win_in_interpolation_and_redefinitions_apply() {
        assert_eq!(
            pairs("HOME=/h\nX=$HOME\nA=1\nA=2\nB=$A"),
            vec![p("HOME", "/h"), p("X", "/h"), p("A", "2"), p("B", "2")]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("A=1\nB='open\n", 2, "unterminated"),
            ("A=1\n\nbad key=1\n", 3, "unexpected character"),
            ("A=\"x\" y\n", 1, "after the quoted value"),
            ("=1\n", 1, "must start with a name"),
            ("A=${\n", 1, "invalid interpolation"),
        ];
        for (text, line, needle) in cases {
            let err = parse(text).unwrap_err();
            let Error::Syntax { location, message } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(location.line, line, "{text:?}");
            assert!(message.contains(needle), "{text:?}: {message}");
        }
        let err = parse("A=${B:?B is needed}\n").unwrap_err();
        assert!(matches!(err, Error::RequiredVariable { ref variable, .. } if variable == "B"));
    }

    #[test]
    fn raw_format() {
        let m = parse_raw("A='x' $B\n\nC=d=e\n");
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            vec![p("A", "'x' $B"), p("C", "d=e")]
        );
    }
}
