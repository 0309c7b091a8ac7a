//! `threatpilot eval clustering DIR`: GA, FGA, PA and FTA on the Loghub 2k
//! sets under DIR (`DIR/<Dataset>/<Dataset>_2k.log` and its
//! `_structured_corrected.csv`), with the one shared clustering configuration.
//! `--datasets` scores a subset, and `--similarity` / `--depth` try other
//! settings, so settings can be chosen on one half of the sets and checked
//! on the other (README, Clustering).
//!
//! `threatpilot eval detection DIR`: the detectors against labelled logs in
//! the CrowdSec hub test layout (see [`crate::detect::eval`]): expected and
//! flagged source addresses per test, recall and precision.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::cluster::drain::DrainConfig;
use crate::cluster::eval::{LOGHUB_FORMATS, Scores, score};
use crate::cluster::logformat::LogFormat;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Template grouping accuracy on Loghub 2k datasets.
    Clustering {
        /// Folder holding one sub-folder per dataset.
        dir: String,
        /// Score only these datasets (comma-separated names, e.g. `BGL,HPC`).
        #[arg(long, value_delimiter = ',')]
        datasets: Vec<String>,
        /// Similarity threshold to try instead of the shipped one.
        #[arg(long)]
        similarity: Option<f64>,
        /// Tree depth to try instead of the shipped one.
        #[arg(long)]
        depth: Option<usize>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Detection recall and precision per source address on labelled logs
    /// (folders with a log and CrowdSec's `scenario.assert`).
    Detection {
        /// A test folder, or a folder of them.
        dir: String,
        /// The detectors to evaluate.
        #[arg(long, default_value = "detectors")]
        detectors: String,
        /// Folder of Sigma rules to evaluate with them (repeatable).
        #[arg(long)]
        sigma: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (dir, datasets, config, json) = match args.what {
        What::Clustering {
            dir,
            datasets,
            similarity,
            depth,
            json,
        } => {
            let mut config = DrainConfig::default();
            if let Some(s) = similarity {
                anyhow::ensure!((0.0..=1.0).contains(&s), "--similarity must be within 0..1");
                config.similarity = s;
            }
            if let Some(d) = depth {
                config.depth = d;
            }
            (dir, datasets, config, json)
        }
        What::Detection {
            dir,
            detectors,
            sigma,
            json,
        } => return detection(&dir, &detectors, &sigma, json),
    };
    let mut results: Vec<(String, Scores, f64)> = Vec::new();
    if let Some(unknown) = datasets
        .iter()
        .find(|d| !LOGHUB_FORMATS.iter().any(|(n, _)| n == d))
    {
        anyhow::bail!("no Loghub format is known for dataset `{unknown}`");
    }
    for (name, format) in LOGHUB_FORMATS {
        if !datasets.is_empty() && !datasets.iter().any(|d| d == name) {
            continue;
        }
        let base = Path::new(&dir).join(name);
        let log = base.join(format!("{name}_2k.log"));
        let csv = base.join(format!("{name}_2k.log_structured_corrected.csv"));
        if !log.exists() || !csv.exists() {
            continue;
        }
        let truth = read_truth(&csv)?;
        let text = std::fs::read_to_string(&log)
            .with_context(|| format!("cannot read {}", log.display()))?;
        let lines: Vec<&str> = text.lines().collect();
        let fmt = LogFormat::compile(format).map_err(anyhow::Error::msg)?;
        let started = std::time::Instant::now();
        let (drain, assigned) =
            super::cluster::cluster_lines(lines.iter().copied(), Some(&fmt), config.clone());
        let secs = started.elapsed().as_secs_f64();
        let predicted: Vec<(String, String)> = assigned
            .iter()
            .map(|&i| (i.to_string(), drain.cluster(i).text.to_string()))
            .collect();
        let s = score(&truth, &predicted);
        results.push((name.to_string(), s, lines.len() as f64 / secs.max(1e-9)));
    }
    if results.is_empty() {
        anyhow::bail!("no Loghub 2k dataset found under {dir}");
    }
    let avg = |f: fn(&Scores) -> f64| {
        results.iter().map(|(_, s, _)| f(s)).sum::<f64>() / results.len() as f64
    };
    if json {
        let rows: Vec<_> = results
            .iter()
            .map(|(n, s, lps)| serde_json::json!({"dataset": n, "scores": s, "lines_per_sec": lps}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"datasets": rows, "average": {"ga": avg(|s| s.ga), "fga": avg(|s| s.fga), "pa": avg(|s| s.pa), "fta": avg(|s| s.fta)}})
        );
    } else {
        println!(
            "{:<10} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7}",
            "dataset", "GA", "FGA", "PA", "FTA", "groups", "truth"
        );
        for (n, s, _) in &results {
            println!(
                "{n:<10} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>7} {:>7}",
                s.ga, s.fga, s.pa, s.fta, s.predicted_groups, s.true_groups
            );
        }
        println!(
            "{:<10} {:>6.3} {:>6.3} {:>6.3} {:>6.3}",
            "average",
            avg(|s| s.ga),
            avg(|s| s.fga),
            avg(|s| s.pa),
            avg(|s| s.fta)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn detection(dir: &str, detectors: &str, sigma: &[String], json: bool) -> anyhow::Result<ExitCode> {
    use crate::detect::eval;
    let mut loaded = crate::detect::load_dir(Path::new(detectors)).map_err(|errs| {
        anyhow::anyhow!(
            "{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    if !sigma.is_empty() {
        let load = crate::detect::sigma::load_dirs(sigma)?;
        eprintln!(
            "sigma: {} loaded, {} unsupported",
            load.loaded,
            load.refused.len()
        );
        loaded.extend(load.detectors);
    }
    let dirs = eval::test_dirs(Path::new(dir)).with_context(|| format!("cannot read {dir}"))?;
    if dirs.is_empty() {
        anyhow::bail!("no test under {dir} (a folder with a log and scenario.assert)");
    }
    let mut scores = Vec::new();
    for d in &dirs {
        scores.push(eval::score_test(d, loaded.clone()).map_err(anyhow::Error::msg)?);
    }
    let t = eval::totals(&scores);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"tests": scores, "totals": t}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let list = |s: &std::collections::BTreeSet<String>| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.iter().cloned().collect::<Vec<_>>().join(",")
        }
    };
    println!(
        "{:<40} {:>6} {:>8} {:>7} {:>6}  missed / extra",
        "test", "lines", "expected", "flagged", "found"
    );
    for s in &scores {
        println!(
            "{:<40} {:>6} {:>8} {:>7} {:>6}  {} / {}",
            crate::escape::terminal(&s.name),
            s.lines,
            s.expected.len(),
            s.flagged.len(),
            s.expected.intersection(&s.flagged).count(),
            crate::escape::terminal(&list(&s.missed)),
            crate::escape::terminal(&list(&s.extra)),
        );
    }
    println!(
        "{} tests: {} addresses expected, {} flagged, {} found: recall {:.2}, precision {:.2}",
        t.tests, t.expected, t.flagged, t.true_positives, t.recall, t.precision
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads (EventId, EventTemplate) per line from a Loghub structured CSV.
fn read_truth(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = csv_rows(&text).into_iter();
    let header = rows.next().context("empty ground-truth file")?;
    let id = header
        .iter()
        .position(|h| h == "EventId")
        .context("no EventId column")?;
    let tpl = header
        .iter()
        .position(|h| h == "EventTemplate")
        .context("no EventTemplate column")?;
    Ok(rows
        .filter(|r| r.len() > id.max(tpl))
        .map(|r| (r[id].clone(), r[tpl].clone()))
        .collect())
}

/// Minimal RFC 4180 reader (quoted fields with doubled quotes).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}
