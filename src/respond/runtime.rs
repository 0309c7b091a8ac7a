//! The live side of response: one task owns the [`Dispatcher`] and carries
//! out its effects; one task per connector executes actions from a bounded
//! queue. Findings arrive through [`Tap`] (a hub [`Subscriber`]); approvals
//! and breaker resets through [`View`], which is also what the API reads.
//!
//! Order of effects for an action about to run: the journal entry is
//! synced first, then the action is queued to its connector, so a crash in
//! between finds it in the journal and runs it again with the same
//! idempotency key. A full connector queue skips the action with the
//! reason; it never waits, so a stuck connector slows nothing else.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::Compiled;
use super::action::{Action, ActionStatus, CheckPlan};
use super::audit::{AuditLog, AuditRecord};
use super::connectors::{Connector, ConnectorError, ConnectorSpec};
use super::dispatch::{Dispatcher, Effect};
use super::incident::{Assets, Incident, Incidents};
use super::journal::Journal;
use super::policy::Breaker;
use crate::finding::Finding;
use crate::flow::Peers;
use crate::hub::Subscriber;

/// The first `limit` of `v` in `order`, copied; only they are sorted.
fn top<T: Clone>(
    v: &mut [&T],
    limit: usize,
    order: impl Fn(&&T, &&T) -> std::cmp::Ordering,
) -> Vec<T> {
    let limit = limit.min(v.len());
    if limit == 0 {
        return Vec::new();
    }
    if v.len() > limit {
        v.select_nth_unstable_by(limit - 1, &order);
    }
    let head = &mut v[..limit];
    head.sort_by(&order);
    head.iter().map(|x| (*x).clone()).collect()
}

/// A job-tail line of an incident, as streamed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TailEvent {
    pub incident_id: String,
    pub at_ms: i64,
    pub phase: String,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
}

enum Msg {
    Executed {
        id: String,
        ok: bool,
        output: String,
    },
    Verified {
        id: String,
        ok: bool,
        detail: String,
    },
    Approve {
        id: String,
        who: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Reject {
        id: String,
        who: String,
        why: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Reset {
        connector: String,
        who: String,
        reply: oneshot::Sender<bool>,
    },
    Refused {
        who: String,
        subject: String,
        why: String,
    },
}

/// What the API reads and asks.
pub struct View {
    incidents: RwLock<HashMap<String, Incident>>,
    actions: RwLock<HashMap<String, Action>>,
    breakers: RwLock<BTreeMap<String, Breaker>>,
    pub tail: broadcast::Sender<TailEvent>,
    /// The id of each incident that changed (itself or one of its
    /// actions), for notifications; a lagging reader re-reads them all.
    pub changed: broadcast::Sender<String>,
    pub guarded: Arc<Peers>,
    commands: mpsc::Sender<Msg>,
    /// A few evidence lines of recent findings, for incident analysis.
    evidence: RwLock<Evidence>,
    /// Each incident's analysis text, once written (the console shows it).
    analyses: RwLock<HashMap<String, String>>,
    /// The audit chain's file.
    pub audit_path: PathBuf,
}

/// Evidence lines by finding id, bounded: the oldest findings are
/// forgotten first.
#[derive(Default)]
struct Evidence {
    lines: HashMap<String, Vec<String>>,
    order: std::collections::VecDeque<String>,
}

const EVIDENCE_FINDINGS: usize = 20_000;
const EVIDENCE_LINES: usize = 4;
const EVIDENCE_CHARS: usize = 1_000;

impl View {
    /// Keeps a few of a finding's evidence lines (its latest version's).
    pub fn note_evidence(&self, f: &Finding) {
        let Ok(mut e) = self.evidence.write() else {
            return;
        };
        let lines: Vec<String> = f
            .evidence
            .iter()
            .take(EVIDENCE_LINES)
            .map(|l| l.chars().take(EVIDENCE_CHARS).collect())
            .collect();
        if e.lines.insert(f.finding_id.clone(), lines).is_none() {
            e.order.push_back(f.finding_id.clone());
            while e.order.len() > EVIDENCE_FINDINGS {
                if let Some(old) = e.order.pop_front() {
                    e.lines.remove(&old);
                }
            }
        }
    }

    /// Evidence lines of an incident's first findings.
    pub fn evidence_of(&self, i: &Incident) -> Vec<String> {
        let Ok(e) = self.evidence.read() else {
            return Vec::new();
        };
        i.finding_ids
            .iter()
            .take(5)
            .filter_map(|id| e.lines.get(id))
            .flatten()
            .cloned()
            .collect()
    }

    /// Keeps an incident's analysis text; the oldest go past a bound.
    pub fn note_analysis(&self, incident_id: &str, text: &str) {
        if let Ok(mut a) = self.analyses.write() {
            if a.len() >= EVIDENCE_FINDINGS && !a.contains_key(incident_id) {
                let open: std::collections::HashSet<String> = self
                    .incidents
                    .read()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                a.retain(|id, _| open.contains(id));
            }
            a.insert(incident_id.to_owned(), text.to_owned());
        }
    }

    pub fn analysis(&self, incident_id: &str) -> Option<String> {
        self.analyses.read().ok()?.get(incident_id).cloned()
    }

    pub fn incidents(&self) -> Vec<Incident> {
        let mut v: Vec<Incident> = self
            .incidents
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| {
            b.priority
                .total_cmp(&a.priority)
                .then(b.opened_ms.cmp(&a.opened_ms))
        });
        v
    }

    /// The first `limit` incidents that `keep` admits, in the order of
    /// [`incidents`](Self::incidents), and how many it admits in all; only
    /// those shown are copied, so a page stays cheap with many held.
    pub fn incidents_where(
        &self,
        keep: impl Fn(&Incident) -> bool,
        limit: usize,
    ) -> (Vec<Incident>, usize) {
        let Ok(m) = self.incidents.read() else {
            return (Vec::new(), 0);
        };
        let mut v: Vec<&Incident> = m.values().filter(|i| keep(i)).collect();
        let order = |a: &&Incident, b: &&Incident| {
            b.priority
                .total_cmp(&a.priority)
                .then(b.opened_ms.cmp(&a.opened_ms))
                .then(a.incident_id.cmp(&b.incident_id))
        };
        (top(&mut v, limit, order), v.len())
    }

    /// The newest `limit` actions that `keep` admits, and how many it
    /// admits in all (see [`incidents_where`](Self::incidents_where)).
    pub fn actions_where(
        &self,
        keep: impl Fn(&Action) -> bool,
        limit: usize,
    ) -> (Vec<Action>, usize) {
        let Ok(m) = self.actions.read() else {
            return (Vec::new(), 0);
        };
        let mut v: Vec<&Action> = m.values().filter(|a| keep(a)).collect();
        let order = |a: &&Action, b: &&Action| {
            b.created_ms
                .cmp(&a.created_ms)
                .then(a.action_id.cmp(&b.action_id))
        };
        (top(&mut v, limit, order), v.len())
    }

    /// Actions proposed since `since_ms`, counted by status.
    pub fn action_counts_since(&self, since_ms: i64) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        if let Ok(m) = self.actions.read() {
            for a in m.values().filter(|a| a.created_ms >= since_ms) {
                *out.entry(a.status.as_str()).or_default() += 1;
            }
        }
        out
    }

    pub fn incident(&self, id: &str) -> Option<Incident> {
        self.incidents.read().ok()?.get(id).cloned()
    }

    pub fn actions(&self) -> Vec<Action> {
        let mut v: Vec<Action> = self
            .actions
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| {
            b.created_ms
                .cmp(&a.created_ms)
                .then(a.action_id.cmp(&b.action_id))
        });
        v
    }

    pub fn action(&self, id: &str) -> Option<Action> {
        self.actions.read().ok()?.get(id).cloned()
    }

    pub fn breakers(&self) -> BTreeMap<String, Breaker> {
        self.breakers.read().map(|b| b.clone()).unwrap_or_default()
    }

    pub async fn approve(&self, id: &str, who: &str) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        self.ask(Msg::Approve {
            id: id.into(),
            who: who.into(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| "response has stopped".to_owned())?
    }

    pub async fn reject(&self, id: &str, who: &str, why: &str) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        self.ask(Msg::Reject {
            id: id.into(),
            who: who.into(),
            why: why.into(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| "response has stopped".to_owned())?
    }

    /// The actions of one incident, oldest first.
    pub fn actions_of(&self, incident_id: &str) -> Vec<Action> {
        let mut v: Vec<Action> = self
            .actions
            .read()
            .map(|m| {
                m.values()
                    .filter(|a| a.incident_id == incident_id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| {
            a.created_ms
                .cmp(&b.created_ms)
                .then(a.action_id.cmp(&b.action_id))
        });
        v
    }

    /// Audits a refused request (who, about what, why).
    pub async fn refused(&self, who: &str, subject: &str, why: &str) -> Result<(), String> {
        self.ask(Msg::Refused {
            who: who.into(),
            subject: subject.into(),
            why: why.into(),
        })
        .await
    }

    pub async fn reset_breaker(&self, connector: &str, who: &str) -> Result<bool, String> {
        let (reply, rx) = oneshot::channel();
        self.ask(Msg::Reset {
            connector: connector.into(),
            who: who.into(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| "response has stopped".to_owned())
    }

    async fn ask(&self, m: Msg) -> Result<(), String> {
        self.commands
            .send(m)
            .await
            .map_err(|_| "response has stopped".to_owned())
    }
}

/// The hub side: findings into the dispatcher's queue.
pub struct Tap {
    tx: Option<mpsc::Sender<Arc<Finding>>>,
}

impl Subscriber for Tap {
    fn accept(&mut self, f: &Arc<Finding>) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(f.clone()) {
            metrics::counter!(crate::metrics::RESPOND_FINDINGS_DROPPED).increment(1);
            tracing::warn!(finding = %f.finding_id, "response queue full: finding not evaluated for response");
        }
    }

    fn finish(&mut self) {
        self.tx = None;
    }
}

/// Rows the store takes (incidents, actions, audit).
pub type StoreSend = crate::store::sink::StoreHandle;

/// A started response.
pub struct Running {
    pub view: Arc<View>,
    pub task: tokio::task::JoinHandle<ResponseReport>,
}

/// What response did, for the run's summary.
#[derive(Debug, Default, serde::Serialize)]
pub struct ResponseReport {
    pub incidents: usize,
    pub actions: BTreeMap<String, usize>,
    pub audit_records: u64,
}

/// Starts response: opens the journal and the audit log, restores what
/// they hold, starts the connector workers; returns the hub tap.
pub fn start(
    c: Compiled,
    store: Option<StoreSend>,
    repeat: Vec<String>,
) -> anyhow::Result<(Tap, Running)> {
    let dir = PathBuf::from(&c.cfg.state_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut audit = AuditLog::open(&dir.join("audit.log"))?;
    let (mut journal, restored) = Journal::open(&dir.join("journal.jsonl"))
        .map_err(|e| anyhow::anyhow!("action journal in {}: {e}", dir.display()))?;
    if restored.skipped > 0 {
        tracing::warn!(
            lines = restored.skipped,
            "action journal: unreadable lines skipped (a torn write at a crash)"
        );
    }
    let mut incidents = Incidents::new(c.cfg.incident_horizon_secs, c.cfg.max_incidents);
    incidents.repeat.extend(repeat);
    for i in restored.incidents {
        incidents.restore(i);
    }
    let guarded = c.policy.guarded.clone();
    let mut d = Dispatcher::new(
        c.playbooks.clone(),
        c.policy.clone(),
        Assets::new(&c.cfg.assets),
        incidents,
        c.routes.clone(),
    );
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Msg>(1024);
    let (find_tx, mut find_rx) = mpsc::channel::<Arc<Finding>>(65_536);
    let view = Arc::new(View {
        incidents: RwLock::new(d.incidents.by_id.clone()),
        actions: RwLock::new(HashMap::new()),
        breakers: RwLock::new(BTreeMap::new()),
        tail: broadcast::channel(4096).0,
        changed: broadcast::channel(4096).0,
        guarded,
        commands: cmd_tx.clone(),
        evidence: RwLock::new(Evidence::default()),
        analyses: RwLock::new(HashMap::new()),
        audit_path: dir.join("audit.log"),
    });
    let mut queues: HashMap<String, mpsc::Sender<Action>> = HashMap::new();
    for spec in &c.connectors {
        let (tx, rx) = mpsc::channel(c.cfg.queue_capacity.max(1));
        queues.insert(spec.name().to_owned(), tx);
        tokio::spawn(worker(spec.clone(), rx, cmd_tx.clone()));
    }
    let drain = Duration::from_secs(c.cfg.drain_secs);
    let now = crate::time::now_ms();
    d.restore(restored.actions, now);
    // what the journal held is served at once, not only once it changes
    if let Ok(mut m) = view.actions.write() {
        m.extend(d.actions.iter().map(|(id, a)| (id.clone(), a.clone())));
    }
    let v = view.clone();
    let results = cmd_tx.clone();
    let task = tokio::spawn(async move {
        let mut fx = Apply {
            journal: &mut journal,
            audit: &mut audit,
            store,
            view: &v,
            queues: &queues,
            results: &results,
            checker: crate::net::http_client(None, Duration::from_secs(10)),
            records: 0,
        };
        fx.apply(&mut d).await;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut input_open = true;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                f = find_rx.recv(), if input_open => match f {
                    Some(f) => {
                        v.note_evidence(&f);
                        d.on_finding(&f, crate::time::now_ms());
                    }
                    None => {
                        input_open = false;
                        drain_deadline = Some(tokio::time::Instant::now() + drain);
                    }
                },
                m = cmd_rx.recv() => if let Some(m) = m { handle(&mut d, m) },
                _ = tick.tick() => d.tick(crate::time::now_ms()),
            }
            fx.apply(&mut d).await;
            if let Some(deadline) = drain_deadline {
                // the input has ended: finish what runs, and verifications due before the deadline
                let left_ms = deadline
                    .saturating_duration_since(tokio::time::Instant::now())
                    .as_millis() as i64;
                let horizon = crate::time::now_ms() + left_ms;
                let busy = d.actions.values().any(|a| {
                    matches!(a.status, ActionStatus::Executing | ActionStatus::Approved)
                        || (a.status == ActionStatus::Succeeded
                            && a.verification.is_none()
                            && a.verify_due_ms.is_none_or(|t| t <= horizon))
                });
                if !busy || left_ms == 0 {
                    break;
                }
            }
        }
        let _ = fx.journal.sync();
        let _ = fx.audit.sync();
        let mut actions = BTreeMap::new();
        for a in d.actions.values() {
            *actions.entry(a.status.as_str().to_owned()).or_default() += 1;
        }
        ResponseReport {
            incidents: d.incidents.by_id.len(),
            actions,
            audit_records: fx.records,
        }
    });
    Ok((Tap { tx: Some(find_tx) }, Running { view, task }))
}

fn handle(d: &mut Dispatcher, m: Msg) {
    let now = crate::time::now_ms();
    match m {
        Msg::Executed { id, ok, output } => d.on_executed(&id, ok, output, now),
        Msg::Verified { id, ok, detail } => d.on_verified(&id, ok, detail, now),
        Msg::Approve { id, who, reply } => {
            let r = d.approve(&id, &who, now).map(|s| s.as_str().to_owned());
            let _ = reply.send(r);
        }
        Msg::Reject {
            id,
            who,
            why,
            reply,
        } => {
            let r = d
                .reject(&id, &who, &why, now)
                .map(|s| s.as_str().to_owned());
            let _ = reply.send(r);
        }
        Msg::Reset {
            connector,
            who,
            reply,
        } => {
            let _ = reply.send(d.reset_breaker(&connector, &who));
        }
        Msg::Refused { who, subject, why } => d.refused(&who, &subject, &why),
    }
}

/// Carries out a dispatcher's effects.
struct Apply<'a> {
    journal: &'a mut Journal,
    audit: &'a mut AuditLog,
    store: Option<StoreSend>,
    view: &'a View,
    queues: &'a HashMap<String, mpsc::Sender<Action>>,
    results: &'a mpsc::Sender<Msg>,
    /// For verifications (health URLs, Prometheus): built once, since
    /// loading the system's roots reads the disk.
    checker: Result<reqwest::Client, String>,
    records: u64,
}

impl Apply<'_> {
    async fn apply(&mut self, d: &mut Dispatcher) {
        loop {
            let effects = d.take_effects();
            if effects.is_empty() {
                break;
            }
            let mut incidents = Vec::new();
            let mut actions = Vec::new();
            let mut audits: Vec<AuditRecord> = Vec::new();
            let mut execute = Vec::new();
            for e in effects {
                match e {
                    Effect::Incident(id) => {
                        if !incidents.contains(&id) {
                            incidents.push(id);
                        }
                    }
                    Effect::Action(id) => {
                        if !actions.contains(&id) {
                            actions.push(id);
                        }
                    }
                    Effect::Audit {
                        actor,
                        decision,
                        subject,
                        detail,
                    } => {
                        match self.audit.append(
                            crate::time::now_ms(),
                            &actor,
                            &decision,
                            &subject,
                            &detail,
                        ) {
                            Ok(r) => audits.push(r),
                            Err(e) => tracing::error!(error = %e, "audit record not written"),
                        }
                    }
                    Effect::Execute(id) => execute.push(id),
                    Effect::Verify(id) => {
                        if let Some(a) = d.actions.get(&id).cloned() {
                            tokio::spawn(verify(a, self.checker.clone(), self.results.clone()));
                        }
                    }
                    Effect::Tail {
                        incident_id,
                        phase,
                        text,
                        action_id,
                    } => {
                        let _ = self.view.tail.send(TailEvent {
                            incident_id,
                            at_ms: crate::time::now_ms(),
                            phase,
                            text,
                            action_id,
                        });
                    }
                }
            }
            for id in &incidents {
                if let Some(i) = d.incidents.by_id.get(id) {
                    if let Err(e) = self.journal.incident(i) {
                        tracing::error!(error = %e, "journal write failed");
                    }
                    if let Ok(mut m) = self.view.incidents.write() {
                        m.insert(id.clone(), i.clone());
                    }
                }
            }
            for id in &actions {
                if let Some(a) = d.actions.get(id) {
                    if let Err(e) = self.journal.action(a) {
                        tracing::error!(error = %e, "journal write failed");
                    }
                    if let Ok(mut m) = self.view.actions.write() {
                        m.insert(id.clone(), a.clone());
                    }
                }
            }
            if let Ok(mut b) = self.view.breakers.write() {
                *b = d.state.breakers().clone();
            }
            let mut touched: Vec<&str> = incidents.iter().map(String::as_str).collect();
            for id in &actions {
                if let Some(a) = d.actions.get(id)
                    && !touched.contains(&a.incident_id.as_str())
                {
                    touched.push(&a.incident_id);
                }
            }
            for id in touched {
                let _ = self.view.changed.send(id.to_owned());
            }
            // durable before anything runs
            if let Err(e) = self.journal.sync() {
                tracing::error!(error = %e, "journal sync failed");
            }
            if let Err(e) = self.audit.sync() {
                tracing::error!(error = %e, "audit sync failed");
            }
            self.records += audits.len() as u64;
            if let Some(s) = &self.store {
                s.send(crate::store::spool::Batch::Incidents(
                    incidents
                        .iter()
                        .filter_map(|id| d.incidents.by_id.get(id))
                        .map(crate::store::rows::IncidentRow::from_incident)
                        .collect(),
                ))
                .await;
                s.send(crate::store::spool::Batch::Actions(
                    actions
                        .iter()
                        .filter_map(|id| d.actions.get(id))
                        .map(crate::store::rows::ActionRow::from_action)
                        .collect(),
                ))
                .await;
                s.send(crate::store::spool::Batch::Audit(
                    audits
                        .iter()
                        .map(crate::store::rows::AuditRow::from_record)
                        .collect(),
                ))
                .await;
            }
            for id in execute {
                let Some(a) = d.actions.get(&id).cloned() else {
                    continue;
                };
                let Some(q) = self.queues.get(&a.connector) else {
                    d.on_executed(
                        &id,
                        false,
                        format!("no connector named {}", a.connector),
                        crate::time::now_ms(),
                    );
                    continue;
                };
                match q.try_send(a) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(a)) => {
                        d.overflow(&a.action_id, crate::time::now_ms())
                    }
                    Err(mpsc::error::TrySendError::Closed(a)) => d.on_executed(
                        &a.action_id,
                        false,
                        "connector worker stopped".into(),
                        crate::time::now_ms(),
                    ),
                }
            }
        }
    }
}

/// Executes one connector's actions in order, retrying what may succeed
/// on a second try.
async fn worker(spec: ConnectorSpec, mut rx: mpsc::Receiver<Action>, results: mpsc::Sender<Msg>) {
    let mut conn: Option<Connector> = None;
    while let Some(a) = rx.recv().await {
        let mut outcome = Err("not run".to_owned());
        for attempt in 0..3u32 {
            if conn.is_none() {
                match Connector::start(&spec).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        outcome = Err(e);
                        tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { break };
            match c.execute(&a).await {
                Ok(out) => {
                    outcome = Ok(out);
                    break;
                }
                Err(e) => {
                    let retry = matches!(
                        e,
                        ConnectorError::External { retry: true, .. } | ConnectorError::Timeout(_)
                    );
                    outcome = Err(e.to_string());
                    if !retry {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                }
            }
        }
        let (ok, output) = match outcome {
            Ok(o) => (true, o),
            Err(e) => (false, e),
        };
        metrics::counter!(crate::metrics::RESPOND_EXECUTIONS, "connector" => spec.name().to_owned(), "outcome" => if ok { "ok" } else { "failed" }).increment(1);
        if results
            .send(Msg::Executed {
                id: a.action_id.clone(),
                ok,
                output,
            })
            .await
            .is_err()
        {
            break;
        }
    }
}

/// Runs an external verification.
async fn verify(a: Action, client: Result<reqwest::Client, String>, results: mpsc::Sender<Msg>) {
    let (ok, detail) = match (a.check.as_ref(), client) {
        (Some(CheckPlan::Unrenderable { why }), _) => (false, why.clone()),
        (_, Err(e)) => (false, e.clone()),
        (Some(CheckPlan::Http { url }), Ok(c)) => match c.get(url).send().await {
            Ok(r) if r.status().is_success() => {
                (true, format!("{url} answered {}", r.status().as_u16()))
            }
            Ok(r) => (false, format!("{url} answered {}", r.status().as_u16())),
            Err(e) => (false, format!("{url}: {}", e.without_url())),
        },
        (Some(CheckPlan::Prometheus { url, query, below }), Ok(c)) => {
            let u = format!("{}/api/v1/query", url.trim_end_matches('/'));
            match c.get(&u).query(&[("query", query)]).send().await {
                Ok(r) => match r.json::<serde_json::Value>().await {
                    Ok(v) => match first_value(&v) {
                        Some(x) if x < *below => (true, format!("{query} = {x} < {below}")),
                        Some(x) => (false, format!("{query} = {x}, not below {below}")),
                        None => (false, format!("{query}: no value in the answer")),
                    },
                    Err(e) => (false, format!("prometheus answer: {e}")),
                },
                Err(e) => (false, format!("prometheus: {}", e.without_url())),
            }
        }
        (_, Ok(_)) => (true, "no external check".into()),
    };
    let _ = results
        .send(Msg::Verified {
            id: a.action_id,
            ok,
            detail,
        })
        .await;
}

/// The first sample's value of a Prometheus instant-query answer.
fn first_value(v: &serde_json::Value) -> Option<f64> {
    let r = &v["data"]["result"];
    let pair = if r.is_array() { &r[0]["value"] } else { r };
    pair.get(1)?.as_str()?.parse().ok()
}
