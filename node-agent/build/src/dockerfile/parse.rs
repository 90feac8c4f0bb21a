//! Text → instructions: directives at the top, logical lines (continuations joined, comment
//! and blank lines inside them dropped), heredoc bodies after their instruction line, and
//! one parser per instruction.

use super::words::split_raw;
use super::{
    CommandForm, CopyArgs, Dockerfile, Health, Heredoc, Instruction, Kind, ParseError, Stage,
};

struct Ctx<'a> {
    file: &'a str,
    escape: char,
}

impl Ctx<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

/// Parses a whole Dockerfile. `file` is the name errors use.
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut pos = 0;
    // Parser directives: `# key=value` lines at the very top, until anything else.
    while pos < lines.len() {
        let Some((key, value)) = directive(lines[pos]) else {
            break;
        };
        match key.as_str() {
            "escape" => {
                escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(ParseError {
                            file: file.to_owned(),
                            line: pos + 1,
                            message: format!("invalid escape directive {other:?}: use \\ or `"),
                        });
                    }
                }
            }
            "syntax" => syntax = Some(value),
            _ => {}
        }
        pos += 1;
    }
    let ctx = Ctx { file, escape };
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    while let Some((line_no, logical, next)) = next_logical(&lines, pos, escape) {
        pos = next;
        let (keyword, rest) = split_keyword(&logical);
        let upper = keyword.to_ascii_uppercase();
        let heredoc_names = if matches!(upper.as_str(), "RUN" | "COPY" | "ADD") {
            heredoc_markers(rest)
        } else {
            Vec::new()
        };
        let mut heredocs = Vec::new();
        for (name, strip_tabs, expand) in heredoc_names {
            let mut body = String::new();
            let mut closed = false;
            while pos < lines.len() {
                let raw = lines[pos];
                pos += 1;
                let candidate = if strip_tabs {
                    raw.trim_start_matches('\t')
                } else {
                    raw
                };
                if candidate == name {
                    closed = true;
                    break;
                }
                body.push_str(candidate);
                body.push('\n');
            }
            if !closed {
                return Err(ctx.err(line_no, format!("heredoc <<{name} is not terminated")));
            }
            heredocs.push(Heredoc {
                name,
                content: body,
                expand,
            });
        }
        if upper == "FROM" {
            stages.push(parse_from(&ctx, line_no, rest, stages.len())?);
            continue;
        }
        let instruction = parse_instruction_with(&ctx, line_no, &logical, heredocs)?;
        match stages.last_mut() {
            Some(stage) => stage.instructions.push(instruction),
            None if matches!(instruction.kind, Kind::Arg(_)) => meta_args.push(instruction),
            None => {
                return Err(ctx.err(
                    line_no,
                    format!("{upper} before the first FROM (only ARG may come before it)"),
                ));
            }
        }
    }
    if stages.is_empty() {
        return Err(ParseError {
            file: file.to_owned(),
            line: lines.len().max(1),
            message: "no FROM instruction: a Dockerfile needs at least one stage".into(),
        });
    }
    Ok(Dockerfile {
        file: file.to_owned(),
        escape,
        syntax,
        meta_args,
        stages,
    })
}

/// Parses one instruction line on its own (an `ONBUILD` trigger from a base image).
pub fn parse_instruction(file: &str, line: usize, text: &str) -> Result<Instruction, ParseError> {
    let ctx = Ctx { file, escape: '\\' };
    parse_instruction_with(&ctx, line, text, Vec::new())
}

fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim().strip_prefix('#')?;
    let (key, value) = body.split_once('=')?;
    let key = key.trim().to_ascii_lowercase();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    if !matches!(key.as_str(), "syntax" | "escape" | "check") {
        return None;
    }
    Some((key, value.trim().to_owned()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// The next logical line from `pos`: (first line number, joined text, index after it).
fn next_logical(lines: &[&str], mut pos: usize, escape: char) -> Option<(usize, String, usize)> {
    while pos < lines.len() && (lines[pos].trim().is_empty() || is_comment(lines[pos])) {
        pos += 1;
    }
    if pos >= lines.len() {
        return None;
    }
    let start = pos + 1;
    let mut text = String::new();
    loop {
        let line = lines[pos];
        pos += 1;
        let trimmed = line.trim_end();
        if let Some(stripped) = trimmed.strip_suffix(escape) {
            text.push_str(stripped);
            // Comment and blank lines inside a continuation are dropped.
            while pos < lines.len() && (lines[pos].trim().is_empty() || is_comment(lines[pos])) {
                pos += 1;
            }
            if pos >= lines.len() {
                break;
            }
        } else {
            text.push_str(trimmed);
            break;
        }
    }
    Some((start, text.trim().to_owned(), pos))
}

fn split_keyword(logical: &str) -> (&str, &str) {
    let logical = logical.trim();
    match logical.find(char::is_whitespace) {
        Some(i) => (&logical[..i], logical[i..].trim_start()),
        None => (logical, ""),
    }
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'` words: (name, strip leading tabs, expand).
fn heredoc_markers(rest: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    for word in rest.split_whitespace() {
        let Some(mut w) = word.strip_prefix("<<") else {
            continue;
        };
        let strip = w.starts_with('-');
        if strip {
            w = &w[1..];
        }
        let quoted = (w.starts_with('"') && w.ends_with('"') && w.len() >= 2)
            || (w.starts_with('\'') && w.ends_with('\'') && w.len() >= 2);
        let name = if quoted { &w[1..w.len() - 1] } else { w };
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push((name.to_owned(), strip, !quoted));
        }
    }
    out
}

/// `--name[=value]` flags in order.
type Flags = Vec<(String, Option<String>)>;

/// Leading `--name[=value]` flags and the rest of the line.
fn take_flags<'a>(
    ctx: &Ctx<'_>,
    line: usize,
    mut rest: &'a str,
    allowed: &[&str],
    keyword: &str,
) -> Result<(Flags, &'a str), ParseError> {
    let mut flags = Vec::new();
    loop {
        rest = rest.trim_start();
        if !rest.starts_with("--") {
            return Ok((flags, rest));
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let flag = &rest[2..end];
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (flag, None),
        };
        if !allowed.contains(&name) {
            return Err(ctx.err(line, format!("unknown flag for {keyword}: --{name}")));
        }
        flags.push((name.to_owned(), value));
        rest = &rest[end..];
    }
}

fn flag_value(
    ctx: &Ctx<'_>,
    line: usize,
    flags: &[(String, Option<String>)],
    name: &str,
) -> Result<Option<String>, ParseError> {
    match flags.iter().rev().find(|(n, _)| n == name) {
        Some((_, Some(v))) => Ok(Some(v.clone())),
        Some((_, None)) => Err(ctx.err(line, format!("--{name} needs a value (--{name}=…)"))),
        None => Ok(None),
    }
}

fn parse_from(ctx: &Ctx<'_>, line: usize, rest: &str, index: usize) -> Result<Stage, ParseError> {
    let (flags, rest) = take_flags(ctx, line, rest, &["platform"], "FROM")?;
    let platform = flag_value(ctx, line, &flags, "platform")?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (base, name) = match words.as_slice() {
        [base] => (*base, None),
        [base, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => (*base, Some(*name)),
        [] => return Err(ctx.err(line, "FROM needs an image (or scratch, or a stage name)")),
        _ => return Err(ctx.err(line, "FROM takes an image and an optional `AS name`")),
    };
    if let Some(name) = name {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(ctx.err(line, format!("invalid stage name {name:?}")));
        }
    }
    Ok(Stage {
        index,
        name: name.map(str::to_ascii_lowercase),
        base: base.to_owned(),
        platform,
        line,
        instructions: Vec::new(),
    })
}

/// `["a", "b"]` when the text is a JSON array of strings; otherwise `None` (shell form).
fn json_array(text: &str) -> Option<Vec<String>> {
    let t = text.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

fn command_form(text: &str) -> CommandForm {
    match json_array(text) {
        Some(args) => CommandForm::Exec(args),
        None => CommandForm::Shell(text.trim().to_owned()),
    }
}

/// `key=value …` pairs, or the legacy `key value with spaces` form (when `legacy`).
fn key_values(
    ctx: &Ctx<'_>,
    line: usize,
    rest: &str,
    keyword: &str,
    legacy: bool,
) -> Result<Vec<(String, String)>, ParseError> {
    let words = split_raw(rest, ctx.escape).map_err(|e| ctx.err(line, e.to_string()))?;
    if words.is_empty() {
        return Err(ctx.err(line, format!("{keyword} needs at least one key=value")));
    }
    if !words[0].contains('=') {
        if !legacy {
            return Err(ctx.err(line, format!("{keyword} needs key=value pairs")));
        }
        let key = words[0].clone();
        let value = rest.trim_start()[key.len()..].trim().to_owned();
        if value.is_empty() {
            return Err(ctx.err(line, format!("{keyword} {key} needs a value")));
        }
        return Ok(vec![(key, value)]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(ctx.err(
                line,
                format!("{keyword}: {w:?} is not key=value (mixing the forms is not allowed)"),
            ));
        };
        if k.is_empty() {
            return Err(ctx.err(line, format!("{keyword}: empty key in {w:?}")));
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

fn parse_instruction_with(
    ctx: &Ctx<'_>,
    line: usize,
    logical: &str,
    heredocs: Vec<Heredoc>,
) -> Result<Instruction, ParseError> {
    let (keyword, rest) = split_keyword(logical);
    let upper = keyword.to_ascii_uppercase();
    let need = |what: &str| -> Result<(), ParseError> {
        if rest.trim().is_empty() {
            Err(ctx.err(line, format!("{upper} needs {what}")))
        } else {
            Ok(())
        }
    };
    let kind = match upper.as_str() {
        "RUN" => {
            let (flags, cmd) =
                take_flags(ctx, line, rest, &["network", "mount", "security"], "RUN")?;
            if flags.iter().any(|(n, _)| n == "mount") {
                return Err(ctx.err(line, "RUN --mount is not supported by berth's builder"));
            }
            if let Some(sec) = flag_value(ctx, line, &flags, "security")? {
                if sec != "sandbox" {
                    return Err(ctx.err(line, format!("RUN --security={sec} is not supported")));
                }
            }
            let network = flag_value(ctx, line, &flags, "network")?;
            if let Some(n) = &network {
                if !matches!(n.as_str(), "default" | "none" | "host") {
                    return Err(ctx.err(
                        line,
                        format!("RUN --network={n}: use default, none or host"),
                    ));
                }
            }
            if cmd.trim().is_empty() {
                return Err(ctx.err(line, "RUN needs a command"));
            }
            Kind::Run {
                command: command_form(cmd),
                network,
                heredocs,
            }
        }
        "COPY" | "ADD" => {
            let allowed: &[&str] = if upper == "COPY" {
                &["from", "chown", "chmod", "link"]
            } else {
                &["chown", "chmod", "link", "checksum", "keep-git-dir"]
            };
            let (flags, args) = take_flags(ctx, line, rest, allowed, &upper)?;
            let mut words = match json_array(args) {
                Some(w) => w,
                None => split_raw(args, ctx.escape).map_err(|e| ctx.err(line, e.to_string()))?,
            };
            let heredoc_sources = words.iter().filter(|w| w.starts_with("<<")).count();
            if words.len() < 2 {
                return Err(ctx.err(
                    line,
                    format!("{upper} needs at least one source and a destination"),
                ));
            }
            let dest = words.pop().unwrap_or_default();
            if heredoc_sources > 0 && heredocs.len() != heredoc_sources {
                return Err(ctx.err(line, format!("{upper}: heredoc source without a body")));
            }
            let args = CopyArgs {
                from: flag_value(ctx, line, &flags, "from")?,
                chown: flag_value(ctx, line, &flags, "chown")?,
                chmod: flag_value(ctx, line, &flags, "chmod")?,
                link: flags.iter().any(|(n, _)| n == "link"),
                sources: words,
                dest,
                heredocs,
            };
            if let Some(chmod) = &args.chmod {
                if u32::from_str_radix(chmod, 8).is_err() {
                    return Err(ctx.err(
                        line,
                        format!("{upper} --chmod={chmod}: only octal modes are supported"),
                    ));
                }
            }
            if upper == "COPY" {
                Kind::Copy(args)
            } else {
                Kind::Add(args)
            }
        }
        "ENV" => Kind::Env(key_values(ctx, line, rest, "ENV", true)?),
        "LABEL" => Kind::Label(key_values(ctx, line, rest, "LABEL", false)?),
        "ARG" => {
            need("a name")?;
            let words = split_raw(rest, ctx.escape).map_err(|e| ctx.err(line, e.to_string()))?;
            let mut args = Vec::new();
            for w in words {
                let (name, default) = match w.split_once('=') {
                    Some((n, d)) => (n.to_owned(), Some(d.to_owned())),
                    None => (w.clone(), None),
                };
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(ctx.err(line, format!("ARG: invalid name {name:?}")));
                }
                args.push((name, default));
            }
            Kind::Arg(args)
        }
        "WORKDIR" => {
            need("a path")?;
            Kind::Workdir(rest.trim().to_owned())
        }
        "USER" => {
            need("a user")?;
            Kind::User(rest.trim().to_owned())
        }
        "CMD" => {
            need("a command")?;
            Kind::Cmd(command_form(rest))
        }
        "ENTRYPOINT" => {
            need("a command")?;
            Kind::Entrypoint(command_form(rest))
        }
        "SHELL" => match json_array(rest) {
            Some(v) if !v.is_empty() => Kind::Shell(v),
            _ => return Err(ctx.err(line, "SHELL needs a JSON array, e.g. [\"/bin/sh\", \"-c\"]")),
        },
        "EXPOSE" => {
            need("a port")?;
            let ports = split_raw(rest, ctx.escape).map_err(|e| ctx.err(line, e.to_string()))?;
            Kind::Expose(ports)
        }
        "VOLUME" => {
            need("a path")?;
            let paths = match json_array(rest) {
                Some(v) => v,
                None => split_raw(rest, ctx.escape).map_err(|e| ctx.err(line, e.to_string()))?,
            };
            Kind::Volume(paths)
        }
        "STOPSIGNAL" => {
            need("a signal")?;
            Kind::StopSignal(rest.trim().to_owned())
        }
        "HEALTHCHECK" => Kind::Healthcheck(parse_healthcheck(ctx, line, rest)?),
        "ONBUILD" => {
            need("an instruction")?;
            let (inner, _) = split_keyword(rest);
            let inner = inner.to_ascii_uppercase();
            if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(ctx.err(line, format!("ONBUILD {inner} is not allowed")));
            }
            // Check the trigger parses now rather than when a child image uses it.
            parse_instruction_with(ctx, line, rest, Vec::new())?;
            Kind::Onbuild(rest.trim().to_owned())
        }
        "MAINTAINER" => {
            need("a name")?;
            Kind::Maintainer(rest.trim().to_owned())
        }
        "FROM" => return Err(ctx.err(line, "FROM cannot be used here")),
        "" => return Err(ctx.err(line, "empty instruction")),
        other => return Err(ctx.err(line, format!("unknown instruction: {other}"))),
    };
    Ok(Instruction {
        line,
        text: logical.trim().to_owned(),
        kind,
    })
}

fn parse_healthcheck(ctx: &Ctx<'_>, line: usize, rest: &str) -> Result<Health, ParseError> {
    let (flags, rest) = take_flags(
        ctx,
        line,
        rest,
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        "HEALTHCHECK",
    )?;
    let (kw, cmd) = split_keyword(rest);
    if kw.eq_ignore_ascii_case("NONE") {
        if !flags.is_empty() || !cmd.is_empty() {
            return Err(ctx.err(line, "HEALTHCHECK NONE takes no flags or arguments"));
        }
        return Ok(Health::None);
    }
    if !kw.eq_ignore_ascii_case("CMD") || cmd.trim().is_empty() {
        return Err(ctx.err(line, "HEALTHCHECK needs NONE or CMD <command>"));
    }
    for name in ["interval", "timeout", "start-period", "start-interval"] {
        if let Some(v) = flag_value(ctx, line, &flags, name)? {
            if parse_duration(&v).is_none() {
                return Err(ctx.err(line, format!("HEALTHCHECK --{name}={v}: not a duration")));
            }
        }
    }
    let retries = match flag_value(ctx, line, &flags, "retries")? {
        Some(v) => Some(
            v.parse::<u32>()
                .map_err(|_| ctx.err(line, format!("HEALTHCHECK --retries={v}: not a number")))?,
        ),
        None => None,
    };
    Ok(Health::Check {
        command: command_form(cmd),
        interval: flag_value(ctx, line, &flags, "interval")?,
        timeout: flag_value(ctx, line, &flags, "timeout")?,
        start_period: flag_value(ctx, line, &flags, "start-period")?,
        start_interval: flag_value(ctx, line, &flags, "start-interval")?,
        retries,
    })
}

/// A Go-style duration (`30s`, `1m30s`, `500ms`, `1h`) in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * factor;
        rest = &rest[unit_end..];
    }
    Some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Dockerfile {
        parse("Dockerfile", text).unwrap()
    }

    fn err(text: &str) -> ParseError {
        parse("Dockerfile", text).unwrap_err()
    }

    #[test]
    fn multi_stage_with_meta_args() {
        let df = p(
            "ARG BASE=busybox\nFROM ${BASE} AS Build\nRUN echo hi\n\nFROM scratch\nCOPY --from=build /out /out\n",
        );
        assert_eq!(df.meta_args.len(), 1);
        assert_eq!(df.stages.len(), 2);
        assert_eq!(df.stages[0].name.as_deref(), Some("build"));
        assert_eq!(df.stages[0].base, "${BASE}");
        assert_eq!(df.stages[1].base, "scratch");
        assert_eq!(df.stages[1].line, 5);
        let Kind::Copy(c) = &df.stages[1].instructions[0].kind else {
            panic!("not a COPY")
        };
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(c.sources, vec!["/out"]);
        assert_eq!(c.dest, "/out");
        assert!(df.stage("BUILD").is_some());
        assert_eq!(df.stage("1").map(|s| s.index), Some(1));
    }

    #[test]
    fn run_forms_shell_and_continuations() {
        let df = p(
            "FROM x\nRUN echo a \\\n  # a comment inside\n\n  && echo b\nRUN [\"/bin/echo\", \"x y\"]\nSHELL [\"/bin/ash\", \"-eo\", \"pipefail\", \"-c\"]\nRUN --network=none true\n",
        );
        let ins = &df.stages[0].instructions;
        assert_eq!(ins[0].line, 2);
        assert_eq!(
            ins[0].kind,
            Kind::Run {
                command: CommandForm::Shell("echo a   && echo b".into()),
                network: None,
                heredocs: vec![]
            }
        );
        assert!(
            matches!(&ins[1].kind, Kind::Run { command: CommandForm::Exec(a), .. } if a == &["/bin/echo", "x y"])
        );
        assert!(matches!(&ins[2].kind, Kind::Shell(s) if s.len() == 4));
        assert!(matches!(&ins[3].kind, Kind::Run { network: Some(n), .. } if n == "none"));
        assert_eq!(ins[3].line, 8);
    }

    #[test]
    fn escape_directive_and_syntax() {
        let df =
            p("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\nRUN echo a `\n  b\nCOPY a\\b c\n");
        assert_eq!(df.escape, '`');
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
        let ins = &df.stages[0].instructions;
        assert!(
            matches!(&ins[0].kind, Kind::Run { command: CommandForm::Shell(s), .. } if s == "echo a   b")
        );
        assert!(matches!(&ins[1].kind, Kind::Copy(c) if c.sources == ["a\\b"]));
        // A directive after a comment is only a comment.
        let df = p("# hello\n# escape=`\nFROM x\nRUN a \\\n b\n");
        assert_eq!(df.escape, '\\');
        assert!(err("# escape=x\nFROM a\n").message.contains("escape"));
    }

    #[test]
    fn heredocs() {
        let df = p(
            "FROM x\nRUN <<EOF\necho one\necho $HOME\nEOF\nCOPY <<-'CONF' /etc/app.conf\n\tkey=$v\n\tCONF\nRUN echo after\n",
        );
        let ins = &df.stages[0].instructions;
        let Kind::Run { heredocs, .. } = &ins[0].kind else {
            panic!()
        };
        assert_eq!(heredocs[0].name, "EOF");
        assert_eq!(heredocs[0].content, "echo one\necho $HOME\n");
        assert!(heredocs[0].expand);
        let Kind::Copy(c) = &ins[1].kind else {
            panic!()
        };
        assert_eq!(c.sources, vec!["<<-'CONF'"]);
        assert_eq!(c.heredocs[0].content, "key=$v\n");
        assert!(!c.heredocs[0].expand);
        assert_eq!(ins[2].line, 9);
        assert!(
            err("FROM x\nRUN <<EOF\necho\n")
                .message
                .contains("not terminated")
        );
    }

    #[test]
    fn env_label_arg_forms() {
        let df = p(
            "FROM x\nENV A=1 B=\"two words\" C=x\\ y\nENV LEGACY some value here\nLABEL a.b=c \"k\"=v\nARG X Y=2\n",
        );
        let ins = &df.stages[0].instructions;
        assert_eq!(
            ins[0].kind,
            Kind::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"two words\"".into()),
                ("C".into(), "x\\ y".into())
            ])
        );
        assert_eq!(
            ins[1].kind,
            Kind::Env(vec![("LEGACY".into(), "some value here".into())])
        );
        assert!(matches!(&ins[2].kind, Kind::Label(l) if l.len() == 2));
        assert_eq!(
            ins[3].kind,
            Kind::Arg(vec![("X".into(), None), ("Y".into(), Some("2".into()))])
        );
        assert!(err("FROM x\nLABEL novalue\n").message.contains("key=value"));
    }

    #[test]
    fn other_instructions() {
        let df = p(
            "FROM x\nWORKDIR /app\nUSER 1000:1000\nCMD [\"sh\"]\nENTRYPOINT exec top\nEXPOSE 80 53/udp\nVOLUME [\"/data\"]\nVOLUME /a /b\nSTOPSIGNAL SIGQUIT\nHEALTHCHECK --interval=5s --retries=3 CMD wget -q localhost\nHEALTHCHECK NONE\nONBUILD RUN echo child\nMAINTAINER me\n",
        );
        let kinds: Vec<&str> = df.stages[0]
            .instructions
            .iter()
            .map(|i| i.kind.keyword())
            .collect();
        assert_eq!(
            kinds,
            [
                "WORKDIR",
                "USER",
                "CMD",
                "ENTRYPOINT",
                "EXPOSE",
                "VOLUME",
                "VOLUME",
                "STOPSIGNAL",
                "HEALTHCHECK",
                "HEALTHCHECK",
                "ONBUILD",
                "MAINTAINER"
            ]
        );
        let ins = &df.stages[0].instructions;
        assert!(matches!(&ins[6].kind, Kind::Volume(v) if v == &["/a", "/b"]));
        assert!(
            matches!(&ins[8].kind, Kind::Healthcheck(Health::Check { retries: Some(3), interval: Some(i), .. }) if i == "5s")
        );
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("5x"), None);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = err("FROM x\n\nRUN ok\nFROBNICATE now\n");
        assert_eq!(e.line, 4);
        assert_eq!(
            e.to_string(),
            "Dockerfile:4: unknown instruction: FROBNICATE"
        );
        assert_eq!(err("RUN x\nFROM y\n").line, 1);
        assert!(err("# nothing\n").message.contains("no FROM"));
        assert!(err("FROM a b c d\n").message.contains("AS name"));
        assert!(
            err("FROM x\nCOPY onlyone\n")
                .message
                .contains("destination")
        );
        assert!(
            err("FROM x\nCOPY --nope=1 a b\n")
                .message
                .contains("--nope")
        );
        assert!(
            err("FROM x\nCOPY --chmod=u+x a b\n")
                .message
                .contains("octal")
        );
        assert!(
            err("FROM x\nRUN --mount=type=cache x\n")
                .message
                .contains("--mount")
        );
        assert!(
            err("FROM x\nONBUILD FROM y\n")
                .message
                .contains("not allowed")
        );
        assert!(err("FROM x\nSHELL sh -c\n").message.contains("JSON"));
        assert!(
            err("FROM x\nHEALTHCHECK --interval=soon CMD x\n")
                .message
                .contains("duration")
        );
        assert!(err("FROM x\nENV A=\"open\n").message.contains("quote"));
        // Bad input never panics.
        for text in [
            "FROM",
            "FROM x\nCOPY",
            "FROM x\nRUN <<",
            "\u{0}\u{1}",
            "FROM x\nENV =",
        ] {
            let _ = parse("Dockerfile", text);
        }
    }
}
