//! `berth logs` (the app's output, prefixed per container) and `berth events` (task,
//! container and app events as lines or JSON), both streamed from the daemon.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use berth_api::v1;
use clap::Args;

use super::client::{Session, status_error};
use super::render::LogPrefixer;
use super::{Context, project};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow new output
    #[arg(short, long)]
    pub follow: bool,
    /// Lines from the end of each container's output ("all" for everything)
    #[arg(short = 'n', long)]
    pub tail: Option<String>,
    /// Only output since this time (RFC 3339, or a duration like 10m, 1h30m)
    #[arg(long)]
    pub since: Option<String>,
    /// Only output before this time (RFC 3339, or a duration like 10m)
    #[arg(long)]
    pub until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Print lines without the container prefix
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Only display plain text (no colors)
    #[arg(long)]
    pub no_color: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
    pub services: Vec<String>,
}

pub fn logs(ctx: &Context, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let project = project::name(&ctx.project)?;
    let now = now_ms();
    let tail = match args.tail.as_deref() {
        None | Some("all") | Some("-1") => None,
        Some(n) => Some(
            n.parse::<u64>()
                .with_context(|| format!("--tail {n}: expected a number or \"all\""))?,
        ),
    };
    let since = args
        .since
        .as_deref()
        .map(|s| parse_time(s, now).with_context(|| format!("--since {s}")))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| parse_time(s, now).with_context(|| format!("--until {s}")))
        .transpose()?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    let request = v1::LogsRequest {
        project,
        services: args.services.clone(),
        follow: args.follow,
        tail,
        since,
        until,
        timestamps: args.timestamps,
    };
    let color = !args.no_color && std::io::IsTerminal::is_terminal(&std::io::stdout());
    session.rt.block_on(async {
        let mut stream = compose
            .logs(request)
            .await
            .map_err(status_error)?
            .into_inner();
        let mut prefixer = LogPrefixer::new([], color);
        let mut interrupt = interrupt()?;
        loop {
            tokio::select! {
                _ = interrupt.recv() => break,
                line = stream.message() => match line.map_err(status_error)? {
                    Some(line) => print_line(&mut prefixer, &line, args.timestamps, !args.no_log_prefix),
                    None => break,
                },
            }
        }
        anyhow::Ok(())
    })?;
    let _ = std::io::stdout().flush();
    Ok(ExitCode::SUCCESS)
}

/// A Ctrl-C listener for a whole stream: a signal that arrives while the loop is busy stays
/// pending on it instead of being missed.
fn interrupt() -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| anyhow::anyhow!("listening for Ctrl-C: {e}"))
}

/// Writes one log line to stdout, prefixed and timestamped as asked.
pub fn print_line(prefixer: &mut LogPrefixer, line: &v1::LogLine, timestamps: bool, prefix: bool) {
    let text = String::from_utf8_lossy(&line.line);
    let text = if timestamps && line.timestamp > 0 {
        format!("{} {text}", rfc3339_ms(line.timestamp))
    } else {
        text.into_owned()
    };
    let out = if prefix {
        prefixer.line(&line.container_name, &text)
    } else {
        text
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{out}");
}

pub fn events(ctx: &Context, args: &EventsArgs) -> anyhow::Result<ExitCode> {
    let project = project::name(&ctx.project)?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    session.rt.block_on(async {
        let mut stream = compose
            .events(v1::EventsRequest {
                project,
                services: args.services.clone(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        let mut interrupt = interrupt()?;
        loop {
            tokio::select! {
                _ = interrupt.recv() => break,
                event = stream.message() => match event.map_err(status_error)? {
                    Some(event) => {
                        let text = if args.json { event_json(&event) } else { event_line(&event) };
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{text}");
                        let _ = out.flush();
                    }
                    None => break,
                },
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `2024-05-01T10:00:00.123Z container start app-web-1 (service=web, project=app)`
pub fn event_line(e: &v1::Event) -> String {
    let mut attrs: Vec<String> = vec![
        format!("project={}", e.project),
        format!("service={}", e.service),
    ];
    let mut extra: Vec<_> = e.attributes.iter().collect();
    extra.sort();
    attrs.extend(extra.into_iter().map(|(k, v)| format!("{k}={v}")));
    let subject = if e.container_name.is_empty() {
        &e.task_id
    } else {
        &e.container_name
    };
    format!(
        "{} {} {} {subject} ({})",
        rfc3339_ms(e.time),
        e.kind,
        e.action,
        attrs.join(", ")
    )
}

/// Compose's `events --json` fields.
pub fn event_json(e: &v1::Event) -> String {
    serde_json::json!({
        "time": rfc3339_ms(e.time),
        "type": e.kind,
        "action": e.action,
        "id": e.container_id,
        "service": e.service,
        "project": e.project,
        "name": e.container_name,
        "task": e.task_id,
        "attributes": e.attributes,
    })
    .to_string()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A time for `--since`/`--until`: RFC 3339 (`2024-05-01T10:00:00Z`), Unix seconds, or a
/// duration before `now` (`10m`, `1h30m`, `45s`). Milliseconds since the epoch.
pub fn parse_time(text: &str, now_ms: u64) -> anyhow::Result<u64> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs * 1000);
    }
    if let Some(ms) = parse_duration_ms(text) {
        return Ok(now_ms.saturating_sub(ms));
    }
    parse_rfc3339(text).context("expected RFC 3339 time, Unix seconds or a duration like 10m")
}

fn parse_duration_ms(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut any = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'h' => 3_600_000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            'm' => 60_000,
            's' => 1000,
            _ => return None,
        };
        total += n * unit;
        any = true;
    }
    (any && num.is_empty()).then_some(total)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` to milliseconds since the epoch.
fn parse_rfc3339(text: &str) -> anyhow::Result<u64> {
    let bad = || anyhow::anyhow!("not an RFC 3339 time: {text}");
    let (date, rest) = text.split_once(['T', ' ']).ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<anyhow::Result<_>>()?;
    let [y, mo, day] = d[..] else {
        return Err(bad());
    };
    let (clock, offset_secs) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (c, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off[1..].split_once(':').ok_or_else(bad)?;
        let h: i64 = h.parse().map_err(|_| bad())?;
        let m: i64 = m.parse().map_err(|_| bad())?;
        (c, sign * (h * 3600 + m * 60))
    } else {
        (rest, 0)
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let t: Vec<i64> = hms
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<anyhow::Result<_>>()?;
    let [h, mi, s] = t[..] else { return Err(bad()) };
    let ms: i64 = format!("{frac:0<3}")[..3].parse().map_err(|_| bad())?;
    let days = days_from_civil(y, mo, day);
    let secs = days * 86400 + h * 3600 + mi * 60 + s - offset_secs;
    u64::try_from(secs * 1000 + ms).map_err(|_| bad())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // inverse of days_from_civil
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_each_form() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("10m", now).unwrap(), now - 600_000);
        assert_eq!(parse_time("1h30m", now).unwrap(), now - 5_400_000);
        assert_eq!(parse_time("1700000000", now).unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20.5+01:00", now).unwrap(),
            1_700_000_000_500
        );
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("10x", now).is_err());
    }

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z").unwrap(),
            951_782_400_000
        );
    }

    #[test]
    fn events_render_as_lines_and_json() {
        let e = v1::Event {
            time: 1_700_000_000_000,
            kind: "container".into(),
            action: "start".into(),
            project: "app".into(),
            service: "web".into(),
            container_name: "app-web-1".into(),
            container_id: "abc".into(),
            ..Default::default()
        };
        assert_eq!(
            event_line(&e),
            "2023-11-14T22:13:20.000Z container start app-web-1 (project=app, service=web)"
        );
        let j: serde_json::Value = serde_json::from_str(&event_json(&e)).unwrap();
        assert_eq!(j["action"], "start");
        assert_eq!(j["service"], "web");
        assert_eq!(j["type"], "container");
    }
}
