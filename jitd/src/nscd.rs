//! nscd invalidation. nscd caches positive passwd answers for 600 s and group answers for an
//! hour on Debian, so a revoked identity would stay visible; jitd flushes both tables on every
//! change, before it acknowledges the change (TEST-CATALOGUE N9, F14).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::NscdMode;

/// nscd's socket: present while an nscd serves this mount namespace.
const NSCD_SOCKET: &str = "/run/nscd/socket";

/// Flushes nscd's passwd and group caches if nscd runs. Returns whether nscd was flushed.
/// Bounded: a hung nscd costs at most two seconds per table.
pub fn invalidate(mode: NscdMode) -> bool {
    if mode == NscdMode::Off || !Path::new(NSCD_SOCKET).exists() {
        return false;
    }
    let mut ok = true;
    for table in ["passwd", "group"] {
        let child = Command::new("nscd")
            .args(["-i", table])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            ok = false;
            continue;
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    ok &= st.success();
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    ok = false;
                    break;
                }
            }
        }
    }
    ok
}
