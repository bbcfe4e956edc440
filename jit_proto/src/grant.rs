//! The grant object: what `jitctl --json` prints, what jitd persists and what the central
//! service will sign. Fields needed by later modules (MFA, conditions, sudo scope) are part of
//! the object from the start so the format does not churn when they are enforced.

use jit_core::time::UnixTime;
use jit_core::types::Text;
use serde::{Deserialize, Serialize};
use thin_vec::ThinVec;

/// Where a grant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    /// Before `not_before`.
    Pending,
    /// Between `not_before` and `not_after`, but an `--mfa` grant whose holder has not proved a
    /// TOTP code yet: no privilege until activated.
    Armed,
    /// Gives privilege now.
    Live,
    /// Reached `not_after`.
    Expired,
    /// Ended by an operator or a policy before `not_after`.
    Revoked,
}

impl GrantState {
    /// Ended grants never come back.
    pub fn is_ended(self) -> bool {
        matches!(self, GrantState::Expired | GrantState::Revoked)
    }

    /// Lower-case name as shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Pending => "pending",
            GrantState::Armed => "armed",
            GrantState::Live => "live",
            GrantState::Expired => "expired",
            GrantState::Revoked => "revoked",
        }
    }
}

/// What a requester asks for (`jitctl grant add`, later the central service).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantSpec {
    /// The person: an ephemeral account name with `account`, else an existing local user.
    pub user: String,
    /// Length in seconds.
    pub duration_secs: i64,
    /// Delay before `not_before`, in seconds.
    pub start_in_secs: i64,
    /// Create an ephemeral account `user` while live.
    pub account: bool,
    /// Existing local groups to join while live.
    pub groups: Vec<String>,
    /// Public keys for the ephemeral account.
    pub ssh_keys: Vec<String>,
    /// Why.
    pub reason: String,
    /// Ticket reference.
    pub ticket: String,
    /// Who asked, if not the operator.
    pub requested_by: String,
    /// Sudo scope (enforced by sudo_jit).
    pub sudo: Vec<String>,
    /// Run-as targets (enforced by sudo_jit).
    pub runas: Vec<String>,
    /// Enable a managed local admin account (enforced by pam_jit).
    pub enable: bool,
    /// Source networks (enforced by pam_jit).
    pub from: Vec<String>,
    /// PAM services (enforced by pam_jit).
    pub services: Vec<String>,
    /// Time windows (enforced by pam_jit).
    pub windows: Vec<String>,
    /// TOTP at login or activation.
    pub mfa: bool,
    /// TOTP at every sudo.
    pub mfa_sudo: bool,
    /// End with the first session.
    pub end_with_session: bool,
    /// Revocation classes.
    pub revoke_on: Vec<String>,
    /// Tokenization: capabilities the named `programs` may run with (`CAP_NET_RAW`).
    pub caps: Vec<String>,
    /// Tokenization: absolute paths of the programs `jitctl run` may start with `caps`.
    pub programs: Vec<String>,
}

/// A grant as jitd holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `g-` and 12 hex digits. Shared (`Text`) with what jitd derives from the grant (the
    /// snapshot's records, the monitor's watch set, the tick's caps) instead of copied into
    /// each: at 10 000 grants each copy of the ids and names was about 0.8 MiB.
    #[serde(with = "crate::shared_text")]
    pub id: Text,
    /// The person (shared like `id`).
    #[serde(with = "crate::shared_text")]
    pub user: Text,
    /// State at the time the object was produced.
    pub state: GrantState,
    /// First second of privilege.
    pub not_before: UnixTime,
    /// First second without privilege.
    pub not_after: UnixTime,
    /// When jitd accepted it.
    pub created_at: UnixTime,
    /// Who created it (`root` for local grants; later the approving service).
    pub created_by: String,
    /// Ephemeral account.
    pub account: bool,
    /// The account's stable uid (ephemeral accounts only).
    pub uid: Option<u32>,
    /// Groups joined while live.
    pub groups: ThinVec<String>,
    /// ssh public keys.
    pub ssh_keys: ThinVec<String>,
    /// Why.
    pub reason: String,
    /// Ticket reference.
    pub ticket: String,
    /// Requester.
    pub requested_by: String,
    /// Sudo scope.
    #[serde(default)]
    pub sudo: ThinVec<String>,
    /// Run-as targets.
    #[serde(default)]
    pub runas: ThinVec<String>,
    /// Enables a managed account.
    #[serde(default)]
    pub enable: bool,
    /// Source networks.
    #[serde(default)]
    pub from: ThinVec<String>,
    /// PAM services.
    #[serde(default)]
    pub services: ThinVec<String>,
    /// Time windows.
    #[serde(default)]
    pub windows: ThinVec<String>,
    /// TOTP at login.
    #[serde(default)]
    pub mfa: bool,
    /// TOTP at sudo.
    #[serde(default)]
    pub mfa_sudo: bool,
    /// Ends with first session.
    #[serde(default)]
    pub end_with_session: bool,
    /// Revocation classes.
    #[serde(default)]
    pub revoke_on: ThinVec<String>,
    /// For an `--mfa` grant: when its holder proved a TOTP code. Until then the grant is armed
    /// and gives no privilege.
    #[serde(default)]
    pub activated_at: Option<UnixTime>,
    /// When it went live (jitd saw `not_before` pass), if it did.
    #[serde(default)]
    pub went_live_at: Option<UnixTime>,
    /// When it ended, if it did.
    #[serde(default)]
    pub ended_at: Option<UnixTime>,
    /// Why it ended (`expired`, `revoked by root: <reason>`, ...).
    #[serde(default)]
    pub end_reason: Option<String>,
    /// Teardown finished (processes ended, home handled, caches invalidated).
    #[serde(default)]
    pub torn_down: bool,
    /// Tokenization: capabilities (canonical `CAP_…` names) `programs` run with.
    #[serde(default, skip_serializing_if = "ThinVec::is_empty")]
    pub caps: ThinVec<String>,
    /// Tokenization: the programs `jitctl run` may start with `caps`.
    #[serde(default, skip_serializing_if = "ThinVec::is_empty")]
    pub programs: ThinVec<String>,
    /// Certification of the host state at the grant's end (set once its teardown finished).
    /// Boxed: only ended grants carry one, and inline it made every grant jitd holds 88 bytes
    /// larger (~0.9 MiB at 10 000 grants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certification: Option<Box<crate::certification::Certification>>,
    /// Where the grant came from: `jitctl grant add` on this host, or the central service's
    /// signed state document. State files written before the field existed read as local.
    #[serde(default)]
    pub source: GrantSource,
}

/// The origin of a grant. Server grants are converged to the server's signed set (admitted when
/// the set gains them, ended when it loses them); local grants are never touched by that.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GrantSource {
    /// Made on this host by root (`jitctl grant add`).
    #[default]
    Local,
    /// Delivered by jit-server in a verified state document. Behind a pointer: most grants of
    /// a host with many are local, and the server's fields inline made every grant 80 bytes
    /// larger. Its JSON is the same flat object as before (`kind` beside the fields).
    Server(Box<ServerSource>),
}

/// Where a server grant came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSource {
    /// The server's grant id (`sg-…`).
    pub id: String,
    /// The request it came from.
    pub request: String,
    /// The role.
    pub role: String,
    /// Ends when the host goes stale (no valid document).
    pub strict: bool,
    /// Sequence of the document that first carried it.
    pub seq: u64,
}

impl GrantSource {
    /// `created_by` of the grant and `by` of its audit record.
    pub fn as_str(&self) -> &'static str {
        match self {
            GrantSource::Local => "root",
            GrantSource::Server(_) => "server",
        }
    }

    /// The server's grant id, for a server grant.
    pub fn server_id(&self) -> Option<&str> {
        match self {
            GrantSource::Local => None,
            GrantSource::Server(s) => Some(&s.id),
        }
    }
}

impl Grant {
    /// The state at `now` for a grant that has not ended.
    pub fn state_at(&self, now: UnixTime) -> GrantState {
        if self.state.is_ended() {
            self.state
        } else if now >= self.not_after {
            GrantState::Expired
        } else if now >= self.not_before && self.mfa && self.activated_at.is_none() {
            GrantState::Armed
        } else if now >= self.not_before {
            GrantState::Live
        } else {
            GrantState::Pending
        }
    }
}
#[cfg(test)]
mod source_tests {
    use super::*;

    fn server() -> GrantSource {
        GrantSource::Server(Box::new(ServerSource {
            id: "sg-1".into(),
            request: "r-1".into(),
            role: "web-admin".into(),
            strict: true,
            seq: 7,
        }))
    }

    /// state.json and the journal hold the source as it was written before the server's fields
    /// moved behind a pointer: the same JSON both ways.
    #[test]
    fn the_json_of_a_source_is_flat_and_unchanged() {
        let json = serde_json::to_value(server()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "server", "id": "sg-1", "request": "r-1",
                "role": "web-admin", "strict": true, "seq": 7})
        );
        let back: GrantSource = serde_json::from_value(json).unwrap();
        assert_eq!(back, server());
        assert_eq!(back.server_id(), Some("sg-1"));
        assert_eq!(
            serde_json::to_value(GrantSource::Local).unwrap(),
            serde_json::json!({"kind": "local"})
        );
        let local: GrantSource = serde_json::from_str(r#"{"kind":"local"}"#).unwrap();
        assert_eq!(local, GrantSource::Local);
    }

    #[test]
    fn a_source_with_an_unknown_or_missing_field_is_refused() {
        for bad in [
            r#"{"kind":"server","id":"sg-1","request":"r","role":"x","strict":false,"seq":1,"extra":1}"#,
            r#"{"kind":"server","id":"sg-1","request":"r","role":"x","strict":false}"#,
            r#"{"kind":"remote"}"#,
            r#"{"id":"sg-1"}"#,
        ] {
            assert!(serde_json::from_str::<GrantSource>(bad).is_err(), "{bad}");
        }
    }

    /// A grant's id and user are shared strings in memory and plain JSON strings on disk and
    /// on the socket, read back equal; anything but a string is refused.
    #[test]
    fn the_id_and_user_are_plain_strings() {
        let json = serde_json::json!({
            "id": "g-0123456789ab", "user": "alice", "state": "live", "not_before": 1,
            "not_after": 2, "created_at": 1, "created_by": "root", "account": true,
            "uid": 70001, "groups": [], "ssh_keys": [], "reason": "r", "ticket": "",
            "requested_by": "", "sudo": [], "runas": [], "enable": false, "from": [],
            "services": [], "windows": [], "mfa": false, "mfa_sudo": false,
            "end_with_session": false, "revoke_on": [], "activated_at": null,
            "went_live_at": null, "ended_at": null, "end_reason": null, "torn_down": false,
            "caps": [], "programs": []
        });
        let g: Grant = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(g.id, "g-0123456789ab");
        assert_eq!(g.user, "alice");
        let back = serde_json::to_value(&g).unwrap();
        assert_eq!(back["id"], "g-0123456789ab");
        assert_eq!(back["user"], "alice");
        let again: Grant = serde_json::from_value(back).unwrap();
        assert_eq!(again, g);
        for (field, bad) in [
            ("id", serde_json::json!(7)),
            ("user", serde_json::json!(["alice"])),
            ("user", serde_json::Value::Null),
        ] {
            let mut j = json.clone();
            j[field] = bad;
            assert!(serde_json::from_value::<Grant>(j).is_err(), "{field}");
        }
    }

    /// The grants map holds every grant of a host; the server's fields of a server grant and
    /// the lists, most of them empty, are a pointer each.
    #[test]
    fn a_grant_stays_small() {
        assert_eq!(
            std::mem::size_of::<GrantSource>(),
            std::mem::size_of::<usize>()
        );
    }
}
