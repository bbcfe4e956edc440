//! The HTTPS API (axum). People authenticate with a bearer token, hosts with a signature by
//! their enrolled key over each call. Bodies are capped before parsing; every field is capped
//! again where it is used.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::config::ServerConfig;
use crate::db::Db;
use crate::engine::{self, NewRequest, Verdict};
use crate::error::Error;
use crate::hosts;
use crate::keys::ServerKeys;
use crate::policy;
use crate::util::now;

/// Largest request body (a 10 MB reason is refused before it is read whole).
pub const MAX_BODY: usize = 64 * 1024;
/// A long-poll re-reads the host's sequence at least this often, so a lost wake-up (a NOTIFY
/// dropped with its connection) delays delivery by at most this much.
pub const REREAD: Duration = Duration::from_secs(2);

pub struct AppState {
    pub db: Db,
    /// Replaced whole on a reload (SIGHUP): each call signs with one consistent set.
    pub keys: RwLock<Arc<ServerKeys>>,
    /// What new connections are served with; replaced with the keys.
    pub tls: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    pub cfg: ServerConfig,
    /// The data directory the keys are read from.
    pub data: PathBuf,
    /// Bumped for a change that may concern every host (a ticket revocation, a NOTIFY without
    /// host names, the LISTEN connection coming back).
    pub wake: watch::Sender<u64>,
    /// One wake-up per host with a long-poll, for changes that name their hosts: an approval
    /// for one host wakes that host's poll only, not the whole fleet's. Bounded by the enrolled
    /// hosts (an entry is made only after a host's signed call is verified).
    pub host_wake: Mutex<HashMap<String, Arc<Notify>>>,
}

impl AppState {
    pub fn new(db: Db, keys: ServerKeys, cfg: ServerConfig, data: PathBuf) -> Result<Self, Error> {
        let tls = crate::tls::server_config(&keys)?;
        let (wake, _) = watch::channel(0u64);
        Ok(AppState {
            db,
            keys: RwLock::new(Arc::new(keys)),
            tls: Arc::new(RwLock::new(tls)),
            cfg,
            data,
            wake,
            host_wake: Mutex::new(HashMap::new()),
        })
    }

    pub fn woke(&self) {
        self.wake.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Wakes the long-polls of these hosts on this replica.
    pub fn wake_hosts(&self, hosts: &[String]) {
        let m = self.host_wake.lock().unwrap_or_else(|p| p.into_inner());
        for h in hosts {
            if let Some(n) = m.get(h) {
                n.notify_waiters();
            }
        }
    }

    fn host_notify(&self, host: &str) -> Arc<Notify> {
        self.host_wake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.to_string())
            .or_default()
            .clone()
    }

    /// The keys in use now.
    pub fn keys(&self) -> Arc<ServerKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the key files (after `key rotate`, `key tls-promote` or `key tls-next`): the
    /// same checks as at start; on any failure the keys in use stay and the error is returned.
    /// Audited with what is in use now.
    pub async fn reload_keys(&self) -> Result<(), Error> {
        let keys = crate::keys::load(&self.data, &self.cfg)?;
        let tls = crate::tls::server_config(&keys)?;
        let detail = format!(
            "signing key {} tls {} next {}",
            jit_proto::state_doc::key_fingerprint(keys.online.verifying_key().as_bytes()),
            keys.tls_fingerprint,
            keys.tls_next_fingerprint.as_deref().unwrap_or("-")
        );
        // Recorded before use: no document is signed with a key the audit does not show.
        crate::db::audit_standalone(&self.db, now(), "key.reload", &detail).await?;
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = tls;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(())
    }
}

/// Reads each request's whole body within `request_read_timeout` before any handler runs, so a
/// client trickling a body (slow loris) holds its connection for that long at most. Header
/// reading has hyper's own deadline; a long-poll's wait starts only after this.
async fn read_deadline(
    State(st): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(
        st.cfg.request_read_timeout(),
        axum::body::to_bytes(body, MAX_BODY),
    )
    .await;
    let bytes = match read {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(json!({ "error": "body too large or unreadable" })),
            )
                .into_response()
        }
        Err(_) => {
            // The connection is closed after this answer: the rest of the body is not read.
            return (
                StatusCode::REQUEST_TIMEOUT,
                [("connection", "close")],
                Json(json!({ "error": "request not received in time" })),
            )
                .into_response();
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let msg = if status.is_server_error() {
            eprintln!("jit-server: {}", self.msg);
            "internal error".to_string()
        } else {
            self.msg
        };
        (status, Json(json!({ "error": msg }))).into_response()
    }
}

type ApiResult = Result<Json<Value>, Error>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/whoami", get(whoami))
        .route("/v1/requests", post(create_request).get(list_requests))
        .route("/v1/requests/{id}", get(show_request))
        .route("/v1/requests/{id}/approve", post(approve))
        .route("/v1/requests/{id}/deny", post(deny))
        .route("/v1/revoke", post(revoke))
        .route("/v1/hosts", get(list_hosts))
        .route("/v1/audit", get(audit_trail))
        .route("/v1/enroll", post(enroll))
        .route("/v1/host/state", get(host_state))
        .route("/v1/host/ack", post(host_ack))
        .route("/v1/host/events", post(host_events))
        .route("/v1/host/tls", get(host_tls))
        .route("/v1/mfa/enroll", post(mfa_enroll))
        .route("/v1/mfa/confirm", post(mfa_confirm))
        .route("/v1/mfa/remove", post(mfa_remove))
        .route("/v1/host/seal_key", post(host_seal_key))
        .route("/v1/host/mfa_used", post(host_mfa_used))
        .route("/v1/host/certification", post(host_certification))
        .route("/v1/certifications/{id}", get(show_certifications))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            read_deadline,
        ))
        .with_state(state)
}

/// The person behind the bearer token.
async fn person(st: &AppState, headers: &HeaderMap) -> Result<String, Error> {
    let refused = || Error::unauthorized("missing or invalid token");
    let h = headers.get("authorization").ok_or_else(refused)?;
    let t = h.to_str().map_err(|_| refused())?;
    let t = t.strip_prefix("Bearer ").ok_or_else(refused)?;
    if t.len() > 128 {
        return Err(refused());
    }
    policy::person_for_token(&st.db, t)
        .await?
        .ok_or_else(refused)
}

async fn whoami(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult {
    let p = person(&st, &headers).await?;
    let admin = policy::is_admin(&st.db, &p).await?;
    Ok(Json(json!({ "name": p, "admin": admin })))
}

async fn create_request(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(req): Json<NewRequest>,
) -> ApiResult {
    let p = person(&st, &headers).await?;
    let v = engine::create(
        &st.db,
        st.cfg.ticket.as_ref(),
        &st.cfg.limits(),
        &p,
        &req,
        now(),
    )
    .await?;
    if v.state == "approved" {
        st.wake_hosts(&v.hosts);
    }
    Ok(Json(serde_json::to_value(v)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    pending: bool,
    #[serde(default)]
    mine: bool,
}

async fn list_requests(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let p = person(&st, &headers).await?;
    let v = engine::list(&st.db, &p, q.pending, q.mine, now()).await?;
    Ok(Json(json!({ "requests": v })))
}

async fn show_request(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    person(&st, &headers).await?;
    let v = engine::get(&st.db, &id)
        .await?
        .ok_or_else(|| Error::not_found(format!("no request {id:?}")))?;
    Ok(Json(serde_json::to_value(v)?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    #[serde(default)]
    comment: String,
}

async fn approve(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<ReviewBody>,
) -> ApiResult {
    let p = person(&st, &headers).await?;
    let v = engine::review(
        &st.db,
        &st.cfg.limits(),
        &p,
        &id,
        Verdict::Approve,
        &b.comment,
        now(),
    )
    .await?;
    if v.state == "approved" {
        st.wake_hosts(&v.hosts);
    }
    Ok(Json(serde_json::to_value(v)?))
}

async fn deny(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<ReviewBody>,
) -> ApiResult {
    let p = person(&st, &headers).await?;
    let v = engine::review(
        &st.db,
        &st.cfg.limits(),
        &p,
        &id,
        Verdict::Deny,
        &b.comment,
        now(),
    )
    .await?;
    Ok(Json(serde_json::to_value(v)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    id: String,
}

async fn revoke(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(b): Json<RevokeBody>,
) -> ApiResult {
    let p = person(&st, &headers).await?;
    let admin = policy::is_admin(&st.db, &p).await?;
    let hosts = engine::revoke(&st.db, &p, &b.id, admin, now()).await?;
    st.wake_hosts(&hosts);
    Ok(Json(json!({ "id": b.id, "hosts": hosts })))
}

async fn list_hosts(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult {
    person(&st, &headers).await?;
    Ok(Json(json!({ "hosts": hosts::list(&st.db).await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    limit: Option<i64>,
}

/// Admins only: the server's audit trail.
async fn audit_trail(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> ApiResult {
    let p = person(&st, &headers).await?;
    if !policy::is_admin(&st.db, &p).await? {
        return Err(Error::forbidden("the audit trail is for admins"));
    }
    let rows = crate::audit::recent(&st.db, q.limit.unwrap_or(1000)).await?;
    Ok(Json(json!({ "audit": rows })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    token: String,
    key: String,
}

async fn enroll(State(st): State<Arc<AppState>>, Json(b): Json<EnrollBody>) -> ApiResult {
    let e = hosts::enroll(&st.db, &st.keys(), &b.token, &b.key, now()).await?;
    Ok(Json(serde_json::to_value(e)?))
}

/// A host's signed call: headers x-jit-host, x-jit-time, x-jit-sig.
async fn host_auth(
    st: &AppState,
    headers: &HeaderMap,
    method: &str,
    uri: &Uri,
    body: &[u8],
) -> Result<(String, String), Error> {
    let refused = || Error::unauthorized("host authentication failed");
    let h = |n: &str| -> Result<String, Error> {
        Ok(headers
            .get(n)
            .ok_or_else(refused)?
            .to_str()
            .map_err(|_| refused())?
            .to_string())
    };
    let host = h("x-jit-host")?;
    let time: i64 = h("x-jit-time")?.parse().map_err(|_| refused())?;
    let sig = h("x-jit-sig")?;
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
    let call = hosts::HostCall {
        host: &host,
        time,
        sig_b64: &sig,
        method,
        path_and_query: pq,
        body,
    };
    hosts::authenticate(&st.db, &call, now()).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollQuery {
    #[serde(default)]
    since: i64,
    #[serde(default)]
    wait: Option<String>,
    nonce: String,
}

fn parse_wait(s: Option<&str>, max: u64) -> Result<u64, Error> {
    let Some(s) = s else { return Ok(max) };
    let digits = s.strip_suffix('s').unwrap_or(s);
    let n: u64 = digits
        .parse()
        .map_err(|_| Error::bad("wait is seconds, e.g. 30s"))?;
    Ok(n.min(max))
}

/// Long-poll: returns as soon as the host's sequence passes `since`, or at `wait` with a fresh
/// heartbeat document. Always the whole current set, signed, echoing the host's nonce.
async fn host_state(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<PollQuery>,
) -> Result<Response, Error> {
    let (host, fp) = host_auth(&st, &headers, "GET", &uri, b"").await?;
    check_nonce(&q.nonce)?;
    let wait = parse_wait(q.wait.as_deref(), st.cfg.poll_max_wait())?;
    let mut rx = st.wake.subscribe();
    rx.borrow_and_update();
    let notify = st.host_notify(&host);
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        // Registered before the re-read, so a wake-up between the read and the wait is kept.
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // Re-read by sequence every time: a wake-up is only a hint. A removed host is refused.
        let seq = hosts::current_seq(&st.db, &host)
            .await?
            .ok_or_else(|| Error::unauthorized("host authentication failed"))?;
        // Above: something new. Below: the host applied more than this database knows (it was
        // restored from an old backup); answer now, past the host's number, rather than let
        // every change wait for the heartbeat.
        if seq != q.since {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = rx.changed() => {}
            _ = tokio::time::sleep(left.min(REREAD)) => {}
        }
    }
    let poll = hosts::Poll {
        host: &host,
        host_key: &fp,
        since: q.since,
        nonce: &q.nonce,
    };
    let doc = hosts::state_document(&st.db, &st.keys(), &poll, st.cfg.doc_ttl(), now()).await?;
    Ok(([("content-type", "application/json")], doc).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinsQuery {
    nonce: String,
}

/// The TLS pin set (current and next certificate), signed for the calling host (signed call).
async fn host_tls(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<PinsQuery>,
) -> Result<Response, Error> {
    let (host, fp) = host_auth(&st, &headers, "GET", &uri, b"").await?;
    check_nonce(&q.nonce)?;
    let keys = st.keys();
    let t = now();
    let body = crate::pins::PinsBody {
        version: 1,
        host,
        host_key: fp,
        current: keys.tls_fingerprint.clone(),
        next: keys.tls_next_fingerprint.clone(),
        nonce: q.nonce,
        server_time: t,
        expires_at: t + st.cfg.doc_ttl(),
    };
    let doc = crate::pins::sign_pins(&keys, &body)?;
    Ok(([("content-type", "application/json")], doc).into_response())
}

fn check_nonce(nonce: &str) -> Result<(), Error> {
    if nonce.is_empty()
        || nonce.len() > 64
        || !nonce
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return Err(Error::bad("nonce: 1-64 of [A-Za-z0-9_-]"));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    seq: i64,
}

async fn host_ack(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let (host, _) = host_auth(&st, &headers, "POST", &uri, &body).await?;
    let a: AckBody = serde_json::from_slice(&body).map_err(|e| Error::bad(format!("ack: {e}")))?;
    hosts::ack(&st.db, &host, a.seq, now()).await?;
    Ok(Json(json!({ "acked": a.seq })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsBody {
    events: Vec<hosts::HostEvent>,
}

/// A host's events (signed call), into the server's audit.
async fn host_events(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let (host, _) = host_auth(&st, &headers, "POST", &uri, &body).await?;
    let b: EventsBody =
        serde_json::from_slice(&body).map_err(|e| Error::bad(format!("events: {e}")))?;
    let n = hosts::record_events(&st.db, &host, &b.events, now()).await?;
    Ok(Json(json!({ "recorded": n })))
}

// Fleet MFA (`crate::mfa`): a person enrols and confirms; hosts register their sealing key and
// report the TOTP steps they accepted.

async fn mfa_enroll(State(st): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult {
    let p = person(&st, &headers).await?;
    let e = crate::mfa::enroll(&st.db, &st.keys(), &p, now()).await?;
    Ok(Json(serde_json::to_value(e)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    code: String,
}

async fn mfa_confirm(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(b): Json<ConfirmBody>,
) -> ApiResult {
    let p = person(&st, &headers).await?;
    let (version, hosts) = crate::mfa::confirm(&st.db, &st.keys(), &p, &b.code, now()).await?;
    st.wake_hosts(&hosts);
    Ok(Json(
        json!({ "user": p, "version": version, "hosts": hosts }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveMfaBody {
    /// Someone else's enrolment (admins only); omitted: the caller's own.
    #[serde(default)]
    person: Option<String>,
}

async fn mfa_remove(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(b): Json<RemoveMfaBody>,
) -> ApiResult {
    let p = person(&st, &headers).await?;
    let target = match b.person {
        Some(other) if crate::util::person_key(&other) != crate::util::person_key(&p) => {
            if !policy::is_admin(&st.db, &p).await? {
                return Err(Error::forbidden(
                    "only an admin may remove another person's TOTP enrolment",
                ));
            }
            other
        }
        _ => p.clone(),
    };
    if !crate::util::valid_account_name(&target) {
        return Err(Error::bad("bad person name"));
    }
    let hosts = crate::mfa::remove(&st.db, &p, &target, now()).await?;
    st.wake_hosts(&hosts);
    Ok(Json(
        json!({ "user": target, "removed": true, "hosts": hosts }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealKeyBody {
    key: String,
}

async fn host_seal_key(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let (host, _) = host_auth(&st, &headers, "POST", &uri, &body).await?;
    let b: SealKeyBody =
        serde_json::from_slice(&body).map_err(|e| Error::bad(format!("seal_key: {e}")))?;
    crate::mfa::register_seal_key(&st.db, &host, &b.key, now()).await?;
    st.wake_hosts(std::slice::from_ref(&host));
    Ok(Json(json!({ "registered": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsedBody {
    user: String,
    step: u64,
}

async fn host_mfa_used(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let (host, _) = host_auth(&st, &headers, "POST", &uri, &body).await?;
    let b: UsedBody =
        serde_json::from_slice(&body).map_err(|e| Error::bad(format!("mfa_used: {e}")))?;
    let woke = crate::mfa::used(&st.db, &host, &b.user, b.step, now()).await?;
    st.wake_hosts(&woke);
    Ok(Json(json!({ "relayed_to": woke.len() })))
}

/// A grant's certification from the host it ran on (signed call), into the audit.
async fn host_certification(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let (host, _) = host_auth(&st, &headers, "POST", &uri, &body).await?;
    let r: crate::certification::Report =
        serde_json::from_slice(&body).map_err(|e| Error::bad(format!("certification: {e}")))?;
    let subject = crate::certification::record(&st.db, &host, &r, now()).await?;
    Ok(Json(json!({ "recorded": subject })))
}

/// The certifications of a grant or of a request's grants: admins, or the server grant's user
/// (a host's local grants are for admins: their account names are not people's names).
async fn show_certifications(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let p = person(&st, &headers).await?;
    let admin = policy::is_admin(&st.db, &p).await?;
    let all = crate::certification::lookup(&st.db, &id).await?;
    let mine: Vec<_> = all
        .into_iter()
        .filter(|c| admin || (c.source == "server" && c.user.eq_ignore_ascii_case(&p)))
        .collect();
    Ok(Json(json!({ "certifications": mine })))
}
