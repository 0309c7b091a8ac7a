//! What each action means: which responders offer it, what its target is,
//! and how it is undone. Playbooks name these kinds; connectors carry them
//! out. A kind's target is checked here, whatever the connector, so a
//! value that is not an address, a user name or a plain name never reaches
//! a wire.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::finding::Domain;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    LockAccount,
    UnlockAccount,
    RevokeSessions,
    RevokeTokens,
    ForcePasswordReset,
    BlockIp,
    UnblockIp,
    RateLimit,
    RemoveRateLimit,
    Challenge,
    RemoveChallenge,
    WafRule,
    RemoveWafRule,
    RestartService,
    Scale,
    RollbackDeployment,
    ClearCache,
}

/// What a kind acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// An address or a CIDR block.
    Ip,
    User,
    /// A service, host, deployment or cache name.
    Name,
}

impl ActionKind {
    pub const ALL: &'static [ActionKind] = &[
        ActionKind::LockAccount,
        ActionKind::UnlockAccount,
        ActionKind::RevokeSessions,
        ActionKind::RevokeTokens,
        ActionKind::ForcePasswordReset,
        ActionKind::BlockIp,
        ActionKind::UnblockIp,
        ActionKind::RateLimit,
        ActionKind::RemoveRateLimit,
        ActionKind::Challenge,
        ActionKind::RemoveChallenge,
        ActionKind::WafRule,
        ActionKind::RemoveWafRule,
        ActionKind::RestartService,
        ActionKind::Scale,
        ActionKind::RollbackDeployment,
        ActionKind::ClearCache,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::LockAccount => "lock_account",
            ActionKind::UnlockAccount => "unlock_account",
            ActionKind::RevokeSessions => "revoke_sessions",
            ActionKind::RevokeTokens => "revoke_tokens",
            ActionKind::ForcePasswordReset => "force_password_reset",
            ActionKind::BlockIp => "block_ip",
            ActionKind::UnblockIp => "unblock_ip",
            ActionKind::RateLimit => "rate_limit",
            ActionKind::RemoveRateLimit => "remove_rate_limit",
            ActionKind::Challenge => "challenge",
            ActionKind::RemoveChallenge => "remove_challenge",
            ActionKind::WafRule => "waf_rule",
            ActionKind::RemoveWafRule => "remove_waf_rule",
            ActionKind::RestartService => "restart_service",
            ActionKind::Scale => "scale",
            ActionKind::RollbackDeployment => "rollback_deployment",
            ActionKind::ClearCache => "clear_cache",
        }
    }

    pub fn parse(s: &str) -> Option<ActionKind> {
        ActionKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// The responders that offer this kind.
    pub fn responders(self) -> &'static [Domain] {
        use ActionKind::*;
        match self {
            LockAccount | UnlockAccount | RevokeSessions | RevokeTokens | ForcePasswordReset => {
                &[Domain::Identity]
            }
            BlockIp => &[Domain::Http, Domain::Identity],
            UnblockIp => &[Domain::Http, Domain::Identity],
            Challenge | RemoveChallenge | WafRule | RemoveWafRule => &[Domain::Http],
            RateLimit | RemoveRateLimit => &[Domain::Http, Domain::Infrastructure],
            RestartService | Scale | RollbackDeployment | ClearCache => &[Domain::Infrastructure],
        }
    }

    /// The responder that runs this kind for a finding of `domain`: the
    /// finding's own where it offers the kind, else the first that does.
    pub fn responder_for(self, domain: Domain) -> Domain {
        let r = self.responders();
        if r.contains(&domain) { domain } else { r[0] }
    }

    pub fn target_kind(self) -> TargetKind {
        use ActionKind::*;
        match self {
            BlockIp | UnblockIp | RateLimit | RemoveRateLimit | Challenge | RemoveChallenge => {
                TargetKind::Ip
            }
            LockAccount | UnlockAccount | RevokeSessions | RevokeTokens | ForcePasswordReset => {
                TargetKind::User
            }
            WafRule | RemoveWafRule | RestartService | Scale | RollbackDeployment | ClearCache => {
                TargetKind::Name
            }
        }
    }

    /// The kind that undoes this one, for containments that expire or roll
    /// back. `None`: nothing to undo (a restart, a revocation).
    pub fn undo(self) -> Option<ActionKind> {
        use ActionKind::*;
        match self {
            BlockIp => Some(UnblockIp),
            LockAccount => Some(UnlockAccount),
            RateLimit => Some(RemoveRateLimit),
            Challenge => Some(RemoveChallenge),
            WafRule => Some(RemoveWafRule),
            _ => None,
        }
    }

    /// Whether the kind contains an offender (and so must expire).
    pub fn is_containment(self) -> bool {
        self.undo().is_some()
    }

    /// The kinds a responder offers, for error messages.
    pub fn offered_by(domain: Domain) -> Vec<&'static str> {
        ActionKind::ALL
            .iter()
            .filter(|k| k.responders().contains(&domain))
            .map(|k| k.as_str())
            .collect()
    }
}

/// Checks a rendered target against its kind, returning its canonical
/// form: addresses and CIDR blocks as parsed (so `010.0.0.1` or a value
/// with a newline is refused, not passed on), user names without control
/// characters, and plain names of letters, digits and `.-_:@`.
pub fn check_target(kind: TargetKind, value: &str) -> Result<String, String> {
    match kind {
        TargetKind::Ip => {
            if let Ok(ip) = value.parse::<IpAddr>() {
                return Ok(ip.to_string());
            }
            value
                .parse::<ipnet::IpNet>()
                .map(|n| n.trunc().to_string())
                .map_err(|_| format!("{value:?} is not an IP address or CIDR block"))
        }
        TargetKind::User => {
            if value.is_empty() || value.len() > 256 {
                return Err(format!(
                    "{:?} is not a user name (1 to 256 bytes)",
                    preview(value)
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(format!(
                    "{:?} is not a user name (control characters)",
                    preview(value)
                ));
            }
            Ok(value.to_owned())
        }
        TargetKind::Name => {
            let ok = !value.is_empty()
                && value.len() <= 253
                && !value.starts_with(['.', '-'])
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_:@".contains(&b));
            if ok {
                Ok(value.to_owned())
            } else {
                Err(format!(
                    "{:?} is not a plain name (letters, digits and .-_:@)",
                    preview(value)
                ))
            }
        }
    }
}

fn preview(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_by_kind() {
        assert_eq!(
            check_target(TargetKind::Ip, "203.0.113.5").unwrap(),
            "203.0.113.5"
        );
        assert_eq!(
            check_target(TargetKind::Ip, "10.1.2.3/8").unwrap(),
            "10.0.0.0/8"
        );
        assert!(check_target(TargetKind::Ip, "1.2.3.4\ndeny all").is_err());
        assert!(check_target(TargetKind::Ip, "1.2.3.4; allow all").is_err());
        assert!(check_target(TargetKind::User, "root; rm -rf /").is_ok());
        assert!(check_target(TargetKind::User, "bob\nInjected").is_err());
        assert!(check_target(TargetKind::Name, "../../etc/x").is_err());
        assert!(check_target(TargetKind::Name, "auth-service").is_ok());
        assert!(check_target(TargetKind::Name, "svc;reboot").is_err());
    }

    #[test]
    fn every_kind_has_a_name_and_a_responder() {
        for k in ActionKind::ALL {
            assert_eq!(ActionKind::parse(k.as_str()), Some(*k));
            assert!(!k.responders().is_empty());
            if let Some(u) = k.undo() {
                assert_eq!(u.target_kind(), k.target_kind());
            }
        }
    }
}
