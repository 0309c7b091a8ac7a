//! `POST /slack/interactions`: the approve / reject buttons of Slack
//! incident messages. Slack signs each request with the app's signing
//! secret; the signature (and a timestamp within five minutes) is the only
//! credential, checked before anything else is read. The Slack user must
//! be one of the channel's `approvers`, whose name is recorded as the
//! approver; anyone else is refused, and the refusal is audited.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::limits::{Refusal, read_body};
use crate::notify::slack;

/// Interaction payloads are small; anything bigger is not Slack.
const MAX_BODY: usize = 256 * 1024;

pub(super) async fn interactions(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if s.slack.is_empty() {
        return (
            StatusCode::NOT_IMPLEMENTED,
            "no Slack channel with a signing_secret in this pipeline\n",
        )
            .into_response();
    }
    let body = match read_body(&headers, body, MAX_BODY, Duration::from_secs(10)).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (ts, sig) = (text("x-slack-request-timestamp"), text("x-slack-signature"));
    let now = crate::time::now_ms() / 1000;
    let mut last = String::from("no signing secret matched");
    let channel = s.slack.iter().find(|c| {
        match slack::verify(c.signing_secret.expose().as_bytes(), &ts, &body, &sig, now) {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    let Some(channel) = channel else {
        tracing::warn!(peer = %peer, "slack interaction refused: {last}");
        return Refusal::new(StatusCode::UNAUTHORIZED, format!("slack signature: {last}"))
            .into_response();
    };
    let press = match slack::press(&body) {
        Ok(p) => p,
        Err(e) => return Refusal::new(StatusCode::BAD_REQUEST, e).into_response(),
    };
    let Some(v) = s.respond.as_ref() else {
        return Refusal::new(
            StatusCode::NOT_IMPLEMENTED,
            "this pipeline does not respond",
        )
        .into_response();
    };
    let Some(approver) = channel.approvers.get(&press.user_id) else {
        let who = format!("slack:{}({})", press.user_id, press.user_name);
        let why = format!(
            "slack user {} is not an approver of channel {}",
            press.user_id, channel.channel
        );
        let _ = v.refused(&who, &press.action_id, &why).await;
        return Refusal::new(StatusCode::FORBIDDEN, why).into_response();
    };
    let who = format!("{approver} (slack {})", press.user_id);
    let r = if press.approve {
        v.approve(&press.action_id, &who).await
    } else {
        v.reject(&press.action_id, &who, "rejected in Slack").await
    };
    match r {
        // the message itself is updated through the outbox as the action changes
        Ok(status) => (StatusCode::OK, format!("{}: {status}\n", press.action_id)).into_response(),
        Err(e) => (StatusCode::OK, format!("{}: {e}\n", press.action_id)).into_response(),
    }
}
