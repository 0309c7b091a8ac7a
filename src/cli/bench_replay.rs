//! `threatpilot bench --replay FILE…`: what a user runs, timed as a whole
//! process.
//!
//! The in-process figures of `bench` time stages over inputs that suit
//! them; this times `threatpilot replay` itself, start to exit, on real
//! files: CPU time (user + system, from the kernel's accounting of the
//! child), wall time and peak resident memory. Each file is copied
//! `--copies` times with its IPv4 addresses varied per copy (so a
//! honeypot log becomes many attackers), each copy a file of its own, in
//! its own time order, as rotated or per-host logs are. Peak memory is
//! what `replay` reports of itself.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use serde::Serialize;

pub struct ReplayBench {
    pub files: Vec<String>,
    pub copies: usize,
    pub runs: usize,
    pub detectors: String,
    /// Sigma rule folders handed to `replay` (`--sigma`).
    pub sigma: Vec<String>,
    pub json: bool,
}

#[derive(Serialize, Default, Clone)]
struct Run {
    wall_secs: f64,
    cpu_secs: f64,
    lines_per_cpu_sec: f64,
    peak_rss_mib: f64,
    findings: usize,
}

#[derive(Serialize, Default)]
struct Report {
    inputs: Vec<String>,
    /// Sigma rule folders loaded beside the detectors.
    sigma: Vec<String>,
    copies: usize,
    lines: usize,
    bytes: u64,
    /// Medians over the runs.
    wall_secs: f64,
    cpu_secs: f64,
    lines_per_cpu_sec: f64,
    wall_secs_per_million_lines: f64,
    peak_rss_mib: f64,
    findings: usize,
    runs: Vec<Run>,
}

/// CPU seconds (user + system) and peak RSS (KiB) of waited-for children so far.
fn children_usage() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_maxrss as f64)
}

/// The peak memory `replay` reports of itself on its summary line. The
/// kernel's figure for a child is at least its parent's high-water mark
/// (a spawned child's exec records the address space it leaves, the
/// parent's), so this bench's own memory would be counted as the child's.
fn own_peak(summary: &str) -> Option<f64> {
    let (_, rest) = summary.split_once("peak memory ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Writes the copies; returns their paths, lines and bytes.
fn copies(files: &[String], n: usize, dir: &Path) -> anyhow::Result<(Vec<PathBuf>, usize, u64)> {
    let ip = regex::bytes::Regex::new(r"\b(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\b")?;
    let (mut paths, mut lines, mut bytes) = (Vec::new(), 0, 0u64);
    for (fi, f) in files.iter().enumerate() {
        // bytes as they are (inflated where gzip, as replay reads them, so
        // that addresses can be shifted): invalid UTF-8 is part of what is
        // measured
        let mut raw = Vec::new();
        crate::cli_support::open(f)?
            .read_to_end(&mut raw)
            .map_err(|e| anyhow::anyhow!("cannot read {f}: {e}"))?;
        for c in 0..n.max(1) {
            let text: Vec<u8> = if c == 0 {
                raw.clone()
            } else {
                ip.replace_all(&raw, |caps: &regex::bytes::Captures| {
                    format!(
                        "{}.{}.{}.{}",
                        10 + (c >> 16) % 200,
                        (c >> 8) & 255,
                        c & 255,
                        String::from_utf8_lossy(&caps[4])
                    )
                    .into_bytes()
                })
                .into_owned()
            };
            lines += text.iter().filter(|&&b| b == b'\n').count();
            bytes += text.len() as u64;
            let p = dir.join(format!("{fi}-{c}.log"));
            std::fs::write(&p, text)?;
            paths.push(p);
        }
    }
    Ok((paths, lines, bytes))
}

pub fn run(b: ReplayBench) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!b.files.is_empty(), "--replay needs at least one file");
    let dir = std::env::temp_dir().join(format!("threatpilot-bench-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (paths, lines, bytes) = copies(&b.files, b.copies, &dir)?;
    let exe = std::env::current_exe()?;
    let mut runs = Vec::new();
    for _ in 0..b.runs.max(1) {
        let (cpu0, _) = children_usage();
        let t = Instant::now();
        let mut child = Command::new(&exe)
            .arg("replay")
            .args(&paths)
            .args(["--detectors", &b.detectors])
            .args(b.sigma.iter().flat_map(|d| ["--sigma", d.as_str()]))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // the findings are counted as they stream, not held: what this
        // process holds would show in the child's figures (see `own_peak`)
        let mut err = child.stderr.take();
        let summary = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_string(&mut text);
            }
            text
        });
        let mut findings = 0;
        if let Some(mut out) = child.stdout.take() {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = out.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                findings += buf[..n].iter().filter(|&&c| c == b'\n').count();
            }
        }
        let status = child.wait()?;
        let wall = t.elapsed().as_secs_f64();
        let (cpu1, rss_kib) = children_usage();
        let summary = summary.join().unwrap_or_default();
        anyhow::ensure!(status.success(), "replay failed: {status}: {summary}");
        let cpu = cpu1 - cpu0;
        runs.push(Run {
            wall_secs: wall,
            cpu_secs: cpu,
            lines_per_cpu_sec: lines as f64 / cpu.max(1e-9),
            peak_rss_mib: own_peak(&summary).unwrap_or(rss_kib / 1024.0),
            findings,
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    let med = |f: fn(&Run) -> f64| super::bench::median(runs.iter().map(f).collect());
    let r = Report {
        inputs: b.files.clone(),
        sigma: b.sigma.clone(),
        copies: b.copies,
        lines,
        bytes,
        wall_secs: med(|r| r.wall_secs),
        cpu_secs: med(|r| r.cpu_secs),
        lines_per_cpu_sec: med(|r| r.lines_per_cpu_sec),
        wall_secs_per_million_lines: med(|r| r.wall_secs) * 1e6 / lines.max(1) as f64,
        peak_rss_mib: runs.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max),
        findings: runs.first().map_or(0, |r| r.findings),
        runs,
    };
    if b.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "replay of {} lines ({:.1} MB; {} files × {} copies){}, median of {} runs:",
            r.lines,
            r.bytes as f64 / 1e6,
            b.files.len(),
            b.copies,
            if b.sigma.is_empty() {
                String::new()
            } else {
                format!(" with Sigma rules from {}", b.sigma.join(", "))
            },
            r.runs.len()
        );
        println!(
            "  {:.0} lines per CPU-second ({:.2} CPU-s), {:.2} s wall ({:.2} s per million lines), peak RSS {:.0} MiB, {} findings",
            r.lines_per_cpu_sec,
            r.cpu_secs,
            r.wall_secs,
            r.wall_secs_per_million_lines,
            r.peak_rss_mib,
            r.findings
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a gzip input's copies had their addresses shifted in the
    /// compressed bytes, which left every copy but the first unreadable.
    #[test]
    fn the_copies_of_a_gzip_input_are_its_lines_with_shifted_addresses() {
        let dir = std::env::temp_dir().join(format!("tp-bench-copies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "Failed password for root from 203.0.113.9 port 22 ssh2\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, text.repeat(3).as_bytes()).unwrap();
        let input = dir.join("auth.log.2.gz");
        std::fs::write(&input, gz.finish().unwrap()).unwrap();
        let out = dir.join("copies");
        std::fs::create_dir_all(&out).unwrap();
        let (paths, lines, _) = copies(&[input.display().to_string()], 2, &out).unwrap();
        assert_eq!(lines, 6);
        assert_eq!(std::fs::read_to_string(&paths[0]).unwrap(), text.repeat(3));
        assert_eq!(
            std::fs::read_to_string(&paths[1]).unwrap(),
            text.replace("203.0.113.9", "10.0.1.9").repeat(3)
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
