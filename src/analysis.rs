//! Incident analysis (optional): a short root-cause hypothesis, impact and
//! next steps for an incident, written by any OpenAI-compatible
//! chat-completions endpoint (Ollama, vLLM, llama.cpp's server, hosted
//! APIs), or by a fixed template when there is none, it is slow, or it
//! fails. The text is advice shown to people in Slack, Jira, e-mail and
//! the report; nothing ever acts on it.
//!
//! Evidence leaves the process only after [`redact`] removed what looks
//! like a secret (passwords, tokens, keys, session cookies), and the call
//! runs in the notifier's own task, never on the detection path.
//!
//! ```yaml
//! analysis:
//!   url: http://127.0.0.1:11434/v1     # …/chat/completions is appended
//!   model: llama3.1
//!   api_key: {env: OPENAI_API_KEY}     # optional
//!   timeout_ms: 20000
//! ```

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::notify::render::Notice;
use crate::respond::connectors::{Secret, SecretRef};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// The API base; `/chat/completions` is appended.
    pub url: String,
    pub model: String,
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// Past this the template's text is used instead.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// More patterns (regular expressions) whose matches are redacted.
    #[serde(default)]
    pub redact: Vec<String>,
}

fn default_timeout() -> u64 {
    20_000
}
fn default_max_tokens() -> u32 {
    400
}

/// What looks like a secret in log text: the value after a password-like
/// key, bearer and basic credentials, private keys, JWTs, cloud and SaaS
/// tokens, and long hex or base64 runs (session ids, API keys).
static SECRETS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r#"(?i)\b(pass(word|wd)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|auth|session(id)?|sid|cookie|credentials?)\b["']?\s*[=:]\s*["']?[^\s&,;"']+"#,
        r"(?i)\bauthorization:\s*\S+(\s+\S+)?",
        r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
        r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
        r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
        r"\bgh[pousr]_[A-Za-z0-9]{20,}",
        r"\bsk-[A-Za-z0-9_-]{16,}",
        r"://[^/\s:@]+:[^/\s@]+@",
        r"\b[0-9a-fA-F]{32,}\b",
        r"\b[A-Za-z0-9+/]{40,}={0,2}",
    ]
    .iter()
    .map(|p| Regex::new(p).expect("secret patterns compile"))
    .collect()
});

/// `text` with everything that looks like a secret replaced by
/// `[REDACTED]`; `extra` are the configured patterns.
pub fn redact(text: &str, extra: &[Regex]) -> String {
    let mut out = text.to_owned();
    for re in SECRETS.iter().chain(extra) {
        if re.is_match(&out) {
            out = re.replace_all(&out, "[REDACTED]").into_owned();
        }
    }
    out
}

/// A configuration ready to call: the key read, the patterns compiled.
#[derive(Clone)]
pub struct Analyst {
    cfg: AnalysisConfig,
    key: Option<Secret>,
    extra: Vec<Regex>,
    client: reqwest::Client,
}

impl Analyst {
    pub fn new(cfg: &AnalysisConfig, ca_file: Option<&str>) -> Result<Analyst, String> {
        if !(cfg.url.starts_with("http://") || cfg.url.starts_with("https://")) {
            return Err(format!("analysis.url {:?}: http:// or https://", cfg.url));
        }
        let extra = cfg
            .redact
            .iter()
            .map(|p| Regex::new(p).map_err(|e| format!("analysis.redact {p:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let key = cfg.api_key.as_ref().map(SecretRef::resolve).transpose()?;
        let client = crate::net::http_client(ca_file, Duration::from_millis(cfg.timeout_ms))?;
        Ok(Analyst {
            cfg: cfg.clone(),
            key,
            extra,
            client,
        })
    }

    /// What the model makes of an incident, or the template's text (the
    /// reason is logged).
    pub async fn incident(&self, n: &Notice, evidence: &[String]) -> String {
        let facts = redact(&facts(n, evidence), &self.extra);
        match self.ask(&facts).await {
            Ok(text) => text,
            Err(why) => {
                tracing::warn!(incident = %n.incident.incident_id, "analysis: {why}; using the template");
                template(n)
            }
        }
    }

    async fn ask(&self, facts: &str) -> Result<String, String> {
        let url = format!("{}/chat/completions", self.cfg.url.trim_end_matches('/'));
        let body = json!({
            "model": self.cfg.model,
            "temperature": 0.2,
            "max_tokens": self.cfg.max_tokens,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": facts},
            ],
        });
        let mut req = self.client.post(&url).json(&body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k.expose());
        }
        let call = async {
            let r = req
                .send()
                .await
                .map_err(|e| format!("{}", e.without_url()))?;
            let status = r.status();
            let v: Value = r
                .json()
                .await
                .map_err(|e| format!("answer is not JSON: {}", e.without_url()))?;
            if !status.is_success() {
                let msg = v["error"]["message"].as_str().unwrap_or("no message");
                return Err(format!("answered {status}: {msg}"));
            }
            v["choices"][0]["message"]["content"]
                .as_str()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| "answer has no choices[0].message.content".to_owned())
        };
        match tokio::time::timeout(Duration::from_millis(self.cfg.timeout_ms), call).await {
            Ok(r) => r.map(|t| crate::notify::render::cut(&t, 2000)),
            Err(_) => Err(format!("no answer within {} ms", self.cfg.timeout_ms)),
        }
    }
}

const SYSTEM: &str = "You assist a security and reliability on-call engineer. From the incident \
facts given, write at most 120 words in three short parts headed 'Hypothesis:', 'Impact:' and \
'Next steps:'. Say what is uncertain. Do not invent facts. Your text is advice for a person; \
no action is taken on it.";

/// The facts an analysis is asked about (before redaction).
fn facts(n: &Notice, evidence: &[String]) -> String {
    let i = &n.incident;
    let mut s = format!(
        "Incident {}: {}\nStatus: {}\nSeverity: {:?}\nDomain: {}\nClassifications: {}\nOffender: {:?} {}\nFindings: {}\n",
        i.incident_id,
        i.title,
        i.status.as_str(),
        i.severity,
        i.domain.as_str(),
        i.classifications
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        i.offender_type,
        i.offender_value,
        i.finding_ids.len(),
    );
    if let Some(svc) = &i.service {
        s.push_str(&format!("Service: {svc}\n"));
    }
    if let Some(h) = &i.host {
        s.push_str(&format!("Host: {h}\n"));
    }
    s.push_str("Timeline:\n");
    for t in i.timeline.iter().rev().take(15).rev() {
        s.push_str(&format!("- {} {}\n", t.phase, t.text));
    }
    if !evidence.is_empty() {
        s.push_str("Evidence (log lines):\n");
        for e in evidence.iter().take(20) {
            s.push_str(&format!("- {e}\n"));
        }
    }
    if !n.actions.is_empty() {
        s.push_str("Actions:\n");
        for a in n.action_lines().iter().take(10) {
            s.push_str(&format!("- {a}\n"));
        }
    }
    s
}

/// The deterministic text used without a model: what the incident's
/// classification usually means and what to check.
pub fn template(n: &Notice) -> String {
    let i = &n.incident;
    let class = i
        .classifications
        .iter()
        .next()
        .map_or("activity", String::as_str);
    let who = format!("{:?} {}", i.offender_type, i.offender_value).to_lowercase();
    let (hypothesis, next) = match i.domain.as_str() {
        "identity" => (
            format!("{class} against accounts, driven by {who}."),
            "Check whether any attempt succeeded (successful logins from the same source), reset credentials of accounts that were hit, and keep the block or lock in place until reviewed.",
        ),
        "http" => (
            format!("{class} against the web tier from {who}."),
            "Check the responses the offender got (2xx on suspicious paths), look for the same payloads from other addresses, and keep the rate limit or block until reviewed.",
        ),
        _ => (
            format!(
                "{class} on {}.",
                i.service.as_deref().or(i.host.as_deref()).unwrap_or(&who)
            ),
            "Check recent deploys and resource limits of the service, its logs around the first finding, and whether it recovered after the action.",
        ),
    };
    let done: Vec<&str> = n
        .actions
        .iter()
        .filter(|a| a.status.is_final() || a.status.as_str() == "succeeded")
        .map(|a| a.status.as_str())
        .collect();
    format!(
        "Hypothesis: {hypothesis}\nImpact: {} finding(s), severity {}, status {}{}.\nNext steps: {next}",
        i.finding_ids.len(),
        format!("{:?}", i.severity).to_lowercase(),
        i.status.as_str(),
        if done.is_empty() {
            String::new()
        } else {
            format!("; actions so far: {}", done.join(", "))
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let t = redact(
            "login failed password=hunter2 for bob; Authorization: Bearer abcdefghijkl; \
             key AKIAABCDEFGHIJKLMNOP url https://u:p4ss@host/x token: xoxb-1234567890-abcdef \
             jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
            &[],
        );
        for leaked in [
            "hunter2",
            "abcdefghijkl",
            "AKIAABCDEFGHIJKLMNOP",
            "p4ss",
            "xoxb-",
            "eyJhbGci",
        ] {
            assert!(!t.contains(leaked), "{leaked} leaked: {t}");
        }
        assert!(t.contains("login failed"));
        assert!(t.contains("for bob"));
    }

    #[test]
    fn ordinary_evidence_is_kept() {
        let line = "Failed password for invalid user admin from 203.0.113.9 port 22 ssh2";
        assert_eq!(redact(line, &[]), line);
        assert_eq!(
            redact(r#"{"user":"bob","password":"s3cret"}"#, &[]),
            r#"{"user":"bob","[REDACTED]"}"#
        );
        assert_eq!(redact("GET /index.html 200", &[]), "GET /index.html 200");
    }
}
