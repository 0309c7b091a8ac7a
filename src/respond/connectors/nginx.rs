//! The nginx connector: a deny list as an include file (`deny <addr>;` per
//! line), written whole to a temporary file and renamed over the old one,
//! then an allowlisted reload. Only addresses and CIDR blocks that parse
//! are ever written, in their canonical form, so no value can add a second
//! directive or a path. The file is read back at start, so the list
//! survives restarts; block and unblock are idempotent.
//!
//! ```nginx
//! location /login { include /etc/nginx/threatpilot-deny.conf; … }
//! ```

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ConnectorError;
use super::command::{Program, ProgramSpec};
use crate::respond::action::Action;
use crate::respond::catalogue::{ActionKind, TargetKind, check_target};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NginxSpec {
    pub name: String,
    /// The include file this connector owns.
    pub deny_file: String,
    /// The reload (e.g. `/usr/sbin/nginx -s reload`); no templates.
    #[serde(default)]
    pub reload: Option<ProgramSpec>,
}

impl NginxSpec {
    pub fn check(&self) -> Result<(), String> {
        if let Some(r) = &self.reload {
            let p = r.compile()?;
            if !p.args.iter().all(|a| a.is_literal()) {
                return Err(format!(
                    "connector {}: reload arguments take no templates",
                    self.name
                ));
            }
        }
        if self.deny_file.is_empty() {
            return Err(format!("connector {}: deny_file is empty", self.name));
        }
        Ok(())
    }
}

pub struct Nginx {
    path: PathBuf,
    denied: BTreeSet<String>,
    reload: Option<Program>,
}

impl Nginx {
    pub fn open(spec: &NginxSpec) -> Result<Nginx, String> {
        spec.check()?;
        let path = PathBuf::from(&spec.deny_file);
        let mut denied = BTreeSet::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    let l = line.trim();
                    if let Some(addr) = l.strip_prefix("deny ").and_then(|r| r.strip_suffix(';'))
                        && let Ok(a) = check_target(TargetKind::Ip, addr.trim())
                    {
                        denied.insert(a);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("connector {}: {}: {e}", spec.name, path.display())),
        }
        Ok(Nginx {
            path,
            denied,
            reload: spec.reload.as_ref().map(ProgramSpec::compile).transpose()?,
        })
    }

    pub async fn execute(&mut self, a: &Action) -> Result<String, ConnectorError> {
        let addr = check_target(TargetKind::Ip, &a.target).map_err(ConnectorError::Refused)?;
        let changed = match a.kind {
            ActionKind::BlockIp => self.denied.insert(addr.clone()),
            ActionKind::UnblockIp => self.denied.remove(&addr),
            k => {
                return Err(ConnectorError::Refused(format!(
                    "the nginx connector does not carry {}",
                    k.as_str()
                )));
            }
        };
        if !changed {
            return Ok(format!(
                "{addr} was already {}",
                if a.kind == ActionKind::BlockIp {
                    "denied"
                } else {
                    "absent"
                }
            ));
        }
        if let Err(e) = self.write() {
            // keep memory in step with the file that is still in place
            match a.kind {
                ActionKind::BlockIp => self.denied.remove(&addr),
                _ => self.denied.insert(addr.clone()),
            };
            return Err(ConnectorError::External {
                message: format!("cannot write {}: {e}", self.path.display()),
                retry: true,
            });
        }
        let reloaded = match &self.reload {
            Some(p) => {
                let argv: Vec<String> = p.args.iter().map(|t| t.source().to_owned()).collect();
                p.run(&argv).await?
            }
            None => "no reload configured".into(),
        };
        Ok(format!(
            "{} {addr} in {} ({} denied); {reloaded}",
            if a.kind == ActionKind::BlockIp {
                "denied"
            } else {
                "removed"
            },
            self.path.display(),
            self.denied.len()
        ))
    }

    /// Writes the list whole, then renames it into place.
    fn write(&self) -> std::io::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("deny")
        ));
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(
            f,
            "# managed by threatpilot: every line is replaced on change"
        )?;
        for a in &self.denied {
            writeln!(f, "deny {a};")?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}
