//! Rotated logs as one stream.
//!
//! logrotate and its kin keep a log's past beside it: `auth.log`,
//! `auth.log.1`, `auth.log.2.gz`, … (numbered, the highest the oldest) or
//! `secure-20261122`, `secure-20261129.gz` (`dateext`, dated). Given as
//! separate files, each would be a stream of its own and no window would
//! span two of them: a distributed brute force spread over three weeks of
//! weekly files would be seen one week at a time. The files of one
//! rotation set are read as one stream instead, oldest first, so that
//! event time runs forwards across them and the long-horizon windows see
//! the whole span.
//!
//! The order comes from the names alone: learning the files' times first
//! would read each of them twice. Should the names mislead (a copy renamed
//! out of order), the jump back in time starts a new segment, as in any
//! stream, and no line is lost.

use std::cmp::Reverse;

/// Groups `paths` into streams: the files of one rotation set (same
/// folder, same name once the rotation suffix is taken off) form one
/// stream, oldest first; every other path is a stream of its own. Streams
/// come in the order of their first path in `paths`; `-` (stdin) is never
/// grouped.
pub fn streams(paths: &[String]) -> Vec<Vec<String>> {
    // (the set's path without the suffix, None for stdin; its files)
    type Set<'a> = (Option<&'a str>, Vec<(Place, &'a String)>);
    let mut sets: Vec<Set> = Vec::new();
    // where each base's set is: thousands of files (a copy per host) are
    // grouped in one pass, not one search of the sets per file
    let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for p in paths {
        let (base, place) = match rotation(p) {
            Some((base, place)) => (Some(base), place),
            // stdin is never grouped
            None if p == "-" => (None, Place::Current),
            None => (Some(p.as_str()), Place::Current),
        };
        match base.and_then(|b| at.get(b)) {
            Some(&i) => sets[i].1.push((place, p)),
            None => {
                if let Some(b) = base {
                    at.insert(b, sets.len());
                }
                sets.push((base, vec![(place, p)]));
            }
        }
    }
    sets.into_iter()
        .map(|(_, mut members)| {
            // stable: equal places (`x.1` and `x.1.gz`) keep their order
            members.sort_by(|a, b| a.0.cmp(&b.0));
            members.into_iter().map(|(_, p)| p.clone()).collect()
        })
        .collect()
}

/// Where a file stands in its rotation set; ordered oldest first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    /// `NAME-20261122`, `NAME.2026-11-22`: the digits of the date and
    /// time, older the smaller.
    Dated(String),
    /// `NAME.3`: older the higher.
    Numbered(Reverse<u32>),
    /// `NAME` itself: the newest.
    Current,
}

/// The path without its rotation suffix, and the file's place in the
/// set; None when the name has no such suffix.
fn rotation(path: &str) -> Option<(&str, Place)> {
    let stem = path.strip_suffix(".gz").unwrap_or(path);
    let name_at = stem.rfind('/').map_or(0, |i| i + 1);
    let name = &stem[name_at..];
    // `NAME.N`: logrotate's numbering, from 1 (some tools start at 0)
    if let Some((base, n)) = name.rsplit_once('.')
        && !base.is_empty()
        && (1..=3).contains(&n.len())
        && all_digits(n)
    {
        let n = n.parse().ok()?;
        return Some((&stem[..name_at + base.len()], Place::Numbered(Reverse(n))));
    }
    let (base, date) = dated(name)?;
    Some((&stem[..name_at + base.len()], Place::Dated(date)))
}

/// `NAME-YYYYMMDD`, `NAME-YYYYMMDDHH`, `NAME-YYYYMMDD-SECONDS` (logrotate's
/// `dateext` with its usual `dateformat`s), the same after a dot, and
/// `NAME.YYYY-MM-DD` / `NAME-YYYY-MM-DD`: the name and the date's digits.
fn dated(name: &str) -> Option<(&str, String)> {
    if let Some(found) = iso_date(name) {
        return Some(found);
    }
    let (base, last) = name.rsplit_once(['-', '.'])?;
    let (base, date) = match base.rsplit_once('-') {
        // `-YYYYMMDD-SECONDS`: the day, then the seconds
        Some((b, day)) if day.len() == 8 && all_digits(day) && all_digits(last) => {
            (b, format!("{day}{last:0>10}"))
        }
        _ if last.len() == 8 || last.len() == 10 => (base, last.to_string()),
        _ => return None,
    };
    (!base.is_empty() && all_digits(&date) && plausible(&date)).then_some((base, date))
}

/// `NAME.YYYY-MM-DD` or `NAME-YYYY-MM-DD`.
fn iso_date(name: &str) -> Option<(&str, String)> {
    let at = name.len().checked_sub(11)?;
    let base = name.get(..at)?;
    let rest = name.get(at..)?.as_bytes();
    let digits = |r: std::ops::Range<usize>| rest[r].iter().all(u8::is_ascii_digit);
    let shape = matches!(rest[0], b'.' | b'-')
        && rest[5] == b'-'
        && rest[8] == b'-'
        && digits(1..5)
        && digits(6..8)
        && digits(9..11);
    let date: String = rest[1..]
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    (shape && !base.is_empty() && plausible(&date)).then_some((base, date))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A date from 1990 to 2099 with a month and day that exist, so that a
/// version or an id of eight digits is not taken for one.
fn plausible(digits: &str) -> bool {
    let n = |r: std::ops::Range<usize>| digits.get(r).and_then(|s| s.parse::<u32>().ok());
    matches!(
        (n(0..4), n(4..6), n(6..8)),
        (Some(1990..=2099), Some(1..=12), Some(1..=31))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the names, every path is read, and read once.
        #[test]
        fn every_path_is_in_exactly_one_stream(
            paths in proptest::collection::vec("-|[a-z]{1,3}(\\.log)?([.-][0-9]{1,10})?([.-][0-9-]{1,11})?(\\.gz)?|\\PC{0,14}", 0..12)
        ) {
            let mut got = streams(&paths).concat();
            let mut want = paths.clone();
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_numbered_set_is_one_stream_oldest_first() {
        let got = streams(&s(&[
            "/var/log/auth.log",
            "/var/log/auth.log.1",
            "/var/log/auth.log.2.gz",
            "/var/log/auth.log.10.gz",
            "/var/log/syslog",
        ]));
        assert_eq!(
            got,
            vec![
                s(&[
                    "/var/log/auth.log.10.gz",
                    "/var/log/auth.log.2.gz",
                    "/var/log/auth.log.1",
                    "/var/log/auth.log",
                ]),
                s(&["/var/log/syslog"]),
            ]
        );
    }

    #[test]
    fn a_dated_set_is_one_stream_oldest_first() {
        let got = streams(&s(&[
            "secure",
            "secure-20261129.gz",
            "secure-20261122",
            "access.log-2026112903",
            "access.log-2026112823",
            "app.log.2026-11-30",
            "app.log.2026-11-29.gz",
            "app.log",
        ]));
        assert_eq!(
            got,
            vec![
                s(&["secure-20261122", "secure-20261129.gz", "secure"]),
                s(&["access.log-2026112823", "access.log-2026112903"]),
                s(&["app.log.2026-11-29.gz", "app.log.2026-11-30", "app.log"]),
            ]
        );
    }

    #[test]
    fn unrelated_files_and_stdin_stay_streams_of_their_own() {
        let paths = s(&[
            "-",
            "logs/a/access.log",
            "logs/b/access.log.1",
            "release-12345678.log",
            "build.20261301",
            "access.log.gz",
            "-",
        ]);
        let got = streams(&paths);
        assert_eq!(
            got,
            paths.iter().map(|p| vec![p.clone()]).collect::<Vec<_>>()
        );
    }

    #[test]
    fn names_without_a_rotation_suffix_keep_their_place() {
        assert_eq!(rotation("access.log"), None);
        assert_eq!(rotation("v1.2026"), None);
        assert_eq!(rotation(".1"), None);
        assert_eq!(
            rotation("x/auth.log.3.gz"),
            Some(("x/auth.log", Place::Numbered(Reverse(3))))
        );
        assert_eq!(
            rotation("messages-20261122-1795132800"),
            Some(("messages", Place::Dated("202611221795132800".into())))
        );
    }
}
