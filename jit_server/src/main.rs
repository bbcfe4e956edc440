//! jit-server: init, serve, apply, token, host. See jit-server(8).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use jit_server::api::{router, AppState};
use jit_server::config::{ServerConfig, DEFAULT_DATA, DEFAULT_LISTEN};
use jit_server::db::{redact, single_replica_lock, Db};
use jit_server::error::{Error, Result};
use jit_server::util::{now, parse_labels};
use jit_server::{hosts, keys, policy, tls};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "jit-server",
    about = "jit's central service: requests, approvals, signed grant sets for hosts"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Data directory (keys, SQLite database, server.toml).
    #[arg(long, default_value = DEFAULT_DATA)]
    data: PathBuf,
    /// Configuration file (default: DATA/server.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create keys, TLS certificate, database schema and the first admin `admin`.
    Init {
        #[command(flatten)]
        c: Common,
        #[arg(long)]
        json: bool,
    },
    /// Serve the HTTPS API.
    Serve {
        #[command(flatten)]
        c: Common,
        /// ADDR:PORT (default from the configuration, else 127.0.0.1:8443).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Apply a policy file (people, roles, entitlements); shows the diff.
    Apply {
        file: PathBuf,
        #[command(flatten)]
        c: Common,
        #[arg(long)]
        dry_run: bool,
    },
    /// API tokens for people.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Hosts: add (join token), label, remove, list.
    Host {
        #[command(subcommand)]
        cmd: HostCmd,
    },
    /// Signing keys.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// Print a completion script for SHELL (bash, zsh, fish) on stdout; the package installs
    /// them, so it stays out of `--help`.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Certifications hosts reported for a grant (`sg-…`), a request's grants (`rq-…`) or a
    /// host's local grant (`HOST/g-…`).
    Certification {
        id: String,
        #[command(flatten)]
        c: Common,
        #[arg(long)]
        json: bool,
    },
    /// The server's audit trail (newest LIMIT records, oldest first).
    Audit {
        #[command(flatten)]
        c: Common,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Replace the online signing key with a new one certified by the root key (then SIGHUP
    /// serve; hosts need not re-enrol).
    Rotate {
        /// The offline root key file, brought back for this.
        #[arg(long)]
        root_key: PathBuf,
        /// Certificate lifetime.
        #[arg(long, default_value = "365d")]
        valid: String,
        #[command(flatten)]
        c: Common,
    },
    /// Prepare the next TLS key and certificate; serve publishes its fingerprint to hosts
    /// (signed) after a SIGHUP.
    TlsNext {
        #[command(flatten)]
        c: Common,
    },
    /// Make the next TLS key the current one (then SIGHUP serve).
    TlsPromote {
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Issue a token for NAME (shown once, stored hashed).
    Issue {
        name: String,
        #[command(flatten)]
        c: Common,
        #[arg(long)]
        json: bool,
    },
    /// Revoke every token of NAME.
    Revoke {
        name: String,
        #[command(flatten)]
        c: Common,
    },
}

#[derive(Subcommand)]
enum HostCmd {
    /// Add a host and print its one-time join token (valid 1 h).
    Add {
        name: String,
        #[arg(long = "label")]
        labels: Vec<String>,
        #[command(flatten)]
        c: Common,
        #[arg(long)]
        json: bool,
    },
    /// Set (k=v) or remove (--remove k) labels; only the server sets labels.
    Label {
        name: String,
        labels: Vec<String>,
        #[arg(long)]
        remove: Vec<String>,
        #[command(flatten)]
        c: Common,
    },
    /// Remove a host: its next call is refused and its grants end.
    Remove {
        name: String,
        #[command(flatten)]
        c: Common,
    },
    /// List hosts.
    List {
        #[command(flatten)]
        c: Common,
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    // No runtime (and no data directory) needed to print a completion script.
    if let Cmd::Completions { shell } = cli.cmd {
        use clap::CommandFactory;
        // Into memory first: clap_complete panics on a failed write (a closed pipe).
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "jit-server", &mut out);
        if let Err(e) = std::io::stdout().write_all(&out) {
            eprintln!("jit-server: stdout: {e}");
            std::process::exit(1);
        }
        return;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jit-server: runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("jit-server: {e}");
        std::process::exit(if e.status < 500 { 2 } else { 1 });
    }
}

async fn open_db(c: &Common) -> Result<(ServerConfig, Db)> {
    let cfg = ServerConfig::load(&c.data, c.config.as_deref())?;
    let db = Db::open(&cfg.database_url(&c.data)).await?;
    db.check_schema().await?;
    Ok((cfg, db))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Init { c, json } => init(&c, json).await,
        Cmd::Serve { c, listen } => serve(&c, listen).await,
        Cmd::Apply { file, c, dry_run } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::bad(format!("{}: {e}", file.display())))?;
            let p = policy::PolicyFile::parse(&text)?;
            let (_, db) = open_db(&c).await?;
            let changes = policy::apply(&db, &p, dry_run, now()).await?;
            for l in &changes {
                println!("{l}");
            }
            if changes.is_empty() {
                println!("no changes");
            } else if dry_run {
                println!("(dry run: nothing applied)");
            }
            Ok(())
        }
        Cmd::Token {
            cmd: TokenCmd::Issue { name, c, json },
        } => {
            let (_, db) = open_db(&c).await?;
            let t = policy::issue_token(&db, &name, now()).await?;
            if json {
                println!("{}", json!({ "token": t }));
            } else {
                println!("token for {name} (shown once): {t}");
            }
            Ok(())
        }
        Cmd::Token {
            cmd: TokenCmd::Revoke { name, c },
        } => {
            let (_, db) = open_db(&c).await?;
            let n = policy::revoke_tokens(&db, &name, now()).await?;
            println!("revoked {n} token(s) of {name}");
            Ok(())
        }
        Cmd::Host {
            cmd:
                HostCmd::Add {
                    name,
                    labels,
                    c,
                    json,
                },
        } => {
            let labels = parse_labels(&labels)?;
            let (cfg, db) = open_db(&c).await?;
            let t = hosts::add(&db, &name, &labels, now()).await?;
            let fp = keys::load(&c.data, &cfg)
                .map(|k| k.tls_fingerprint)
                .unwrap_or_default();
            if json {
                println!("{}", json!({ "token": t, "host": name, "fingerprint": fp }));
            } else {
                println!("join token for {name} (one use, expires in 1 h): {t}");
                println!(
                    "on the host: jitctl enroll https://SERVER:8443 --token {t} --fingerprint {fp}"
                );
            }
            Ok(())
        }
        Cmd::Host {
            cmd:
                HostCmd::Label {
                    name,
                    labels,
                    remove,
                    c,
                },
        } => {
            let set = parse_labels(&labels)?;
            let (_, db) = open_db(&c).await?;
            let l = hosts::label(&db, &name, &set, &remove, now()).await?;
            println!(
                "{name}: {}",
                l.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            Ok(())
        }
        Cmd::Host {
            cmd: HostCmd::Remove { name, c },
        } => {
            let (_, db) = open_db(&c).await?;
            hosts::remove(&db, &name, now()).await?;
            println!("removed {name}");
            Ok(())
        }
        Cmd::Key {
            cmd: KeyCmd::Rotate { root_key, valid, c },
        } => {
            let lifetime = jit_core::time::parse_duration(&valid)
                .map_err(|e| Error::bad(format!("--valid: {e}")))?;
            let end = keys::rotate(&c.data, &root_key, lifetime, now())?;
            let (_, db) = open_db(&c).await?;
            let detail = format!("new signing key valid until {end}");
            jit_server::db::audit_standalone(&db, now(), "key.rotate", &detail).await?;
            println!(
                "new signing key certified until {}; SIGHUP (or restart) jit-server serve, then move {} offline again",
                jit_core::time::format_utc(end),
                root_key.display()
            );
            Ok(())
        }
        Cmd::Key {
            cmd: KeyCmd::TlsNext { c },
        } => {
            let (cfg, db) = open_db(&c).await?;
            let fp = keys::tls_next(&c.data, &cfg)?;
            jit_server::db::audit_standalone(&db, now(), "key.tls_next", &fp).await?;
            println!("next TLS certificate {fp}; SIGHUP jit-server serve to publish it to hosts");
            Ok(())
        }
        Cmd::Key {
            cmd: KeyCmd::TlsPromote { c },
        } => {
            let (cfg, db) = open_db(&c).await?;
            let fp = keys::tls_promote(&c.data, &cfg)?;
            jit_server::db::audit_standalone(&db, now(), "key.tls_promote", &fp).await?;
            println!("TLS certificate {fp} is current; SIGHUP jit-server serve to serve it");
            Ok(())
        }
        // Printed by main before the runtime starts.
        Cmd::Completions { .. } => Ok(()),
        Cmd::Certification { id, c, json } => {
            let (_, db) = open_db(&c).await?;
            let rows = jit_server::certification::lookup(&db, &id).await?;
            if json {
                println!("{}", json!({ "certifications": rows }));
            } else if rows.is_empty() {
                println!("no certification reported for {id}");
            } else {
                for r in &rows {
                    println!("{}", jit_server::certification::describe(r));
                }
            }
            Ok(())
        }
        Cmd::Audit { c, limit, json } => {
            let (_, db) = open_db(&c).await?;
            let rows = jit_server::audit::recent(&db, limit).await?;
            if json {
                println!("{}", json!({ "audit": rows }));
            } else {
                for r in rows {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        jit_core::time::format_utc(r.at),
                        r.actor,
                        r.action,
                        r.subject,
                        r.detail.escape_debug()
                    );
                }
            }
            Ok(())
        }
        Cmd::Host {
            cmd: HostCmd::List { c, json },
        } => {
            let (_, db) = open_db(&c).await?;
            let l = hosts::list(&db).await?;
            if json {
                println!("{}", json!({ "hosts": l }));
            } else {
                for h in l {
                    println!(
                        "{}\t{}\tseq={} acked={}{}",
                        h.name,
                        h.labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(","),
                        h.seq,
                        h.acked_seq,
                        if h.unconfirmed { " (unconfirmed)" } else { "" }
                    );
                }
            }
            Ok(())
        }
    }
}

fn make_data_dir(data: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !data.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data)?;
    }
    // The data directory holds the signing key and the database: the owner's alone, also when
    // the operator created it beforehand.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

async fn init(c: &Common, json_out: bool) -> Result<()> {
    make_data_dir(&c.data)?;
    let cfg = ServerConfig::load(&c.data, c.config.as_deref())?;
    let db = Db::open(&cfg.database_url(&c.data)).await?;
    if db.schema_version().await? != 0 {
        return Err(Error::conflict(format!(
            "database {} is initialised already",
            redact(&db.url)
        )));
    }
    let t = now();
    let created = keys::create(&c.data, &cfg, t)?;
    db.migrate().await?;
    if !db.postgres {
        // Token hashes, host keys and the audit trail: the owner's alone, like the key files.
        use std::os::unix::fs::PermissionsExt;
        for f in ["server.db", "server.db-wal", "server.db-shm"] {
            let p = c.data.join(f);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    policy::add_admin(&db, "admin", t).await?;
    let token = policy::issue_token(&db, "admin", t).await?;
    if json_out {
        println!(
            "{}",
            json!({ "admin": "admin", "token": token, "fingerprint": created.tls_fingerprint,
                    "root_key": created.root_key_path })
        );
    } else {
        println!("jit-server initialised in {}", c.data.display());
        println!("admin token (shown once): {token}");
        println!(
            "server TLS fingerprint (pin it): {}",
            created.tls_fingerprint
        );
        println!(
            "root key: {} -- move it OFFLINE now; it is needed only to certify a new signing key",
            created.root_key_path.display()
        );
    }
    Ok(())
}

/// Every long-polling host holds a connection, so a descriptor: the soft limit (often 1024) is
/// raised to the hard one, which the operator controls (systemd's LimitNOFILE=).
fn raise_nofile_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct passed, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 || r.rlim_cur >= r.rlim_max {
        return;
    }
    r.rlim_cur = r.rlim_max;
    // SAFETY: setrlimit only reads the struct passed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        eprintln!(
            "jit-server: could not raise the open-file limit to {}",
            r.rlim_max
        );
    }
}

async fn serve(c: &Common, listen: Option<String>) -> Result<()> {
    raise_nofile_limit();
    let cfg = ServerConfig::load(&c.data, c.config.as_deref())?;
    let db = Db::open(&cfg.database_url(&c.data)).await?;
    let _lock = if db.postgres {
        None
    } else {
        Some(single_replica_lock(&c.data)?)
    };
    if db.schema_version().await? == 0 {
        return Err(Error::internal(format!(
            "database {} has no schema: run jit-server init first",
            redact(&db.url)
        )));
    }
    // Pending migrations of a newer binary (under a lock on PostgreSQL, where replicas may
    // start together); a schema newer than this binary is refused by check_schema.
    db.migrate().await?;
    db.check_schema().await?;
    let keys = keys::load(&c.data, &cfg)?;
    let addr = listen
        .or_else(|| cfg.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| Error::internal(format!("listen {addr}: {e}")))?;
    let local = listener.local_addr()?;
    let fp = keys.tls_fingerprint.clone();
    let postgres = db.postgres;
    let url = db.url.clone();
    let state = Arc::new(AppState::new(db, keys, cfg, c.data.clone())?);
    if postgres {
        tokio::spawn(jit_server::db::listen_changes(url, state.clone()));
    }
    if let Some(t) = state.cfg.ticket.clone() {
        tokio::spawn(jit_server::ticket::run(state.db.clone(), t, state.clone()));
    }
    // SIGHUP: re-read the key files (a rotated signing key, a new or promoted TLS key).
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| Error::internal(format!("SIGHUP handler: {e}")))?;
    let reload = state.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match reload.reload_keys().await {
                Ok(()) => eprintln!("jit-server: keys reloaded"),
                Err(e) => eprintln!("jit-server: keys not reloaded, the old ones stay: {e}"),
            }
        }
    });
    println!("jit-server listening on {local} fingerprint {fp}");
    let _ = std::io::stdout().flush();
    let cap = state.cfg.max_connections_per_ip();
    tls::serve(listener, state.tls.clone(), cap, router(state)).await
}
