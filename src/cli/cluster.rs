//! `threatpilot cluster [--log-format FORMAT] FILE...`: one JSON object per
//! input line, `{"line": N, "template_id": "...", "template": "..."}`.
//!
//! Templates are reported in their final state (after every line has been
//! seen), as the Loghub benchmark scores them. With `--log-format` only the
//! `<Content>` part is clustered; lines that do not match the format are
//! clustered whole.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::cluster::logformat::LogFormat;
use crate::cluster::{Drain, DrainConfig};
use crate::event::template_id_string;

#[derive(clap::Args)]
pub struct Args {
    /// Files to cluster (`-` for stdin); line numbers run on across files.
    #[arg(required = true)]
    files: Vec<String>,
    /// Loghub header syntax, e.g. `<Date> <Time> <Level> <Component>: <Content>`.
    #[arg(long)]
    log_format: Option<String>,
}

/// Clusters lines and returns each line's final cluster index, with the miner.
pub fn cluster_lines<'a>(
    lines: impl Iterator<Item = &'a str>,
    format: Option<&LogFormat>,
    config: DrainConfig,
) -> (Drain, Vec<usize>) {
    let mut drain = Drain::new(config);
    let assigned = lines
        .map(|line| {
            let content = format.and_then(|f| f.content(line)).unwrap_or(line);
            drain.add(content)
        })
        .collect();
    (drain, assigned)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let format = args
        .log_format
        .as_deref()
        .map(LogFormat::compile)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let mut lines = Vec::new();
    for path in &args.files {
        crate::cli_support::for_each_line(crate::cli_support::open(path)?, |l| {
            lines.push(l.to_owned())
        })
        .with_context(|| format!("cannot read {path}"))?;
    }
    let (drain, assigned) = cluster_lines(
        lines.iter().map(String::as_str),
        format.as_ref(),
        DrainConfig::default(),
    );
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (i, idx) in assigned.iter().enumerate() {
        let c = drain.cluster(*idx);
        let row = serde_json::json!({"line": i + 1, "template_id": template_id_string(c.id), "template": &*c.text});
        if writeln!(out, "{row}").is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
