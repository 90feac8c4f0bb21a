//! The Dockerfile front end: text → [`Dockerfile`] (stages of typed instructions), with the
//! parser directives (`# syntax`, `# escape`), line continuations, comments and heredocs.
//! Variables are not expanded here (that needs the build's ARG/ENV state, see [`words`]),
//! so parsing is a pure function of the text. Every error names the file and the line.

mod parse;
pub mod words;

pub use parse::{parse, parse_duration, parse_instruction};

use std::fmt;

/// A parse error: `<file>:<line>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The name used in messages (`Dockerfile`, `app/Dockerfile.dev`, `<inline>`).
    pub file: String,
    /// The escape character (`\` or, by directive, `` ` ``).
    pub escape: char,
    /// `# syntax=` if given (recorded; berth always uses its own front end).
    pub syntax: Option<String>,
    /// `ARG`s before the first `FROM`: usable in `FROM` lines, and in a stage that
    /// re-declares them.
    pub meta_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

/// One `FROM` and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages (0 = first).
    pub index: usize,
    /// `AS name`, lower-cased as Docker does.
    pub name: Option<String>,
    /// The base as written (`busybox:1.36`, `${BASE}`, `scratch`, a stage name).
    pub base: String,
    pub platform: Option<String>,
    pub line: usize,
    pub instructions: Vec<Instruction>,
}

/// One instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// First line (1-based) of the instruction in its file.
    pub line: usize,
    /// The instruction as written, continuations joined (for history and progress).
    pub text: String,
    pub kind: Kind,
}

/// `RUN`/`CMD`/`ENTRYPOINT`/`HEALTHCHECK` command forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    /// Run through the stage's `SHELL` (default `/bin/sh -c`).
    Shell(String),
    /// JSON array: run as is.
    Exec(Vec<String>),
}

/// A heredoc body (`<<EOF … EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// A quoted delimiter (`<<"EOF"`) turns off variable expansion in the body.
    pub expand: bool,
}

/// `COPY` and `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyArgs {
    /// `--from=<stage name|stage index|image>`.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// Sources as written (unexpanded); a heredoc source is named `<<NAME`.
    pub sources: Vec<String>,
    pub dest: String,
    pub heredocs: Vec<Heredoc>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    None,
    Check {
        command: CommandForm,
        interval: Option<String>,
        timeout: Option<String>,
        start_period: Option<String>,
        start_interval: Option<String>,
        retries: Option<u32>,
    },
}

/// The instruction set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Run {
        command: CommandForm,
        network: Option<String>,
        heredocs: Vec<Heredoc>,
    },
    Copy(CopyArgs),
    Add(CopyArgs),
    /// Raw `key`, raw `value` (quotes kept, expanded at build time).
    Env(Vec<(String, String)>),
    /// Name and raw default.
    Arg(Vec<(String, Option<String>)>),
    Label(Vec<(String, String)>),
    Workdir(String),
    User(String),
    Cmd(CommandForm),
    Entrypoint(CommandForm),
    Shell(Vec<String>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    Healthcheck(Health),
    /// The trigger instruction, stored as text in the image (`OnBuild`).
    Onbuild(String),
    Maintainer(String),
}

impl Kind {
    /// The keyword, upper-case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Kind::Run { .. } => "RUN",
            Kind::Copy(_) => "COPY",
            Kind::Add(_) => "ADD",
            Kind::Env(_) => "ENV",
            Kind::Arg(_) => "ARG",
            Kind::Label(_) => "LABEL",
            Kind::Workdir(_) => "WORKDIR",
            Kind::User(_) => "USER",
            Kind::Cmd(_) => "CMD",
            Kind::Entrypoint(_) => "ENTRYPOINT",
            Kind::Shell(_) => "SHELL",
            Kind::Expose(_) => "EXPOSE",
            Kind::Volume(_) => "VOLUME",
            Kind::StopSignal(_) => "STOPSIGNAL",
            Kind::Healthcheck(_) => "HEALTHCHECK",
            Kind::Onbuild(_) => "ONBUILD",
            Kind::Maintainer(_) => "MAINTAINER",
        }
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Dockerfile {
    /// The stage named `name` (case-insensitive) or with that index.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
    }
}
