//! jitd: the host daemon. Start-up follows docs/design.md#start-up: load state, tear down what
//! expired while down, rewrite the snapshot, and only then open the socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use jit_core::constants::DEFAULT_CONFIG_PATH;
use jitd::audit::{open_syslog, Event, Severity};
use jitd::config::Config;
use jitd::daemon::Daemon;
use serde_json::json;

/// jitd — the jit host daemon: holds grants, writes the snapshot the NSS/PAM/sudo modules read,
/// serves jitctl on a local socket and tears privilege down at expiry or revocation.
#[derive(Parser)]
#[command(
    version,
    about = "jitd - the jit host daemon: grants, the NSS snapshot, the local socket, expiry and teardown"
)]
struct Args {
    /// Configuration file (TOML; unknown keys are rejected).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Validate the configuration and the host (file modes, nsswitch.conf, uid range), print
    /// every problem and exit 0 (none) or 1.
    #[arg(long)]
    check_config: bool,
    /// Make the directory that holds per-grant cgroups (`cgroup_dir`, default
    /// `<cgroup2 mount>/jit.slice`), print what jitd will use and exit 0. jitd.service runs it
    /// unsandboxed before jitd, whose own view of /sys/fs/cgroup is read-only except for that
    /// directory.
    #[arg(long)]
    prepare_cgroups: bool,
    /// nsswitch.conf to check with --check-config.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/nsswitch.conf",
        hide = true
    )]
    nsswitch: PathBuf,
    /// PAM configuration directory to check with --check-config.
    #[arg(long, value_name = "DIR", default_value = "/etc/pam.d", hide = true)]
    pam_dir: PathBuf,
}

static STOP: AtomicBool = AtomicBool::new(false);

/// Time for the accept loop to take every connection queued before the socket was unlinked
/// (its poll wakes at once for a queued connection). Short, because clients retry a missing
/// socket for only 500 ms and the restart must fit in that.
const STOP_DRAIN: Duration = Duration::from_millis(100);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signals() {
    // SIGHUP would otherwise kill jitd without its clean-stop steps; configuration is read at
    // start only, so a hang-up changes nothing (restart jitd to apply a new config).
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: an all-zero sigaction is valid; the handler only stores to an atomic, which
        // is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Tells systemd (Type=notify) we are ready, if it asked.
fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let p = path.to_string_lossy();
    if let Some(abstract_name) = p.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name) {
            let _ = sock.send_to_addr(msg.as_bytes(), &addr);
        }
    } else {
        let _ = sock.send_to(msg.as_bytes(), &*p);
    }
}

fn not_dumpable() {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) only changes this process's dumpable flag; state holds
    // secrets later (TOTP), so no core dumps or ptrace by non-root.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

fn main() -> ExitCode {
    let args = Args::parse();
    let explicit = args.config.as_os_str() != DEFAULT_CONFIG_PATH;
    let cfg = match Config::load(&args.config, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jitd: JIT-E002 invalid configuration: {e}");
            return ExitCode::from(1);
        }
    };
    if args.check_config {
        let problems = jitd::check::check_host(&cfg, &args.nsswitch, &args.pam_dir);
        if problems.is_empty() {
            println!(
                "jitd: configuration and host OK ({})",
                cfg.source
                    .as_ref()
                    .map_or("embedded defaults".into(), |p| p.display().to_string())
            );
            return ExitCode::SUCCESS;
        }
        for p in &problems {
            eprintln!("jitd: problem: {p}");
        }
        eprintln!("jitd: {} problem(s) found", problems.len());
        return ExitCode::from(1);
    }
    if args.prepare_cgroups {
        // Never fails the start: without cgroups jitd falls back to the /proc scan and says so.
        let c = jitd::monitor::cgroup::Cgroups::setup(
            cfg.cgroup_dir.as_deref(),
            std::path::Path::new("/proc/self/mountinfo"),
        );
        println!("jitd: {}", c.describe());
        return ExitCode::SUCCESS;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("jitd: must run as root (it manages accounts, homes and processes)");
        return ExitCode::from(1);
    }
    not_dumpable();
    // One malloc arena: each worker thread would otherwise keep its own arena holding the
    // freed state and snapshot buffers of the last request it served (tens of MB at 10 000
    // grants); jitd is not allocation-bound.
    // SAFETY: mallopt only tunes the allocator; called before any thread is started.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    // A fixed mmap threshold: glibc raises it to the size of each freed mmapped block, so after
    // the first whole snapshot write the next one's multi-MB buffers came from the heap, where
    // they fragment and add to the peak (VmHWM at 10 000 grants 73 -> 64 MiB in bench/add).
    // SAFETY: as above.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    open_syslog();
    install_signals();
    let now = jit_core::time::now();
    let d = match Daemon::open(cfg, now) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            eprintln!("jitd: {e}");
            jit_core::ffi::syslog_authpriv(libc::LOG_CRIT, &format!("jitd: {e}"));
            return ExitCode::from(1);
        }
    };
    d.audit(
        now,
        Severity::Info,
        Event::DaemonStart,
        json!({ "pid": std::process::id(), "version": env!("CARGO_PKG_VERSION") }),
    );
    // Recovery before the socket opens: expired-while-down grants are torn down now.
    d.tick(now);
    let listener = match jitd::server::bind(&d.cfg.socket_path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("jitd: JIT-E003 cannot open the socket: {e}");
            return ExitCode::from(1);
        }
    };
    // The link to jit-server (idle until `jitctl enroll`); reaches the daemon only through
    // sync::apply::GrantSink.
    jitd::sync::spawn(
        Arc::clone(&d) as Arc<dyn jitd::sync::apply::GrantSink>,
        Arc::clone(&d.sync_link),
        jitd::sync::state::LinkStore::new(&d.cfg.state_dir),
        &STOP,
    );
    let timer = {
        let d = Arc::clone(&d);
        std::thread::spawn(move || timer_loop(&d))
    };
    let stopper = {
        let d = Arc::clone(&d);
        std::thread::spawn(move || {
            while !STOP.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
            }
            // A restart (package upgrade, systemctl restart) must not refuse a jit user's sudo
            // or login: take the socket's name away first, so new clients find no socket and
            // retry until the next jitd binds it (jit_proto's client does), then let the accept
            // loop take what is already queued before it stops; queued connections would
            // otherwise be reset when the listener closes.
            jitd::server::begin_drain();
            let _ = std::fs::remove_file(&d.cfg.socket_path);
            std::thread::sleep(STOP_DRAIN);
            d.stop.store(true, Ordering::SeqCst);
            d.wake.notify_all();
        })
    };
    sd_notify("READY=1");
    jitd::server::run(Arc::clone(&d), listener);
    let _ = stopper.join();
    let _ = timer.join();
    let _ = std::fs::remove_file(&d.cfg.socket_path);
    d.close_counter();
    d.fold_state_journal(jit_core::time::now());
    d.audit(
        jit_core::time::now(),
        Severity::Info,
        Event::DaemonStop,
        json!({ "pid": std::process::id() }),
    );
    sd_notify("STOPPING=1");
    ExitCode::SUCCESS
}

/// Wakes at the next deadline, on a change, and at least every second so a wall-clock jump is
/// noticed within a second (docs/threat-model.md#f12).
fn timer_loop(d: &Daemon) {
    let lock = std::sync::Mutex::new(());
    while !d.stop.load(Ordering::SeqCst) {
        let now = jit_core::time::now();
        let next = d.tick(now);
        let wait_ms = match next {
            Some(t) if t <= now => 0,
            Some(t) => ((t - now) * 1000).min(1000) as u64,
            None => 1000,
        };
        if wait_ms == 0 {
            // The deadline is this very second: wait for the second to turn over.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        // Align to the start of the next second so expiry happens within a few ms of not_after.
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        let to_next_second = 1000 - (ts.tv_nsec / 1_000_000) as u64;
        let wait = Duration::from_millis(wait_ms.min(to_next_second).max(1));
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = d.wake.wait_timeout(guard, wait);
    }
}
