//! Words of a Dockerfile line: splitting on unquoted whitespace and expanding `$VAR`,
//! `${VAR}`, `${VAR:-word}`, `${VAR:+word}` (and the forms without `:`, plus `${VAR:?msg}`)
//! with quote removal, as Docker's shell lexer does for `ENV`, `COPY`, `WORKDIR` and the
//! other instructions the builder expands. `RUN`, `CMD` and `ENTRYPOINT` are never expanded
//! here: their shell does it. Pure functions; no I/O.

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordError {
    #[error("unterminated quote in {0:?}")]
    UnterminatedQuote(String),
    #[error("bad substitution in {0:?}")]
    BadSubstitution(String),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
}

/// Splits `text` on whitespace outside quotes; quotes and escapes stay in the words, to be
/// removed by [`expand`].
pub fn split_raw(text: &str, escape: char) -> Result<Vec<String>, WordError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                } else if c == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                cur.push(c);
                if c == '\'' || c == '"' {
                    quote = Some(c);
                } else if c == escape {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
            }
        }
    }
    if quote.is_some() {
        return Err(WordError::UnterminatedQuote(text.to_owned()));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Expands variables in one word and removes its quotes. Single quotes keep everything
/// literal; inside double quotes the escape character only escapes `"`, `$` and itself.
pub fn expand(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, WordError> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some('\'') => {
                if c == '\'' {
                    quote = None;
                } else {
                    out.push(c);
                }
                i += 1;
            }
            _ => {
                if c == escape {
                    match chars.get(i + 1) {
                        Some(&n) if quote.is_none() || matches!(n, '"' | '$') || n == escape => {
                            out.push(n);
                            i += 2;
                        }
                        Some(_) => {
                            out.push(c);
                            i += 1;
                        }
                        None => {
                            out.push(c);
                            i += 1;
                        }
                    }
                } else if c == '"' {
                    quote = if quote.is_some() { None } else { Some('"') };
                    i += 1;
                } else if c == '\'' && quote.is_none() {
                    quote = Some('\'');
                    i += 1;
                } else if c == '$' {
                    i = expand_var(&chars, i, word, escape, lookup, &mut out)?;
                } else {
                    out.push(c);
                    i += 1;
                }
            }
        }
    }
    if quote.is_some() {
        return Err(WordError::UnterminatedQuote(word.to_owned()));
    }
    Ok(out)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands the variable at `chars[start] == '$'`; returns the index after it.
fn expand_var(
    chars: &[char],
    start: usize,
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<usize, WordError> {
    let mut i = start + 1;
    match chars.get(i) {
        Some('{') => {
            i += 1;
            let name_start = i;
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            let name: String = chars[name_start..i].iter().collect();
            if name.is_empty() {
                return Err(WordError::BadSubstitution(word.to_owned()));
            }
            if chars.get(i) == Some(&'}') {
                out.push_str(&lookup(&name).unwrap_or_default());
                return Ok(i + 1);
            }
            // An operator and a word up to the matching brace.
            let colon = chars.get(i) == Some(&':');
            if colon {
                i += 1;
            }
            let op = *chars
                .get(i)
                .ok_or_else(|| WordError::BadSubstitution(word.to_owned()))?;
            if !matches!(op, '-' | '+' | '?') {
                return Err(WordError::BadSubstitution(word.to_owned()));
            }
            i += 1;
            let arg_start = i;
            let mut depth = 1;
            while i < chars.len() {
                match chars[i] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(WordError::BadSubstitution(word.to_owned()));
            }
            let arg: String = chars[arg_start..i].iter().collect();
            let value = lookup(&name);
            let set = match &value {
                Some(v) => !colon || !v.is_empty(),
                None => false,
            };
            match op {
                '-' => {
                    if set {
                        out.push_str(value.as_deref().unwrap_or_default());
                    } else {
                        out.push_str(&expand(&arg, escape, lookup)?);
                    }
                }
                '+' => {
                    if set {
                        out.push_str(&expand(&arg, escape, lookup)?);
                    }
                }
                _ => {
                    if set {
                        out.push_str(value.as_deref().unwrap_or_default());
                    } else {
                        let message = if arg.is_empty() {
                            "is not allowed to be unset".to_owned()
                        } else {
                            expand(&arg, escape, lookup)?
                        };
                        return Err(WordError::Required { name, message });
                    }
                }
            }
            Ok(i + 1)
        }
        Some(&c) if is_name_char(c) && !c.is_ascii_digit() => {
            let name_start = i;
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            let name: String = chars[name_start..i].iter().collect();
            out.push_str(&lookup(&name).unwrap_or_default());
            Ok(i)
        }
        _ => {
            out.push('$');
            Ok(i)
        }
    }
}

/// Expands only variables (no quote removal): heredoc bodies, where quotes are content.
/// The escape character before `$` keeps it literal.
pub fn expand_vars(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, WordError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == escape && chars.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
        } else if c == '$' {
            i = expand_var(&chars, i, text, escape, lookup, &mut out)?;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

/// Splits and expands: each raw word expanded on its own (values are not split again).
pub fn expand_words(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, WordError> {
    split_raw(text, escape)?
        .iter()
        .map(|w| expand(w, escape, lookup))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "E" => Some(String::new()),
            "SP" => Some("two words".into()),
            _ => None,
        }
    }

    fn x(w: &str) -> String {
        expand(w, '\\', &env).unwrap()
    }

    #[test]
    fn variables_and_defaults() {
        assert_eq!(x("$A"), "alpha");
        assert_eq!(x("${A}-x"), "alpha-x");
        assert_eq!(x("$A/b"), "alpha/b");
        assert_eq!(x("$NOPE"), "");
        assert_eq!(x("${NOPE:-def}"), "def");
        assert_eq!(x("${E:-def}"), "def");
        assert_eq!(x("${E-def}"), "");
        assert_eq!(x("${A:+set}"), "set");
        assert_eq!(x("${NOPE:+set}"), "");
        assert_eq!(x("${NOPE:-${A}}"), "alpha");
        assert_eq!(x("cost$5"), "cost$5");
        assert!(matches!(
            expand("${NOPE:?needed}", '\\', &env),
            Err(WordError::Required { .. })
        ));
        assert!(expand("${A", '\\', &env).is_err());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(x("'$A'"), "$A");
        assert_eq!(x("\"$A b\""), "alpha b");
        assert_eq!(x("\\$A"), "$A");
        assert_eq!(x("\"a\\\"b\""), "a\"b");
        assert_eq!(x("\"c:\\dir\""), "c:\\dir");
        assert_eq!(expand("`$A", '`', &env).unwrap(), "$A");
        assert!(expand("\"open", '\\', &env).is_err());
    }

    #[test]
    fn heredoc_bodies_keep_quotes() {
        assert_eq!(
            expand_vars("say \"$A\" 'x' \\$A", '\\', &env).unwrap(),
            "say \"alpha\" 'x' $A"
        );
    }

    #[test]
    fn split_keeps_quoted_spaces() {
        assert_eq!(
            split_raw(r#"a "b c" 'd e'  f\ g"#, '\\').unwrap(),
            vec!["a", "\"b c\"", "'d e'", "f\\ g"]
        );
        assert_eq!(
            expand_words(r#"$SP "x y" f\ g"#, '\\', &env).unwrap(),
            vec!["two words", "x y", "f g"]
        );
    }
}
