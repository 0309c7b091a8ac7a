//! `threatpilot publish --subject logs.sshd.web-1 FILE...`: send lines to
//! JetStream with message ids; prints what the server stored as JSON.

use std::process::ExitCode;

use crate::nats::publish::{PublishOptions, publish};

#[derive(clap::Args)]
pub struct Args {
    /// Files to send (`-` for stdin).
    #[arg(required = true)]
    files: Vec<String>,
    /// Subject: `logs.<dataset>.<host>` or `alerts.<source>`.
    #[arg(long)]
    subject: String,
    /// NATS server URL (default: THREATPILOT_NATS_URL, else nats://127.0.0.1:4222).
    #[arg(long)]
    nats_url: Option<String>,
    /// Lines per message (more than one sets the batch header).
    #[arg(long, default_value_t = 1)]
    lines_per_message: usize,
    /// Message id prefix (default: derived from each file, so a re-send is deduplicated).
    #[arg(long)]
    id_prefix: Option<String>,
    /// Parser the worker should use (sets the format header).
    #[arg(long)]
    format: Option<String>,
    /// Stream to create when none captures the subject.
    #[arg(long, default_value = "THREATPILOT_INPUT")]
    stream: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let url = super::nats_url(args.nats_url.clone());
    let opts = PublishOptions {
        subject: args.subject,
        lines_per_message: args.lines_per_message,
        id_prefix: args.id_prefix,
        format: args.format,
        stream: args.stream,
    };
    let rt = super::runtime()?;
    let report = rt.block_on(async {
        let client = crate::nats::connect(&url, "threatpilot-publish").await?;
        let js = async_nats::jetstream::new(client.clone());
        let report = publish(&js, &args.files, &opts).await?;
        client.flush().await.ok();
        Ok::<_, anyhow::Error>(report)
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}
