//! Just enough PNG to check a screenshot: 8-bit RGB or RGBA, not
//! interlaced (what Chromium writes), inflated with flate2.

#![allow(dead_code)]

use std::io::Read;

pub struct Image {
    pub width: usize,
    pub height: usize,
    /// RGB triples, row by row.
    pub rgb: Vec<(u8, u8, u8)>,
}

pub fn decode(b: &[u8]) -> Result<Image, String> {
    if b.len() < 8 || &b[..8] != b"\x89PNG\r\n\x1a\n" {
        return Err("not a PNG".into());
    }
    let mut at = 8;
    let (mut w, mut h, mut channels) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    while at + 8 <= b.len() {
        let len = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let kind = &b[at + 4..at + 8];
        let data = &b[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                h = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                let (depth, colour, interlace) = (data[8], data[9], data[12]);
                if depth != 8 || interlace != 0 {
                    return Err(format!("depth {depth}, interlace {interlace}"));
                }
                channels = match colour {
                    2 => 3,
                    6 => 4,
                    c => return Err(format!("colour type {c}")),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .map_err(|e| e.to_string())?;
    let stride = w * channels;
    let mut prev = vec![0u8; stride];
    let mut rgb = Vec::with_capacity(w * h);
    for y in 0..h {
        let row = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        let (filter, src) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= channels {
                cur[i - channels] as i16
            } else {
                0
            };
            let up = prev[i] as i16;
            let c = if i >= channels {
                prev[i - channels] as i16
            } else {
                0
            };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => up,
                3 => (a + up) / 2,
                4 => {
                    let p = a + up - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - up).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        up
                    } else {
                        c
                    }
                }
                f => return Err(format!("filter {f}")),
            };
            cur[i] = src[i].wrapping_add(pred as u8);
        }
        for px in cur.chunks(channels) {
            rgb.push((px[0], px[1], px[2]));
        }
        prev = cur;
    }
    Ok(Image {
        width: w,
        height: h,
        rgb,
    })
}

fn near(a: (u8, u8, u8), b: (u8, u8, u8), tol: u8) -> bool {
    a.0.abs_diff(b.0) <= tol && a.1.abs_diff(b.1) <= tol && a.2.abs_diff(b.2) <= tol
}

impl Image {
    /// Pixels within `tol` of `colour` on every channel.
    pub fn count(&self, colour: (u8, u8, u8), tol: u8) -> usize {
        self.rgb.iter().filter(|&&p| near(p, colour, tol)).count()
    }

    /// Runs of adjacent columns holding `colour` (bars side by side count
    /// apart when a gap separates them).
    pub fn column_runs(&self, colour: (u8, u8, u8), tol: u8) -> usize {
        let has: Vec<bool> = (0..self.width)
            .map(|x| (0..self.height).any(|y| near(self.rgb[y * self.width + x], colour, tol)))
            .collect();
        has.windows(2).filter(|w| w[1] && !w[0]).count() + usize::from(has.first() == Some(&true))
    }
}
