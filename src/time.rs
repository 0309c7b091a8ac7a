//! Civil-time arithmetic for log timestamps.
//!
//! Log formats carry dates in many shapes (syslog `Feb 12 14:10:21`, access-log
//! `30/Sep/2021:11:11:54 +0200`, RFC 3339, klog `I0127 07:27:45.123456`). The
//! parsers turn them into epoch milliseconds with these helpers; the maths is
//! Howard Hinnant's `days_from_civil`, exact for the proleptic Gregorian
//! calendar, with no allocation and no time-zone database (offsets are
//! explicit in the line or UTC).

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Epoch milliseconds from civil fields (UTC).
pub fn epoch_ms(year: i64, month: u32, day: u32, h: u32, mi: u32, s: u32, ms: u32) -> i64 {
    let days = days_from_civil(year, month, day);
    ((days * 24 + h as i64) * 60 + mi as i64) * 60_000 + s as i64 * 1000 + ms as i64
}

/// Month number (1-12) from an English three-letter abbreviation.
pub fn month_from_abbrev(b: &[u8]) -> Option<u32> {
    if b.len() < 3 {
        return None;
    }
    let key = [
        b[0].to_ascii_lowercase(),
        b[1].to_ascii_lowercase(),
        b[2].to_ascii_lowercase(),
    ];
    Some(match &key {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    })
}

/// Parses exactly `n` ASCII digits at `b[at..at+n]`.
pub fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// Reads a fraction of a second (`.123456`) at `at`; returns (milliseconds, bytes used).
pub fn fraction_ms(b: &[u8], at: usize) -> (u32, usize) {
    if b.get(at) != Some(&b'.') && b.get(at) != Some(&b',') {
        return (0, 0);
    }
    let mut i = at + 1;
    let mut ms = 0u32;
    let mut n = 0;
    while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
        if n < 3 {
            ms = ms * 10 + (c - b'0') as u32;
        }
        n += 1;
        i += 1;
    }
    while n < 3 {
        ms *= 10;
        n += 1;
    }
    (ms, i - at)
}

/// Parses a numeric zone offset `Z`, `+02:00`, `+0200` at `at`; (offset ms, bytes used).
pub fn zone_offset_ms(b: &[u8], at: usize) -> (i64, usize) {
    match b.get(at) {
        Some(b'Z') | Some(b'z') => (0, 1),
        Some(&sign @ (b'+' | b'-')) => {
            let Some(h) = digits(b, at + 1, 2) else {
                return (0, 0);
            };
            let (m, used) = if b.get(at + 3) == Some(&b':') {
                (digits(b, at + 4, 2), 6)
            } else {
                (digits(b, at + 3, 2), 5)
            };
            let Some(m) = m else { return (0, 0) };
            let off = (h as i64 * 60 + m as i64) * 60_000;
            (if sign == b'-' { -off } else { off }, used)
        }
        _ => (0, 0),
    }
}

/// Parses RFC 3339 / ISO 8601 (`2024-01-02T03:04:05.678+01:00`, also with a
/// space instead of `T`, and without zone = UTC). Returns (epoch ms, bytes used).
pub fn parse_rfc3339(b: &[u8]) -> Option<(i64, usize)> {
    let year = digits(b, 0, 4)? as i64;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let h = digits(b, 11, 2)?;
    let mi = digits(b, 14, 2)?;
    let s = digits(b, 17, 2)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let (ms, f) = fraction_ms(b, 19);
    let (off, z) = zone_offset_ms(b, 19 + f);
    Some((
        epoch_ms(year, month, day, h, mi, s.min(59), ms) - off,
        19 + f + z,
    ))
}

/// `2026-11-22` for a day number (days since 1970-01-01): the name of a
/// day folder in the embedded store and its search index.
pub fn day_name(day: i64) -> String {
    format_rfc3339(day * 86_400_000)[..10].to_owned()
}

/// The day number of a `YYYY-MM-DD` name.
pub fn parse_day(name: &str) -> Option<i64> {
    if name.len() != 10 {
        return None;
    }
    let (ms, _) = parse_rfc3339(format!("{name}T00:00:00Z").as_bytes())?;
    Some(ms.div_euclid(86_400_000))
}

/// Formats epoch ms as RFC 3339 UTC with milliseconds (`2024-01-02T03:04:05.678Z`).
pub fn format_rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (mi, rem) = (rem / 60_000, rem % 60_000);
    let (s, milli) = (rem / 1000, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// Wall-clock now in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Year and month of an epoch-ms instant (UTC).
pub fn year_month(ms: i64) -> (i64, u32) {
    let (y, m, _) = civil_from_days(ms.div_euclid(86_400_000));
    (y, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        assert_eq!(epoch_ms(1970, 1, 1, 0, 0, 0, 0), 0);
        assert_eq!(
            parse_rfc3339(b"2026-01-16T06:48:51Z").map(|x| x.0),
            Some(1_768_546_131_000)
        );
        assert_eq!(
            parse_rfc3339(b"2021-09-30T11:11:54+02:00").map(|x| x.0),
            Some(1_632_993_114_000)
        );
        assert_eq!(
            format_rfc3339(1_768_546_131_000),
            "2026-01-16T06:48:51.000Z"
        );
    }

    proptest! {
        #[test]
        fn civil_round_trip(days in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
