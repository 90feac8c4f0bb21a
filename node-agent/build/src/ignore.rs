//! Path patterns and `.dockerignore`: Go `filepath.Match` wildcards (`*`, `?`, `[a-z]`,
//! `[^a]`, `\` escapes) per path component, `**` for any number of components, and
//! Docker's ignore rules (comments, `!` exceptions where the last matching line wins, a
//! pattern matching a directory also matching everything under it, leading `/` and `./`
//! meaning the context root). Pure; the caller reads the file.

/// Does `pattern` match the whole of `path` (both `/`-separated, relative)?
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match_segments(&pat, &segs)
}

fn match_segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.first() {
        None => segs.is_empty(),
        Some(&"**") => (0..=segs.len()).any(|skip| match_segments(&pat[1..], &segs[skip..])),
        Some(p) => match segs.first() {
            Some(s) => match_component(p, s) && match_segments(&pat[1..], &segs[1..]),
            None => false,
        },
    }
}

/// Wildcard match of one path component.
fn match_component(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    component_at(&p, 0, &n, 0)
}

fn component_at(p: &[char], mut pi: usize, n: &[char], mut ni: usize) -> bool {
    while pi < p.len() {
        match p[pi] {
            '*' => {
                while pi < p.len() && p[pi] == '*' {
                    pi += 1;
                }
                if pi == p.len() {
                    return true;
                }
                return (ni..=n.len()).any(|start| component_at(p, pi, n, start));
            }
            '?' => {
                if ni >= n.len() {
                    return false;
                }
                pi += 1;
                ni += 1;
            }
            '[' => {
                let Some(&c) = n.get(ni) else { return false };
                let Some((matched, next)) = class(p, pi, c) else {
                    return false;
                };
                if !matched {
                    return false;
                }
                pi = next;
                ni += 1;
            }
            '\\' if pi + 1 < p.len() => {
                if n.get(ni) != Some(&p[pi + 1]) {
                    return false;
                }
                pi += 2;
                ni += 1;
            }
            c => {
                if n.get(ni) != Some(&c) {
                    return false;
                }
                pi += 1;
                ni += 1;
            }
        }
    }
    ni == n.len()
}

/// A `[...]` class at `p[start]`: whether `c` is in it, and the index after `]`. `None` for
/// a malformed class (which then matches nothing).
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            return Some((found != negate, i + 1));
        }
        first = false;
        let lo = if ch == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            ch
        };
        i += 1;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&x| x != ']') {
            let hi = *p.get(i + 1)?;
            i += 2;
            if lo <= c && c <= hi {
                found = true;
            }
        } else if lo == c {
            found = true;
        }
    }
}

/// Does the path contain wildcard characters?
pub fn has_wildcards(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// Normalizes a relative path like Go's `filepath.Clean`, without a leading `/` or `./`:
/// `a/./b/../c/` → `a/c`; the root is `""`.
pub fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out.join("/")
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    pattern: String,
    exception: bool,
}

/// The rules of one `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    rules: Vec<Rule>,
}

impl Ignore {
    /// Parses `.dockerignore` text.
    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = clean(pat);
            if pattern.is_empty() {
                continue;
            }
            rules.push(Rule { pattern, exception });
        }
        Ignore { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `path` (relative to the context, `/`-separated) is kept out of the context.
    /// A rule also matches a path when it matches one of its parent directories.
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path);
        if path.is_empty() {
            return false;
        }
        let mut excluded = false;
        for rule in &self.rules {
            if rule_matches(&rule.pattern, &path) {
                excluded = !rule.exception;
            }
        }
        excluded
    }

    /// Whether some exception could re-include something under the excluded directory
    /// `dir`, so a walk must still look inside it.
    pub fn may_include_under(&self, dir: &str) -> bool {
        let dir = clean(dir);
        self.rules.iter().any(|r| {
            r.exception
                && (r.pattern.starts_with(&format!("{dir}/"))
                    || r.pattern.contains("**")
                    || !r.pattern.contains('/') && has_wildcards(&r.pattern))
        })
    }
}

fn rule_matches(pattern: &str, path: &str) -> bool {
    if glob_match(pattern, path) {
        return true;
    }
    // A pattern naming a directory covers everything in it.
    let mut parent = path;
    while let Some((p, _)) = parent.rsplit_once('/') {
        if glob_match(pattern, p) {
            return true;
        }
        parent = p;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "dir/a.txt"));
        assert!(glob_match("dir/*.txt", "dir/a.txt"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "a/c"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[^a-c]x", "bx"));
        assert!(glob_match("[!a]x", "bx"));
        assert!(glob_match("\\*x", "*x"));
        assert!(!glob_match("\\*x", "ax"));
        assert!(glob_match("**/*.go", "a/b/c.go"));
        assert!(glob_match("**/*.go", "c.go"));
        assert!(glob_match("a/**/z", "a/z"));
        assert!(glob_match("a/**/z", "a/b/c/z"));
        assert!(glob_match("**", "anything/at/all"));
        assert!(!glob_match("[", "["));
        assert!(has_wildcards("src/*.c"));
        assert!(!has_wildcards("src/main.c"));
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean("./a/./b/../c/"), "a/c");
        assert_eq!(clean("/abs"), "abs");
        assert_eq!(clean("."), "");
        assert_eq!(clean("../../x"), "x");
    }

    #[test]
    fn dockerignore_rules() {
        let ig = Ignore::parse(
            "# comment\n\n*.log\n/secret\nbuild/\n!build/keep.txt\n**/*.tmp\ndocs\n!docs/README.md\n",
        );
        assert!(ig.excludes("a.log"));
        assert!(!ig.excludes("sub/a.log"), "*.log is anchored at the root");
        assert!(ig.excludes("secret"));
        assert!(
            ig.excludes("secret/inner/file"),
            "a directory match covers its content"
        );
        assert!(ig.excludes("build/out.o"));
        assert!(!ig.excludes("build/keep.txt"), "the later exception wins");
        assert!(ig.excludes("x/y/z.tmp"));
        assert!(ig.excludes("docs/other.md"));
        assert!(!ig.excludes("docs/README.md"));
        assert!(!ig.excludes("src/main.c"));
        assert!(ig.may_include_under("build"));
        assert!(!ig.may_include_under("secret"));
        assert!(Ignore::parse("# only comments\n").is_empty());
    }
}
