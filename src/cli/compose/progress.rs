//! The progress display of `up`, `down`, `start`, `stop`, …: one line per resource (network,
//! volume, container) with its state. On a terminal the block is redrawn in place; otherwise
//! each change is one plain line; `quiet` prints nothing. Rendering is pure (a board of
//! states in, text out); only [`Display`] writes.

use std::io::Write;

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `tty` on a terminal, `plain` otherwise
    Auto,
    /// redraw one line per resource in place
    Tty,
    /// one line per change
    Plain,
    /// nothing
    Quiet,
}

impl Mode {
    /// Resolves `auto` by whether stderr is a terminal.
    pub fn resolve(self, is_terminal: bool) -> Mode {
        match self {
            Mode::Auto if is_terminal => Mode::Tty,
            Mode::Auto => Mode::Plain,
            m => m,
        }
    }
}

/// One resource's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `Network`, `Volume`, `Container`
    pub kind: String,
    pub name: String,
    pub state: String,
    /// The state is final (shown with a check mark on a terminal).
    pub done: bool,
}

/// The resources in first-seen order with their latest state.
#[derive(Debug, Default, Clone)]
pub struct Board {
    entries: Vec<Entry>,
}

impl Board {
    /// Records a state; returns whether anything changed.
    pub fn set(&mut self, kind: &str, name: &str, state: &str, done: bool) -> bool {
        match self
            .entries
            .iter_mut()
            .find(|e| e.kind == kind && e.name == name)
        {
            Some(e) if e.state == state && e.done == done => false,
            Some(e) => {
                e.state = state.to_owned();
                e.done = done;
                true
            }
            None => {
                self.entries.push(Entry {
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                    state: state.to_owned(),
                    done,
                });
                true
            }
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// The plain line for one entry: ` Container web-1  Started`.
pub fn plain_line(e: &Entry) -> String {
    format!(" {} {}  {}", e.kind, e.name, e.state)
}

/// The terminal block: a header, then one aligned line per entry, states right-aligned.
pub fn tty_block(title: &str, board: &Board, width: usize) -> Vec<String> {
    let done = board.entries.iter().filter(|e| e.done).count();
    let mut lines = vec![format!("[+] {title} {done}/{}", board.entries.len())];
    for e in &board.entries {
        let mark = if e.done { "✔" } else { "⠿" };
        let left = format!(" {mark} {} {}", e.kind, e.name);
        let pad = width
            .saturating_sub(left.chars().count() + e.state.chars().count())
            .max(1);
        lines.push(format!("{left}{}{}", " ".repeat(pad), e.state));
    }
    lines
}

/// Writes progress to stderr in the chosen mode.
pub struct Display {
    mode: Mode,
    title: String,
    board: Board,
    drawn: usize,
}

impl Display {
    pub fn new(mode: Mode, title: &str) -> Display {
        use std::io::IsTerminal;
        Display {
            mode: mode.resolve(std::io::stderr().is_terminal()),
            title: title.to_owned(),
            board: Board::default(),
            drawn: 0,
        }
    }

    pub fn set(&mut self, kind: &str, name: &str, state: &str, done: bool) {
        if !self.board.set(kind, name, state, done) {
            return;
        }
        let mut err = std::io::stderr().lock();
        match self.mode {
            Mode::Quiet | Mode::Auto => {}
            Mode::Plain => {
                if let Some(e) = self
                    .board
                    .entries()
                    .iter()
                    .find(|e| e.kind == kind && e.name == name)
                {
                    let _ = writeln!(err, "{}", plain_line(e));
                }
            }
            Mode::Tty => {
                // move up over the last frame and draw the new one over it
                if self.drawn > 0 {
                    let _ = write!(err, "\x1b[{}A", self.drawn);
                }
                let block = tty_block(&self.title, &self.board, 60);
                for line in &block {
                    let _ = writeln!(err, "\x1b[2K{line}");
                }
                self.drawn = block.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_keeps_first_seen_order_and_reports_changes() {
        let mut b = Board::default();
        assert!(b.set("Network", "app_default", "Creating", false));
        assert!(b.set("Container", "app-web-1", "Created", false));
        assert!(!b.set("Network", "app_default", "Creating", false));
        assert!(b.set("Network", "app_default", "Created", true));
        let names: Vec<_> = b.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["app_default", "app-web-1"]);
        assert_eq!(b.entries()[0].state, "Created");
    }

    #[test]
    fn tty_block_counts_done_and_aligns_states() {
        let mut b = Board::default();
        b.set("Container", "app-web-1", "Started", true);
        b.set("Container", "app-db-1", "Waiting", false);
        let block = tty_block("Running", &b, 40);
        assert_eq!(block[0], "[+] Running 1/2");
        assert!(block[1].starts_with(" ✔ Container app-web-1"));
        assert!(block[1].ends_with("Started"));
        assert_eq!(block[1].chars().count(), 40);
        assert!(block[2].starts_with(" ⠿ Container app-db-1"));
    }

    #[test]
    fn plain_line_names_kind_resource_and_state() {
        let e = Entry {
            kind: "Volume".into(),
            name: "app_data".into(),
            state: "Created".into(),
            done: true,
        };
        assert_eq!(plain_line(&e), " Volume app_data  Created");
    }

    #[test]
    fn auto_mode_follows_the_terminal() {
        assert_eq!(Mode::Auto.resolve(true), Mode::Tty);
        assert_eq!(Mode::Auto.resolve(false), Mode::Plain);
        assert_eq!(Mode::Quiet.resolve(true), Mode::Quiet);
    }
}
