//! Key paths into a Compose document (`services.web.ports[0]`). The model reports every
//! error at such a path; the loader's source map turns it into `file:line:column`.

use std::fmt;

/// One step of a key path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

impl PathSeg {
    pub fn key(k: impl Into<String>) -> Self {
        PathSeg::Key(k.into())
    }
}

impl From<&str> for PathSeg {
    fn from(k: &str) -> Self {
        PathSeg::Key(k.to_string())
    }
}

impl From<usize> for PathSeg {
    fn from(i: usize) -> Self {
        PathSeg::Index(i)
    }
}

/// Renders a path the way Compose prints it in messages: keys joined by dots, indexes in
/// brackets (`services.web.ports[0]`). The empty path renders as `(root)`.
pub struct DisplayPath<'a>(pub &'a [PathSeg]);

impl fmt::Display for DisplayPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(root)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSeg::Key(k) if i == 0 => f.write_str(k)?,
                PathSeg::Key(k) => write!(f, ".{k}")?,
                PathSeg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Builds a path from mixed keys and indexes: `path!["services", name, "ports", 0]`.
#[macro_export]
macro_rules! key_path {
    ($($seg:expr),* $(,)?) => {
        vec![$($crate::path::PathSeg::from($seg)),*]
    };
}

impl From<&String> for PathSeg {
    fn from(k: &String) -> Self {
        PathSeg::Key(k.clone())
    }
}

impl From<String> for PathSeg {
    fn from(k: String) -> Self {
        PathSeg::Key(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_keys_and_indexes() {
        let p = key_path!["services", "web", "ports", 0usize, "target"];
        assert_eq!(DisplayPath(&p).to_string(), "services.web.ports[0].target");
        assert_eq!(DisplayPath(&[]).to_string(), "(root)");
    }
}
