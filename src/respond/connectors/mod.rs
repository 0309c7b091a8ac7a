//! Connectors: how actions are carried out. Responders know what an action
//! means; connectors know wires. Each kind is registered here, in one
//! closed enum, and each escapes values for its own context: URL segments
//! are percent-encoded and JSON bodies built as values (http), arguments
//! are checked against a pattern and passed as argv, never through a shell
//! (command), subject tokens are checked (nats), only parsed addresses are
//! written (nginx), and glob characters are escaped (redis).
//!
//! Secrets are named by reference (an environment variable or a file),
//! read when the connector starts, never written into a template's text,
//! never logged.

pub mod command;
pub mod http;
pub mod nats;
pub mod nginx;
pub mod redis;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::action::Action;
use super::catalogue::ActionKind;
use super::template::{Template, Values, Var};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConnectorSpec {
    /// Templated HTTP requests (an identity provider, a WAF, a CDN API).
    Http(http::HttpSpec),
    /// Allowlisted programs with argument templates (argv, never a shell).
    Command(command::CommandSpec),
    /// NATS request/reply command messages for agents on hosts.
    Nats(nats::NatsSpec),
    /// An nginx deny list: an include file written atomically, then reload.
    Nginx(nginx::NginxSpec),
    /// A Redis session store: revoke a user's session keys.
    Redis(redis::RedisSpec),
}

impl ConnectorSpec {
    pub fn name(&self) -> &str {
        match self {
            ConnectorSpec::Http(c) => &c.name,
            ConnectorSpec::Command(c) => &c.name,
            ConnectorSpec::Nats(c) => &c.name,
            ConnectorSpec::Nginx(c) => &c.name,
            ConnectorSpec::Redis(c) => &c.name,
        }
    }

    /// Whether this connector can carry `kind`.
    pub fn supports(&self, kind: ActionKind) -> bool {
        let k = kind.as_str();
        match self {
            ConnectorSpec::Http(c) => c.requests.contains_key(k),
            ConnectorSpec::Command(c) => c.commands.contains_key(k),
            ConnectorSpec::Nats(_) => true,
            ConnectorSpec::Nginx(_) => matches!(kind, ActionKind::BlockIp | ActionKind::UnblockIp),
            ConnectorSpec::Redis(c) => c.patterns.contains_key(k),
        }
    }

    /// Checks templates, kinds and patterns (no I/O).
    pub fn check(&self) -> Result<(), String> {
        let kinds = |m: Vec<&String>| -> Result<(), String> {
            for k in m {
                if ActionKind::parse(k).is_none() {
                    return Err(format!("unknown action `{k}` in connector {}", self.name()));
                }
            }
            Ok(())
        };
        match self {
            ConnectorSpec::Http(c) => {
                kinds(c.requests.keys().collect())?;
                c.compile().map(|_| ())
            }
            ConnectorSpec::Command(c) => {
                kinds(c.commands.keys().collect())?;
                c.compile().map(|_| ())
            }
            ConnectorSpec::Nats(c) => c.compile().map(|_| ()),
            ConnectorSpec::Nginx(c) => c.check(),
            ConnectorSpec::Redis(c) => {
                kinds(c.patterns.keys().collect())?;
                c.compile().map(|_| ())
            }
        }
    }
}

/// A secret by reference: `{env: NAME}` or `{file: PATH}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
}

/// A resolved secret; its `Debug` never shows it.
#[derive(Clone, Default)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl SecretRef {
    pub fn resolve(&self) -> Result<Secret, String> {
        match (&self.env, &self.file) {
            (Some(v), None) => std::env::var(v)
                .map(Secret)
                .map_err(|_| format!("secret: environment variable {v} is not set")),
            (None, Some(p)) => std::fs::read_to_string(p)
                .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|e| format!("secret: cannot read {p}: {e}")),
            _ => Err("a secret names exactly one of env and file".into()),
        }
    }
}

/// An action's values, for connector templates.
pub struct ActionValues<'a> {
    pub action: &'a Action,
    pub secret: Option<&'a Secret>,
}

impl Values for ActionValues<'_> {
    fn value(&self, var: &Var) -> Option<String> {
        let a = self.action;
        Some(match var {
            Var::Target => a.target.clone(),
            Var::ActionId => a.action_id.clone(),
            Var::IncidentId => a.incident_id.clone(),
            Var::FindingId => a.finding_id.clone(),
            Var::Domain => a.responder.as_str().into(),
            Var::Param(k) => return a.parameters.get(k).cloned(),
            Var::Context(k) => return a.context.get(k).cloned(),
            Var::Secret => return self.secret.map(|s| s.expose().to_owned()),
            _ => return None,
        })
    }
}

/// Names a connector template may use (the secret only where allowed).
pub fn connector_var(secret: bool) -> impl Fn(&Var) -> bool {
    move |v| match v {
        Var::Target
        | Var::ActionId
        | Var::IncidentId
        | Var::FindingId
        | Var::Domain
        | Var::Param(_)
        | Var::Context(_) => true,
        Var::Secret => secret,
        _ => false,
    }
}

/// Why a connector did not carry an action out.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The action's values were refused before anything was sent (the
    /// input's fault; a retry cannot help).
    #[error("refused: {0}")]
    Refused(String),
    /// The far side failed or could not be reached; `retry` says whether
    /// trying again may help.
    #[error("{message}")]
    External { message: String, retry: bool },
    #[error("timed out after {0} ms")]
    Timeout(u64),
}

/// A started connector.
pub enum Connector {
    Http(http::Http),
    Command(command::Command),
    Nats(nats::Nats),
    Nginx(nginx::Nginx),
    Redis(redis::Redis),
}

impl Connector {
    /// Starts a connector: resolves its secret, reads its state (the deny
    /// file), connects where it must.
    pub async fn start(spec: &ConnectorSpec) -> Result<Connector, String> {
        Ok(match spec {
            ConnectorSpec::Http(c) => Connector::Http(http::Http::new(c)?),
            ConnectorSpec::Command(c) => Connector::Command(command::Command::new(c)?),
            ConnectorSpec::Nats(c) => Connector::Nats(nats::Nats::connect(c).await?),
            ConnectorSpec::Nginx(c) => Connector::Nginx(nginx::Nginx::open(c)?),
            ConnectorSpec::Redis(c) => Connector::Redis(redis::Redis::new(c)?),
        })
    }

    /// Carries out one action; the answer is a short description.
    pub async fn execute(&mut self, a: &Action) -> Result<String, ConnectorError> {
        match self {
            Connector::Http(c) => c.execute(a).await,
            Connector::Command(c) => c.execute(a).await,
            Connector::Nats(c) => c.execute(a).await,
            Connector::Nginx(c) => c.execute(a).await,
            Connector::Redis(c) => c.execute(a).await,
        }
    }
}

/// Compiles a map of templates.
pub(crate) fn templates(
    m: &BTreeMap<String, String>,
    secret: bool,
) -> Result<BTreeMap<String, Template>, String> {
    m.iter()
        .map(|(k, v)| Ok((k.clone(), Template::compile(v, connector_var(secret))?)))
        .collect()
}

/// Keeps at most `max` bytes of program or server output.
pub(crate) fn capped(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    if bytes.len() > max {
        format!("{s}… ({} bytes)", bytes.len())
    } else {
        s
    }
}
