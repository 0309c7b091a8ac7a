//! The NATS connector: a command message per action, sent as a request to
//! a subject templated per host (`threatpilot.commands.{context.host}`),
//! for an agent on that host to carry out. The body is the action as JSON;
//! the agent answers `{"ok": true|false, "output": "…"}`. A value placed
//! in the subject must be one plain token (no `.`, `*`, `>` or spaces), so
//! it cannot address another agent. The `Nats-Msg-Id` header is the action
//! id, so a resent command is recognisably the same one.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ActionValues, ConnectorError, connector_var};
use crate::respond::action::Action;
use crate::respond::template::Template;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsSpec {
    pub name: String,
    /// Server URL (default: `THREATPILOT_NATS_URL`, else nats://127.0.0.1:4222).
    #[serde(default)]
    pub url: Option<String>,
    /// Subject template.
    pub subject: String,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_timeout() -> u64 {
    5000
}

impl NatsSpec {
    pub fn compile(&self) -> Result<Template, String> {
        Template::compile(&self.subject, connector_var(false))
    }
}

pub struct Nats {
    client: async_nats::Client,
    subject: Template,
    timeout: Duration,
}

#[derive(Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    output: String,
}

fn token(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        v.to_owned()
    } else {
        // refused by the check below: a subject token never carries it
        "\u{0}".into()
    }
}

impl Nats {
    pub async fn connect(spec: &NatsSpec) -> Result<Nats, String> {
        let url = spec
            .url
            .clone()
            .or_else(|| std::env::var("THREATPILOT_NATS_URL").ok())
            .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(&url)
            .await
            .map_err(|e| format!("connector {}: {url}: {e}", spec.name))?;
        Ok(Nats {
            client,
            subject: spec.compile()?,
            timeout: Duration::from_millis(spec.timeout_ms),
        })
    }

    pub async fn execute(&self, a: &Action) -> Result<String, ConnectorError> {
        let subject = self
            .subject
            .render_with(
                &ActionValues {
                    action: a,
                    secret: None,
                },
                token,
            )
            .map_err(ConnectorError::Refused)?;
        if subject.contains('\u{0}') {
            return Err(ConnectorError::Refused(
                "a value in the subject is not one plain token".into(),
            ));
        }
        let body = serde_json::to_vec(a).map_err(|e| ConnectorError::Refused(e.to_string()))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", a.action_id.as_str());
        let req = async_nats::Request::new()
            .headers(headers)
            .payload(body.into())
            .timeout(Some(self.timeout));
        let msg = self
            .client
            .send_request(subject.clone(), req)
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::TimedOut => {
                    ConnectorError::Timeout(self.timeout.as_millis() as u64)
                }
                _ => ConnectorError::External {
                    message: format!("{subject}: {e}"),
                    retry: true,
                },
            })?;
        let reply: Reply =
            serde_json::from_slice(&msg.payload).map_err(|e| ConnectorError::External {
                message: format!("{subject}: the agent's answer is not {{ok, output}}: {e}"),
                retry: false,
            })?;
        if reply.ok {
            Ok(format!("{subject}: {}", reply.output))
        } else {
            Err(ConnectorError::External {
                message: format!("{subject}: {}", reply.output),
                retry: false,
            })
        }
    }
}
