//! The notifier task: reads changed incidents from response's view, routes
//! and renders them into the outbox, and sends what waits there, one
//! message at a time per channel, within the channel's rate, outside its
//! quiet hours (critical incidents excepted), backing off with jitter
//! on failures and honouring `Retry-After`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::Outcome;
use super::config::ChannelSpec;
use super::outbox::Outbox;
use super::render::Notice;
use super::slack;
use super::{Compiled, webhook};
use crate::respond::connectors::Secret;
use crate::respond::policy::Window;
use crate::respond::runtime::View;

/// Updates of one incident closer together than this are sent as one.
const GROUP: Duration = Duration::from_millis(250);
/// After the input ends, how long a run still sends what waits.
const DRAIN: Duration = Duration::from_secs(10);
/// Incident analyses asked of the endpoint at the same time.
const ANALYSES_AT_ONCE: usize = 2;

/// A Slack channel's interactive side, for `POST /slack/interactions`.
#[derive(Clone)]
pub struct Interactive {
    pub channel: String,
    pub signing_secret: Secret,
    pub approvers: BTreeMap<String, String>,
}

pub struct Running {
    pub task: tokio::task::JoinHandle<NotifyReport>,
    pub interactive: Vec<Interactive>,
    /// Messages that are not about one incident (the daily report).
    pub post: mpsc::Sender<Post>,
}

/// A message for one channel, put in the outbox as it is.
#[derive(Debug)]
pub struct Post {
    /// What it is about, after the channel's part (`report-2026-12-01`).
    pub about: String,
    pub channel: String,
    pub body: Value,
}

/// What the notifier did, for the run's summary.
#[derive(Debug, Default, serde::Serialize)]
pub struct NotifyReport {
    pub sent: BTreeMap<String, u64>,
    pub retried: BTreeMap<String, u64>,
    pub dead: BTreeMap<String, u64>,
    pub left_in_outbox: usize,
}

/// A channel ready to send: its secrets read.
struct Channel {
    spec: ChannelSpec,
    quiet: Vec<Window>,
    token: Option<Secret>,
    webhook_url: Option<Secret>,
    secret: Option<Secret>,
    /// Sending now (at most one message per channel at a time).
    busy: bool,
    failures: u32,
    next_at: Instant,
    tokens: f64,
    refilled: Instant,
}

struct Done {
    channel: String,
    seq: u64,
    key: String,
    outcome: Outcome,
}

fn resolve(s: &Option<crate::respond::connectors::SecretRef>) -> anyhow::Result<Option<Secret>> {
    s.as_ref()
        .map(|r| r.resolve().map_err(|e| anyhow::anyhow!(e)))
        .transpose()
}

/// Starts the notifier; it stops when `stop` turns true, after sending
/// what it can within [`DRAIN`] (the rest stays in the outbox).
pub fn start(
    c: Compiled,
    view: Arc<View>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Running> {
    let dir = PathBuf::from(&c.cfg.state_dir);
    let mut outbox = Outbox::open(&dir)
        .map_err(|e| anyhow::anyhow!("notify outbox in {}: {e}", dir.display()))?;
    if outbox.skipped_at_open > 0 {
        tracing::warn!(
            lines = outbox.skipped_at_open,
            "notify outbox: unreadable lines skipped (a torn write at a crash)"
        );
    }
    let now = Instant::now();
    let mut channels: HashMap<String, Channel> = HashMap::new();
    let mut interactive = Vec::new();
    for (spec, quiet) in &c.channels {
        let (token, webhook_url, secret) = match spec {
            ChannelSpec::Slack(s) => {
                if let Some(sec) = resolve(&s.signing_secret)? {
                    interactive.push(Interactive {
                        channel: s.name.clone(),
                        signing_secret: sec,
                        approvers: s.approvers.clone(),
                    });
                }
                (resolve(&s.token)?, resolve(&s.webhook_url)?, None)
            }
            ChannelSpec::Webhook(w) => (None, None, resolve(&w.secret)?),
            ChannelSpec::Jira(j) => (resolve(&Some(j.token.clone()))?, None, None),
            ChannelSpec::Email(e) => (None, None, resolve(&e.password)?),
        };
        let rate = f64::from(spec.pacing().0);
        channels.insert(
            spec.name().to_owned(),
            Channel {
                spec: spec.clone(),
                quiet: quiet.clone(),
                token,
                webhook_url,
                secret,
                busy: false,
                failures: 0,
                next_at: now,
                tokens: rate,
                refilled: now,
            },
        );
    }
    let client = crate::net::http_client(
        c.cfg.ca_file.as_deref(),
        Duration::from_millis(c.cfg.retry.timeout_ms),
    )
    .map_err(|e| anyhow::anyhow!("notify: {e}"))?;
    let ca_pem: Option<Arc<Vec<u8>>> = match &c.cfg.ca_file {
        Some(p) => Some(Arc::new(
            std::fs::read(p).map_err(|e| anyhow::anyhow!("notify ca_file {p}: {e}"))?,
        )),
        None => None,
    };
    let timeout = Duration::from_millis(c.cfg.retry.timeout_ms);
    let (post_tx, mut post_rx) = mpsc::channel::<Post>(16);
    let analyst = match &c.analysis {
        Some(a) => Some(
            crate::analysis::Analyst::new(a, c.cfg.ca_file.as_deref())
                .map_err(|e| anyhow::anyhow!("analysis: {e}"))?,
        ),
        None => None,
    };
    let (analysed_tx, mut analysed_rx) = mpsc::channel::<(String, String)>(64);
    // a storm of incidents asks the endpoint a few at a time
    let asking_at_once = Arc::new(tokio::sync::Semaphore::new(ANALYSES_AT_ONCE));
    let mut changed = view.changed.subscribe();
    let task = tokio::spawn(async move {
        let (done_tx, mut done_rx) = mpsc::channel::<Done>(64);
        let mut report = NotifyReport::default();
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut first_dirty: Option<Instant> = None;
        let mut drain_until: Option<Instant> = None;
        let mut closed = false;
        let mut jitter = Jitter::new();
        let mut asking: BTreeSet<String> = BTreeSet::new();
        let mut inplace: BTreeSet<String> = BTreeSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                r = changed.recv(), if !closed => match r {
                    Ok(id) => { dirty.insert(id); }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        dirty.extend(view.incidents().into_iter().map(|i| i.incident_id));
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        closed = true;
                        drain_until.get_or_insert(Instant::now() + DRAIN);
                    }
                },
                Some(d) = done_rx.recv() => {
                    settle(&mut outbox, &mut channels, d, &c, &mut report, &mut jitter);
                }
                Some((id, text)) = analysed_rx.recv() => {
                    // kept with the outbox, so a restart does not ask again
                    let kept = outbox
                        .set_ref(&format!("analysis:{id}"), &text)
                        .and_then(|()| outbox.sync());
                    if let Err(e) = kept {
                        tracing::error!(error = %e, "notify outbox write failed");
                    }
                    view.note_analysis(&id, &text);
                    asking.remove(&id);
                    // only messages updated in place show it now; the
                    // others carry it from the incident's next state
                    if !dirty.contains(&id) {
                        inplace.insert(id);
                    }
                }
                Some(p) = post_rx.recv() => {
                    let prefix = channels.get(&p.channel).map(|ch| channel_prefix(&ch.spec));
                    if let Some(prefix) = prefix {
                        let key = format!("{prefix}:{}", p.about);
                        let put = outbox
                            .put(&key, &p.channel, p.body, crate::time::now_ms())
                            .and_then(|_| outbox.sync());
                        if let Err(e) = put {
                            tracing::error!(error = %e, channel = %p.channel, "notify outbox write failed");
                        }
                    }
                }
                _ = stop.changed(), if drain_until.is_none() => {
                    drain_until.get_or_insert(Instant::now() + DRAIN);
                }
                _ = tick.tick() => {}
            }
            if !dirty.is_empty() || !inplace.is_empty() {
                let since = *first_dirty.get_or_insert_with(Instant::now);
                if since.elapsed() >= GROUP || drain_until.is_some() {
                    first_dirty = None;
                    let now_ms = crate::time::now_ms();
                    let only_inplace = std::mem::take(&mut inplace);
                    let all = std::mem::take(&mut dirty);
                    for (id, every) in all
                        .into_iter()
                        .map(|id| (id, true))
                        .chain(only_inplace.into_iter().map(|id| (id, false)))
                    {
                        let Some(incident) = view.incident(&id) else {
                            continue;
                        };
                        let analysis = outbox
                            .reference(&format!("analysis:{id}"))
                            .map(str::to_owned);
                        if let Some(a) = &analysis {
                            view.note_analysis(&id, a);
                        }
                        let n = Notice {
                            actions: view.actions_of(&id),
                            incident,
                            analysis,
                        };
                        // advice is written once per incident, off this loop
                        if let Some(a) = &analyst
                            && n.analysis.is_none()
                            && asking.insert(id.clone())
                        {
                            let (a, n, tx) = (a.clone(), n.clone(), analysed_tx.clone());
                            let evidence = view.evidence_of(&n.incident);
                            let permits = asking_at_once.clone();
                            tokio::spawn(async move {
                                let Ok(_permit) = permits.acquire_owned().await else {
                                    return;
                                };
                                let text = a.incident(&n, &evidence).await;
                                let _ = tx.send((n.incident.incident_id.clone(), text)).await;
                            });
                        }
                        for ch in c.channels_for(&n) {
                            let Some(channel) = channels.get(ch) else {
                                continue;
                            };
                            let updates_in_place =
                                matches!(&channel.spec, ChannelSpec::Slack(s) if s.token.is_some());
                            if !every && !updates_in_place {
                                // a webhook hears of the advice on its own
                                if let (ChannelSpec::Webhook(w), Some(text)) =
                                    (&channel.spec, &n.analysis)
                                {
                                    let body = json!({
                                        "type": "analysis",
                                        "incident_id": n.incident.incident_id,
                                        "severity": format!("{:?}", n.incident.severity).to_lowercase(),
                                        "analysis": text,
                                    });
                                    let key = format!(
                                        "webhook:{}:analysis:{}",
                                        w.name, n.incident.incident_id
                                    );
                                    if let Err(e) = outbox.put(&key, ch, body, now_ms) {
                                        tracing::error!(error = %e, channel = ch, "notify outbox write failed");
                                    }
                                }
                                continue;
                            }
                            let (key, body) = render(&channel.spec, &n);
                            // a ticket is opened only when policy says so;
                            // once open, it hears of every later state
                            if let ChannelSpec::Jira(j) = &channel.spec
                                && outbox.reference(&key).is_none_or(str::is_empty)
                                && !super::jira::wanted(j, &n)
                            {
                                continue;
                            }
                            if let Err(e) = outbox.put(&key, ch, body, now_ms) {
                                tracing::error!(error = %e, channel = ch, "notify outbox write failed");
                            }
                        }
                    }
                    // durable before anything is sent
                    if let Err(e) = outbox.sync() {
                        tracing::error!(error = %e, "notify outbox sync failed");
                    }
                }
            }
            dispatch(
                &mut outbox,
                &mut channels,
                &client,
                ca_pem.as_ref(),
                timeout,
                &done_tx,
            );
            if let Some(t) = drain_until {
                // changes announced before the stop are still told
                loop {
                    match changed.try_recv() {
                        Ok(id) => {
                            dirty.insert(id);
                        }
                        Err(broadcast::error::TryRecvError::Lagged(_)) => {
                            dirty.extend(view.incidents().into_iter().map(|i| i.incident_id));
                        }
                        Err(_) => break,
                    }
                }
                let busy = channels.values().any(|ch| ch.busy);
                let idle = outbox.pending() == 0
                    && !busy
                    && dirty.is_empty()
                    && inplace.is_empty()
                    && asking.is_empty();
                if idle || Instant::now() >= t {
                    break;
                }
            }
        }
        let _ = outbox.sync();
        report.left_in_outbox = outbox.pending();
        if report.left_in_outbox > 0 {
            tracing::warn!(
                messages = report.left_in_outbox,
                path = %outbox.path().display(),
                "notify: messages left in the outbox for the next start"
            );
        }
        report
    });
    Ok(Running {
        task,
        interactive,
        post: post_tx,
    })
}

/// The outbox key and body of a notice for one channel.
fn render(spec: &ChannelSpec, n: &Notice) -> (String, Value) {
    let i = &n.incident;
    let severity = format!("{:?}", i.severity).to_lowercase();
    match spec {
        ChannelSpec::Slack(s) => {
            let mut body = slack::message(n);
            body["severity"] = json!(severity);
            // a webhook cannot update: one message per incident state
            let key = if s.token.is_some() {
                format!("slack:{}:{}", s.name, i.incident_id)
            } else {
                format!("slack:{}:{}:{}", s.name, i.incident_id, i.status.as_str())
            };
            (key, body)
        }
        ChannelSpec::Webhook(w) => (
            format!("webhook:{}:{}", w.name, i.incident_id),
            json!({"type": "incident", "severity": severity, "incident": i, "actions": n.actions, "analysis": n.analysis}),
        ),
        ChannelSpec::Jira(j) => (
            format!("jira:{}:{}", j.name, i.incident_id),
            super::jira::body(n),
        ),
        // a mail cannot be updated: one per incident state
        ChannelSpec::Email(e) => (
            format!("email:{}:{}:{}", e.name, i.incident_id, i.status.as_str()),
            super::email::incident_body(n),
        ),
    }
}

/// The first two parts of a channel's outbox keys (`slack:soc`).
fn channel_prefix(spec: &ChannelSpec) -> String {
    let kind = match spec {
        ChannelSpec::Slack(_) => "slack",
        ChannelSpec::Webhook(_) => "webhook",
        ChannelSpec::Jira(_) => "jira",
        ChannelSpec::Email(_) => "email",
    };
    format!("{kind}:{}", spec.name())
}

/// The channel part of an outbox key (`slack:soc` of `slack:soc:i-1`).
fn channel_key(key: &str) -> &str {
    key.match_indices(':')
        .nth(1)
        .map_or(key, |(i, _)| &key[..i])
}

/// Starts a send on every channel that is idle, due, within its rate and
/// has a message that may go now.
fn dispatch(
    outbox: &mut Outbox,
    channels: &mut HashMap<String, Channel>,
    client: &reqwest::Client,
    ca_pem: Option<&Arc<Vec<u8>>>,
    timeout: Duration,
    done: &mpsc::Sender<Done>,
) {
    let now = Instant::now();
    let now_ms = crate::time::now_ms();
    for (name, ch) in channels.iter_mut() {
        if ch.busy || now < ch.next_at {
            continue;
        }
        let rate = f64::from(ch.spec.pacing().0);
        ch.tokens = (ch.tokens + ch.refilled.elapsed().as_secs_f64() * rate / 60.0).min(rate);
        ch.refilled = now;
        if ch.tokens < 1.0 {
            ch.next_at = now + Duration::from_secs_f64((1.0 - ch.tokens) * 60.0 / rate);
            continue;
        }
        let quiet = ch.quiet.iter().any(|w| w.contains(now_ms));
        let Some(e) = outbox.next_for(name, |e| !quiet || e.body["severity"] == "critical") else {
            continue;
        };
        ch.tokens -= 1.0;
        ch.busy = true;
        let (seq, key, body) = (e.seq, e.key.clone(), e.body.clone());
        let remembered = |suffix: &str| {
            outbox
                .reference(&format!("{key}{suffix}"))
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
        };
        let reference = remembered("");
        let told = remembered("#told")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let transitioned = remembered("#transitioned").is_some();
        // a Slack post that may have landed before a crash: look for it
        // before posting again
        let recover_in = match (&reference, remembered("#posting")) {
            (None, Some(_)) => outbox
                .reference(&format!("{}@channel", channel_key(&key)))
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
            _ => None,
        };
        if let ChannelSpec::Slack(s) = &ch.spec
            && s.token.is_some()
            && reference.is_none()
        {
            // durable before the post leaves
            let marked = outbox
                .set_ref(&format!("{key}#posting"), "1")
                .and_then(|()| outbox.sync());
            if let Err(e) = marked {
                tracing::error!(error = %e, "notify outbox write failed");
            }
        }
        let (spec, client, done) = (ch.spec.clone(), client.clone(), done.clone());
        let (token, hook, secret) = (ch.token.clone(), ch.webhook_url.clone(), ch.secret.clone());
        let name = name.clone();
        let ca_pem = ca_pem.cloned();
        tokio::spawn(async move {
            let outcome = match (&spec, token, hook) {
                (ChannelSpec::Slack(s), Some(t), _) => {
                    slack::send_bot(
                        &client,
                        &s.api_url,
                        &t,
                        s.channel.as_deref().unwrap_or_default(),
                        &body,
                        reference.as_deref(),
                        recover_in.as_deref(),
                    )
                    .await
                }
                (ChannelSpec::Slack(_), None, Some(h)) => {
                    slack::send_webhook(&client, &h, &body).await
                }
                (ChannelSpec::Slack(s), None, None) => {
                    Outcome::Dead(format!("slack channel {} has no token or webhook", s.name))
                }
                (ChannelSpec::Jira(j), Some(t), _) => {
                    super::jira::Jira {
                        spec: j,
                        client: &client,
                        token: &t,
                    }
                    .send(
                        &body,
                        super::jira::Known {
                            key: reference.as_deref(),
                            told,
                            transitioned,
                        },
                    )
                    .await
                }
                (ChannelSpec::Jira(j), None, _) => {
                    Outcome::Dead(format!("jira channel {} has no token", j.name))
                }
                (ChannelSpec::Email(e), _, _) => {
                    super::email::Mailer {
                        spec: e,
                        password: secret.as_ref(),
                        ca_pem: ca_pem.as_deref().map(Vec::as_slice),
                        timeout,
                    }
                    .send(&key, &body)
                    .await
                }
                (ChannelSpec::Webhook(w), _, _) => {
                    webhook::send(
                        &client,
                        &w.url,
                        secret.as_ref(),
                        &key,
                        &body,
                        crate::time::now_ms() / 1000,
                    )
                    .await
                }
            };
            let _ = done
                .send(Done {
                    channel: name,
                    seq,
                    key,
                    outcome,
                })
                .await;
        });
    }
}

/// Records what became of a send.
fn settle(
    outbox: &mut Outbox,
    channels: &mut HashMap<String, Channel>,
    d: Done,
    c: &Compiled,
    report: &mut NotifyReport,
    jitter: &mut Jitter,
) {
    let Some(ch) = channels.get_mut(&d.channel) else {
        return;
    };
    ch.busy = false;
    let written = match d.outcome {
        Outcome::Sent(refs) => {
            ch.failures = 0;
            *report.sent.entry(d.channel.clone()).or_default() += 1;
            metrics::counter!(crate::metrics::NOTIFY_SENT, "channel" => d.channel.clone())
                .increment(1);
            refs.iter()
                .try_for_each(|(suffix, v)| {
                    // `@…` is the channel's, not the message's
                    let key = if suffix.starts_with('@') {
                        format!("{}{suffix}", channel_key(&d.key))
                    } else {
                        format!("{}{suffix}", d.key)
                    };
                    outbox.set_ref(&key, v)
                })
                .and_then(|()| outbox.ack(d.seq))
        }
        Outcome::Gone => {
            // the message was deleted: the next send posts a new one
            tracing::warn!(channel = %d.channel, key = %d.key, "notify: the message to update is gone; posting anew");
            outbox.set_ref(&d.key, "")
        }
        Outcome::Retry { after, why } => {
            ch.failures = ch.failures.saturating_add(1);
            *report.retried.entry(d.channel.clone()).or_default() += 1;
            metrics::counter!(crate::metrics::NOTIFY_RETRIES, "channel" => d.channel.clone())
                .increment(1);
            let cap = c
                .cfg
                .retry
                .initial_ms
                .saturating_mul(1u64 << ch.failures.min(20))
                .min(c.cfg.retry.max_ms);
            // equal jitter: half the backoff, plus up to as much again
            let wait =
                after.unwrap_or_else(|| Duration::from_millis(cap / 2 + jitter.below(cap / 2 + 1)));
            ch.next_at = Instant::now() + wait;
            tracing::warn!(channel = %d.channel, attempt = ch.failures, wait_ms = wait.as_millis() as u64, "notify: {why}; retrying");
            Ok(())
        }
        Outcome::Dead(why) => {
            *report.dead.entry(d.channel.clone()).or_default() += 1;
            metrics::counter!(crate::metrics::NOTIFY_DEAD, "channel" => d.channel.clone())
                .increment(1);
            tracing::error!(channel = %d.channel, key = %d.key, "notify: {why}; message dropped");
            outbox.dead(d.seq, &why)
        }
    };
    if let Err(e) = written.and_then(|()| outbox.sync()) {
        tracing::error!(error = %e, "notify outbox write failed");
    }
}

/// Jitter for backoff (not for anything secret).
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        Jitter(crate::time::now_ms() as u64 | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
