//! Where a report reads from: the embedded store (DataFusion over the
//! Parquet tables) or ClickHouse. The report asks both the same SQL, kept
//! to what both dialects share (plain aggregates, `CASE`, `floor`), and
//! gets rows back as JSON objects, so one report is built from either.

use std::path::Path;

use serde_json::{Map, Value};

pub type Row = Map<String, Value>;

pub enum Source {
    Embedded(datafusion::prelude::SessionContext),
    Clickhouse {
        client: reqwest::Client,
        url: String,
        database: String,
        /// User and password, when the server asks for them.
        login: Option<(String, String)>,
    },
}

impl Source {
    /// The embedded store in `dir` (a `parquet` sink's folder).
    pub async fn embedded(dir: &Path) -> anyhow::Result<Source> {
        if !dir.is_dir() {
            anyhow::bail!(
                "no embedded store at {} (a pipeline's parquet sink `dir`)",
                dir.display()
            );
        }
        Ok(Source::Embedded(crate::store::parquet::session(dir).await?))
    }

    pub fn clickhouse(url: &str, database: &str, ca_file: Option<&str>) -> anyhow::Result<Source> {
        Ok(Source::Clickhouse {
            client: crate::net::http_client(ca_file, std::time::Duration::from_secs(60))
                .map_err(|e| anyhow::anyhow!(e))?,
            url: url.to_owned(),
            database: database.to_owned(),
            login: None,
        })
    }

    /// The ClickHouse a pipeline's sink writes to, with its login.
    pub fn clickhouse_sink(c: &crate::store::ClickhouseSinkConfig) -> anyhow::Result<Source> {
        let mut s = Source::clickhouse(&c.url, &c.database, None)?;
        if let (Source::Clickhouse { login, .. }, Some(user)) = (&mut s, &c.user) {
            let password = match &c.password_env {
                Some(v) => std::env::var(v)
                    .map_err(|_| anyhow::anyhow!("clickhouse password: {v} is not set"))?,
                None => String::new(),
            };
            *login = Some((user.clone(), password));
        }
        Ok(s)
    }

    /// Narrows the findings a report reads to [`from_ms`, `to_ms`) of
    /// first event, and returns what to name in `FROM`. The embedded store
    /// computes the latest version of each finding once into memory (the
    /// report's dozen queries then scan only that); ClickHouse gets a
    /// subquery it merges with `FINAL` per query.
    pub async fn scope_findings(&self, from_ms: i64, to_ms: i64) -> anyhow::Result<String> {
        let select = format!(
            "SELECT finding_id, domain, classification, severity, offender_type, offender_value, \
             event_count, detector_id, first_seen_ms, crossed_at_ms FROM findings_latest \
             WHERE first_seen_ms >= {from_ms} AND first_seen_ms < {to_ms}"
        );
        match self {
            Source::Embedded(ctx) => {
                ctx.sql(&format!(
                    "CREATE OR REPLACE TABLE report_findings AS {select}"
                ))
                .await?
                .collect()
                .await?;
                Ok("report_findings".into())
            }
            Source::Clickhouse { .. } => Ok(format!("({select})")),
        }
    }

    /// Runs one query; each row is a JSON object keyed by column name.
    pub async fn rows(&self, sql: &str) -> anyhow::Result<Vec<Row>> {
        match self {
            Source::Embedded(ctx) => {
                let batches = ctx.sql(sql).await?.collect().await?;
                let mut buf = Vec::new();
                {
                    let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
                    for b in &batches {
                        w.write(b)?;
                    }
                    w.finish()?;
                }
                parse_lines(&buf)
            }
            Source::Clickhouse { url, database, .. } => {
                let resp = self
                    .clickhouse_post()
                    .expect("a clickhouse source")
                    .query(&[
                        ("database", database.as_str()),
                        ("output_format_json_quote_64bit_integers", "0"),
                    ])
                    .body(format!("{sql} FORMAT JSONEachRow"))
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("clickhouse at {url}: {e}"))?;
                let status = resp.status();
                let body = resp.bytes().await?;
                if !status.is_success() {
                    anyhow::bail!(
                        "clickhouse answered {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    );
                }
                parse_lines(&body)
            }
        }
    }
}

impl Source {
    /// A POST to the ClickHouse server with its login, when it is one.
    pub fn clickhouse_post(&self) -> Option<reqwest::RequestBuilder> {
        let Source::Clickhouse {
            client, url, login, ..
        } = self
        else {
            return None;
        };
        let mut req = client.post(url);
        if let Some((user, password)) = login {
            req = req
                .header("X-ClickHouse-User", user)
                .header("X-ClickHouse-Key", password);
        }
        Some(req)
    }
}

fn parse_lines(buf: &[u8]) -> anyhow::Result<Vec<Row>> {
    buf.split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| Ok(serde_json::from_slice::<Row>(l)?))
        .collect()
}

/// A column as a number; ClickHouse may quote 64-bit integers, DataFusion
/// leaves nulls out of a row.
pub fn num(r: &Row, col: &str) -> f64 {
    match r.get(col) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

pub fn int(r: &Row, col: &str) -> i64 {
    match r.get(col) {
        Some(Value::Number(n)) => n
            .as_i64()
            .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

pub fn text(r: &Row, col: &str) -> String {
    match r.get(col) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}
