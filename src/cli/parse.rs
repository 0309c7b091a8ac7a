//! `threatpilot parse FILE...`: one ECS event per input line as JSON.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::parse::{Format, SourceState, parse_into};

#[derive(clap::Args)]
pub struct Args {
    /// Files to parse (`-` for stdin).
    #[arg(required = true)]
    files: Vec<String>,
    /// Format of every line (default: detected per line).
    #[arg(long, value_enum, default_value = "auto")]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let now = crate::time::now_ms();
    for path in &args.files {
        let mut state = SourceState::new(args.format, now);
        state.file_path = (path != "-").then(|| path.as_str().into());
        let mut events = Vec::new();
        let mut write_err = None;
        crate::cli_support::for_each_record(
            Some(path.as_str()),
            crate::cli_support::open(path)?,
            |line| {
                events.clear();
                parse_into(line, &mut state, now, &mut events);
                for ev in &events {
                    if let Err(e) = serde_json::to_writer(&mut out, &ev.to_json())
                        .map_err(std::io::Error::from)
                        .and_then(|_| out.write_all(b"\n"))
                    {
                        write_err.get_or_insert(e);
                    }
                }
            },
        )
        .with_context(|| format!("cannot read {path}"))?;
        if let Some(e) = write_err {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
