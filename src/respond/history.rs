//! Repeat offenders: offenders of incidents opened in the last N days, read
//! from the pipeline's store when it starts (the embedded Parquet store or
//! ClickHouse). An unreachable store is not fatal: priorities are then
//! computed without history, and a warning says so.

/// The offenders (and gathered addresses) of recent incidents.
pub async fn repeat_offenders(store: Option<Store>, days: u32) -> Vec<String> {
    let since = crate::time::now_ms() - days as i64 * 86_400_000;
    let result = match store {
        None => return Vec::new(),
        Some(Store::Parquet(dir)) => from_parquet(&dir, since).await,
        Some(Store::Clickhouse(c)) => from_clickhouse(&c, since).await,
    };
    match result {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "repeat offenders unknown: the store could not be read");
            Vec::new()
        }
    }
}

/// Where incidents of past days are.
pub enum Store {
    /// The embedded store's data folder.
    Parquet(String),
    Clickhouse(crate::store::ClickhouseSinkConfig),
}

const QUERY: &str = "SELECT DISTINCT o AS s FROM (SELECT offender_value AS o FROM incidents WHERE opened_ms >= {since} UNION ALL SELECT unnest(offenders) AS o FROM incidents WHERE opened_ms >= {since})";

async fn from_parquet(dir: &str, since: i64) -> anyhow::Result<Vec<String>> {
    let path = std::path::Path::new(dir);
    if !path.join("incidents").exists() {
        return Ok(Vec::new());
    }
    let ctx = crate::store::parquet::session(path).await?;
    let batches = ctx
        .sql(&QUERY.replace("{since}", &since.to_string()))
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in batches {
        let col = datafusion::arrow::compute::cast(
            b.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )?;
        if let Some(a) = col
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
        {
            out.extend(a.iter().flatten().map(str::to_owned));
        }
    }
    Ok(out)
}

async fn from_clickhouse(
    c: &crate::store::ClickhouseSinkConfig,
    since: i64,
) -> anyhow::Result<Vec<String>> {
    let ch = crate::store::clickhouse::Clickhouse::connect(c).await?;
    let sql = format!(
        "SELECT DISTINCT s FROM (SELECT offender_value AS s FROM {{db}}.incidents WHERE opened_ms >= {since} UNION ALL SELECT arrayJoin(offenders) AS s FROM {{db}}.incidents WHERE opened_ms >= {since})"
    );
    Ok(ch.strings(&sql).await?)
}
