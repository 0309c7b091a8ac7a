//! `threatpilot search QUERY`: the events behind findings, by field values
//! and words, newest first, from the embedded store's search index (see
//! `crate::search` for the query syntax).
//!
//! ```text
//! threatpilot search 'source.ip:203.0.113.50 AND http.response.status_code:401' --since 24h
//! threatpilot search '"failed password" user.name:root' --since 2026-11-21 --format json
//! ```
//! Text output is one line per event (time, dataset, the raw line); JSON
//! output is the stored ECS event per line. Exits 1 when nothing matched.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::search::{INDEX_DIR, Search};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OutFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// Field terms (`source.ip:203.0.113.50`), words and "phrases" of the
    /// line, AND / OR / NOT (`-term`), ranges (`http.response.status_code:[500 TO 599]`),
    /// prefixes (`url.path:/wp-*`) and regexes (`user.name:/svc-.*/`).
    #[arg(allow_hyphen_values = true)]
    query: String,
    /// The embedded store's data folder (a pipeline's `parquet` sink `dir`).
    #[arg(long, default_value = "out/data")]
    data: String,
    /// Events at or after this time: RFC 3339, a day (`2026-11-22`), or an
    /// age (`15m`, `24h`, `7d`).
    #[arg(long)]
    since: Option<String>,
    /// Events before this time (same forms).
    #[arg(long)]
    until: Option<String>,
    /// Most events printed.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(long, value_enum, default_value = "text")]
    format: OutFormat,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let now = crate::time::now_ms();
    let search = Search {
        query: args.query.clone(),
        since: args
            .since
            .as_deref()
            .map(|t| time_arg(t, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|t| time_arg(t, now))
            .transpose()?,
        limit: args.limit.max(1),
    };
    let hits = search.run(&Path::new(&args.data).join(INDEX_DIR))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for hit in &hits {
        match args.format {
            OutFormat::Json => writeln!(out, "{}", hit.event)?,
            OutFormat::Text => {
                let field = |k: &str| hit.event.get(k).and_then(|v| v.as_str()).unwrap_or("-");
                writeln!(
                    out,
                    "{}  {}  {}",
                    crate::time::format_rfc3339(hit.timestamp_ms),
                    field("event.dataset"),
                    field("event.original")
                )?;
            }
        }
    }
    Ok(if hits.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Epoch ms of a time argument: RFC 3339, `YYYY-MM-DD`, or an age before `now`.
fn time_arg(text: &str, now: i64) -> anyhow::Result<i64> {
    let t = text.trim();
    if let Some((ms, used)) = crate::time::parse_rfc3339(t.as_bytes())
        && used == t.len()
    {
        return Ok(ms);
    }
    if let Some(day) = crate::time::parse_day(t) {
        return Ok(day * 86_400_000);
    }
    let unit = |u: &str| match u {
        "s" => Some(1_000),
        "m" => Some(60_000),
        "h" => Some(3_600_000),
        "d" => Some(86_400_000),
        "w" => Some(7 * 86_400_000),
        _ => None,
    };
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, u) = t.split_at(split);
    match (n.parse::<i64>(), unit(u)) {
        (Ok(n), Some(ms)) => Ok(now - n.saturating_mul(ms)),
        _ => anyhow::bail!(
            "cannot read the time `{text}`: give RFC 3339 (2026-11-22T10:00:00Z), a day (2026-11-22) or an age (15m, 24h, 7d)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::time_arg;

    #[test]
    fn times_are_absolute_days_or_ages() {
        let now = 1_795_000_000_000;
        assert_eq!(
            time_arg("2026-11-22T10:00:00Z", now).unwrap(),
            1_795_341_600_000
        );
        assert_eq!(time_arg("2026-11-22", now).unwrap(), 1_795_305_600_000);
        assert_eq!(time_arg("15m", now).unwrap(), now - 900_000);
        assert_eq!(time_arg("7d", now).unwrap(), now - 7 * 86_400_000);
        assert!(time_arg("yesterday", now).is_err());
        assert!(time_arg("10x", now).is_err());
    }
}
