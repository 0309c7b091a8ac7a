//! Response from the command line, through a running pipeline's API:
//!
//! ```text
//! threatpilot actions list [--status pending_approval]
//! threatpilot actions approve ID | reject ID [--reason "…"]
//! threatpilot incidents list | show ID | tail ID
//! threatpilot audit verify [FILE]
//! ```
//! The API address comes from `--api` or `THREATPILOT_API` (default
//! http://127.0.0.1:9464), the token from `THREATPILOT_TOKEN` (never a
//! flag: flags show in process lists).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Remote {
    /// The pipeline's API (default: THREATPILOT_API, else http://127.0.0.1:9464).
    #[arg(long, global = true)]
    api: Option<String>,
}

#[derive(clap::Args)]
pub struct ActionsArgs {
    #[command(subcommand)]
    command: ActionsCommand,
    #[command(flatten)]
    remote: Remote,
}

#[derive(clap::Subcommand)]
enum ActionsCommand {
    /// Actions, newest first, as JSON lines.
    List {
        /// Only actions in this status (e.g. pending_approval).
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        incident: Option<String>,
    },
    /// Approve a pending action (or confirm a verification).
    Approve { id: String },
    /// Reject a pending action (or a verification, which rolls it back).
    Reject {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct IncidentsArgs {
    #[command(subcommand)]
    command: IncidentsCommand,
    #[command(flatten)]
    remote: Remote,
}

#[derive(clap::Subcommand)]
enum IncidentsCommand {
    /// Incidents, highest priority first, as JSON lines.
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// One incident with its timeline and actions (JSON).
    Show { id: String },
    /// Follow an incident's job tail: every phase as it happens.
    Tail { id: String },
}

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// Check the hash chain of an audit log; names the first broken record.
    Verify {
        /// The audit log (default: out/respond/audit.log).
        #[arg(default_value = "out/respond/audit.log")]
        file: String,
    },
}

fn base(r: &Remote) -> String {
    r.api
        .clone()
        .or_else(|| std::env::var("THREATPILOT_API").ok())
        .unwrap_or_else(|| "http://127.0.0.1:9464".into())
        .trim_end_matches('/')
        .to_owned()
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?)
}

fn authed(r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match std::env::var("THREATPILOT_TOKEN") {
        Ok(t) => r.bearer_auth(t),
        Err(_) => r,
    }
}

/// Sends a request; fails with the server's answer unless it is 2xx.
async fn call(r: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
    let resp = authed(r).send().await.context("cannot reach the API")?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("{}: {}", status.as_u16(), text.trim());
    }
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

fn print_each(v: &serde_json::Value, key: &str) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for item in v[key].as_array().into_iter().flatten() {
        writeln!(out, "{item}")?;
    }
    Ok(())
}

pub fn actions(a: ActionsArgs) -> anyhow::Result<ExitCode> {
    let base = base(&a.remote);
    let rt = super::runtime()?;
    rt.block_on(async {
        let c = client()?;
        match a.command {
            ActionsCommand::List { status, incident } => {
                let mut q = Vec::new();
                if let Some(s) = status {
                    q.push(("status", s));
                }
                if let Some(i) = incident {
                    q.push(("incident", i));
                }
                q.push(("limit", "1000".into()));
                let v = call(c.get(format!("{base}/api/v1/actions")).query(&q)).await?;
                print_each(&v, "actions")?;
            }
            ActionsCommand::Approve { id } => {
                let v = call(c.post(format!("{base}/api/v1/actions/{}/approve", enc(&id)))).await?;
                println!("{v}");
            }
            ActionsCommand::Reject { id, reason } => {
                let body = serde_json::json!({ "reason": reason });
                let v = call(
                    c.post(format!("{base}/api/v1/actions/{}/reject", enc(&id)))
                        .json(&body),
                )
                .await?;
                println!("{v}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn enc(s: &str) -> String {
    crate::respond::template::url_escape(s)
}

pub fn incidents(a: IncidentsArgs) -> anyhow::Result<ExitCode> {
    let base = base(&a.remote);
    let rt = super::runtime()?;
    rt.block_on(async {
        let c = client()?;
        match a.command {
            IncidentsCommand::List { status } => {
                let mut q = vec![("limit", "1000".to_owned())];
                if let Some(s) = status {
                    q.push(("status", s));
                }
                let v = call(c.get(format!("{base}/api/v1/incidents")).query(&q)).await?;
                print_each(&v, "incidents")?;
            }
            IncidentsCommand::Show { id } => {
                let v = call(c.get(format!("{base}/api/v1/incidents/{}", enc(&id)))).await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            IncidentsCommand::Tail { id } => tail(&base, &id).await?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints each server-sent event of the job tail as a line:
/// `time phase text`, until the stream ends.
async fn tail(base: &str, id: &str) -> anyhow::Result<()> {
    let c = reqwest::Client::builder().build()?;
    let resp = authed(c.get(format!("{base}/api/v1/incidents/{}/tail", enc(id))))
        .send()
        .await
        .context("cannot reach the API")?;
    if !resp.status().is_success() {
        let s = resp.status().as_u16();
        anyhow::bail!("{s}: {}", resp.text().await.unwrap_or_default().trim());
    }
    let mut resp = resp;
    let mut buf = String::new();
    let stdout = std::io::stdout();
    while let Some(chunk) = resp.chunk().await? {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) {
                let mut out = stdout.lock();
                writeln!(
                    out,
                    "{} {:<12} {}",
                    crate::time::format_rfc3339(v["at_ms"].as_i64().unwrap_or(0)),
                    v["phase"].as_str().unwrap_or(""),
                    v["text"].as_str().unwrap_or("")
                )?;
                out.flush()?;
            }
        }
    }
    Ok(())
}

pub fn audit(a: AuditArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        AuditCommand::Verify { file } => {
            let path = std::path::Path::new(&file);
            match crate::respond::audit::verify(path)
                .with_context(|| format!("cannot read {file}"))?
            {
                crate::respond::audit::Verified::Intact { records, last_hash } => {
                    println!("{file}: intact, {records} records, last hash {last_hash}");
                    Ok(ExitCode::SUCCESS)
                }
                crate::respond::audit::Verified::Broken { seq, line, reason } => {
                    println!("{file}:{line}: record {seq} breaks the chain: {reason}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
