//! Key material in the data directory: the offline root key (written once, to be moved away),
//! the online signing key and its root-signed certificate, the TLS key and certificate.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use jit_proto::state_doc::{bytes_fingerprint, certify, CertBlob};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::util::random_bytes;

pub const ROOT_KEY: &str = "root.key";
pub const ROOT_PUB: &str = "root.pub";
pub const SIGNING_KEY: &str = "signing.key";
pub const SIGNING_CERT: &str = "signing.cert";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
/// The next TLS key and certificate (`jit-server key tls-next`), published before use.
pub const TLS_NEXT_CERT: &str = "tls.next.crt";
pub const TLS_NEXT_KEY: &str = "tls.next.key";
/// Lifetime of an online-key certificate.
pub const CERT_LIFETIME: i64 = 365 * 86_400;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertFile {
    cert: String,
    sig: String,
}

/// What `serve` needs.
pub struct ServerKeys {
    pub online: SigningKey,
    pub cert: CertBlob,
    pub root_public: [u8; 32],
    pub tls_chain: Vec<CertificateDer<'static>>,
    pub tls_key: PrivateKeyDer<'static>,
    /// `SHA256:…` of the leaf certificate's DER: what clients pin.
    pub tls_fingerprint: String,
    /// The next TLS certificate's fingerprint, if one is prepared: hosts add it to their pin
    /// set, so the switch to it needs no re-enrolment.
    pub tls_next_fingerprint: Option<String>,
    /// X25519 secret key that fleet TOTP secrets are sealed to at rest (`mfa.key`).
    pub mfa_key: [u8; 32],
}

/// What `init` created.
pub struct Created {
    pub root_key_path: PathBuf,
    pub tls_fingerprint: String,
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn write_public(path: &Path, text: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn read_key(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    let raw: [u8; 32] = STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::internal(format!("{}: not a base64 ed25519 seed", path.display())))?;
    Ok(SigningKey::from_bytes(&raw))
}

/// Creates every key file in `data` (refusing to overwrite any).
pub fn create(data: &Path, cfg: &ServerConfig, now: i64) -> Result<Created> {
    let root = SigningKey::from_bytes(&random_bytes::<32>()?);
    let online = SigningKey::from_bytes(&random_bytes::<32>()?);
    let cert = certify(
        &root,
        &online.verifying_key(),
        now - 60,
        now + CERT_LIFETIME,
    )?;
    let root_key_path = data.join(ROOT_KEY);
    write_secret(&root_key_path, &STANDARD.encode(root.to_bytes()))?;
    write_public(
        &data.join(ROOT_PUB),
        &STANDARD.encode(root.verifying_key().to_bytes()),
    )?;
    write_secret(&data.join(SIGNING_KEY), &STANDARD.encode(online.to_bytes()))?;
    let cf = CertFile {
        cert: STANDARD.encode(&cert.bytes),
        sig: STANDARD.encode(cert.sig),
    };
    write_public(&data.join(SIGNING_CERT), &serde_json::to_string(&cf)?)?;
    if cfg.tls_cert.is_none() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .map_err(|e| Error::internal(format!("TLS certificate: {e}")))?;
        write_secret(&data.join(TLS_KEY), &ck.key_pair.serialize_pem())?;
        write_public(&data.join(TLS_CERT), &ck.cert.pem())?;
    }
    let (chain, _) = load_tls(data, cfg)?;
    let leaf = chain
        .first()
        .ok_or_else(|| Error::internal("empty TLS certificate chain"))?;
    crate::mfa::load_or_create_key(data)?;
    Ok(Created {
        root_key_path,
        tls_fingerprint: bytes_fingerprint(leaf),
    })
}

fn load_tls(
    data: &Path,
    cfg: &ServerConfig,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let cert_path = cfg.tls_cert.clone().unwrap_or_else(|| data.join(TLS_CERT));
    let key_path = cfg.tls_key.clone().unwrap_or_else(|| data.join(TLS_KEY));
    let cert_pem = std::fs::read(&cert_path)
        .map_err(|e| Error::internal(format!("{}: {e}", cert_path.display())))?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::internal(format!("{}: {e}", cert_path.display())))?;
    if chain.is_empty() {
        return Err(Error::internal(format!(
            "{}: no certificate",
            cert_path.display()
        )));
    }
    let key_pem = std::fs::read(&key_path)
        .map_err(|e| Error::internal(format!("{}: {e}", key_path.display())))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| Error::internal(format!("{}: {e}", key_path.display())))?
        .ok_or_else(|| Error::internal(format!("{}: no private key", key_path.display())))?;
    Ok((chain, key))
}

/// Loads what `serve` needs. The root key's private half is never read here: only its public
/// half, which hosts pin.
pub fn load(data: &Path, cfg: &ServerConfig) -> Result<ServerKeys> {
    let online = read_key(&data.join(SIGNING_KEY))?;
    let cf_text = std::fs::read_to_string(data.join(SIGNING_CERT))?;
    let cf: CertFile = serde_json::from_str(&cf_text)?;
    let bytes = STANDARD
        .decode(cf.cert)
        .map_err(|e| Error::internal(format!("signing.cert: {e}")))?;
    let sig: [u8; 64] = STANDARD
        .decode(cf.sig)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::internal("signing.cert: bad signature"))?;
    let root_text = std::fs::read_to_string(data.join(ROOT_PUB))?;
    let root_public: [u8; 32] = STANDARD
        .decode(root_text.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::internal("root.pub: not a base64 ed25519 key"))?;
    check_cert(&bytes, &sig, &root_public, &online, crate::util::now())?;
    let (tls_chain, tls_key) = load_tls(data, cfg)?;
    let leaf = tls_chain
        .first()
        .ok_or_else(|| Error::internal("empty TLS chain"))?;
    let tls_fingerprint = bytes_fingerprint(leaf);
    let tls_next_fingerprint = next_tls_fingerprint(data, cfg)?;
    Ok(ServerKeys {
        online,
        cert: CertBlob { bytes, sig },
        root_public,
        tls_chain,
        tls_key,
        tls_fingerprint,
        tls_next_fingerprint,
        mfa_key: crate::mfa::load_or_create_key(data)?,
    })
}

/// The fingerprint of the next TLS certificate: `tls_next_cert` if configured, else
/// `DATA/tls.next.crt` if `jit-server key tls-next` made one, else none.
fn next_tls_fingerprint(data: &Path, cfg: &ServerConfig) -> Result<Option<String>> {
    let path = match &cfg.tls_next_cert {
        Some(p) => p.clone(),
        None if cfg.tls_cert.is_none() && data.join(TLS_NEXT_CERT).exists() => {
            data.join(TLS_NEXT_CERT)
        }
        None => return Ok(None),
    };
    let pem =
        std::fs::read(&path).map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
    let leaf = chain
        .first()
        .ok_or_else(|| Error::internal(format!("{}: no certificate", path.display())))?;
    Ok(Some(bytes_fingerprint(leaf)))
}

/// `jit-server key tls-next`: a new self-signed TLS key and certificate beside the current
/// ones, not served yet; `serve` publishes its fingerprint (signed) so hosts pin it too.
/// Returns the fingerprint.
pub fn tls_next(data: &Path, cfg: &ServerConfig) -> Result<String> {
    if cfg.tls_cert.is_some() {
        return Err(Error::bad(
            "tls_cert is configured: name the next certificate with tls_next_cert instead",
        ));
    }
    if data.join(TLS_NEXT_CERT).exists() {
        return Err(Error::conflict(format!(
            "{} exists already (promote it first with jit-server key tls-promote)",
            data.join(TLS_NEXT_CERT).display()
        )));
    }
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| Error::internal(format!("TLS certificate: {e}")))?;
    // Key first: a certificate without its key is never published.
    let _ = std::fs::remove_file(data.join(TLS_NEXT_KEY));
    write_secret(&data.join(TLS_NEXT_KEY), &ck.key_pair.serialize_pem())?;
    write_public(&data.join(TLS_NEXT_CERT), &ck.cert.pem())?;
    Ok(bytes_fingerprint(ck.cert.der()))
}

/// `jit-server key tls-promote`: the next TLS key becomes the current one (serve switches on
/// SIGHUP). Hosts that pinned it from the signed pin set keep connecting.
pub fn tls_promote(data: &Path, cfg: &ServerConfig) -> Result<String> {
    if cfg.tls_cert.is_some() {
        return Err(Error::bad(
            "tls_cert is configured: point tls_cert/tls_key at the next files instead",
        ));
    }
    let (cert, key) = (data.join(TLS_NEXT_CERT), data.join(TLS_NEXT_KEY));
    if !cert.exists() || !key.exists() {
        return Err(Error::not_found(
            "no next TLS key: run jit-server key tls-next first",
        ));
    }
    let fp = next_tls_fingerprint(data, cfg)?.unwrap_or_default();
    std::fs::rename(&key, data.join(TLS_KEY))?;
    std::fs::rename(&cert, data.join(TLS_CERT))?;
    Ok(fp)
}

/// The certificate must be the root's, for this online key, and valid now: a server whose
/// documents every host would refuse does not start.
fn check_cert(
    bytes: &[u8],
    sig: &[u8; 64],
    root_public: &[u8; 32],
    online: &SigningKey,
    now: i64,
) -> Result<()> {
    let root = ed25519_dalek::VerifyingKey::from_bytes(root_public)
        .map_err(|_| Error::internal("root.pub is not a valid ed25519 key"))?;
    let mut msg = jit_proto::state_doc::CERT_DOMAIN.to_vec();
    msg.extend_from_slice(bytes);
    root.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(sig))
        .map_err(|_| Error::internal("signing.cert is not signed by the root key in root.pub"))?;
    let cert: jit_proto::state_doc::SigningCert = jit_proto::state_doc::strict_from_slice(bytes)?;
    if cert.key != STANDARD.encode(online.verifying_key().as_bytes()) {
        return Err(Error::internal(
            "signing.cert certifies another key than signing.key",
        ));
    }
    if now < cert.not_before || now >= cert.not_after {
        return Err(Error::internal(format!(
            "signing.cert is valid {}..{}, not now: run jit-server key rotate",
            cert.not_before, cert.not_after
        )));
    }
    Ok(())
}

fn replace_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::internal(format!("{}: {e}", tmp.display())))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `jit-server key rotate`: a new online signing key certified by the root key read from
/// `root_key` (brought back from offline for this). The root must be the one hosts pinned
/// (`root.pub`). Hosts keep verifying without re-enrolling; `serve` uses the new key after a
/// `SIGHUP` (or a restart). Returns the new certificate's end.
pub fn rotate(data: &Path, root_key: &Path, lifetime: i64, now: i64) -> Result<i64> {
    let root = read_key(root_key)?;
    let pinned = std::fs::read_to_string(data.join(ROOT_PUB))?;
    if pinned.trim() != STANDARD.encode(root.verifying_key().to_bytes()) {
        return Err(Error::bad(format!(
            "{} is not the root key whose public half is in {} (the one hosts pinned)",
            root_key.display(),
            data.join(ROOT_PUB).display()
        )));
    }
    let online = SigningKey::from_bytes(&random_bytes::<32>()?);
    let not_after = now + lifetime;
    let cert = certify(&root, &online.verifying_key(), now - 60, not_after)?;
    let cf = CertFile {
        cert: STANDARD.encode(&cert.bytes),
        sig: STANDARD.encode(cert.sig),
    };
    // Key first, then certificate: in between, serve refuses to start (mismatch) rather than
    // sign with a key no certificate covers.
    replace_file(
        &data.join(SIGNING_KEY),
        &STANDARD.encode(online.to_bytes()),
        0o600,
    )?;
    replace_file(
        &data.join(SIGNING_CERT),
        &serde_json::to_string(&cf)?,
        0o644,
    )?;
    Ok(not_after)
}
