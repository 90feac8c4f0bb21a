//! Source excerpts for located errors and warnings, in the manner of rustc and miette: the
//! offending line of the file under a line-number gutter, and carets under the token the
//! location points at. Pure: the caller hands in the file's text (the CLI reads it); this
//! module reads nothing and never fails — a location outside the text has no excerpt.

use std::fmt::Write;

use crate::error::{Error, Location, Warning};

/// ANSI styles, used only when the caller asks for colour (a terminal).
const GUTTER: &str = "\x1b[1;34m";
const CARET: &str = "\x1b[1;31m";
const RESET: &str = "\x1b[0m";
/// Tabs are shown as this many spaces so that the carets line up under them.
const TAB_WIDTH: usize = 4;
/// Longest part of a line shown: a minified one-line file must not flood the terminal.
const MAX_SHOWN: usize = 160;

impl Error {
    /// Where in a file the error is, when the loader knows the line.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Syntax { location, .. }
            | Error::UnknownKey { location, .. }
            | Error::Invalid { location, .. }
            | Error::RequiredVariable { location, .. } => Some(location).filter(|l| l.line > 0),
            Error::Io { .. } | Error::Cycle { .. } | Error::Project(_) => None,
        }
    }
}

impl Warning {
    /// Where in a file the warning is, when the loader knows the line.
    pub fn located(&self) -> Option<&Location> {
        self.location.as_ref().filter(|l| l.line > 0)
    }
}

/// The excerpt of `text` at `location` (1-based line and column, counted in characters):
///
/// ```text
///   |
/// 3 |     imagee: nginx
///   |     ^^^^^^
/// ```
///
/// Every line ends with a newline. `None` when the line is not in `text`. With `color`,
/// the gutter and the carets carry ANSI styles.
pub fn excerpt(location: &Location, text: &str, color: bool) -> Option<String> {
    if location.line == 0 {
        return None;
    }
    let count = yaml_lines(text).count();
    let (line, column) = if location.line == count + 1 {
        // libyaml ends a last line that has no line break before reporting an error at
        // the end of the stream, one line past the text: show the end of the last line
        let last = yaml_lines(text).last().unwrap_or("");
        (count, last.chars().count() + 1)
    } else {
        (location.line, location.column)
    };
    let raw = yaml_lines(text).nth(line - 1)?;
    let raw = if line == 1 {
        raw.strip_prefix('\u{feff}').unwrap_or(raw)
    } else {
        raw
    };
    let chars: Vec<char> = raw.chars().collect();
    // a column past the end (an error at the end of the line) points just after it
    let start = column.max(1).min(chars.len() + 1) - 1;
    let width = token_width(&chars[start..], in_flow(&chars[..start]));

    // what is shown: the whole line, or a window around the column of a very long one
    let from = if chars.len() > MAX_SHOWN && start > MAX_SHOWN / 2 {
        (start - MAX_SHOWN / 2).min(chars.len().saturating_sub(MAX_SHOWN))
    } else {
        0
    };
    let to = chars.len().min(from + MAX_SHOWN);
    let mut shown = String::new();
    let mut caret_pad = 0;
    let mut caret_width = 0;
    if from > 0 {
        shown.push('…');
    }
    for (i, &c) in chars.iter().enumerate().take(to).skip(from) {
        let w = if c == '\t' { TAB_WIDTH } else { 1 };
        if i < start {
            caret_pad += w;
        } else if i < start + width {
            caret_width += w;
        }
        if c == '\t' {
            shown.push_str(&" ".repeat(TAB_WIDTH));
        } else if c.is_control() {
            shown.push('\u{fffd}');
        } else {
            shown.push(c);
        }
    }
    if from > 0 {
        caret_pad += 1;
    }
    if to < chars.len() {
        shown.push('…');
    }
    let caret_width = caret_width.clamp(1, MAX_SHOWN);

    let number = line.to_string();
    let blank = " ".repeat(number.len());
    let (g, c, r) = if color {
        (GUTTER, CARET, RESET)
    } else {
        ("", "", "")
    };
    let mut out = String::new();
    let _ = writeln!(out, "{g}{blank} |{r}");
    let _ = writeln!(out, "{g}{number} |{r} {shown}");
    let _ = writeln!(
        out,
        "{g}{blank} |{r} {}{c}{}{r}",
        " ".repeat(caret_pad),
        "^".repeat(caret_width)
    );
    Some(out)
}

/// The lines of a YAML text: a line break is `\r\n`, `\n` or a lone `\r`, as both parsers
/// count them.
fn yaml_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').flat_map(|line| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        line.split('\r')
    })
}

/// Whether `before` (the line up to the column) leaves a flow collection open, so that
/// `,`, `]` and `}` end a plain scalar. A guess from one line, which is all an excerpt shows.
fn in_flow(before: &[char]) -> bool {
    let mut open = 0i32;
    let mut quote = None;
    for &c in before {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => open += 1,
            (None, ']' | '}') => open -= 1,
            (None, '#') => break,
            _ => {}
        }
    }
    open > 0
}

/// How many characters the carets cover: the YAML token starting here — a quoted scalar
/// up to its closing quote, else a plain scalar up to a `: `, a ` #`, the end of the line
/// or, in a flow collection, a `,`, `]` or `}` — at least one.
fn token_width(rest: &[char], flow: bool) -> usize {
    let Some(&first) = rest.first() else {
        return 1;
    };
    if first == '"' || first == '\'' {
        let mut i = 1;
        while i < rest.len() {
            if first == '"' && rest[i] == '\\' {
                i += 2;
                continue;
            }
            if rest[i] == first {
                // '' inside a single-quoted scalar is an escaped quote
                if first == '\'' && rest.get(i + 1) == Some(&'\'') {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            i += 1;
        }
        return rest.len();
    }
    if first.is_whitespace() || (first == '-' && rest.get(1).is_none_or(|c| c.is_whitespace())) {
        return 1;
    }
    // a plain scalar runs on over single spaces, up to `: `, ` #` or the end of the line
    let mut i = 0;
    while i < rest.len() {
        let c = rest[i];
        let next = rest.get(i + 1);
        let ends = (flow && matches!(c, ',' | ']' | '}'))
            || (c == ':' && next.is_none_or(|n| n.is_whitespace()))
            || (c.is_whitespace() && next.is_none_or(|n| *n == '#'));
        if ends {
            break;
        }
        i += 1;
    }
    while i > 1 && rest[i - 1].is_whitespace() {
        i -= 1;
    }
    i.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Location {
        Location::at("/p/compose.yaml", line, column)
    }

    #[test]
    fn carets_cover_the_key() {
        let text = "services:\n  web:\n    imagee: nginx\n";
        assert_eq!(
            excerpt(&at(3, 5), text, false).unwrap(),
            "  |\n3 |     imagee: nginx\n  |     ^^^^^^\n"
        );
    }

    #[test]
    fn carets_cover_a_quoted_or_plain_item() {
        let text = "    ports:\n      - \"80:80:80:x\"\n      - 8080:80/tcpx # bad\n";
        assert_eq!(
            excerpt(&at(2, 9), text, false).unwrap(),
            "  |\n2 |       - \"80:80:80:x\"\n  |         ^^^^^^^^^^^^\n"
        );
        assert_eq!(
            excerpt(&at(3, 9), text, false).unwrap(),
            "  |\n3 |       - 8080:80/tcpx # bad\n  |         ^^^^^^^^^^^^\n"
        );
    }

    #[test]
    fn flow_items_stop_at_delimiters_and_quotes_may_be_escaped() {
        let width = |s: &str, flow| token_width(&s.chars().collect::<Vec<_>>(), flow);
        assert_eq!(width("web, db]", true), 3);
        assert_eq!(width("db]", true), 2);
        assert_eq!(width("${A:-x}, b", false), 10);
        assert_eq!(width("${A:?need an image}  # why", false), 19);
        assert_eq!(width("imagee: x", false), 6);
        assert_eq!(width(" x", false), 1);
        assert_eq!(width("'it''s': x", false), 7);
        assert_eq!(width(r#""a\"b" x"#, false), 6);
        assert_eq!(width("\"open", false), 5);
        assert_eq!(width("- x", false), 1);
        assert_eq!(width("", false), 1);
        let flow = |s: &str| in_flow(&s.chars().collect::<Vec<_>>());
        assert!(flow("  ports: [80, "));
        assert!(!flow("  ports: [80] # ["));
        assert!(!flow("  a: '[' "));
        assert!(flow("{a: {b: "));
    }

    #[test]
    fn wide_line_numbers_widen_the_gutter() {
        let text = "a\n".repeat(11) + "b: c\n";
        assert_eq!(
            excerpt(&at(12, 1), &text, false).unwrap(),
            "   |\n12 | b: c\n   | ^\n"
        );
    }

    #[test]
    fn tabs_crlf_and_bom() {
        assert_eq!(
            excerpt(&at(1, 4), "\u{feff}a:\tb\r\nc: d\r\n", false).unwrap(),
            "  |\n1 | a:    b\n  |       ^\n"
        );
    }

    #[test]
    fn a_lone_carriage_return_breaks_the_line() {
        assert_eq!(
            excerpt(&at(2, 1), "a: b\rc: d\r\ne: f", false).unwrap(),
            "  |\n2 | c: d\n  | ^\n"
        );
        assert_eq!(
            excerpt(&at(3, 1), "a: b\rc: d\r\ne: f", false).unwrap(),
            "  |\n3 | e: f\n  | ^\n"
        );
    }

    #[test]
    fn any_place_in_any_text_renders_without_panicking() {
        use proptest::prelude::*;
        let texts = "(?s).{0,200}";
        proptest!(|(text in texts, line in 0usize..30, column in 0usize..300, color: bool)| {
            let shown = excerpt(&at(line, column), &text, color);
            prop_assert_eq!(shown.is_some(), line >= 1 && line <= yaml_lines(&text).count() + 1);
        });
    }

    #[test]
    fn end_of_line_and_end_of_file() {
        // an unterminated flow sequence is reported on the line after the last one
        let text = "services:\n  web: [\n";
        assert_eq!(
            excerpt(&at(3, 1), text, false).unwrap(),
            "  |\n3 | \n  | ^\n"
        );
        assert_eq!(
            excerpt(&at(2, 99), text, false).unwrap(),
            "  |\n2 |   web: [\n  |         ^\n"
        );
        assert_eq!(excerpt(&at(5, 1), text, false), None);
        assert_eq!(excerpt(&at(0, 0), text, false), None);
    }

    #[test]
    fn the_end_of_a_text_without_a_final_line_break() {
        // libyaml reports errors at the end of such a text one line past it
        assert_eq!(
            excerpt(&at(4, 1), "services:\n 00:8080\"\n$", false).unwrap(),
            "  |\n3 | $\n  |  ^\n"
        );
        assert_eq!(excerpt(&at(2, 1), "", false).unwrap(), "  |\n1 | \n  | ^\n");
    }

    #[test]
    fn a_long_line_is_cut_around_the_column() {
        let text = format!("x: [{}bad]\n", "1, ".repeat(200));
        let out = excerpt(&at(1, 605), &text, false).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[1].starts_with("1 | …") && lines[1].ends_with("bad]"),
            "{out}"
        );
        let caret = lines[2].chars().position(|c| c == '^').unwrap();
        let shown: String = lines[1].chars().skip(caret).take(3).collect();
        assert_eq!(shown, "bad", "{out}");
    }

    #[test]
    fn colour_only_when_asked() {
        let out = excerpt(&at(1, 1), "a: b\n", true).unwrap();
        assert!(out.contains("\x1b[1;31m^\x1b[0m"), "{out:?}");
        assert!(
            !excerpt(&at(1, 1), "a: b\n", false)
                .unwrap()
                .contains('\x1b')
        );
    }
}
