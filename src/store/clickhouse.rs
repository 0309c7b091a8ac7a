//! ClickHouse: numbered migrations (`deploy/clickhouse/`, embedded in the
//! binary), a start-time schema check, batched inserts, and retention.
//!
//! Features ClickHouse 18.16 lacks are used only where the server has
//! them: retention is a table TTL on 19.6 and newer, and dropping day
//! partitions older than the limit on older servers (checked at start and
//! every hour); a migration that says `-- requires: ClickHouse X.Y`
//! (LowCardinality and codecs) waits until the server is that new.
//! DateTime64 is not used: every time has an `*_ms` Int64 column beside
//! its DateTime, the same on all servers.

use std::collections::BTreeMap;

use ::clickhouse::{Client, Row, RowOwned, RowWrite};
use serde::Deserialize;

use super::config::ClickhouseSinkConfig;

/// The migrations, in order: (version, name, DDL with `{db}`).
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "schema_migrations",
        include_str!("../../deploy/clickhouse/001_schema_migrations.sql"),
    ),
    (
        2,
        "events",
        include_str!("../../deploy/clickhouse/002_events.sql"),
    ),
    (
        3,
        "findings",
        include_str!("../../deploy/clickhouse/003_findings.sql"),
    ),
    (
        4,
        "templates",
        include_str!("../../deploy/clickhouse/004_templates.sql"),
    ),
    (
        5,
        "response",
        include_str!("../../deploy/clickhouse/005_response.sql"),
    ),
    (
        6,
        "views",
        include_str!("../../deploy/clickhouse/006_views.sql"),
    ),
    (
        7,
        "events_extra",
        include_str!("../../deploy/clickhouse/007_events_extra.sql"),
    ),
    (
        8,
        "compact_columns",
        include_str!("../../deploy/clickhouse/008_compact_columns.sql"),
    ),
    (
        9,
        "response_detail",
        include_str!("../../deploy/clickhouse/009_response_detail.sql"),
    ),
];

/// The server version a migration needs (`-- requires: ClickHouse 20.1`),
/// if it says one.
pub fn requires(ddl: &str) -> Option<(u32, u32)> {
    let line = ddl
        .lines()
        .find_map(|l| l.trim().strip_prefix("-- requires: ClickHouse "))?;
    let (major, minor) = line.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Whether a migration applies to a server of this version.
pub fn applies(ddl: &str, server: (u32, u32)) -> bool {
    requires(ddl).is_none_or(|needed| server >= needed)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying: the server is down or busy.
    #[error("clickhouse unreachable: {0}")]
    Unreachable(String),
    /// The operator's to fix (schema, permissions, SQL).
    #[error("clickhouse: {0}")]
    Server(String),
    #[error("clickhouse schema: {0}")]
    Schema(String),
}

impl StoreError {
    pub fn retryable(&self) -> bool {
        matches!(self, StoreError::Unreachable(_))
    }
}

fn classify(e: ::clickhouse::error::Error) -> StoreError {
    use ::clickhouse::error::Error as E;
    match e {
        E::Network(_) | E::TimedOut => StoreError::Unreachable(e.to_string()),
        // the server answered: a bad statement or schema is not cured by retrying,
        // but an overloaded or restarting one is
        E::BadResponse(m)
            if m.contains("Too many") || m.contains("TOO_MANY") || m.contains("shutdown") =>
        {
            StoreError::Unreachable(m)
        }
        other => StoreError::Server(other.to_string()),
    }
}

#[derive(Clone)]
pub struct Clickhouse {
    client: Client,
    db: String,
    /// (major, minor) of the server.
    pub version: (u32, u32),
}

#[derive(Row, Deserialize)]
struct Text {
    s: String,
}

#[derive(Row, Deserialize)]
struct Column {
    table: String,
    name: String,
    ty: String,
}

impl Clickhouse {
    /// Connects and reads the server version.
    pub async fn connect(cfg: &ClickhouseSinkConfig) -> Result<Clickhouse, StoreError> {
        let mut client = Client::default().with_url(&cfg.url).with_validation(false);
        if let Some(u) = &cfg.user {
            client = client.with_user(u);
        }
        if let Some(p) = cfg
            .password_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
        {
            client = client.with_password(p);
        }
        let v = client
            .query("SELECT version() AS s")
            .fetch_one::<Text>()
            .await
            .map_err(classify)?
            .s;
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        Ok(Clickhouse {
            client,
            db: cfg.database.clone(),
            version,
        })
    }

    /// Runs a statement; `{db}` names this store's database.
    pub async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        let sql = sql.replace("{db}", &format!("`{}`", self.db));
        self.client.query(&sql).execute().await.map_err(classify)
    }

    /// Creates the database and applies the migrations it has not had;
    /// returns how many were applied.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        self.execute(&format!("CREATE DATABASE IF NOT EXISTS `{}`", self.db))
            .await?;
        self.execute(&migration_statements(MIGRATIONS[0].2, &self.db)[0])
            .await?;
        #[derive(Row, Deserialize)]
        struct V {
            v: u32,
        }
        // a set, not a maximum: a migration skipped for an old server
        // applies after an upgrade even when later ones have run
        let done: Vec<u32> = self
            .client
            .query(&format!(
                "SELECT version AS v FROM `{}`.schema_migrations",
                self.db
            ))
            .fetch_all::<V>()
            .await
            .map_err(classify)?
            .into_iter()
            .map(|r| r.v)
            .collect();
        let mut applied = 0;
        for (version, name, ddl) in MIGRATIONS.iter().filter(|m| !done.contains(&m.0)) {
            if !applies(ddl, self.version) {
                tracing::info!(
                    version,
                    name,
                    server = %format!("{}.{}", self.version.0, self.version.1),
                    "clickhouse migration waits for a newer server"
                );
                continue;
            }
            for st in migration_statements(ddl, &self.db) {
                self.execute(&st).await?;
            }
            self.execute(&format!(
                "INSERT INTO `{}`.schema_migrations (version, name, applied_at) VALUES ({version}, '{name}', now())",
                self.db
            ))
            .await?;
            tracing::info!(version, name, "clickhouse migration applied");
            applied += 1;
        }
        Ok(applied)
    }

    /// Compares every table's columns with the migrations' DDL: a mismatch
    /// (an older or hand-edited table) is an error naming the column.
    pub async fn verify_schema(&self) -> Result<(), StoreError> {
        let cols = self
            .client
            .query("SELECT table, name, type AS ty FROM system.columns WHERE database = ? ORDER BY table, position")
            .bind(&self.db)
            .fetch_all::<Column>()
            .await;
        // 18.16 has no `position` column: keep the server's order instead
        let cols = match cols {
            Ok(c) => c,
            Err(_) => self
                .client
                .query("SELECT table, name, type AS ty FROM system.columns WHERE database = ?")
                .bind(&self.db)
                .fetch_all::<Column>()
                .await
                .map_err(classify)?,
        };
        let mut have: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for c in cols {
            have.entry(c.table).or_default().push((c.name, c.ty));
        }
        for (table, want) in expected_columns() {
            let got = have.get(&table).cloned().unwrap_or_default();
            if got.is_empty() {
                return Err(StoreError::Schema(format!(
                    "table {}.{table} is missing",
                    self.db
                )));
            }
            // columns added or dropped are named, whatever the count
            let names =
                |v: &[(String, String)]| -> Vec<String> { v.iter().map(|c| c.0.clone()).collect() };
            let (g, w) = (names(&got), names(&want));
            let missing: Vec<&str> = w
                .iter()
                .filter(|c| !g.contains(c))
                .map(String::as_str)
                .collect();
            let extra: Vec<&str> = g
                .iter()
                .filter(|c| !w.contains(c))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() || !extra.is_empty() || got.len() != want.len() {
                let mut what = Vec::new();
                if !missing.is_empty() {
                    what.push(format!("missing {}", missing.join(", ")));
                }
                if !extra.is_empty() {
                    what.push(format!("not written by this version: {}", extra.join(", ")));
                }
                return Err(StoreError::Schema(format!(
                    "{}.{table} has {} columns, this version writes {} ({}): migrate or recreate it",
                    self.db,
                    got.len(),
                    want.len(),
                    what.join("; ")
                )));
            }
            for ((gn, gt), (wn, wt)) in got.iter().zip(&want) {
                if gn != wn || plain_type(gt) != plain_type(wt) {
                    return Err(StoreError::Schema(format!(
                        "{}.{table}: column {gn} {gt} where {wn} {wt} is expected",
                        self.db
                    )));
                }
            }
        }
        Ok(())
    }

    /// Inserts rows as one INSERT (RowBinary).
    pub async fn insert<R>(&self, table: &str, rows: &[R]) -> Result<(), StoreError>
    where
        R: RowOwned + RowWrite + for<'a> Row<Value<'a> = R>,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let name = format!("`{}`.`{table}`", self.db);
        let mut insert = self
            .client
            .insert_unescaped::<R>(&name)
            .await
            .map_err(classify)?;
        for r in rows {
            insert.write(r).await.map_err(classify)?;
        }
        insert.end().await.map_err(classify)
    }

    /// Retention: TTL where the server has it, else drops day partitions
    /// older than the limit. Returns partitions dropped.
    pub async fn enforce_retention(
        &self,
        days: &BTreeMap<String, u32>,
    ) -> Result<usize, StoreError> {
        let mut dropped = 0;
        for (table, keep) in days {
            if self.version >= (19, 6) {
                self.execute(&ttl_statement(&self.db, table, *keep)).await?;
                continue;
            }
            let cutoff = crate::time::now_ms() / 86_400_000 - i64::from(*keep);
            let cutoff = crate::time::format_rfc3339(cutoff * 86_400_000);
            let cutoff: u32 = cutoff[..10].replace('-', "").parse().unwrap_or(0);
            let parts = self
                .client
                .query("SELECT DISTINCT partition AS s FROM system.parts WHERE database = ? AND table = ? AND active")
                .bind(&self.db)
                .bind(table.as_str())
                .fetch_all::<Text>()
                .await
                .map_err(classify)?;
            for p in parts {
                if p.s.parse::<u32>().is_ok_and(|d| d < cutoff) {
                    self.execute(&format!(
                        "ALTER TABLE `{}`.`{table}` DROP PARTITION {}",
                        self.db, p.s
                    ))
                    .await?;
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }

    /// A query's single string column (`SELECT … AS s`).
    pub async fn strings(&self, sql: &str) -> Result<Vec<String>, StoreError> {
        self.client
            .query(&sql.replace("{db}", &format!("`{}`", self.db)))
            .fetch_all::<Text>()
            .await
            .map(|v| v.into_iter().map(|t| t.s).collect())
            .map_err(classify)
    }

    /// A query's single number (tests, the benchmark).
    pub async fn count(&self, sql: &str) -> Result<u64, StoreError> {
        #[derive(Row, Deserialize)]
        struct N {
            n: u64,
        }
        self.client
            .query(&sql.replace("{db}", &format!("`{}`", self.db)))
            .fetch_one::<N>()
            .await
            .map(|r| r.n)
            .map_err(classify)
    }
}

/// The TTL that keeps `keep` days of a table (servers 19.6 and newer).
pub fn ttl_statement(db: &str, table: &str, keep: u32) -> String {
    format!("ALTER TABLE `{db}`.`{table}` MODIFY TTL day + INTERVAL {keep} DAY")
}

/// A migration's statements, with the database named.
pub fn migration_statements(ddl: &str, db: &str) -> Vec<String> {
    let code: Vec<&str> = ddl
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    code.join("\n")
        .split(';')
        .map(str::to_owned)
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.replace("{db}", &format!("`{db}`")))
        .collect()
}

/// `LowCardinality(String)` (newer servers) is a String to us.
pub fn plain_type(t: &str) -> &str {
    t.strip_prefix("LowCardinality(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(t)
}

/// Each table's (column, type) list, read from the migrations' DDL.
pub fn expected_columns() -> BTreeMap<String, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    for (_, _, ddl) in MIGRATIONS {
        for st in migration_statements(ddl, "db") {
            // a later migration's added column goes last, as on the server
            if let Some(rest) = st.split("ALTER TABLE `db`.").nth(1) {
                let Some((table, col)) = rest.split_once(" ADD COLUMN ") else {
                    continue;
                };
                if let Some((name, ty)) = col.trim().split_once(' ') {
                    out.entry(table.trim().to_owned())
                        .or_insert_with(Vec::new)
                        .push((name.to_owned(), ty.trim().to_owned()));
                }
                continue;
            }
            let Some(rest) = st.split("CREATE TABLE IF NOT EXISTS `db`.").nth(1) else {
                continue;
            };
            let table = rest.split([' ', '(']).next().unwrap_or("").to_owned();
            let body = rest.split_once('(').map_or("", |(_, b)| b);
            let body = body.rsplit_once(") ENGINE").map_or(body, |(b, _)| b);
            let cols = body
                .lines()
                .map(|l| l.trim().trim_end_matches(','))
                .filter(|l| !l.is_empty())
                .filter_map(|l| l.split_once(' '))
                .map(|(n, t)| (n.to_owned(), t.trim().to_owned()))
                .collect();
            out.insert(table, cols);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rows::{EventRow, FindingRow, TemplateRow};

    #[test]
    fn migrations_needing_newer_servers_wait_for_them() {
        let compact = MIGRATIONS
            .iter()
            .find(|m| m.1 == "compact_columns")
            .unwrap()
            .2;
        assert_eq!(requires(compact), Some((20, 1)));
        assert!(!applies(compact, (18, 16)));
        assert!(!applies(compact, (19, 17)));
        assert!(applies(compact, (20, 1)));
        assert!(applies(compact, (26, 9)));
        assert!(applies(MIGRATIONS[1].2, (18, 16)));
        // the rest run everywhere
        assert_eq!(
            MIGRATIONS
                .iter()
                .filter(|m| requires(m.2).is_some())
                .count(),
            1
        );
    }

    #[test]
    fn rows_have_the_ddl_columns_in_order() {
        let cols = expected_columns();
        let names = |t: &str| cols[t].iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names("events"), EventRow::COLUMN_NAMES);
        assert_eq!(names("findings"), FindingRow::COLUMN_NAMES);
        assert_eq!(names("templates"), TemplateRow::COLUMN_NAMES);
        for t in ["incidents", "actions", "audit", "schema_migrations"] {
            assert!(!cols[t].is_empty(), "{t}");
        }
        assert_eq!(
            cols["findings"]
                .iter()
                .find(|c| c.0 == "evidence")
                .unwrap()
                .1,
            "Array(String)"
        );
    }
}
