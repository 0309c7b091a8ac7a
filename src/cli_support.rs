//! Reading input files (or `-` for stdin) line by line, with a clear error
//! naming the file when one cannot be read. Invalid UTF-8 is replaced, not
//! fatal: a log line with a stray byte is still a log line.

use std::fs::File;
use std::io::{BufRead, BufReader};

use anyhow::Context;

/// Opens a path, `-` meaning stdin.
pub fn open(path: &str) -> anyhow::Result<Box<dyn BufRead>> {
    if path == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let f = File::open(path).with_context(|| format!("cannot open {path}"))?;
    Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
}

/// Calls `f` with each line (without its newline); lines are lossily decoded.
pub fn for_each_line(mut r: impl BufRead, mut f: impl FnMut(&str)) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        match std::str::from_utf8(&buf) {
            Ok(s) => f(s),
            Err(_) => f(&String::from_utf8_lossy(&buf)),
        }
    }
}

/// Calls `f` with each record of an input: a `.json` file is one document
/// (an Alertmanager payload is usually pretty-printed over many lines;
/// JSON strings hold no raw newlines, so joining its lines with spaces
/// keeps it intact); anything else is one record per line.
pub fn for_each_record(
    path: Option<&str>,
    r: impl BufRead,
    mut f: impl FnMut(&str),
) -> std::io::Result<()> {
    if path.is_some_and(|p| p.ends_with(".json")) {
        let mut doc = String::new();
        for_each_line(r, |l| {
            doc.push_str(l);
            doc.push(' ');
        })?;
        if !doc.trim().is_empty() {
            f(doc.trim_end());
        }
        return Ok(());
    }
    for_each_line(r, f)
}

/// This process's peak resident memory in MiB (`VmHWM`: its own address
/// space's high-water mark since it started, unlike `getrusage`, whose
/// figure can carry a spawning parent's); 0 where the kernel does not say.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
