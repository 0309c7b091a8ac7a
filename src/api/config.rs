//! Pipeline-file settings of the service API.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on (`127.0.0.1:9464`; port 0 picks a free one and
    /// logs it).
    pub listen: String,
    /// Bearer tokens; without this section the API is open (bind it to
    /// loopback then).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Findings kept for the findings API (latest version of each, newest
    /// kept when over).
    #[serde(default = "default_max_findings")]
    pub max_findings: usize,
    /// The web console under `/console` (on by default).
    #[serde(default)]
    pub console: crate::console::ConsoleConfig,
}

fn default_max_findings() -> usize {
    10_000
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// A YAML file with more tokens, in the same shape (`[{name, role, sha256}]`).
    #[serde(default)]
    pub tokens_file: Option<String>,
    /// Ingestion endpoints (Loki push, Alertmanager webhook) need a token
    /// with the `ingest` or `admin` role.
    #[serde(default = "yes")]
    pub ingest: bool,
    /// `/metrics` answers without a token (Prometheus scrapes it).
    #[serde(default = "yes")]
    pub public_metrics: bool,
}

fn yes() -> bool {
    true
}

/// A token as stored: its SHA-256, never the token itself
/// (`threatpilot token new` makes one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub role: Role,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
}

/// What a token may do. Viewers read; responders also act on incidents;
/// admins do everything; `ingest` tokens may only push data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Responder,
    Admin,
    Ingest,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body as sent (compressed), bytes.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Largest body once decompressed, bytes (decompression bombs stop here).
    #[serde(default = "default_inflated")]
    pub max_decompressed_bytes: usize,
    /// Ingestion requests per second per client (token, or address without
    /// one), refilled continuously.
    #[serde(default = "default_rate")]
    pub requests_per_sec: f64,
    /// Requests a client may send at once above its rate.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// A request body must arrive within this many seconds.
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    /// How long a push waits for room in the pipeline before it is answered 503.
    #[serde(default = "default_overload_wait")]
    pub overload_wait_ms: u64,
    /// Entries one push may carry (all streams together); more is a 413.
    #[serde(default = "default_max_lines")]
    pub max_lines_per_request: usize,
    /// Seconds a client has to send a request's headers.
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may carry no bytes either way before it is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Connections held at once; past it new ones are closed on accept.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections one client address may hold at once.
    #[serde(default = "default_max_per_client")]
    pub max_connections_per_client: usize,
}

fn default_body() -> usize {
    16 << 20
}
fn default_inflated() -> usize {
    64 << 20
}
fn default_rate() -> f64 {
    200.0
}
fn default_burst() -> u32 {
    400
}
fn default_timeout() -> u64 {
    30
}
fn default_overload_wait() -> u64 {
    1000
}
fn default_max_lines() -> usize {
    100_000
}
fn default_header_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_max_connections() -> usize {
    512
}
fn default_max_per_client() -> usize {
    64
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: default_body(),
            max_decompressed_bytes: default_inflated(),
            requests_per_sec: default_rate(),
            burst: default_burst(),
            request_timeout_secs: default_timeout(),
            overload_wait_ms: default_overload_wait(),
            max_lines_per_request: default_max_lines(),
            header_read_timeout_secs: default_header_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_client: default_max_per_client(),
        }
    }
}

impl LimitsConfig {
    /// The API listener's connection limits.
    pub fn connections(&self) -> crate::listen::ConnLimits {
        crate::listen::ConnLimits {
            max_connections: self.max_connections.max(1),
            max_per_client: self.max_connections_per_client.max(1),
            header_read_timeout: std::time::Duration::from_secs(
                self.header_read_timeout_secs.max(1),
            ),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs.max(1)),
        }
    }
}

impl ApiConfig {
    /// Listen on `addr` with every other setting at its default.
    pub fn on(addr: &str) -> ApiConfig {
        ApiConfig {
            listen: addr.to_owned(),
            auth: None,
            limits: LimitsConfig::default(),
            max_findings: default_max_findings(),
            console: crate::console::ConsoleConfig::default(),
        }
    }
}
