//! Pipeline-file settings of the push and query sources.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::parse::{Format, JsonMapping};

/// `POST /loki/api/v1/push` on the pipeline's API listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LokiPushConfig {
    pub id: String,
    /// Parser for streams whose labels do not name one (`format` label).
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub json_mapping: JsonMapping,
}

/// `POST /alertmanager/webhook` on the pipeline's API listener (payload
/// version 4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    pub id: String,
}

/// Syslog listeners (RFC 3164 and 5424).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    pub id: String,
    /// UDP address (`0.0.0.0:514`); one datagram is one message.
    #[serde(default)]
    pub udp: Option<String>,
    /// TCP address; each connection is octet-counted (RFC 6587) or
    /// newline-framed, told by its first byte.
    #[serde(default)]
    pub tcp: Option<String>,
    /// Longer messages are cut here and marked (`log.truncated`).
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Connections beyond this wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// TCP connections one peer address may hold at once.
    #[serde(default = "default_max_per_peer")]
    pub max_connections_per_client: usize,
    /// A TCP connection silent this long is closed.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// Lines wait at most this long for a batch to fill.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
}

fn default_max_message() -> usize {
    64 * 1024
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_per_peer() -> usize {
    64
}
fn default_idle() -> u64 {
    300
}
fn default_flush_ms() -> u64 {
    50
}

/// A LogQL query run against a Loki server on a schedule (batch mode).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LokiQueryConfig {
    pub id: String,
    /// Loki base URL (`http://loki:3100`).
    pub url: String,
    /// A LogQL log query (`{job="sshd"} |= "Failed"`).
    pub query: String,
    /// Run every this many seconds, over the time since the last run.
    #[serde(default = "default_every")]
    pub every_secs: u64,
    /// Leave the newest seconds for the next run (lines still arriving).
    #[serde(default = "default_delay")]
    pub delay_secs: u64,
    /// Where the first run starts, seconds before now.
    #[serde(default = "default_every")]
    pub lookback_secs: u64,
    /// Entries per request; a full page is followed by the next.
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// `X-Scope-OrgID` to send.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Environment variable holding a bearer token to send.
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub json_mapping: JsonMapping,
}

fn default_every() -> u64 {
    600
}
fn default_delay() -> u64 {
    30
}
fn default_limit() -> usize {
    5000
}
