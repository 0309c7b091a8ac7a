//! Command-line interface. Each subcommand lives in its own module; output
//! shapes on stdout are contracts that scripts rely on (README, SPEC 13).

mod bench;
mod bench_clickhouse;
mod bench_console;
mod bench_loki;
mod bench_nats;
mod bench_outputs;
mod bench_replay;
mod bench_respond;
mod bench_search;
mod check;
mod cluster;
mod eval;

mod parse;
mod publish;
mod replay;
mod report;
mod respond;
mod search;
mod simulate;
mod sql;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "threatpilot",
    version,
    about = "Streaming detection and response for SOC and SRE teams"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse log lines into ECS events, one JSON object per line.
    Parse(parse::Args),
    /// Group log lines into templates, one JSON object per input line.
    Cluster(cluster::Args),
    /// Replay log files through the pipeline; findings as JSON lines.
    Replay(replay::ReplayArgs),
    /// Run a pipeline file.
    Run(replay::RunArgs),
    /// Check every pipeline and detector file.
    Validate(check::ValidateArgs),
    /// Run the detector fixtures.
    Test(check::TestArgs),
    /// Send lines from files or stdin to NATS JetStream.
    Publish(publish::Args),
    /// Write realistic traffic with injected attacks and the expected findings.
    Simulate(simulate::Args),
    /// Measure throughput, latency and memory of the in-process pipeline.
    Bench(bench::Args),
    /// Write the JSON Schemas of events, findings, detectors and pipelines.
    Schemas {
        #[arg(long, default_value = "schemas")]
        out: String,
    },
    /// Score ThreatPilot against public ground truth.
    Eval(eval::Args),
    /// Run SQL over the stored tables (embedded Parquet, or --clickhouse URL).
    Sql(sql::Args),
    /// The daily report of one day, as Markdown or HTML, from either store.
    Report(report::Args),
    /// Search stored events by fields and words, newest first.
    Search(search::Args),
    /// Make or hash API bearer tokens.
    #[command(subcommand)]
    Token(token::Args),
    /// List, approve or reject actions of a running pipeline.
    Actions(respond::ActionsArgs),
    /// List, show or follow incidents of a running pipeline.
    Incidents(respond::IncidentsArgs),
    /// Check an audit log's hash chain.
    Audit(respond::AuditArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Parse(a) => parse::run(a),
        Command::Cluster(a) => cluster::run(a),
        Command::Replay(a) => replay::replay(a),
        Command::Run(a) => replay::run(a),
        Command::Validate(a) => check::validate(a),
        Command::Test(a) => check::test(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Publish(a) => publish::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Schemas { out } => crate::schema::write(std::path::Path::new(&out))
            .map(|_| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Eval(a) => eval::run(a),
        Command::Token(a) => token::run(a),
        Command::Sql(a) => sql::run(a),
        Command::Search(a) => search::run(a),
        Command::Report(a) => report::run(a),
        Command::Actions(a) => respond::actions(a),
        Command::Incidents(a) => respond::incidents(a),
        Command::Audit(a) => respond::audit(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The runtime every command that does I/O runs on: two worker threads,
/// one per core of the machines this targets.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// The NATS URL: the flag, else `THREATPILOT_NATS_URL`, else the local default.
fn nats_url(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("THREATPILOT_NATS_URL").ok())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("THREATPILOT_LOG")
        .unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
