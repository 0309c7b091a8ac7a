//! Actions and the audit log. The audit page shows the newest records of
//! the hash chain and whether the chain holds from its first record (the
//! check is redone only when the file changed). Approve and reject are
//! POSTs that must carry the session's CSRF token and come from a person
//! whose role may respond; anything else is refused and audited.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::page::{self, badge, esc, live, table, when};
use crate::api::ApiState;
use crate::api::auth::Need;
use crate::respond::audit::{AuditRecord, Progress, Verified};

/// The chain as last verified. A growing file is verified from where the
/// last check stopped; the whole file again when it shrank, when its
/// length stayed but it was modified, and at least once a minute, so an
/// edit of old records is found however busy the chain is.
#[derive(Default)]
pub(super) struct ChainState {
    last: Mutex<Option<Checked>>,
}

struct Checked {
    len: u64,
    modified: Option<SystemTime>,
    whole_at: Instant,
    whole_at_ms: i64,
    progress: Progress,
    text: String,
    intact: bool,
}

const WHOLE_EVERY: Duration = Duration::from_secs(60);

impl ChainState {
    /// `(text, intact)` for the chain at `path`.
    fn check(&self, path: &FsPath) -> (String, bool) {
        let Ok(meta) = std::fs::metadata(path) else {
            return ("No audit log yet.".into(), true);
        };
        let (len, modified) = (meta.len(), meta.modified().ok());
        let mut g = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let resume = match g.as_ref() {
            Some(c) if (c.len, c.modified) == (len, modified) => {
                return (c.text.clone(), c.intact);
            }
            Some(c) if c.intact && len > c.len && c.whole_at.elapsed() < WHOLE_EVERY => {
                Some((c.progress.clone(), c.whole_at, c.whole_at_ms))
            }
            _ => None,
        };
        let (whole_at, whole_at_ms) = resume
            .as_ref()
            .map_or((Instant::now(), crate::time::now_ms()), |r| (r.1, r.2));
        let (text, intact, progress) = match crate::respond::audit::verify_from(
            path,
            resume.map(|r| r.0),
        ) {
            Ok((Verified::Intact { records, last_hash }, p)) => (
                format!(
                    "Chain intact: {records} records verified from the first (whole file last read {}); last hash {}…",
                    page::stamp(whole_at_ms),
                    &last_hash[..last_hash.len().min(16)]
                ),
                true,
                p,
            ),
            Ok((Verified::Broken { seq, line, reason }, p)) => (
                format!("Chain BROKEN at record {seq} (line {line}): {reason}"),
                false,
                p,
            ),
            Err(e) => (
                format!("Cannot read the audit log: {e}"),
                false,
                Progress::default(),
            ),
        };
        *g = Some(Checked {
            len,
            modified,
            whole_at,
            whole_at_ms,
            progress,
            text: text.clone(),
            intact,
        });
        (text, intact)
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
    super::Who(who): super::Who,
    Query(q): Query<ActionFilter>,
) -> Response {
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
    let (actions, total) = v.actions_where(
        |a| q.status.is_empty() || a.status.as_str() == q.status,
        500,
    );
    let list = super::incidents::actions_table(&who, &actions, now, "/console/actions");
    let list = list.replacen(
        "<h2>Actions</h2>",
        &format!(
            r#"<h2>Actions <span class="count">{total}</span> <span class="sub">newest first{}</span></h2>"#,
            if total > actions.len() {
                format!(", the first {}", actions.len())
            } else {
                String::new()
            }
        ),
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
