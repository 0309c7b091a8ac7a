//! The command connector: allowlisted programs run with argv built from
//! templates. No shell is involved, the program is an absolute path fixed
//! in the config, and every argument that holds a value must match the
//! command's `arg_pattern` whole, so `root; rm -rf /` is refused rather
//! than passed. Runs have a timeout (the process is killed) and their
//! output is captured and capped.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ActionValues, ConnectorError, capped, connector_var};
use crate::respond::action::Action;
use crate::respond::template::Template;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    pub name: String,
    /// The program of each action kind it carries.
    pub commands: BTreeMap<String, ProgramSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpec {
    /// Absolute path of the program.
    pub program: String,
    /// Argument templates (`["restart", "{target}"]`).
    #[serde(default)]
    pub args: Vec<String>,
    /// Every argument made from a template must match this whole.
    #[serde(default = "default_pattern")]
    pub arg_pattern: String,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_output")]
    pub max_output_bytes: usize,
}

fn default_pattern() -> String {
    "[A-Za-z0-9][A-Za-z0-9._:@/-]{0,252}".into()
}
fn default_timeout() -> u64 {
    30
}
fn default_output() -> usize {
    4096
}

/// A program ready to run.
pub struct Program {
    pub program: String,
    pub args: Vec<Template>,
    pub pattern: regex::Regex,
    pub timeout: Duration,
    pub max_output: usize,
}

impl ProgramSpec {
    pub fn compile(&self) -> Result<Program, String> {
        if !self.program.starts_with('/') {
            return Err(format!(
                "program {:?} must be an absolute path",
                self.program
            ));
        }
        let pattern = regex::Regex::new(&format!("^(?:{})$", self.arg_pattern))
            .map_err(|e| format!("arg_pattern: {e}"))?;
        let args = self
            .args
            .iter()
            .map(|a| Template::compile(a, connector_var(false)))
            .collect::<Result<_, _>>()?;
        Ok(Program {
            program: self.program.clone(),
            args,
            pattern,
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
            max_output: self.max_output_bytes,
        })
    }
}

impl CommandSpec {
    pub fn compile(&self) -> Result<BTreeMap<String, Program>, String> {
        self.commands
            .iter()
            .map(|(k, p)| {
                Ok((
                    k.clone(),
                    p.compile()
                        .map_err(|e| format!("connector {}: {k}: {e}", self.name))?,
                ))
            })
            .collect()
    }
}

impl Program {
    /// The argv for an action: literal arguments as written, templated ones
    /// checked against the pattern.
    pub fn argv(&self, a: &ActionValues) -> Result<Vec<String>, String> {
        self.args
            .iter()
            .map(|t| {
                let v = t.render(a)?;
                if !t.is_literal() && !self.pattern.is_match(&v) {
                    return Err(format!(
                        "argument {v:?} does not match the allowed pattern {}",
                        self.pattern.as_str()
                    ));
                }
                Ok(v)
            })
            .collect()
    }

    /// Runs the program; the answer is its exit and capped output.
    pub async fn run(&self, argv: &[String]) -> Result<String, ConnectorError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| ConnectorError::External {
            message: format!("cannot run {}: {e}", self.program),
            retry: false,
        })?;
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                return Err(ConnectorError::External {
                    message: format!("{}: {e}", self.program),
                    retry: true,
                });
            }
            Err(_) => return Err(ConnectorError::Timeout(self.timeout.as_millis() as u64)),
        };
        let mut text = capped(&out.stdout, self.max_output);
        let err = capped(&out.stderr, self.max_output);
        if !err.trim().is_empty() {
            text = format!("{text}{}{err}", if text.is_empty() { "" } else { "\n" });
        }
        let summary = format!("{} exited {}: {}", self.program, out.status, text.trim());
        if out.status.success() {
            Ok(summary)
        } else {
            Err(ConnectorError::External {
                message: summary,
                retry: false,
            })
        }
    }
}

pub struct Command {
    name: String,
    programs: BTreeMap<String, Program>,
}

impl Command {
    pub fn new(spec: &CommandSpec) -> Result<Command, String> {
        Ok(Command {
            name: spec.name.clone(),
            programs: spec.compile()?,
        })
    }

    pub async fn execute(&self, a: &Action) -> Result<String, ConnectorError> {
        let Some(p) = self.programs.get(a.kind.as_str()) else {
            return Err(ConnectorError::Refused(format!(
                "connector {} has no command for {}",
                self.name,
                a.kind.as_str()
            )));
        };
        let argv = p
            .argv(&ActionValues {
                action: a,
                secret: None,
            })
            .map_err(ConnectorError::Refused)?;
        p.run(&argv).await
    }
}
