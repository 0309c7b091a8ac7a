//! `threatpilot token new --name N --role R`: a new API token. The token is
//! printed once, on stdout; stderr shows the entry to add to the pipeline's
//! `api.auth.tokens` (or its tokens file), which holds only the hash.
//! `threatpilot token hash` hashes a token read from stdin.

use std::io::Read;
use std::process::ExitCode;

use crate::api::auth::{hash_token, new_token};
use crate::api::config::Role;

#[derive(clap::Subcommand)]
pub enum Args {
    /// Make a new random token.
    New {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Print the SHA-256 of a token read from stdin.
    Hash,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Viewer,
    Responder,
    Admin,
    Ingest,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args {
        Args::New { name, role } => {
            let token = new_token()?;
            let role = match role {
                RoleArg::Viewer => Role::Viewer,
                RoleArg::Responder => Role::Responder,
                RoleArg::Admin => Role::Admin,
                RoleArg::Ingest => Role::Ingest,
            };
            let role = serde_json::to_value(role)?;
            println!("{token}");
            eprintln!(
                "add to api.auth.tokens:\n  - name: {}\n    role: {}\n    sha256: {}",
                serde_json::Value::String(name),
                role.as_str().unwrap_or_default(),
                hash_token(&token)
            );
        }
        Args::Hash => {
            let mut t = String::new();
            std::io::stdin().read_to_string(&mut t)?;
            println!("{}", hash_token(t.trim()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
