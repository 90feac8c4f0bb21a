//! Pure text for the Compose verbs: service-prefixed, colored log lines; the `ps` table and
//! its JSON; `--scale svc=N` and `KEY=VALUE` parsing; Docker-style durations. No I/O here.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

/// The ANSI colors Compose cycles through for service prefixes.
const COLORS: [u8; 6] = [36, 33, 32, 35, 34, 31];

/// Prefixes log lines with `name | `, padded to the widest name, colored per container when
/// `color` is on. Colors are assigned in first-seen order, so they are stable within a run.
#[derive(Debug, Default)]
pub struct LogPrefixer {
    width: usize,
    color: bool,
    assigned: BTreeMap<String, u8>,
}

impl LogPrefixer {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>, color: bool) -> LogPrefixer {
        let width = names
            .into_iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0);
        LogPrefixer {
            width,
            color,
            assigned: BTreeMap::new(),
        }
    }

    /// `name | line`, widening the column if a longer name turns up.
    pub fn line(&mut self, name: &str, line: &str) -> String {
        self.width = self.width.max(name.chars().count());
        let padded = format!("{name:<w$}", w = self.width);
        if !self.color {
            return format!("{padded}  | {line}");
        }
        let next = COLORS[self.assigned.len() % COLORS.len()];
        let code = *self.assigned.entry(name.to_owned()).or_insert(next);
        format!("\x1b[{code}m{padded}  |\x1b[0m {line}")
    }
}

/// Parses `--scale svc=N` values.
pub fn parse_scale(values: &[String]) -> anyhow::Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for v in values {
        let (svc, n) = v
            .split_once('=')
            .with_context(|| format!("--scale {v}: expected SERVICE=NUMBER"))?;
        if svc.is_empty() {
            bail!("--scale {v}: expected SERVICE=NUMBER");
        }
        let n: u32 = n
            .parse()
            .with_context(|| format!("--scale {v}: {n:?} is not a number of replicas"))?;
        out.insert(svc.to_owned(), n);
    }
    Ok(out)
}

/// Splits `-e KEY=VALUE` (or `KEY`, taken from this process's environment).
pub fn parse_env(values: &[String]) -> Vec<(String, String)> {
    values
        .iter()
        .filter_map(|v| match v.split_once('=') {
            Some((k, val)) => Some((k.to_owned(), val.to_owned())),
            None => std::env::var(v).ok().map(|val| (v.clone(), val)),
        })
        .collect()
}

/// One row of `ps`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PsRow {
    /// The container id (empty while the task has none)
    pub id: String,
    pub name: String,
    pub image: String,
    pub command: String,
    pub service: String,
    pub project: String,
    /// `running`, `exited`, `created`, `paused`, `restarting`
    pub state: String,
    /// `healthy`, `unhealthy`, `starting` or empty
    pub health: String,
    pub exit_code: i32,
    /// `Up 3 seconds (healthy)`, `Exited (1) 2 minutes ago`
    pub status: String,
    /// `127.0.0.1:8080->80/tcp, 9000/tcp`
    pub ports: String,
}

/// The `ps` table, columns as Compose prints them.
pub fn ps_table(rows: &[PsRow]) -> String {
    let header = ["NAME", "IMAGE", "COMMAND", "SERVICE", "STATUS", "PORTS"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.image.clone(),
                quote_command(&r.command),
                r.service.clone(),
                r.status.clone(),
                r.ports.clone(),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |row: [&str; 6]| {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}   ", w = width[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push(header);
    for row in &cells {
        push([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
    }
    out
}

/// Compose shows the command quoted and cut at 20 characters.
fn quote_command(cmd: &str) -> String {
    let cut: String = cmd.chars().take(20).collect();
    if cut.len() < cmd.len() {
        format!("\"{cut}…\"")
    } else {
        format!("\"{cut}\"")
    }
}

/// `ps --format json`: one JSON array, Compose's field names.
pub fn ps_json(rows: &[PsRow]) -> String {
    let list: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "ID": r.id,
                "Name": r.name,
                "Image": r.image,
                "Command": r.command,
                "Service": r.service,
                "Project": r.project,
                "State": r.state,
                "Health": r.health,
                "ExitCode": r.exit_code,
                "Status": r.status,
                "Publishers": r.ports,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

/// Docker's human durations: `Less than a second`, `3 seconds`, `About a minute`, `5 minutes`,
/// `About an hour`, `2 hours`, `3 days`.
pub fn human_duration(secs: u64) -> String {
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

/// The `STATUS` column from a state, its age in seconds, an exit code and the health.
pub fn status_text(state: &str, age_secs: u64, exit_code: i32, health: &str) -> String {
    let age = human_duration(age_secs);
    let health = if health.is_empty() {
        String::new()
    } else {
        format!(" ({health})")
    };
    match state {
        "running" => format!("Up {age}{health}"),
        "paused" => format!("Up {age} (Paused)"),
        "restarting" => format!("Restarting ({exit_code}) {age} ago"),
        "exited" => format!("Exited ({exit_code}) {age} ago"),
        "created" => "Created".into(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_pad_to_the_widest_name_and_color_per_container() {
        let mut p = LogPrefixer::new(["app-web-1", "app-db-1"], false);
        assert_eq!(p.line("app-db-1", "ready"), "app-db-1   | ready");
        assert_eq!(p.line("app-web-1", "GET /"), "app-web-1  | GET /");
        let mut c = LogPrefixer::new(["a-1", "b-1"], true);
        let a = c.line("a-1", "x");
        let b = c.line("b-1", "y");
        assert!(a.starts_with("\x1b[36ma-1"), "{a:?}");
        assert!(b.starts_with("\x1b[33mb-1"), "{b:?}");
        assert_eq!(c.line("a-1", "z"), "\x1b[36ma-1  |\x1b[0m z");
    }

    #[test]
    fn scale_values_parse_or_explain() {
        let m = parse_scale(&["web=3".into(), "worker=0".into()]).expect("parse");
        assert_eq!(m["web"], 3);
        assert_eq!(m["worker"], 0);
        let e = parse_scale(&["web".into()]).unwrap_err().to_string();
        assert!(e.contains("SERVICE=NUMBER"), "{e}");
        assert!(parse_scale(&["web=many".into()]).is_err());
        assert!(parse_scale(&["=3".into()]).is_err());
    }

    #[test]
    fn env_takes_values_or_this_environment() {
        let e = parse_env(&["A=1".into(), "B=x=y".into()]);
        assert_eq!(e, [("A".into(), "1".into()), ("B".into(), "x=y".into())]);
        let unset = parse_env(&["BERTH_TEST_SURELY_UNSET_VARIABLE".into()]);
        assert!(unset.is_empty());
    }

    fn row(name: &str, status: &str) -> PsRow {
        PsRow {
            id: "c0ffee".into(),
            name: name.into(),
            image: "busybox:latest".into(),
            command: "httpd -f -p 80 -h /srv/www".into(),
            service: "web".into(),
            project: "app".into(),
            state: "running".into(),
            health: String::new(),
            exit_code: 0,
            status: status.into(),
            ports: "127.0.0.1:8080->80/tcp".into(),
        }
    }

    #[test]
    fn ps_table_aligns_columns() {
        let t = ps_table(&[
            row("app-web-1", "Up 3 seconds"),
            row("app-web-10", "Up 1 second"),
        ]);
        let lines: Vec<_> = t.lines().collect();
        assert!(lines[0].starts_with("NAME         IMAGE"), "{t}");
        assert!(lines[1].contains("\"httpd -f -p 80 -h /s…\""), "{t}");
        // columns align in characters (the cut command holds a multi-byte "…")
        let col = lines[0].find("STATUS").expect("status column");
        let status: String = lines[1].chars().skip(col).take(12).collect();
        assert_eq!(status, "Up 3 seconds");
    }

    #[test]
    fn ps_json_uses_composes_field_names() {
        let j: serde_json::Value =
            serde_json::from_str(&ps_json(&[row("app-web-1", "Up 3 seconds")])).expect("json");
        assert_eq!(j[0]["Name"], "app-web-1");
        assert_eq!(j[0]["Service"], "web");
        assert_eq!(j[0]["State"], "running");
    }

    #[test]
    fn status_reads_like_docker() {
        assert_eq!(status_text("running", 3, 0, ""), "Up 3 seconds");
        assert_eq!(
            status_text("running", 90, 0, "healthy"),
            "Up About a minute (healthy)"
        );
        assert_eq!(
            status_text("exited", 600, 1, ""),
            "Exited (1) 10 minutes ago"
        );
        assert_eq!(status_text("created", 5, 0, ""), "Created");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
