//! `threatpilot search` over the index a pipeline's `parquet` sink writes:
//! field terms, free text, ranges, prefixes and time bounds select exactly
//! the events they name, newest first; bad queries and missing indexes are
//! clear errors; retention removes old days by age and by size.

#[path = "support/service.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use threatpilot::search::index::folder_bytes;

/// Two days of nginx and sshd lines, each distinct (dedup keeps them all).
const LINES: &str = r#"203.0.113.50 - - [01/Jan/2020:10:00:00 +0000] "POST /login HTTP/1.1" 401 12 "-" "curl/8.0"
203.0.113.50 - - [01/Jan/2020:10:00:01 +0000] "POST /login HTTP/1.1" 401 12 "-" "curl/8.0"
<38>1 2020-01-01T11:00:00Z bastion sshd 4242 - - Failed password for root from 203.0.113.50 port 40001 ssh2
203.0.113.50 - - [02/Jan/2020:09:00:00 +0000] "POST /login HTTP/1.1" 200 512 "-" "curl/8.0"
198.51.100.9 - - [02/Jan/2020:09:00:05 +0000] "GET /wp-login.php HTTP/1.1" 404 0 "-" "Mozilla/5.0"
198.51.100.9 - - [02/Jan/2020:09:00:06 +0000] "GET /wp-admin/setup.php HTTP/1.1" 404 0 "-" "Mozilla/5.0"
192.0.2.10 - - [02/Jan/2020:09:30:00 +0000] "GET /api/orders HTTP/1.1" 503 87 "-" "shop-web/2.1"
192.0.2.10 - - [02/Jan/2020:09:31:00 +0000] "GET /api/orders?page=2 HTTP/1.1" 502 87 "-" "shop-web/2.1"
<38>1 2020-01-02T11:00:00Z bastion sshd 4243 - - Invalid user admin from 198.51.100.7 port 4000
"#;

/// Runs a pipeline over `input` with a parquet sink (search settings
/// `search`) writing to `dir/data`.
fn run_pipeline(dir: &Path, input: &Path, search: &str) {
    let p = dir.join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: search\nsources:\n  - type: file\n    id: f\n    paths: [{}]\nsinks:\n  - type: parquet\n    dir: {}\n    events: all\n    search: {search}\n",
            input.display(),
            dir.join("data").display()
        ),
    )
    .unwrap();
    support::run_pipeline(&p);
}

fn indexed(tag: &str) -> PathBuf {
    let dir = support::temp_dir(tag);
    let input = dir.join("input.log");
    std::fs::write(&input, LINES).unwrap();
    run_pipeline(&dir, &input, "{}");
    dir
}

fn search(dir: &Path, args: &[&str]) -> Output {
    let data = dir.join("data");
    support::threatpilot(
        [
            std::ffi::OsStr::new("search"),
            "--data".as_ref(),
            data.as_os_str(),
        ]
        .into_iter()
        .chain(args.iter().map(std::ffi::OsStr::new)),
    )
}

/// The `@timestamp`s of the hits, as printed with `--format json`.
fn found(dir: &Path, query: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![query, "--format", "json"];
    args.extend_from_slice(extra);
    let out = search(dir, &args);
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "search {query:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["@timestamp"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn field_terms_text_ranges_and_prefixes_select_their_events_newest_first() {
    let dir = indexed("search-query");
    let f = |q: &str| found(&dir, q, &[]);
    assert_eq!(
        f("source.ip:203.0.113.50 AND http.response.status_code:401"),
        ["2020-01-01T10:00:01.000Z", "2020-01-01T10:00:00.000Z"]
    );
    assert_eq!(
        f("source.ip:203.0.113.50"),
        [
            "2020-01-02T09:00:00.000Z",
            "2020-01-01T11:00:00.000Z",
            "2020-01-01T10:00:01.000Z",
            "2020-01-01T10:00:00.000Z"
        ]
    );
    assert_eq!(
        f("http.response.status_code:[500 TO 599]"),
        ["2020-01-02T09:31:00.000Z", "2020-01-02T09:30:00.000Z"]
    );
    assert_eq!(
        f("http.response.status_code:IN [200 503]"),
        ["2020-01-02T09:30:00.000Z", "2020-01-02T09:00:00.000Z"]
    );
    assert_eq!(f("\"invalid user\""), ["2020-01-02T11:00:00.000Z"]);
    assert_eq!(f("failed password root"), ["2020-01-01T11:00:00.000Z"]);
    assert_eq!(
        f("event.dataset:sshd -user.name:ROOT"),
        ["2020-01-02T11:00:00.000Z"]
    );
    assert_eq!(
        f("url.path:/wp-*"),
        ["2020-01-02T09:00:06.000Z", "2020-01-02T09:00:05.000Z"]
    );
    assert_eq!(
        f("url.path:/\\/wp-admin\\/.*/"),
        ["2020-01-02T09:00:06.000Z"]
    );
    assert_eq!(
        f("url.path:/wp-a* OR user.name:/adm.n/"),
        ["2020-01-02T11:00:00.000Z", "2020-01-02T09:00:06.000Z"]
    );
    assert_eq!(f("url.query:page=2"), ["2020-01-02T09:31:00.000Z"]);
    assert_eq!(f("user.name:admin OR user.name:root").len(), 2);
    assert_eq!(f("*").len(), LINES.lines().count());
}

#[test]
fn time_bounds_and_limit_cut_the_hits() {
    let dir = indexed("search-time");
    let ip = "source.ip:203.0.113.50";
    assert_eq!(
        found(&dir, ip, &["--since", "2020-01-02"]),
        ["2020-01-02T09:00:00.000Z"]
    );
    assert_eq!(found(&dir, ip, &["--until", "2020-01-02"]).len(), 3);
    assert_eq!(
        found(
            &dir,
            ip,
            &[
                "--since",
                "2020-01-01T10:00:01Z",
                "--until",
                "2020-01-01T11:00:00Z"
            ]
        ),
        ["2020-01-01T10:00:01.000Z"]
    );
    assert_eq!(
        found(&dir, ip, &["--limit", "2"]),
        ["2020-01-02T09:00:00.000Z", "2020-01-01T11:00:00.000Z"]
    );
    assert!(found(&dir, ip, &["--since", "1d"]).is_empty());
}

#[test]
fn text_output_no_hits_bad_queries_and_missing_indexes() {
    let dir = indexed("search-errors");
    let out = search(&dir, &["user.name:admin"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "2020-01-02T11:00:00.000Z  sshd  <38>1 2020-01-02T11:00:00Z bastion sshd 4243 - - Invalid user admin from 198.51.100.7 port 4000\n"
    );
    let json: Value =
        serde_json::from_slice(&search(&dir, &["user.name:admin", "--format", "json"]).stdout)
            .unwrap();
    assert_eq!(json["source.ip"], "198.51.100.7");
    assert_eq!(json["source.port"], 4000);
    assert_eq!(json["event.action"], "ssh_invalid_user");

    let none = search(&dir, &["user.name:nobody"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(none.stdout.is_empty());

    for (query, says) in [
        ("source.ip:[1 TO", "syntax error"),
        ("user.name:/svc-[0-9/", "bad regex"),
    ] {
        let bad = search(&dir, &[query]);
        assert_eq!(bad.status.code(), Some(2), "{query}");
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(
            err.contains("cannot read the query") && err.contains(says),
            "{query}: {err}"
        );
    }
    let bad_time = search(&dir, &["*", "--since", "yesterday"]);
    assert_eq!(bad_time.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("cannot read the time"));

    let empty = support::temp_dir("search-none");
    let missing = search(&empty, &["*"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no search index"));
}

fn days(dir: &Path) -> Vec<String> {
    let mut d: Vec<String> = std::fs::read_dir(dir.join("data/index"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    d.sort();
    d
}

#[test]
fn retention_removes_the_oldest_days_by_size_then_by_age() {
    let dir = indexed("search-retention");
    assert_eq!(days(&dir), ["2020-01-01", "2020-01-02"]);
    let newest = folder_bytes(&dir.join("data/index/2020-01-02"));
    let empty = dir.join("empty.log");
    std::fs::write(&empty, "").unwrap();

    // a bound that holds the newest day only
    run_pipeline(
        &dir,
        &empty,
        &format!("{{retention_days: 100000, max_bytes: {newest}}}"),
    );
    assert_eq!(days(&dir), ["2020-01-02"]);
    assert_eq!(
        found(&dir, "source.ip:203.0.113.50", &[]),
        ["2020-01-02T09:00:00.000Z"]
    );

    run_pipeline(&dir, &empty, "{retention_days: 30}");
    assert!(days(&dir).is_empty());
    assert_eq!(search(&dir, &["*"]).status.code(), Some(1));
}
