//! jitctl's remote verbs: login, request, requests, approve, deny, revoke, hosts, certification. Exit codes as
//! for the local verbs: 1 refused, 2 usage, 3 cannot reach the server.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{CallError, Remote};
use super::config::{self, ClientFile};

// Arguments built only when this subcommand is parsed (see `Cmd` in jitctl's main.rs).
#[derive(Subcommand)]
#[command(defer = true)]
pub enum RemoteCmd {
    /// Log in to a jit-server: check the token over TLS pinned to FINGERPRINT, then save
    /// ~/.config/jit/client.toml (mode 0600).
    Login {
        /// https://HOST:PORT
        url: String,
        #[arg(long)]
        token: String,
        /// SHA256:… as `jit-server init` printed it.
        #[arg(long)]
        fingerprint: String,
    },
    /// Ask for ROLE on hosts (by name or label selector); prints the request id.
    Request(RequestArgs),
    /// List requests.
    Requests {
        /// Only pending ones.
        #[arg(long)]
        pending: bool,
        /// Only mine.
        #[arg(long)]
        mine: bool,
    },
    /// Approve a request (never your own).
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Deny a request.
    Deny {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// End a request's grant (or a grant by id) on every host.
    Revoke { id: String },
    /// Hosts enrolled with the server.
    Hosts,
    /// Certifications of a request's grants (`rq-…`), one grant (`sg-…`) or a host's local
    /// grant (`HOST/g-…`) as hosts sent them at the grant's end: clean, or what changed.
    /// Admins see every one, others those of their own grants.
    Certification { id: String },
}

#[derive(Args)]
pub struct RequestArgs {
    /// Role name.
    pub role: String,
    /// A host by name (repeatable).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// A label selector k=v (repeatable; all must match).
    #[arg(long = "select", value_name = "K=V")]
    pub select: Vec<String>,
    /// How long (clamped to the role's max), counted from approval.
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Why.
    #[arg(long)]
    pub reason: String,
    /// Ticket reference.
    #[arg(long, default_value = "")]
    pub ticket: String,
    /// Block until the request is decided or expires.
    #[arg(long)]
    pub wait: bool,
}

/// A failure: exit code and message.
pub struct Failure(pub u8, pub String);

/// Says on stderr which requested hosts an approved request's grant did not reach.
fn warn_left_out(v: &Value) {
    if let Some(left) = left_out(v) {
        eprintln!(
            "jitctl: not granted on {left}: no room there for another grant \
             (the server's audit, request.hosts_full, says why)"
        );
    }
}

/// The requested hosts an approved request's grant did not reach (`granted_on` from a server
/// that reports it), comma-separated; `None` when it reached all of them.
fn left_out(v: &Value) -> Option<String> {
    let granted: Vec<&str> = v["granted_on"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if v["state"] != "approved" {
        return None;
    }
    let left: Vec<&str> = v["hosts"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .filter(|h| !granted.contains(h))
        .collect();
    (!left.is_empty()).then(|| left.join(", "))
}

fn from_call(e: CallError) -> Failure {
    match e {
        CallError::Refused(code, msg) => Failure(if code == 400 { 2 } else { 1 }, msg),
        CallError::Unreachable(msg) => Failure(3, format!("cannot reach the server: {msg}")),
    }
}

fn remote() -> Result<Remote, Failure> {
    let c = config::load().map_err(|e| Failure(1, e))?;
    Remote::new(&c.server, &c.token, &[c.fingerprint]).map_err(|e| Failure(2, e))
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(x) => x.to_string(),
    }
}

/// Runs one remote verb; text or (with `json`) one JSON object on stdout.
pub fn run(cmd: &RemoteCmd, json_out: bool) -> Result<(), Failure> {
    match cmd {
        RemoteCmd::Login {
            url,
            token,
            fingerprint,
        } => {
            if !fingerprint.starts_with("SHA256:") {
                return Err(Failure(
                    2,
                    "--fingerprint is SHA256:… as jit-server printed it".into(),
                ));
            }
            let r = Remote::new(url, token, std::slice::from_ref(fingerprint))
                .map_err(|e| Failure(2, e))?;
            let me = r.call("GET", "/v1/whoami", None).map_err(from_call)?;
            let path = config::save(&ClientFile {
                server: url.trim_end_matches('/').to_string(),
                token: token.clone(),
                fingerprint: fingerprint.clone(),
            })
            .map_err(|e| Failure(1, e))?;
            if json_out {
                println!("{}", json!({ "name": me["name"], "config": path }));
            } else {
                println!("logged in as {} ({} saved)", s(&me, "name"), path.display());
            }
            Ok(())
        }
        RemoteCmd::Request(a) => {
            let mut select = BTreeMap::new();
            for kv in &a.select {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| Failure(2, format!("--select {kv:?} is not k=v")))?;
                select.insert(k.to_string(), v.to_string());
            }
            if a.hosts.is_empty() == select.is_empty() {
                return Err(Failure(
                    2,
                    "give --host NAME or --select k=v (one of them)".into(),
                ));
            }
            let r = remote()?;
            let body = json!({ "role": a.role, "hosts": a.hosts, "select": select,
                               "duration": a.duration, "reason": a.reason, "ticket": a.ticket });
            let mut v = r
                .call("POST", "/v1/requests", Some(&body))
                .map_err(from_call)?;
            if a.wait {
                v = wait_decided(&r, v)?;
            }
            if json_out {
                println!(
                    "{}",
                    json!({ "id": v["id"], "state": v["state"], "hosts": v["hosts"],
                            "granted_on": v["granted_on"] })
                );
            } else {
                println!("{}\t{}", s(&v, "id"), s(&v, "state"));
                warn_left_out(&v);
            }
            Ok(())
        }
        RemoteCmd::Requests { pending, mine } => {
            let r = remote()?;
            let v = r
                .call(
                    "GET",
                    &format!("/v1/requests?pending={pending}&mine={mine}"),
                    None,
                )
                .map_err(from_call)?;
            if json_out {
                println!("{v}");
                return Ok(());
            }
            let empty = Vec::new();
            let list = v["requests"].as_array().unwrap_or(&empty);
            if list.is_empty() {
                println!("no requests");
            }
            for q in list {
                let hosts: Vec<String> = q["hosts"]
                    .as_array()
                    .map(|h| {
                        h.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "{}\t{}\t{}\t{}\t{}\tapprovals={}\t{}",
                    s(q, "id"),
                    s(q, "state"),
                    s(q, "requester"),
                    s(q, "role"),
                    hosts.join(","),
                    q["approvals"].as_array().map(Vec::len).unwrap_or(0),
                    s(q, "reason")
                );
            }
            Ok(())
        }
        RemoteCmd::Approve { id, comment } | RemoteCmd::Deny { id, comment } => {
            let verb = if matches!(cmd, RemoteCmd::Approve { .. }) {
                "approve"
            } else {
                "deny"
            };
            let r = remote()?;
            let v = r
                .call(
                    "POST",
                    &format!("/v1/requests/{}/{verb}", encode(id)),
                    Some(&json!({ "comment": comment })),
                )
                .map_err(from_call)?;
            if json_out {
                println!(
                    "{}",
                    json!({ "id": v["id"], "state": v["state"], "granted_on": v["granted_on"] })
                );
            } else {
                println!("{}\t{}", s(&v, "id"), s(&v, "state"));
                warn_left_out(&v);
            }
            Ok(())
        }
        RemoteCmd::Revoke { id } => {
            let r = remote()?;
            let v = r
                .call("POST", "/v1/revoke", Some(&json!({ "id": id })))
                .map_err(from_call)?;
            if json_out {
                println!("{v}");
            } else {
                let hosts: Vec<&str> = v["hosts"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if hosts.is_empty() {
                    // A request not approved yet (or whose grants had ended): no host held it.
                    println!("revoked {id} (no host held a live grant of it)");
                } else {
                    println!("revoked {id} on {}", hosts.join(", "));
                }
            }
            Ok(())
        }
        RemoteCmd::Certification { id } => {
            let r = remote()?;
            let v = r
                .call("GET", &format!("/v1/certifications/{}", encode(id)), None)
                .map_err(from_call)?;
            if json_out {
                println!("{v}");
                return Ok(());
            }
            let empty = Vec::new();
            let list = v["certifications"].as_array().unwrap_or(&empty);
            if list.is_empty() {
                println!("no certification for {id} (yet, or not yours to see)");
            }
            for c in list {
                let cert = &c["certification"];
                println!(
                    "{} on {} ({} grant {}, user {}): {}",
                    s(c, "grant"),
                    s(c, "host"),
                    s(c, "source"),
                    s(c, "local_grant"),
                    s(c, "user"),
                    s(c, "status")
                );
                for d in cert["differences"].as_array().unwrap_or(&empty) {
                    println!(
                        "  {} {} {}{}",
                        s(d, "change"),
                        s(d, "area"),
                        jit_proto::text::one_line(&s(d, "item"), 200),
                        if d["root_equivalent"] == json!(true) {
                            " [root-equivalent]"
                        } else {
                            ""
                        }
                    );
                }
                let omitted = cert["omitted"].as_u64().unwrap_or(0);
                if omitted > 0 {
                    println!("  … {omitted} more not listed");
                }
            }
            Ok(())
        }
        RemoteCmd::Hosts => {
            let r = remote()?;
            let v = r.call("GET", "/v1/hosts", None).map_err(from_call)?;
            if json_out {
                println!("{v}");
                return Ok(());
            }
            let empty = Vec::new();
            for h in v["hosts"].as_array().unwrap_or(&empty) {
                let labels: Vec<String> = h["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "{}\t{}\tseq={}\tacked={}{}",
                    s(h, "name"),
                    labels.join(","),
                    s(h, "seq"),
                    s(h, "acked_seq"),
                    if h["unconfirmed"] == json!(true) {
                        "\tunconfirmed"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
    }
}

/// Polls the request once a second until it leaves `pending` (bounded by its pending TTL).
fn wait_decided(r: &Remote, mut v: Value) -> Result<Value, Failure> {
    let id = s(&v, "id");
    let until = v["pending_until"].as_i64().unwrap_or(0);
    while v["state"] == "pending" && jit_core::time::now() <= until + 1 {
        std::thread::sleep(Duration::from_secs(1));
        v = r
            .call("GET", &format!("/v1/requests/{}", encode(&id)), None)
            .map_err(from_call)?;
    }
    if v["state"] == "pending" {
        v["state"] = json!("expired");
    }
    Ok(v)
}

/// Path-segment encoding for ids (which the server makes from [a-z0-9-] anyway).
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `jitctl mfa enroll` without a USER: the person logged in (client.toml or `JIT_SERVER`/
/// `JIT_TOKEN`) gets a new fleet TOTP secret from the server, pending until `mfa_confirm`.
/// The answer carries `user`, `version`, `secret` (base32) and `uri`.
pub fn mfa_enroll() -> Result<Value, Failure> {
    remote()?
        .call("POST", "/v1/mfa/enroll", Some(&json!({})))
        .map_err(from_call)
}

/// `jitctl mfa remove [--person NAME]`: a fleet TOTP enrolment deleted on the server (your own,
/// or, for an admin, NAME's).
pub fn mfa_remove(person: Option<&str>) -> Result<Value, Failure> {
    let body = match person {
        Some(p) => json!({ "person": p }),
        None => json!({}),
    };
    remote()?
        .call("POST", "/v1/mfa/remove", Some(&body))
        .map_err(from_call)
}

/// `jitctl mfa confirm CODE`: one correct code puts the pending secret in force on the server.
pub fn mfa_confirm(code: &str) -> Result<Value, Failure> {
    remote()?
        .call("POST", "/v1/mfa/confirm", Some(&json!({ "code": code })))
        .map_err(from_call)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_names_the_hosts_its_grant_did_not_reach() {
        let v = |state: &str, granted: Value| json!({ "state": state, "hosts": ["web1", "web2", "web3"], "granted_on": granted });
        assert_eq!(
            left_out(&v("approved", json!(["web2"]))).as_deref(),
            Some("web1, web3")
        );
        assert_eq!(
            left_out(&v("approved", json!(["web1", "web2", "web3"]))),
            None
        );
        // Pending or denied: nothing was granted yet, nothing left out.
        assert_eq!(left_out(&v("pending", json!([]))), None);
        // An older server without the field says nothing either way.
        assert_eq!(left_out(&v("approved", Value::Null)), None);
    }
}
