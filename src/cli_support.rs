//! Reading input files (or `-` for stdin) line by line, with a clear error
//! naming the file when one cannot be read. Invalid UTF-8 is replaced, not
//! fatal: a log line with a stray byte is still a log line. Gzip input (a
//! rotated log's `auth.log.2.gz`) is inflated as it is read, known by its
//! first bytes rather than its name.

use std::fs::File;
use std::io::{BufRead, BufReader};

use anyhow::Context;

/// Opens a path, `-` meaning stdin; gzip is inflated (see [`inflated`]).
pub fn open(path: &str) -> anyhow::Result<Box<dyn BufRead>> {
    let read = if path == "-" {
        inflated(Box::new(BufReader::new(std::io::stdin())))
    } else {
        read_file(File::open(path).with_context(|| format!("cannot open {path}"))?)
    };
    read.with_context(|| format!("cannot read {path}"))
}

/// An opened file's text, through a 64 KiB buffer, inflated where it is
/// gzip (see [`inflated`]).
pub fn read_file(f: File) -> std::io::Result<Box<dyn BufRead>> {
    inflated(Box::new(BufReader::with_capacity(1 << 16, f)))
}

/// The text of `r`: gzip (one member or several, as `cat a.gz b.gz`
/// makes) inflated as it is read. Other compressions are refused with
/// their name rather than read as garbled lines. No log line starts with
/// these bytes: gzip's and xz's begin with bytes no UTF-8 text starts
/// with, zstd's with `(` and a byte no UTF-8 character starts with, and
/// bzip2's is ten bytes long (`BZh91AY&SY`).
pub fn inflated(mut r: Box<dyn BufRead>) -> std::io::Result<Box<dyn BufRead>> {
    let head = loop {
        match r.fill_buf() {
            Ok(head) => break head,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    let refused = |name: &str, tool: &str| {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "compressed with {name}, which is not read; pipe it in: `{tool} -dc FILE | threatpilot … -`"
            ),
        ))
    };
    match head {
        [0x1f, 0x8b, ..] => Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(r),
        ))),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => refused("xz", "xz"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => refused("zstd", "zstd"),
        [
            b'B',
            b'Z',
            b'h',
            b'1'..=b'9',
            0x31,
            0x41,
            0x59,
            0x26,
            0x53,
            0x59,
            ..,
        ] => refused("bzip2", "bzip2"),
        _ => Ok(r),
    }
}

/// Calls `f` with each line (without its newline); lines are lossily decoded.
///
/// Lines are found with a SIMD byte search in the reader's own buffer and
/// handed over from there; only a line that straddles two reads is copied
/// (into `split`) to be whole.
pub fn for_each_line(mut r: impl BufRead, mut f: impl FnMut(&str)) -> std::io::Result<()> {
    let mut split = Vec::new();
    loop {
        let chunk = match r.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            if !split.is_empty() {
                emit(&split, &mut f);
            }
            return Ok(());
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', chunk) {
            if split.is_empty() {
                emit(&chunk[start..end], &mut f);
            } else {
                split.extend_from_slice(&chunk[start..end]);
                emit(&split, &mut f);
                split.clear();
            }
            start = end + 1;
        }
        split.extend_from_slice(&chunk[start..]);
        let read = chunk.len();
        r.consume(read);
    }
}

/// One line to `f`: as it is when it is UTF-8, else with replacement characters.
fn emit(line: &[u8], f: &mut impl FnMut(&str)) {
    match std::str::from_utf8(line) {
        Ok(s) => f(s),
        Err(_) => f(&String::from_utf8_lossy(line)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the read size, the lines are those of splitting the
        /// bytes at newlines (a last line without one included), each
        /// lossily decoded.
        #[test]
        fn lines_are_the_same_across_any_read_boundary(
            bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(0xffu8), Just(b'a'), any::<u8>()], 0..300),
            capacity in 1usize..40,
        ) {
            let mut seen = Vec::new();
            for_each_line(BufReader::with_capacity(capacity, &bytes[..]), |l| seen.push(l.to_owned())).unwrap();
            let mut expected: Vec<String> = bytes
                .split(|&b| b == b'\n')
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            // a trailing newline ends the last line rather than opening one
            if expected.last().is_some_and(String::is_empty) {
                expected.pop();
            }
            prop_assert_eq!(seen, expected);
        }
    }
}
