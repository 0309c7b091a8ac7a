//! A MaxMind DB writer for tests (format 2.0, IPv4 tree, 24-bit records):
//! a few networks, each with a country code and an autonomous system, so
//! the report's enrichment is tested without MaxMind's own files.

#![allow(dead_code)]

#[derive(Clone, Copy)]
enum Rec {
    Node(usize),
    Data(usize),
    Empty,
}

/// Writes a database with `networks`: (first octets, prefix length,
/// country ISO code, AS number, AS organisation).
pub fn write(path: &std::path::Path, networks: &[([u8; 4], u8, &str, u32, &str)]) {
    let mut data = Vec::new();
    let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty, Rec::Empty]];
    for (addr, len, country, asn, org) in networks {
        let off = data.len();
        map(&mut data, 3);
        string(&mut data, "country");
        map(&mut data, 1);
        string(&mut data, "iso_code");
        string(&mut data, country);
        string(&mut data, "autonomous_system_number");
        uint32(&mut data, *asn);
        string(&mut data, "autonomous_system_organization");
        string(&mut data, org);
        let bits = u32::from_be_bytes(*addr);
        let mut node = 0;
        for i in 0..*len {
            let bit = ((bits >> (31 - i)) & 1) as usize;
            if i + 1 == *len {
                nodes[node][bit] = Rec::Data(off);
            } else {
                node = match nodes[node][bit] {
                    Rec::Node(n) => n,
                    _ => {
                        nodes.push([Rec::Empty, Rec::Empty]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Rec::Node(n);
                        n
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for n in &nodes {
        for r in n {
            let v = match *r {
                Rec::Node(i) => i,
                Rec::Empty => count,
                Rec::Data(off) => count + 16 + off,
            } as u32;
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let mut meta = Vec::new();
    map(&mut meta, 9);
    string(&mut meta, "node_count");
    uint32(&mut meta, count as u32);
    string(&mut meta, "record_size");
    uint16(&mut meta, 24);
    string(&mut meta, "ip_version");
    uint16(&mut meta, 4);
    string(&mut meta, "database_type");
    string(&mut meta, "ThreatPilot-Test");
    string(&mut meta, "languages");
    meta.extend_from_slice(&[1, 4]); // an array of one (extended type 11)
    string(&mut meta, "en");
    string(&mut meta, "binary_format_major_version");
    uint16(&mut meta, 2);
    string(&mut meta, "binary_format_minor_version");
    uint16(&mut meta, 0);
    string(&mut meta, "build_epoch");
    meta.extend_from_slice(&[8, 2]); // uint64 (extended type 9), 8 bytes
    meta.extend_from_slice(&1_764_547_200u64.to_be_bytes());
    string(&mut meta, "description");
    map(&mut meta, 1);
    string(&mut meta, "en");
    string(&mut meta, "test networks");
    out.extend_from_slice(&meta);
    std::fs::write(path, out).unwrap();
}

fn map(b: &mut Vec<u8>, pairs: u8) {
    b.push(7 << 5 | pairs);
}

fn string(b: &mut Vec<u8>, s: &str) {
    match s.len() {
        n if n < 29 => b.push(2 << 5 | n as u8),
        // sizes 29 to 284: 29, then the size less 29 in the next byte
        n if n < 285 => {
            b.push(2 << 5 | 29);
            b.push((n - 29) as u8);
        }
        n => panic!("a test string of {n} bytes"),
    }
    b.extend_from_slice(s.as_bytes());
}

fn uint32(b: &mut Vec<u8>, v: u32) {
    b.push(6 << 5 | 4);
    b.extend_from_slice(&v.to_be_bytes());
}

fn uint16(b: &mut Vec<u8>, v: u16) {
    b.push(5 << 5 | 2);
    b.extend_from_slice(&v.to_be_bytes());
}
