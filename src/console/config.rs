//! Pipeline-file settings of the console (`api: {console: …}`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console under `/console`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A session unused this long ends (seconds).
    #[serde(default = "default_idle")]
    pub session_idle_secs: u64,
    /// A session ends this long after login, used or not (seconds).
    #[serde(default = "default_max_age")]
    pub session_max_secs: u64,
    /// Sessions held at once; past it the longest unused ends.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Mark the session cookie `Secure` (set it when a TLS proxy fronts
    /// the API).
    #[serde(default)]
    pub secure_cookie: bool,
    /// Rows the query page shows at most.
    #[serde(default = "default_rows")]
    pub query_max_rows: usize,
    /// Seconds a query page query may run.
    #[serde(default = "default_query_secs")]
    pub query_timeout_secs: u64,
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            enabled: true,
            session_idle_secs: default_idle(),
            session_max_secs: default_max_age(),
            max_sessions: default_max_sessions(),
            secure_cookie: false,
            query_max_rows: default_rows(),
            query_timeout_secs: default_query_secs(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_idle() -> u64 {
    8 * 3600
}
fn default_max_age() -> u64 {
    24 * 3600
}
fn default_max_sessions() -> usize {
    10_000
}
fn default_rows() -> usize {
    1000
}
fn default_query_secs() -> u64 {
    10
}
