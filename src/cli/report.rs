//! `threatpilot report`: the daily report of one day from either store, as
//! Markdown or self-contained HTML, to stdout or a file.

use std::path::Path;
use std::process::ExitCode;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Md,
    Html,
}

#[derive(clap::Args)]
pub struct Args {
    /// The day (`YYYY-MM-DD`); yesterday when absent.
    #[arg(long)]
    date: Option<String>,
    /// The time zone whose midnights bound the day (IANA name).
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// The embedded store's data folder (a pipeline's `parquet` sink `dir`).
    #[arg(long, default_value = "out/data")]
    data: String,
    /// Read ClickHouse (HTTP URL) instead.
    #[arg(long)]
    clickhouse: Option<String>,
    #[arg(long, default_value = "threatpilot")]
    database: String,
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
    /// Write here instead of stdout.
    #[arg(long)]
    out: Option<String>,
    /// The detectors whose silence is reported (their ids).
    #[arg(long, default_value = "detectors")]
    detectors: String,
    /// MaxMind-format databases (Country or City, ASN) that add country
    /// and AS to the top addresses; repeatable.
    #[arg(long)]
    geoip: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tz: chrono_tz::Tz = args.timezone.parse().map_err(|_| {
        anyhow::anyhow!(
            "unknown time zone {:?} (an IANA name such as Europe/Berlin)",
            args.timezone
        )
    })?;
    let date = match &args.date {
        Some(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|e| anyhow::anyhow!("--date {d:?}: {e} (YYYY-MM-DD)"))?,
        None => crate::report::schedule::yesterday(tz),
    };
    let day = crate::report::Day::new(date, tz)?;
    let detectors = detector_ids(Path::new(&args.detectors));
    let geo = crate::report::geo::Geo::open(&args.geoip)?;
    let started = std::time::Instant::now();
    let rt = super::runtime()?;
    let mut report = rt.block_on(async {
        let src = match &args.clickhouse {
            Some(url) => crate::report::source::Source::clickhouse(url, &args.database, None)?,
            None => crate::report::source::Source::embedded(Path::new(&args.data)).await?,
        };
        crate::report::gather(&src, &day, &detectors).await
    })?;
    geo.enrich(&mut report);
    let text = match args.format {
        Format::Md => crate::report::markdown::render(&report, &day),
        Format::Html => crate::report::html::render(&report, &day),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            eprintln!(
                "report {} ({}): {} findings, {} incidents, written to {path} in {} ms",
                report.date,
                report.timezone,
                report.findings,
                report.incidents_total,
                started.elapsed().as_millis()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The ids of the detectors in `dir`; none when it cannot be read (the
/// report then names only detectors that fired once and went silent).
pub fn detector_ids(dir: &Path) -> Vec<String> {
    match crate::detect::load_dir(dir) {
        Ok(ds) => ds.into_iter().map(|d| d.id).collect(),
        Err(_) => Vec::new(),
    }
}
