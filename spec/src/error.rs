//! Errors and warnings of the loader. Every error names the file and, where one is known,
//! the line and column, so the CLI can print it as one line.

use std::fmt;
use std::path::PathBuf;

/// A place in a Compose file. `line` and `column` are 1-based; 0 means "not known".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn file(file: impl Into<PathBuf>) -> Self {
        Location {
            file: file.into(),
            line: 0,
            column: 0,
        }
    }

    pub fn at(file: impl Into<PathBuf>, line: usize, column: usize) -> Self {
        Location {
            file: file.into(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        Ok(())
    }
}

/// One failure of loading a project. Each variant carries where it happened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed YAML, or input rejected before it is read (too deep, too many aliases).
    #[error("{location}: {message}")]
    Syntax { location: Location, message: String },
    /// A key the Compose Specification does not define (`key` is the dotted path).
    #[error("{location}: unknown key `{key}`")]
    UnknownKey { location: Location, key: String },
    /// A value of the wrong type or form, or a failed validation rule.
    #[error("{location}: {message}")]
    Invalid { location: Location, message: String },
    /// `${VAR:?message}` / `${VAR?message}` with the variable unset (or empty for `:?`).
    #[error("{location}: required variable {variable} is missing a value: {message}")]
    RequiredVariable {
        location: Location,
        variable: String,
        message: String,
    },
    /// A dependency cycle; `path` starts and ends with the same service.
    #[error("dependency cycle between services: {}", path.join(" -> "))]
    Cycle { path: Vec<String> },
    /// No Compose file found, or a project-level problem without a single place.
    #[error("{0}")]
    Project(String),
}

/// Something worth telling the user that does not stop loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub location: Option<Location>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
