//! Actions and the audit log. The audit page shows the newest records of
//! the hash chain and whether the chain holds from its first record (the
//! check is redone only when the file changed). Approve and reject are
//! POSTs that must carry the session's CSRF token and come from a person
//! whose role may respond; anything else is refused and audited.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::page::{self, badge, esc, live, table, when};
use crate::api::ApiState;
use crate::api::auth::Need;
use crate::respond::audit::{AuditRecord, Verified};

/// The last verification of the chain, and the file state it was made on.
#[derive(Default)]
pub(super) struct ChainState {
    last: Mutex<Option<Checked>>,
}

/// A verification: the file's length and modification time, what it
/// found, and whether the chain held.
type Checked = (u64, Option<SystemTime>, String, bool);

impl ChainState {
    /// `(text, intact)` for the chain at `path`, verified again only when
    /// its length or modification time changed.
    fn check(&self, path: &FsPath) -> (String, bool) {
        let meta = std::fs::metadata(path);
        let Ok(meta) = meta else {
            return ("No audit log yet.".into(), true);
        };
        let key = (meta.len(), meta.modified().ok());
        if let Ok(g) = self.last.lock()
            && let Some((len, modified, text, ok)) = g.as_ref()
            && (*len, *modified) == key
        {
            return (text.clone(), *ok);
        }
        let (text, ok) = match crate::respond::audit::verify(path) {
            Ok(Verified::Intact { records, last_hash }) => (
                format!(
                    "Chain intact: {records} records verified from the first; last hash {}…",
                    &last_hash[..last_hash.len().min(16)]
                ),
                true,
            ),
            Ok(Verified::Broken { seq, line, reason }) => (
                format!("Chain BROKEN at record {seq} (line {line}): {reason}"),
                false,
            ),
            Err(e) => (format!("Cannot read the audit log: {e}"), false),
        };
        if let Ok(mut g) = self.last.lock() {
            *g = Some((key.0, key.1, text.clone(), ok));
        }
        (text, ok)
    }
}

/// The newest records of the chain file, newest first (read from its end).
fn newest_records(path: &FsPath, max: usize) -> Vec<AuditRecord> {
    const TAIL: u64 = 512 * 1024;
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(TAIL);
    if f.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.take(TAIL).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let mut lines = buf.split(|&b| b == b'\n');
    if from > 0 {
        // the first line read is only the end of one
        lines.next();
    }
    let mut out: Vec<AuditRecord> = lines
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    out.reverse();
    out.truncate(max);
    out
}

#[derive(serde::Deserialize, Default)]
pub(super) struct ActionFilter {
    #[serde(default)]
    status: String,
}

const STATUSES: &[&str] = &[
    "pending_approval",
    "approved",
    "rejected",
    "expired",
    "executing",
    "succeeded",
    "awaiting_confirmation",
    "verified",
    "failed",
    "rolled_back",
    "skipped_by_policy",
    "dry_run",
    "undone",
];

pub(super) async fn page(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ActionFilter>,
) -> Response {
    let who = match super::who(&s, &headers, &uri) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let Some(v) = &s.respond else {
        return page::problem(
            StatusCode::NOT_FOUND,
            Some(&who),
            "This pipeline does not respond (no respond section): no actions or audit log.",
        );
    };
    let now = crate::time::now_ms();
    let mut form = String::from(
        r#"<form class="filters" method="get" action="/console/actions"><label>Status <select name="status"><option value="">any</option>"#,
    );
    for st in STATUSES {
        let sel = if q.status == *st { " selected" } else { "" };
        form.push_str(&format!("<option{sel}>{st}</option>"));
    }
    form.push_str(r#"</select></label><button type="submit">Show</button></form>"#);
    let actions: Vec<_> = v
        .actions()
        .into_iter()
        .filter(|a| q.status.is_empty() || a.status.as_str() == q.status)
        .take(500)
        .collect();
    let list = super::incidents::actions_table(&who, &actions, now, "/console/actions");
    let list = list.replacen(
        "<h2>Actions</h2>",
        "<h2>Actions <span class=\"sub\">newest first</span></h2>",
        1,
    );
    let (chain, intact) = s
        .console
        .as_ref()
        .map(|c| c.audit.check(&v.audit_path))
        .unwrap_or_default();
    let records = newest_records(&v.audit_path, 200);
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.seq.to_string(),
                when(r.at_ms),
                esc(&r.actor),
                badge(&r.decision, &r.decision),
                format!("<code>{}</code>", esc(&r.subject)),
                esc(&page::clip(&r.detail, 400)),
                format!(
                    r#"<code title="{}">{}…</code>"#,
                    page::attr(&r.hash),
                    esc(&r.hash[..r.hash.len().min(12)])
                ),
            ]
        })
        .collect();
    let audit = format!(
        r#"<h2>Audit log</h2><p id="chain" class="{}">{}</p>{}"#,
        if intact { "ok" } else { "error" },
        esc(&chain),
        table(
            "audit-table",
            &[
                "Seq", "At", "Actor", "Decision", "Subject", "Detail", "Hash"
            ],
            &rows,
            "No audit records yet."
        )
    );
    let body = format!(
        "{form}{}{}",
        live("actions-list", &list),
        live("audit", &audit)
    );
    page::page("Actions & audit", &who, "/console/actions", &body)
}

#[derive(serde::Deserialize, Default)]
pub(super) struct DecideForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    back: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

pub(super) async fn approve(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<DecideForm>,
) -> Response {
    decide(&s, peer, &headers, &id, f, true).await
}

pub(super) async fn reject(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<DecideForm>,
) -> Response {
    decide(&s, peer, &headers, &id, f, false).await
}

async fn decide(
    s: &ApiState,
    peer: SocketAddr,
    headers: &HeaderMap,
    id: &str,
    f: DecideForm,
    approve: bool,
) -> Response {
    let c = match super::console(s) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let verb = if approve { "approve" } else { "reject" };
    let subject = format!("{verb} {id}");
    let Some(who) = c.sessions.find(headers) else {
        return super::refuse(
            s,
            None,
            StatusCode::UNAUTHORIZED,
            "login",
            &subject,
            "no session: log in first",
        )
        .await;
    };
    if let Err(e) = super::session::check_post(Some(&who), f.csrf.as_deref(), headers) {
        let reason = match e {
            super::session::Forged::Origin(_) => "origin",
            super::session::Forged::Token => "csrf",
        };
        return super::refuse(
            s,
            Some(&who),
            StatusCode::FORBIDDEN,
            reason,
            &subject,
            &e.to_string(),
        )
        .await;
    }
    if !who.may(Need::Respond) {
        let why = format!(
            "{} has role {:?}, which may not {verb} actions",
            who.name, who.role
        );
        return super::refuse(s, Some(&who), StatusCode::FORBIDDEN, "role", &subject, &why).await;
    }
    let Some(v) = &s.respond else {
        return page::problem(
            StatusCode::NOT_FOUND,
            Some(&who),
            "This pipeline does not respond.",
        );
    };
    v.guarded.add(peer.ip(), "a console approver");
    let actor = format!("{} (console)", who.name);
    let done = if approve {
        v.approve(id, &actor).await
    } else {
        let why = f
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .unwrap_or("no reason given");
        v.reject(id, &actor, why).await
    };
    match done {
        Ok(_) => Redirect::to(&super::safe_next(f.back.as_deref())).into_response(),
        Err(e) if e.starts_with("no action") => {
            page::problem(StatusCode::NOT_FOUND, Some(&who), &e)
        }
        Err(e) => page::problem(StatusCode::CONFLICT, Some(&who), &e),
    }
}
