//! `threatpilot simulate`: writes mixed traffic with injected attacks to a
//! folder (one file per stream, as separate hosts would ship them) with
//! `expected.json` beside it, or all lines to stdout with `--stdout`.

use std::io::Write;
use std::process::ExitCode;

use crate::simulate::{SimConfig, Stream, generate};

#[derive(clap::Args)]
pub struct Args {
    /// Folder to write the traffic and expected findings into.
    #[arg(long, default_value = "out/simulated")]
    out: String,
    /// Write every line to stdout instead (for piping).
    #[arg(long)]
    stdout: bool,
    /// Background events to generate (attacks come on top).
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Simulated events per second of event time.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (lines, expected) = generate(&SimConfig {
        events: args.events,
        seed: args.seed,
        events_per_sec: args.rate,
    });
    if args.stdout {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        for l in &lines {
            if writeln!(out, "{}", l.text).is_err() {
                return Ok(ExitCode::SUCCESS);
            }
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&args.out)?;
    for stream in [Stream::Sshd, Stream::Nginx, Stream::App, Stream::Kernel] {
        let path = std::path::Path::new(&args.out).join(stream.file_name());
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for l in lines.iter().filter(|l| l.stream == stream) {
            writeln!(w, "{}", l.text)?;
        }
        w.flush()?;
    }
    std::fs::write(
        std::path::Path::new(&args.out).join("expected.json"),
        serde_json::to_string_pretty(&expected)?,
    )?;
    eprintln!(
        "wrote {} lines and {} expected findings to {}",
        lines.len(),
        expected.len(),
        args.out
    );
    Ok(ExitCode::SUCCESS)
}
