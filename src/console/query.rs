//! The query page: read-only SQL over the pipeline's store (DataFusion over
//! the Parquet tables, or ClickHouse), or a search of the event index, with
//! the answer as a table.
//!
//! Read-only is enforced where the query is read, not trusted to the
//! store: the text must parse as exactly one statement, a query, with no
//! statement nested in it and no `SELECT … INTO`; DataFusion then runs it
//! with DDL, DML and other statements turned off, and ClickHouse with
//! `readonly=2`. Every query has a row limit and a time limit.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use datafusion::sql::sqlparser;
use sqlparser::ast::{Query, SetExpr, Statement, Visit, Visitor};

use super::page::{self, esc, table};
use crate::api::ApiState;
use crate::report::source::Source;

/// A table of strings: column names and rows.
pub struct Answer {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// More rows were there than the limit let through.
    pub truncated: bool,
}

/// Refuses anything but one read-only query; `clickhouse` picks the dialect.
pub fn read_only(sql: &str, clickhouse: bool) -> Result<(), String> {
    let parsed = if clickhouse {
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::ClickHouseDialect {}, sql)
    } else {
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::GenericDialect {}, sql)
    };
    let statements = parsed.map_err(|e| format!("cannot read the query: {e}"))?;
    let [statement] = statements.as_slice() else {
        return Err(format!(
            "one statement at a time ({} given)",
            statements.len()
        ));
    };
    struct ReadOnly;
    impl Visitor for ReadOnly {
        type Break = String;
        fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<String> {
            match s {
                Statement::Query(_) => ControlFlow::Continue(()),
                other => {
                    let text = other.to_string();
                    let verb = text.split_whitespace().next().unwrap_or("that");
                    ControlFlow::Break(format!(
                        "only SELECT queries run here, not {}",
                        verb.to_uppercase()
                    ))
                }
            }
        }
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<String> {
            if writes(&q.body) {
                return ControlFlow::Break("SELECT … INTO writes a table: not here".into());
            }
            if q.settings.is_some() || q.format_clause.is_some() {
                return ControlFlow::Break("SETTINGS and FORMAT are set by the console".into());
            }
            ControlFlow::Continue(())
        }
    }
    fn writes(body: &SetExpr) -> bool {
        match body {
            SetExpr::Select(s) => s.into.is_some(),
            SetExpr::SetOperation { left, right, .. } => writes(left) || writes(right),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                true
            }
            _ => false,
        }
    }
    if !matches!(statement, Statement::Query(_)) {
        return match ReadOnly.pre_visit_statement(statement) {
            ControlFlow::Break(e) => Err(e),
            ControlFlow::Continue(()) => Err("only SELECT queries run here".into()),
        };
    }
    match statement.visit(&mut ReadOnly) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Runs a read-only query against the store with a row and time limit.
pub async fn sql(
    src: &Source,
    sql: &str,
    max_rows: usize,
    timeout: Duration,
) -> Result<Answer, String> {
    let sql = sql.trim().trim_end_matches(';');
    read_only(sql, matches!(src, Source::Clickhouse { .. }))?;
    let run = async {
        match src {
            Source::Embedded(ctx) => embedded(ctx, sql, max_rows).await,
            Source::Clickhouse { url, database, .. } => {
                let req = src.clickhouse_post().expect("a clickhouse source");
                let secs = timeout.as_secs().max(1).to_string();
                let rows = (max_rows + 1).to_string();
                let resp = req
                    .query(&[
                        ("database", database.as_str()),
                        ("readonly", "2"),
                        ("max_execution_time", secs.as_str()),
                        ("max_result_rows", rows.as_str()),
                        ("result_overflow_mode", "break"),
                    ])
                    .body(format!("{sql} FORMAT JSONCompact"))
                    .send()
                    .await
                    .map_err(|e| format!("clickhouse at {url}: {e}"))?;
                let status = resp.status();
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!(
                        "clickhouse answered {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    ));
                }
                compact(&body, max_rows)
            }
        }
    };
    tokio::time::timeout(timeout, run).await.map_err(|_| {
        format!(
            "the query ran longer than {} s and was stopped",
            timeout.as_secs()
        )
    })?
}

async fn embedded(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    max_rows: usize,
) -> Result<Answer, String> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(|e| e.to_string())?;
    let columns: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches = df
        .limit(0, Some(max_rows + 1))
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let opts = FormatOptions::default().with_null("NULL");
    for b in &batches {
        let cols: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        for r in 0..b.num_rows() {
            rows.push(cols.iter().map(|c| c.value(r).to_string()).collect());
        }
    }
    let truncated = rows.len() > max_rows;
    rows.truncate(max_rows);
    Ok(Answer {
        columns,
        rows,
        truncated,
    })
}

/// ClickHouse's `JSONCompact`: `meta` names the columns in order.
fn compact(body: &[u8], max_rows: usize) -> Result<Answer, String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct Compact {
        meta: Vec<Meta>,
        data: Vec<Vec<serde_json::Value>>,
    }
    let c: Compact =
        serde_json::from_slice(body).map_err(|e| format!("clickhouse's answer: {e}"))?;
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "NULL".into(),
        other => other.to_string(),
    };
    let truncated = c.data.len() > max_rows;
    Ok(Answer {
        columns: c.meta.into_iter().map(|m| m.name).collect(),
        rows: c
            .data
            .iter()
            .take(max_rows)
            .map(|r| r.iter().map(cell).collect())
            .collect(),
        truncated,
    })
}

/// Searches the event index (`threatpilot search` syntax).
pub async fn search(
    root: std::path::PathBuf,
    query: &str,
    max_rows: usize,
    timeout: Duration,
) -> Result<Answer, String> {
    let s = crate::search::Search {
        query: query.to_owned(),
        since: None,
        until: None,
        limit: max_rows,
    };
    let hits = tokio::time::timeout(timeout, tokio::task::spawn_blocking(move || s.run(&root)))
        .await
        .map_err(|_| format!("the search ran longer than {} s", timeout.as_secs()))?
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    const COLUMNS: &[&str] = &[
        "@timestamp",
        "event.dataset",
        "source.ip",
        "user.name",
        "event.outcome",
        "event.original",
    ];
    Ok(Answer {
        columns: COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
        truncated: hits.len() >= max_rows,
        rows: hits
            .iter()
            .map(|h| {
                COLUMNS
                    .iter()
                    .map(|c| match h.event.get(*c) {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                        None => String::new(),
                    })
                    .collect()
            })
            .collect(),
    })
}

#[derive(serde::Deserialize, Default)]
pub(super) struct QueryForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    text: String,
}

const EXAMPLE: &str = "SELECT offender_value, count(*) AS findings\nFROM findings_latest\nGROUP BY offender_value\nORDER BY findings DESC\nLIMIT 20";

fn form(who: &super::session::Session, mode: &str, text: &str) -> String {
    let checked = |m: &str| if mode == m { " checked" } else { "" };
    format!(
        r#"<form class="query" method="post" action="/console/query"><input type="hidden" name="csrf" value="{csrf}">
<label><input type="radio" name="mode" value="sql"{sql}> SQL (SELECT only)</label> <label><input type="radio" name="mode" value="search"{search}> Event search</label>
<textarea name="text" id="query-text" rows="7" spellcheck="false">{text}</textarea>
<button type="submit" id="run-query">Run</button></form>
<p class="sub">Tables: events, findings, findings_latest, templates, templates_latest, incidents, actions, audit. Search: <code>source.ip:203.0.113.7 AND "failed password"</code>.</p>"#,
        csrf = page::attr(&who.csrf),
        sql = checked("sql"),
        search = checked("search"),
        text = esc_multiline(text),
    )
}

/// Textarea content keeps its lines.
fn esc_multiline(s: &str) -> String {
    s.split('\n').map(esc).collect::<Vec<_>>().join("\n")
}

pub(super) async fn form_get(super::Who(who): super::Who) -> Response {
    page::page("Query", &who, "/console/query", &form(&who, "sql", EXAMPLE))
}

pub(super) async fn run(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    super::Who(who): super::Who,
    axum::Form(f): axum::Form<QueryForm>,
) -> Response {
    if let Err(e) = super::session::check_post(Some(&who), f.csrf.as_deref(), &headers) {
        return super::refuse(
            &s,
            Some(&who),
            StatusCode::FORBIDDEN,
            "csrf",
            "console query",
            &e.to_string(),
        )
        .await;
    }
    let Ok(c) = super::console(&s) else {
        return page::problem(StatusCode::NOT_FOUND, None, "the console is turned off");
    };
    let max = c.cfg.query_max_rows.clamp(1, 100_000);
    let timeout = Duration::from_secs(c.cfg.query_timeout_secs.max(1));
    let started = std::time::Instant::now();
    let answer = if f.mode == "search" {
        match c.ctx.search_root() {
            Some(root) => search(root, &f.text, max, timeout).await,
            None => {
                Err("event search needs the embedded store (a parquet sink with search)".into())
            }
        }
    } else {
        match &c.ctx.store {
            Some(store) => match open(store).await {
                Ok(src) => sql(&src, &f.text, max, timeout).await,
                Err(e) => Err(e),
            },
            None => Err("this pipeline has no store (a parquet or clickhouse sink)".into()),
        }
    };
    let ms = started.elapsed().as_millis();
    let mode = if f.mode == "search" { "search" } else { "sql" };
    let mut body = form(&who, mode, &f.text);
    let status = match answer {
        Ok(a) => {
            let rows: Vec<Vec<String>> = a
                .rows
                .iter()
                .map(|r| r.iter().map(|c| esc(&page::clip(c, 1000))).collect())
                .collect();
            let heads: Vec<&str> = a.columns.iter().map(String::as_str).collect();
            body.push_str(&format!(
                r#"<p class="sub" id="query-summary">{} rows{} in {ms} ms</p>{}"#,
                rows.len(),
                if a.truncated {
                    format!(" (the first {max}: more were left out)")
                } else {
                    String::new()
                },
                table("query-result", &heads, &rows, "No rows.")
            ));
            StatusCode::OK
        }
        Err(e) => {
            body.push_str(&format!(
                r#"<p class="error" id="query-error">{}</p>"#,
                esc(&e)
            ));
            StatusCode::BAD_REQUEST
        }
    };
    let mut r = page::page("Query", &who, "/console/query", &body);
    *r.status_mut() = status;
    r
}

async fn open(store: &crate::report::schedule::Store) -> Result<Source, String> {
    match store {
        crate::report::schedule::Store::Parquet(dir) => {
            Source::embedded(dir).await.map_err(|e| e.to_string())
        }
        crate::report::schedule::Store::Clickhouse(c) => {
            Source::clickhouse_sink(c).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_read_only_query_passes() {
        for ok in [
            "SELECT 1",
            "select offender_value, count(*) from findings_latest group by 1 order by 2 desc limit 5",
            "WITH t AS (SELECT * FROM findings) SELECT count(*) FROM t",
            "SELECT a FROM x UNION ALL SELECT b FROM y",
            "SELECT * FROM events WHERE source_ip IN (SELECT offender_value FROM findings)",
        ] {
            assert_eq!(read_only(ok, false), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("DROP TABLE findings", "DROP"),
            ("INSERT INTO findings VALUES (1)", "INSERT"),
            ("CREATE TABLE x AS SELECT 1", "CREATE"),
            ("SELECT 1; DROP TABLE findings", "one statement"),
            ("SELECT * INTO copy FROM findings", "INTO"),
            ("DELETE FROM findings", "DELETE"),
            ("COPY findings TO '/tmp/x.csv'", "COPY"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            // refused whether the dialect reads FORMAT or not
            ("SELECT 1 FORMAT TabSeparated", ""),
            ("SELEC 1", "cannot read"),
        ] {
            let e = read_only(bad, bad.contains("FORMAT")).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn clickhouse_compact_answers_keep_their_column_order() {
        let a = compact(
            br#"{"meta":[{"name":"z","type":"UInt64"},{"name":"a","type":"String"}],"data":[["3","x"],["2",null]],"rows":2}"#,
            1,
        )
        .unwrap();
        assert_eq!(a.columns, ["z", "a"]);
        assert_eq!(a.rows, [["3", "x"]]);
        assert!(a.truncated);
    }
}
