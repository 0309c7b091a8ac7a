//! The `notify:` section of a pipeline file: channels (Slack with a bot
//! token or an incoming webhook, generic signed webhooks), routes that say
//! which incidents go where, quiet hours and per-channel rate limits.
//!
//! ```yaml
//! notify:
//!   state_dir: out/notify
//!   channels:
//!     - type: slack
//!       name: soc
//!       token: {env: SLACK_BOT_TOKEN}
//!       channel: "#soc-alerts"
//!       signing_secret: {env: SLACK_SIGNING_SECRET}
//!       approvers: {U024BE7LH: alice}
//!       quiet_hours: [{start: "22:00", end: "07:00", timezone: Europe/Berlin}]
//!     - type: email
//!       name: oncall
//!       host: smtp.example.com
//!       security: starttls
//!       username: threatpilot
//!       password: {env: SMTP_PASSWORD}
//!       from: "ThreatPilot <threatpilot@example.com>"
//!       to: ["soc@example.com"]
//!     - type: webhook
//!       name: siem
//!       url: https://siem.example/hooks/threatpilot
//!       secret: {file: /run/secrets/siem-hmac}
//!   routes:
//!     - {channels: [soc], severity_at_least: high}
//!     - {channels: [siem]}
//! ```

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::detect::config::Located;
use crate::finding::{Domain, Severity};
use crate::respond::connectors::SecretRef;
use crate::respond::incident::IncidentStatus;
use crate::respond::policy::WindowSpec;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Where the outbox and the message references live.
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    pub channels: Vec<Located<ChannelSpec>>,
    /// Which incidents go where; an incident goes to every channel of every
    /// route it matches. Without routes, every channel gets every incident.
    #[serde(default)]
    pub routes: Vec<Located<RouteSpec>>,
    #[serde(default)]
    pub retry: RetrySpec,
    /// A PEM bundle of CA certificates trusted besides the system's.
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn default_state_dir() -> String {
    "out/notify".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelSpec {
    Slack(SlackSpec),
    Webhook(WebhookSpec),
    Jira(JiraSpec),
    Email(EmailSpec),
}

impl ChannelSpec {
    pub fn name(&self) -> &str {
        match self {
            ChannelSpec::Slack(s) => &s.name,
            ChannelSpec::Webhook(w) => &w.name,
            ChannelSpec::Jira(j) => &j.name,
            ChannelSpec::Email(e) => &e.name,
        }
    }

    /// Messages per minute and quiet hours.
    pub fn pacing(&self) -> (u32, &[WindowSpec]) {
        match self {
            ChannelSpec::Slack(s) => (s.rate_per_min, &s.quiet_hours),
            ChannelSpec::Webhook(w) => (w.rate_per_min, &w.quiet_hours),
            ChannelSpec::Jira(j) => (j.rate_per_min, &j.quiet_hours),
            ChannelSpec::Email(e) => (e.rate_per_min, &e.quiet_hours),
        }
    }

    /// What the channel needs that the type system cannot say.
    pub fn check(&self) -> Result<(), String> {
        if self.name().is_empty()
            || !self
                .name()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "channel name {:?}: letters, digits, - and _ only",
                self.name()
            ));
        }
        if self.pacing().0 == 0 {
            return Err(format!(
                "channel {}: rate_per_min must be at least 1",
                self.name()
            ));
        }
        match self {
            ChannelSpec::Slack(s) => match (&s.token, &s.webhook_url) {
                (Some(_), None) if s.channel.is_none() => Err(format!(
                    "slack channel {}: a bot token needs `channel` (a name or an id)",
                    s.name
                )),
                (Some(_), None) | (None, Some(_)) => Ok(()),
                _ => Err(format!(
                    "slack channel {}: give either token (chat.postMessage and chat.update) or webhook_url (post only)",
                    s.name
                )),
            },
            ChannelSpec::Webhook(w) => {
                if w.url.starts_with("http://") || w.url.starts_with("https://") {
                    Ok(())
                } else {
                    Err(format!(
                        "webhook {}: url must be http:// or https://",
                        w.name
                    ))
                }
            }
            ChannelSpec::Jira(j) => {
                if !(j.base_url.starts_with("http://") || j.base_url.starts_with("https://")) {
                    Err(format!(
                        "jira {}: base_url must be http:// or https://",
                        j.name
                    ))
                } else if j.project.is_empty()
                    || !j
                        .project
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    Err(format!(
                        "jira {}: project must be a project key (PROJ)",
                        j.name
                    ))
                } else if j.flavor == JiraFlavor::Cloud && j.email.is_none() {
                    Err(format!(
                        "jira {}: Jira Cloud signs in with email and an API token",
                        j.name
                    ))
                } else {
                    Ok(())
                }
            }
            ChannelSpec::Email(e) => e.check(),
        }
    }
}

fn default_rate() -> u32 {
    50
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackSpec {
    pub name: String,
    /// A bot token (`xoxb-…`): one message per incident, updated in place.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// An incoming webhook URL instead of a bot: post only, so one message
    /// per incident and state (open, mitigated, escalated, …).
    #[serde(default)]
    pub webhook_url: Option<SecretRef>,
    /// The channel's name or id (with a bot token).
    #[serde(default)]
    pub channel: Option<String>,
    /// Slack's Web API base (a test server, an enterprise proxy).
    #[serde(default = "default_slack_api")]
    pub api_url: String,
    /// Verifies `POST /slack/interactions` (the approve / reject buttons).
    #[serde(default)]
    pub signing_secret: Option<SecretRef>,
    /// Slack user id → approver name recorded in the audit log. Users not
    /// listed cannot approve or reject.
    #[serde(default)]
    pub approvers: BTreeMap<String, String>,
    /// Messages sent per minute at most; the rest wait in the outbox, where
    /// newer states of an incident replace older unsent ones.
    #[serde(default = "default_rate")]
    pub rate_per_min: u32,
    /// While one of these windows is open, only critical incidents are
    /// sent; the others wait for it to close (their latest state is sent).
    #[serde(default)]
    pub quiet_hours: Vec<WindowSpec>,
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    pub name: String,
    pub url: String,
    /// Signs each body: `X-ThreatPilot-Signature: sha256=HEX` over
    /// `TIMESTAMP.BODY`, with `X-ThreatPilot-Timestamp: TIMESTAMP`.
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// Messages sent per minute at most; the rest wait in the outbox, where
    /// newer states of an incident replace older unsent ones.
    #[serde(default = "default_rate")]
    pub rate_per_min: u32,
    /// While one of these windows is open, only critical incidents are
    /// sent; the others wait for it to close (their latest state is sent).
    #[serde(default)]
    pub quiet_hours: Vec<WindowSpec>,
}

/// Jira Cloud (REST v3, ADF, e-mail + API token) or Data Center (REST v2,
/// wiki markup, personal access token).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JiraFlavor {
    Cloud,
    DataCenter,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JiraSpec {
    pub name: String,
    pub flavor: JiraFlavor,
    /// `https://example.atlassian.net` or a Data Center's base URL.
    pub base_url: String,
    /// The project key tickets are created in.
    pub project: String,
    #[serde(default = "default_issue_type")]
    pub issue_type: String,
    /// The account's e-mail (Cloud).
    #[serde(default)]
    pub email: Option<String>,
    /// The API token (Cloud) or personal access token (Data Center).
    pub token: SecretRef,
    /// Incidents at least this severe open a ticket; so do those a person
    /// must act on (escalated, an approval expired, a verification failed).
    #[serde(default = "default_jira_severity")]
    pub severity_at_least: Severity,
    /// The transition run when the incident is resolved or mitigated
    /// (by name, e.g. `Done`); none when absent.
    #[serde(default)]
    pub resolve_transition: Option<String>,
    #[serde(default = "default_rate")]
    pub rate_per_min: u32,
    #[serde(default)]
    pub quiet_hours: Vec<WindowSpec>,
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on a trusted network.
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    pub name: String,
    /// The SMTP server (submission or relay).
    pub host: String,
    /// 587, 465 or 25 by `security` when absent.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// `Name <address>` or an address.
    pub from: String,
    pub to: Vec<String>,
    #[serde(default = "default_rate")]
    pub rate_per_min: u32,
    #[serde(default)]
    pub quiet_hours: Vec<WindowSpec>,
}

impl EmailSpec {
    fn check(&self) -> Result<(), String> {
        use lettre::message::Mailbox;
        if self.host.trim().is_empty() {
            return Err(format!("email {}: host is empty", self.name));
        }
        if self.to.is_empty() {
            return Err(format!("email {}: no recipient in `to`", self.name));
        }
        for a in std::iter::once(&self.from).chain(&self.to) {
            a.parse::<Mailbox>()
                .map_err(|e| format!("email {}: {a:?} is not an address: {e}", self.name))?;
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(format!(
                "email {}: username and password go together",
                self.name
            ));
        }
        if self.security == SmtpSecurity::None && self.password.is_some() {
            return Err(format!(
                "email {}: a password is never sent without TLS (security: starttls or tls)",
                self.name
            ));
        }
        Ok(())
    }
}

fn default_issue_type() -> String {
    "Task".into()
}

fn default_jira_severity() -> Severity {
    Severity::High
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub channels: Vec<String>,
    #[serde(default)]
    pub severity_at_least: Option<Severity>,
    #[serde(default)]
    pub domain: Vec<Domain>,
    #[serde(default)]
    pub classification: Vec<String>,
    /// Incident states that are sent (default: all).
    #[serde(default)]
    pub status: Vec<IncidentStatus>,
}

/// Retries of every channel: exponential backoff with full jitter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    #[serde(default = "default_initial")]
    pub initial_ms: u64,
    #[serde(default = "default_max")]
    pub max_ms: u64,
    /// One request's timeout.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_initial() -> u64 {
    500
}
fn default_max() -> u64 {
    60_000
}
fn default_timeout() -> u64 {
    10_000
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            initial_ms: default_initial(),
            max_ms: default_max(),
            timeout_ms: default_timeout(),
        }
    }
}
