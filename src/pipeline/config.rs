//! Pipeline files (`pipelines/*.yaml`): sources, transforms, detectors, sinks.
//! Sources and sinks are closed, tagged enums: every component is
//! registered here and matched exhaustively.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cluster::DrainConfig;
use crate::ingest::config::{AlertmanagerConfig, LokiPushConfig, LokiQueryConfig, SyslogConfig};
use crate::nats::config::{NatsSinkConfig, NatsSourceConfig};
use crate::parse::{Format, JsonMapping};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// File format version; 1.
    pub version: u32,
    pub name: String,
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub transforms: TransformsConfig,
    #[serde(default)]
    pub detect: DetectConfig,
    pub sinks: Vec<SinkConfig>,
    /// Events per batch between stages. The default keeps a batch (events
    /// and their strings) within a core's L2 cache from one stage to the
    /// next, and finding latency low under a backlog; `replay` of files
    /// uses 1,024 (`PipelineSpec::REPLAY_BATCH`).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Groups of lines the parse stage's input channel holds (what the
    /// sources have read and the graph not yet taken), and batches of
    /// findings the sinks' channel holds, before senders wait. Between
    /// stages a single batch waits (see `pipeline::graph`).
    #[serde(default = "default_channel")]
    pub channel_capacity: usize,
    /// Pushed streams (Loki label sets, syslog peers) whose parser state is
    /// kept at once; past it the oldest is forgotten (and counted).
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Memory all ingestion may hold at once (request bodies, what they
    /// decompress and decode to, lines waiting for the parse stage), MiB;
    /// past it pushes get 503 with `Retry-After` and syslog waits.
    #[serde(default = "default_ingest_memory")]
    pub ingest_memory_mib: usize,
    /// Health, readiness and metrics over HTTP; off when absent.
    #[serde(default)]
    pub api: Option<crate::api::ApiConfig>,
    /// Incidents, playbooks and actions under the safety policy; off when
    /// absent (see `crate::respond`).
    #[serde(default)]
    pub respond: Option<crate::respond::RespondConfig>,
    /// Incidents to Slack and webhooks through a durable outbox; needs
    /// `respond:` (see `crate::notify`).
    #[serde(default)]
    pub notify: Option<crate::notify::NotifyConfig>,
    /// The daily report on a schedule, read from the pipeline's store
    /// (see `crate::report::schedule`); only in a long-lived pipeline.
    #[serde(default)]
    pub report: Option<crate::report::schedule::ReportSchedule>,
    /// Advice on incidents from an OpenAI-compatible endpoint, shown by
    /// notify (see `crate::analysis`); off when absent.
    #[serde(default)]
    pub analysis: Option<crate::analysis::AnalysisConfig>,
}

fn default_ingest_memory() -> usize {
    512
}
fn default_batch() -> usize {
    256
}
fn default_channel() -> usize {
    8
}
fn default_max_streams() -> usize {
    100_000
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Files read to the end (gzip inflated); each file is its own
    /// event-time domain, except that the files of a rotation set
    /// (`auth.log`, `auth.log.1`, `auth.log.2.gz`) are one, read oldest
    /// first (see `crate::rotation`).
    File {
        id: String,
        paths: Vec<String>,
        #[serde(default)]
        format: Format,
        /// `event.dataset` where the format does not say (e.g. `nginx.access`).
        #[serde(default)]
        dataset: Option<String>,
        /// `host.name` where the lines do not carry it.
        #[serde(default)]
        host: Option<String>,
        #[serde(default)]
        json_mapping: JsonMapping,
    },
    /// Standard input until end of file.
    Stdin {
        id: String,
        #[serde(default)]
        format: Format,
        #[serde(default)]
        dataset: Option<String>,
    },
    /// A JetStream stream read through a durable pull consumer (a long-lived
    /// worker; see `crate::nats`).
    Nats(NatsSourceConfig),
    /// Loki push (`POST /loki/api/v1/push`, JSON or snappy protobuf) on the
    /// API listener.
    LokiPush(LokiPushConfig),
    /// Alertmanager webhooks (`POST /alertmanager/webhook`) on the API listener.
    Alertmanager(AlertmanagerConfig),
    /// Syslog over UDP and TCP.
    Syslog(SyslogConfig),
    /// A LogQL query against Loki on a schedule.
    LokiQuery(LokiQueryConfig),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[derive(Default)]
pub struct TransformsConfig {
    #[serde(default)]
    pub dedupe: DedupeConfig,
    #[serde(default)]
    pub cluster: DrainConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupeConfig {
    /// Identical events this close in event time collapse.
    #[serde(default = "default_dedupe_window")]
    pub window_ms: i64,
    /// Alert keys remembered to drop Alertmanager resends.
    #[serde(default = "default_alert_keys")]
    pub max_alert_keys: usize,
}

fn default_dedupe_window() -> i64 {
    1000
}
fn default_alert_keys() -> usize {
    100_000
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            window_ms: default_dedupe_window(),
            max_alert_keys: default_alert_keys(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Folders of detector files, relative to the working directory.
    #[serde(default = "default_detector_paths")]
    pub paths: Vec<String>,
    /// Folders of Sigma rules (SigmaHQ format) to run beside the detectors:
    /// web server, proxy and Linux log sources. Rules that cannot run are
    /// reported by `threatpilot validate --sigma DIR`, with the reason.
    #[serde(default)]
    pub sigma: Vec<String>,
    /// Most window keys held; older ones are evicted (and counted) past it.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    #[serde(default = "default_lateness")]
    pub allowed_lateness_secs: u64,
    /// How far ahead of its receipt a pushed record's time may be before
    /// it is set to the receive time (and labelled `event.time_clamped_from`).
    #[serde(default = "default_future_skew")]
    pub max_future_skew_secs: u64,
    /// What an event further than `allowed_lateness_secs` behind the
    /// newest of its stream does: `drop` it (counted as late: the live
    /// default), or `segment`: the jump back starts a new segment of the
    /// stream (windows restart, open findings resolve), so rotated logs
    /// concatenated in any order are all evaluated (what `replay` uses).
    #[serde(default)]
    pub out_of_order: OutOfOrder,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutOfOrder {
    #[default]
    Drop,
    Segment,
}

fn default_detector_paths() -> Vec<String> {
    vec!["detectors".into()]
}
fn default_max_keys() -> usize {
    1_000_000
}
fn default_lateness() -> u64 {
    60
}
fn default_future_skew() -> u64 {
    300
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            paths: default_detector_paths(),
            sigma: Vec::new(),
            max_keys: default_max_keys(),
            allowed_lateness_secs: default_lateness(),
            max_future_skew_secs: default_future_skew(),
            out_of_order: OutOfOrder::Drop,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// Findings as JSON lines on stdout.
    Stdout {
        /// Every version of each finding, not only its final state.
        #[serde(default)]
        updates: bool,
    },
    /// Findings as JSON lines in a file (every version, appended in order).
    File { path: String },
    /// Every event after clustering as ECS JSON lines, as detection saw it
    /// (to check a source's mapping, or keep a local copy).
    Events { path: String },
    /// A Markdown summary written when the pipeline stops.
    Report { path: String },
    /// Every finding version published to JetStream (see `crate::nats`).
    Nats(NatsSinkConfig),
    /// Events, findings and templates into ClickHouse, spooled to disk
    /// while it is unreachable (see `crate::store`).
    Clickhouse(crate::store::ClickhouseSinkConfig),
    /// The same tables as Parquet files under a data folder, queried with
    /// `threatpilot sql` (the embedded store; see `crate::store::parquet`).
    Parquet(crate::store::parquet::ParquetSinkConfig),
}

impl PipelineSpec {
    /// Events per batch for `replay` of files as fast as they read. A live
    /// pipeline keeps the smaller default, which holds finding latency
    /// down when a backlog floods it; a replay is after throughput, and
    /// four times fewer hand-offs between stage threads (each one wakes a
    /// thread on the other core) cost 4 to 13% less CPU on real logs
    /// (OpenSSH, a benign access log, the web attack logs), where 2,048
    /// costs more again (batches fall out of cache).
    pub const REPLAY_BATCH: usize = 1024;

    /// Default transforms, detection and batching, with no sources or sinks
    /// yet (for `replay`, `bench` and tests, which add their own).
    pub fn defaults(name: &str) -> PipelineSpec {
        PipelineSpec {
            version: 1,
            name: name.to_owned(),
            sources: Vec::new(),
            transforms: TransformsConfig::default(),
            detect: DetectConfig::default(),
            sinks: Vec::new(),
            batch_size: default_batch(),
            channel_capacity: default_channel(),
            max_streams: default_max_streams(),
            ingest_memory_mib: default_ingest_memory(),
            api: None,
            respond: None,
            notify: None,
            report: None,
            analysis: None,
        }
    }
}

/// Parses a pipeline file's text; errors carry the line.
pub fn load_str(text: &str, path: &str) -> Result<PipelineSpec, crate::detect::CompileError> {
    let spec: PipelineSpec =
        serde_saphyr::from_str(text).map_err(|e| crate::detect::CompileError {
            path: path.to_owned(),
            line: e.location().map_or(0, |l| l.line()),
            message: crate::detect::first_line(&e.to_string()),
        })?;
    let err = |message: String| crate::detect::CompileError {
        path: path.to_owned(),
        line: 1,
        message,
    };
    if spec.version != 1 {
        return Err(err(format!(
            "unsupported pipeline file version {} (expected 1)",
            spec.version
        )));
    }
    if spec.sources.is_empty() || spec.sinks.is_empty() {
        return Err(err(
            "a pipeline needs at least one source and one sink".into()
        ));
    }
    let nats = spec
        .sources
        .iter()
        .filter(|s| matches!(s, SourceConfig::Nats(_)))
        .count();
    if nats > 0 && (nats > 1 || spec.sources.len() > 1) {
        return Err(err(
            "a NATS worker pipeline takes exactly one source, of type nats".into(),
        ));
    }
    if nats == 0 && spec.sinks.iter().any(|s| matches!(s, SinkConfig::Nats(_))) {
        return Err(err(
            "the nats sink needs the nats source (it runs in the worker)".into(),
        ));
    }
    let on_api = spec
        .sources
        .iter()
        .any(|s| matches!(s, SourceConfig::LokiPush(_) | SourceConfig::Alertmanager(_)));
    if on_api && spec.api.is_none() {
        return Err(err(
            "loki_push and alertmanager sources are served on the API: set api.listen".into(),
        ));
    }
    for s in &spec.sources {
        if let SourceConfig::Syslog(c) = s
            && c.udp.is_none()
            && c.tcp.is_none()
        {
            return Err(err(format!(
                "syslog source {:?} needs udp, tcp or both",
                c.id
            )));
        }
    }
    if nats > 0
        && spec
            .sinks
            .iter()
            .any(|s| matches!(s, SinkConfig::Clickhouse(_) | SinkConfig::Parquet(_)))
    {
        return Err(err(
            "the clickhouse and parquet sinks run in the stage graph; a NATS worker cannot use them yet"
                .into(),
        ));
    }
    let stores = spec
        .sinks
        .iter()
        .filter(|s| matches!(s, SinkConfig::Clickhouse(_) | SinkConfig::Parquet(_)))
        .count();
    // both stores take the same rows: the events picked once, for both
    let kept: Vec<(crate::store::EventsMode, f64)> = spec
        .sinks
        .iter()
        .filter_map(|s| match s {
            SinkConfig::Clickhouse(c) => Some((c.events, c.sample_rate)),
            SinkConfig::Parquet(p) => Some((p.events, p.sample_rate)),
            _ => None,
        })
        .collect();
    if kept.windows(2).any(|w| w[0] != w[1]) {
        return Err(err(
            "the clickhouse and parquet sinks of one pipeline store the same events: give them the same events and sample_rate".into(),
        ));
    }
    if spec
        .sinks
        .iter()
        .filter(|s| matches!(s, SinkConfig::Clickhouse(_)))
        .count()
        > 1
        || spec
            .sinks
            .iter()
            .filter(|s| matches!(s, SinkConfig::Parquet(_)))
            .count()
            > 1
    {
        return Err(err(
            "at most one clickhouse and one parquet sink per pipeline".into(),
        ));
    }
    if spec.notify.is_some() && spec.respond.is_none() {
        return Err(err(
            "notify sends incidents: it needs a respond section (observe mode is enough)".into(),
        ));
    }
    if spec.report.is_some() && stores == 0 {
        return Err(err(
            "report reads the pipeline's store: add a parquet or clickhouse sink".into(),
        ));
    }
    if nats > 0 && spec.respond.is_some() {
        return Err(err(
            "respond runs in the stage graph; a NATS worker cannot use it yet".into(),
        ));
    }
    if spec.batch_size == 0 || spec.channel_capacity == 0 {
        return Err(err(
            "batch_size and channel_capacity must be at least 1".into()
        ));
    }
    Ok(spec)
}
