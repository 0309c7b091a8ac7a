//! `threatpilot sql "SELECT …"`: SQL over the embedded store's Parquet
//! tables with DataFusion, or, with `--clickhouse URL`, the same query sent
//! to ClickHouse. Output is a table, JSON lines (`--format json`) or CSV.
//!
//! Both stores offer the same tables (`events`, `findings`, `templates`,
//! `incidents`, `actions`, `audit`) and the views `findings_latest` and
//! `templates_latest` (the newest version of each), so analysts' queries
//! run on either; see the README for the dialect notes.

use std::io::Write;
use std::process::ExitCode;

use datafusion::arrow::record_batch::RecordBatch;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OutFormat {
    Table,
    Json,
    Csv,
}

#[derive(clap::Args)]
pub struct Args {
    /// The query.
    query: String,
    /// The embedded store's data folder (a pipeline's `parquet` sink `dir`).
    #[arg(long, default_value = "out/data")]
    data: String,
    /// Send the query to this ClickHouse (HTTP URL) instead.
    #[arg(long)]
    clickhouse: Option<String>,
    /// The ClickHouse database.
    #[arg(long, default_value = "threatpilot")]
    database: String,
    #[arg(long, value_enum, default_value = "table")]
    format: OutFormat,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    match &args.clickhouse {
        Some(url) => rt.block_on(clickhouse(url, &args)),
        None => rt.block_on(embedded(&args)),
    }
}

async fn embedded(args: &Args) -> anyhow::Result<ExitCode> {
    let ctx = crate::store::parquet::session(std::path::Path::new(&args.data)).await?;
    let batches = ctx.sql(&args.query).await?.collect().await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    print(&batches, args.format, &mut out)?;
    Ok(ExitCode::SUCCESS)
}

fn print(batches: &[RecordBatch], format: OutFormat, out: &mut impl Write) -> anyhow::Result<()> {
    use datafusion::arrow;
    match format {
        OutFormat::Table => writeln!(
            out,
            "{}",
            arrow::util::pretty::pretty_format_batches(batches)?
        )?,
        OutFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut *out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        OutFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for b in batches {
                w.write(b)?;
            }
        }
    }
    Ok(())
}

async fn clickhouse(url: &str, args: &Args) -> anyhow::Result<ExitCode> {
    let format = match args.format {
        OutFormat::Table => "PrettyCompactNoEscapes",
        OutFormat::Json => "JSONEachRow",
        OutFormat::Csv => "CSVWithNames",
    };
    let query = format!(
        "{} FORMAT {format}",
        args.query.trim().trim_end_matches(';')
    );
    let resp = reqwest::Client::new()
        .post(url)
        .query(&[("database", args.database.as_str())])
        .body(query)
        .send()
        .await?;
    let status = resp.status();
    let body = resp.text().await?;
    if !status.is_success() {
        anyhow::bail!("clickhouse answered {status}: {}", body.trim());
    }
    print!("{body}");
    Ok(ExitCode::SUCCESS)
}
