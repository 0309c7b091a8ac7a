//! SVG charts drawn on the server: plain shapes and text, no scripts, so
//! they render in browsers and mail clients alike. Labels are escaped.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::escape::html as esc;

/// The colour of each domain (the same in every chart and the legend).
pub fn domain_colour(domain: &str) -> &'static str {
    match domain {
        "identity" => "#4e79a7",
        "http" => "#f28e2b",
        "infrastructure" => "#59a14f",
        _ => "#b07aa1",
    }
}

/// Findings per hour, stacked by domain; `label(h)` names hour `h`.
pub fn stacked_hours(
    per_hour: &BTreeMap<String, Vec<u64>>,
    label: impl Fn(usize) -> String,
) -> String {
    let hours = per_hour.values().map(Vec::len).max().unwrap_or(24).max(1);
    let totals: Vec<u64> = (0..hours)
        .map(|h| {
            per_hour
                .values()
                .map(|v| v.get(h).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let (w, h, left, top, bottom) = (760.0, 240.0, 48.0, 28.0, 30.0);
    let plot_h = h - top - bottom;
    let slot = (w - left - 8.0) / hours as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="chart-hours" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="Findings per hour by domain">"##
    );
    // scale: 0, half, max
    let half = if max % 2 == 0 {
        (max / 2).to_string()
    } else {
        format!("{:.1}", max as f64 / 2.0)
    };
    for (frac, v) in [(0.0, "0".to_string()), (0.5, half), (1.0, max.to_string())] {
        let y = top + plot_h * (1.0 - frac);
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">{v}</text>"##,
            w - 8.0,
            left - 6.0,
            y + 4.0
        );
    }
    for hour in 0..hours {
        let x = left + slot * hour as f64 + slot * 0.12;
        let mut y = top + plot_h;
        for (domain, v) in per_hour {
            let n = v.get(hour).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let bh = plot_h * n as f64 / max as f64;
            y -= bh;
            let _ = write!(
                s,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{}"><title>{} {}: {n}</title></rect>"##,
                slot * 0.76,
                domain_colour(domain),
                esc(&label(hour)),
                esc(domain)
            );
        }
        if hour % 3 == 0 {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#555">{}</text>"##,
                x + slot * 0.38,
                h - bottom + 16.0,
                esc(&label(hour))
            );
        }
    }
    let mut lx = left;
    for domain in per_hour.keys() {
        let _ = write!(
            s,
            r##"<rect x="{lx:.1}" y="6" width="12" height="12" fill="{}"/><text x="{:.1}" y="16" font-size="12" fill="#333">{}</text>"##,
            domain_colour(domain),
            lx + 16.0,
            esc(domain)
        );
        lx += 24.0 + 8.0 * domain.chars().count() as f64;
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars: (label, value, value shown).
pub fn bars(id: &str, title: &str, items: &[(String, f64, String)], colour: &str) -> String {
    let row = 24.0;
    let (w, label_w, value_w) = (760.0, 260.0, 140.0);
    let h = 8.0 + row * items.len().max(1) as f64;
    let max = items
        .iter()
        .map(|i| i.1)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"##,
        esc(id),
        esc(title)
    );
    for (i, (label, v, shown)) in items.iter().enumerate() {
        let y = 4.0 + row * i as f64;
        let bw = ((w - label_w - value_w) * v / max).max(1.0);
        // the full label is in the bar's tooltip
        let short: String = if label.chars().count() > 32 {
            label.chars().take(31).chain(std::iter::once('…')).collect()
        } else {
            label.clone()
        };
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end" fill="#333">{}</text><rect x="{label_w}" y="{:.1}" width="{bw:.1}" height="{:.1}" fill="{colour}"><title>{}</title></rect><text x="{:.1}" y="{:.1}" font-size="12" fill="#333">{}</text>"##,
            label_w - 8.0,
            y + 15.0,
            esc(&short),
            y + 3.0,
            row - 8.0,
            esc(label),
            label_w + bw + 6.0,
            y + 15.0,
            esc(shown)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let s = bars(
            "x",
            "t",
            &[("<script>alert(1)</script>".into(), 3.0, "3".into())],
            "#000",
        );
        assert!(!s.contains("<script>"));
        assert!(s.contains("&lt;script&gt;"));
    }

    #[test]
    fn stacked_bars_scale_to_the_busiest_hour() {
        let mut m = BTreeMap::new();
        m.insert("http".to_string(), vec![0, 4, 0]);
        m.insert("identity".to_string(), vec![2, 4, 0]);
        let s = stacked_hours(&m, |h| format!("{h:02}"));
        assert_eq!(
            s.matches("<rect").count(),
            3 + 2,
            "three bars and two legend keys"
        );
        assert!(s.contains(r##"fill="#f28e2b""##));
    }
}
