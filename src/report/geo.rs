//! Country and autonomous system of offending addresses, from MaxMind-format
//! databases (GeoLite2 / GeoIP2 Country or City, and ASN, or any database
//! with the same field names), read with MaxMind's `maxminddb` crate. The
//! report's top addresses are looked up once each when it is made; nothing
//! on the detection path depends on it.

use std::net::IpAddr;

use serde::Deserialize;

#[derive(Deserialize, Default)]
struct Record {
    #[serde(default)]
    country: Option<Country>,
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(default)]
    autonomous_system_organization: Option<String>,
}

#[derive(Deserialize)]
struct Country {
    #[serde(default)]
    iso_code: Option<String>,
}

pub struct Geo {
    readers: Vec<(String, maxminddb::Reader<Vec<u8>>)>,
}

impl Geo {
    /// Opens every database; an unreadable one is an error naming it.
    pub fn open(paths: &[String]) -> anyhow::Result<Geo> {
        let mut readers = Vec::new();
        for p in paths {
            let r = maxminddb::Reader::open_readfile(p)
                .map_err(|e| anyhow::anyhow!("geoip database {p}: {e}"))?;
            readers.push((p.clone(), r));
        }
        Ok(Geo { readers })
    }

    /// (country ISO code, `AS64500 Organisation`) of an address, from the
    /// first database that knows each.
    pub fn lookup(&self, addr: &str) -> (Option<String>, Option<String>) {
        let Ok(ip) = addr.parse::<IpAddr>() else {
            return (None, None);
        };
        let (mut country, mut asn) = (None, None);
        for (path, r) in &self.readers {
            let rec = match r.lookup(ip).and_then(|l| l.decode::<Record>()) {
                Ok(Some(rec)) => rec,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(db = %path, %addr, error = %e, "geoip lookup failed");
                    continue;
                }
            };
            if country.is_none() {
                country = rec.country.and_then(|c| c.iso_code);
            }
            if asn.is_none() {
                asn = rec.autonomous_system_number.map(|n| {
                    match &rec.autonomous_system_organization {
                        Some(o) => format!("AS{n} {o}"),
                        None => format!("AS{n}"),
                    }
                });
            }
        }
        (country, asn)
    }

    /// Adds country and AS to the report's top addresses.
    pub fn enrich(&self, r: &mut super::Report) {
        for list in r.offenders.values_mut() {
            for o in list
                .iter_mut()
                .filter(|o| o.value.parse::<IpAddr>().is_ok())
            {
                let (country, asn) = self.lookup(&o.value);
                o.country = country;
                o.asn = asn;
            }
        }
    }
}
