//! Slack: one Block Kit message per incident, posted with
//! `chat.postMessage` and updated in place with `chat.update` as findings,
//! actions, approvals and resolution arrive (bot token); or posted through
//! an incoming webhook, once per incident state (no bot). Pending actions
//! carry approve / reject buttons, answered at `POST /slack/interactions`
//! after the request's signature is verified.
//!
//! Within Slack's limits: at most 50 blocks, section text at most 3,000
//! characters (cut with "… and N more"), header text at most 150. Every
//! log-derived value goes into `plain_text` (no mrkdwn, no mentions) or is
//! escaped for mrkdwn.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::render::{Notice, cut, list, slack_mrkdwn, slack_plain, when};
use super::{Outcome, retry_after};
use crate::respond::action::ActionStatus;
use crate::respond::connectors::Secret;

/// Pending actions shown with buttons at most (two blocks each).
const MAX_BUTTONED: usize = 10;
const SECTION_MAX: usize = 3000;

/// Slack errors worth retrying (the others are permanent: a wrong token, a
/// missing channel, an invalid payload).
const RETRYABLE: &[&str] = &[
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "team_added_to_org",
];

/// The message for an incident: fallback text and blocks.
pub fn message(n: &Notice) -> Value {
    let i = &n.incident;
    let mut blocks = Vec::new();
    let mark = match i.status.as_str() {
        "resolved" | "mitigated" => "✅",
        "escalated" => "🚨",
        "mitigating" => "🛠️",
        _ => "🔴",
    };
    blocks.push(json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&slack_plain(&format!("{mark} {}", i.title)), 150), "emoji": true}
    }));
    blocks.push(json!({
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": format!("*Status*\n{}", i.status.as_str())},
            {"type": "mrkdwn", "text": format!("*Priority*\n{:.0}", i.priority)},
            {"type": "mrkdwn", "text": format!("*Severity*\n{:?}", i.severity).to_lowercase()},
            {"type": "mrkdwn", "text": format!("*Domain*\n{}", i.domain.as_str())},
        ]
    }));
    let offenders: Vec<String> = i.offenders.iter().map(|o| slack_plain(o)).collect();
    let mut facts = format!(
        "Incident {} · opened {} · {} finding(s) · {}",
        i.incident_id,
        when(i.opened_ms),
        i.finding_ids.len(),
        i.classifications
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(s) = &i.service {
        facts.push_str(&format!(" · service {s}"));
    }
    if let Some(h) = &i.host {
        facts.push_str(&format!(" · host {h}"));
    }
    if i.repeat_offender {
        facts.push_str(" · repeat offender");
    }
    blocks.push(plain(&slack_plain(&facts)));
    blocks.push(plain(&format!(
        "Offenders:\n{}",
        list(&offenders, SECTION_MAX - 20)
    )));
    if let Some(why) = &i.escalated_reason {
        blocks.push(plain(&format!("Escalated: {}", slack_plain(why))));
    }
    if let Some(a) = &n.analysis {
        blocks.push(plain(&cut(
            &format!("Analysis (advice; nothing acts on it):\n{}", slack_plain(a)),
            SECTION_MAX,
        )));
    }
    if !n.actions.is_empty() {
        let lines: Vec<String> = n
            .actions
            .iter()
            .map(|a| {
                slack_plain(&format!(
                    "{} {} — {}: {}",
                    a.kind.as_str(),
                    a.target,
                    a.status.as_str(),
                    a.reason
                ))
            })
            .collect();
        blocks.push(plain(&format!(
            "Actions:\n{}",
            list(&lines, SECTION_MAX - 20)
        )));
    }
    let waiting: Vec<_> = n.waiting().collect();
    for a in waiting.iter().take(MAX_BUTTONED) {
        let (what, yes) = if a.status == ActionStatus::AwaitingConfirmation {
            ("verified; confirm or roll back", "Confirm")
        } else {
            ("waiting for approval", "Approve")
        };
        let expires = a
            .approval_expires_ms
            .map(|t| format!(", expires {}", when(t)))
            .unwrap_or_default();
        blocks.push(plain(&slack_plain(&format!(
            "{} {} ({} risk) {what}{expires}",
            a.kind.as_str(),
            a.target,
            format!("{:?}", a.risk).to_lowercase()
        ))));
        blocks.push(json!({
            "type": "actions",
            "block_id": format!("tp:{}", a.action_id),
            "elements": [
                {"type": "button", "style": "primary", "action_id": "approve",
                 "text": {"type": "plain_text", "text": yes}, "value": a.action_id},
                {"type": "button", "style": "danger", "action_id": "reject",
                 "text": {"type": "plain_text", "text": "Reject"}, "value": a.action_id},
            ]
        }));
    }
    if waiting.len() > MAX_BUTTONED {
        blocks.push(plain(&format!(
            "… and {} more waiting (threatpilot actions list --status pending_approval)",
            waiting.len() - MAX_BUTTONED
        )));
    }
    let recent: Vec<String> = i
        .timeline
        .iter()
        .rev()
        .take(10)
        .rev()
        .map(|e| slack_plain(&format!("{} {}: {}", when(e.at_ms), e.phase, e.text)))
        .collect();
    if !recent.is_empty() {
        blocks.push(plain(&format!(
            "Timeline:\n{}",
            list(&recent, SECTION_MAX - 20)
        )));
    }
    blocks.truncate(50);
    let text = cut(
        &slack_mrkdwn(&format!(
            "{} [{}] {}",
            i.status.as_str(),
            format!("{:?}", i.severity).to_lowercase(),
            i.title
        )),
        SECTION_MAX,
    );
    json!({"text": text, "blocks": blocks, "incident_id": i.incident_id})
}

fn plain(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "plain_text", "text": cut(text, SECTION_MAX), "emoji": false}})
}

/// Sends through the Web API with a bot token: `chat.update` when the
/// incident has a message (`reference` is `CHANNEL_ID/TS`), else
/// `chat.postMessage`.
///
/// `recover_in` is the channel id when an earlier post of this message may
/// have reached Slack without its answer reaching us (the process died
/// mid-request): the channel's history is searched for the incident's
/// message metadata first, and a message found is updated, not posted again.
pub async fn send_bot(
    client: &reqwest::Client,
    api_url: &str,
    token: &Secret,
    channel: &str,
    body: &Value,
    reference: Option<&str>,
    recover_in: Option<&str>,
) -> Outcome {
    let mut found = None;
    if reference.is_none()
        && let Some(cid) = recover_in
    {
        found = posted_before(client, api_url, token, cid, body).await;
    }
    let reference = reference.or(found.as_deref());
    let (method, payload) = match reference.and_then(|r| r.split_once('/')) {
        Some((ch, ts)) => (
            "chat.update",
            json!({"channel": ch, "ts": ts, "text": body["text"], "blocks": body["blocks"]}),
        ),
        None => (
            "chat.postMessage",
            json!({
                "channel": channel,
                "text": body["text"],
                "blocks": body["blocks"],
                "unfurl_links": false,
                "unfurl_media": false,
                "metadata": {
                    "event_type": "threatpilot_incident",
                    "event_payload": {"incident_id": body["incident_id"]},
                },
            }),
        ),
    };
    let url = format!("{}/{method}", api_url.trim_end_matches('/'));
    let r = match client
        .post(&url)
        .bearer_auth(token.expose())
        .json(&payload)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry {
                after: None,
                why: format!("{method}: {}", e.without_url()),
            };
        }
    };
    let status = r.status();
    if status.as_u16() == 429 {
        return Outcome::Retry {
            after: retry_after(r.headers()),
            why: format!("{method}: 429 ratelimited"),
        };
    }
    if status.is_server_error() {
        return Outcome::Retry {
            after: retry_after(r.headers()),
            why: format!("{method}: HTTP {}", status.as_u16()),
        };
    }
    let v: Value = match r.json().await {
        Ok(v) => v,
        Err(e) => {
            return Outcome::Retry {
                after: None,
                why: format!(
                    "{method}: HTTP {} with no JSON answer: {e}",
                    status.as_u16()
                ),
            };
        }
    };
    if v["ok"] == true {
        let ch = v["channel"].as_str().unwrap_or_default();
        let ts = v["ts"].as_str().unwrap_or_default();
        if ch.is_empty() || ts.is_empty() {
            return Outcome::Sent(vec![("#posting", String::new())]);
        }
        return Outcome::Sent(vec![
            ("", format!("{ch}/{ts}")),
            ("#posting", String::new()),
            ("@channel", ch.to_owned()),
        ]);
    }
    let err = v["error"].as_str().unwrap_or("unknown_error").to_owned();
    if method == "chat.update" && (err == "message_not_found" || err == "channel_not_found") {
        return Outcome::Gone;
    }
    if RETRYABLE.contains(&err.as_str()) {
        Outcome::Retry {
            after: None,
            why: format!("{method}: {err}"),
        }
    } else {
        Outcome::Dead(format!("{method}: {err}"))
    }
}

/// The `CHANNEL/TS` of this incident's message in the channel's recent
/// history (`conversations.history` with metadata), if there is one.
async fn posted_before(
    client: &reqwest::Client,
    api_url: &str,
    token: &Secret,
    channel_id: &str,
    body: &Value,
) -> Option<String> {
    let url = format!("{}/conversations.history", api_url.trim_end_matches('/'));
    let r = client
        .get(&url)
        .bearer_auth(token.expose())
        .query(&[
            ("channel", channel_id),
            ("limit", "200"),
            ("include_all_metadata", "true"),
        ])
        .send()
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    if v["ok"] != true {
        tracing::warn!(
            error = v["error"].as_str().unwrap_or("unknown"),
            "slack: conversations.history failed; a message may be posted twice"
        );
        return None;
    }
    let ts = v["messages"].as_array()?.iter().find_map(|m| {
        (m["metadata"]["event_type"] == "threatpilot_incident"
            && m["metadata"]["event_payload"]["incident_id"] == body["incident_id"])
            .then(|| m["ts"].as_str().map(str::to_owned))
            .flatten()
    })?;
    Some(format!("{channel_id}/{ts}"))
}

/// Posts through an incoming webhook (answers `ok`, or an error's name).
pub async fn send_webhook(client: &reqwest::Client, url: &Secret, body: &Value) -> Outcome {
    let payload = json!({"text": body["text"], "blocks": body["blocks"], "unfurl_links": false});
    let r = match client.post(url.expose()).json(&payload).send().await {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry {
                after: None,
                // the URL is the secret: never in a message
                why: format!("incoming webhook: {}", e.without_url()),
            };
        }
    };
    let status = r.status();
    let after = retry_after(r.headers());
    let text = r.text().await.unwrap_or_default();
    match status.as_u16() {
        200..=299 => Outcome::Sent(Vec::new()),
        429 => Outcome::Retry {
            after,
            why: "incoming webhook: 429 ratelimited".into(),
        },
        500..=599 => Outcome::Retry {
            after,
            why: format!("incoming webhook: HTTP {}", status.as_u16()),
        },
        s => Outcome::Dead(format!(
            "incoming webhook: HTTP {s} {}",
            cut(text.trim(), 100)
        )),
    }
}

/// A verified press of an approve or reject button.
#[derive(Debug, PartialEq)]
pub struct Press {
    pub user_id: String,
    pub user_name: String,
    pub approve: bool,
    pub action_id: String,
}

/// Checks Slack's request signature: `v0=HEX` of HMAC-SHA256 over
/// `v0:TIMESTAMP:BODY` with the signing secret; requests more than five
/// minutes off are refused (a replayed request).
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now_secs: i64,
) -> Result<(), String> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| "X-Slack-Request-Timestamp is not a number".to_owned())?;
    if (now_secs - ts).abs() > 300 {
        return Err("the request is more than 5 minutes old".into());
    }
    let hex = signature
        .strip_prefix("v0=")
        .ok_or("X-Slack-Signature is not v0=…")?;
    let want = decode_hex(hex).ok_or("X-Slack-Signature is not hex")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| e.to_string())?;
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&want)
        .map_err(|_| "the signature does not match".to_owned())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Reads an interaction payload (`payload=<JSON>`, form-encoded).
pub fn press(body: &[u8]) -> Result<Press, String> {
    let payload = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or("no payload field")?;
    let v: Value = serde_json::from_str(&payload).map_err(|e| format!("payload: {e}"))?;
    if v["type"] != "block_actions" {
        return Err(format!("payload type {} is not block_actions", v["type"]));
    }
    let a = &v["actions"][0];
    let approve = match a["action_id"].as_str() {
        Some("approve") => true,
        Some("reject") => false,
        other => return Err(format!("unknown button {other:?}")),
    };
    Ok(Press {
        user_id: v["user"]["id"].as_str().unwrap_or_default().to_owned(),
        user_name: v["user"]["username"]
            .as_str()
            .or(v["user"]["name"].as_str())
            .unwrap_or_default()
            .to_owned(),
        approve,
        action_id: a["value"].as_str().unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], ts: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("v0:{ts}:").as_bytes());
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        format!(
            "v0={}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }

    #[test]
    fn signatures_are_checked_and_old_requests_refused() {
        // Slack's documented example
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(
            verify(secret, "1531420618", body, sig, 1531420618 + 10),
            Ok(())
        );
        assert!(verify(secret, "1531420618", body, sig, 1531420618 + 301).is_err());
        let mut tampered = body.to_vec();
        tampered[0] = b'T';
        assert!(verify(secret, "1531420618", &tampered, sig, 1531420618).is_err());
        assert!(verify(secret, "1531420618", body, "v0=zz", 1531420618).is_err());
        let ours = sign(b"s", "100", b"x");
        assert_eq!(verify(b"s", "100", b"x", &ours, 100), Ok(()));
    }

    #[test]
    fn a_button_press_is_read_from_its_form_payload() {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": "U1", "username": "alice"},
            "actions": [{"action_id": "reject", "value": "a-0123"}],
        });
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        assert_eq!(
            press(body.as_bytes()).unwrap(),
            Press {
                user_id: "U1".into(),
                user_name: "alice".into(),
                approve: false,
                action_id: "a-0123".into()
            }
        );
        assert!(press(b"payload=%7B%7D").is_err());
    }
}
