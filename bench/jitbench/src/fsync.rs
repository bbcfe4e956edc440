//! `jitbench fsync-probe COUNT DIR`: what one durable append costs on DIR's filesystem, the
//! floor under every `grant add` (bench/add): COUNT appends of a 200-byte line to a fresh file,
//! each followed by `fdatasync`, as jitd's audit trail and state journal do. Each append grows
//! the file, so each `fdatasync` also writes the file's size, as an audit record's does.
//! Prints `fdatasync_us=p50/p95/max`; the file is removed at the end.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Runs the probe and prints its line.
///
/// # Errors
/// The file cannot be created, written or synced, or COUNT is 0.
pub fn probe(count: usize, dir: &Path) -> Result<(), String> {
    let (p50, p95, max) = measure(count, dir)?;
    println!("fdatasync_us={p50:.0}/{p95:.0}/{max:.0}");
    Ok(())
}

/// p50, p95 and max in µs of COUNT durable appends in DIR.
fn measure(count: usize, dir: &Path) -> Result<(f64, f64, f64), String> {
    if count == 0 {
        return Err("COUNT must be at least 1".into());
    }
    let path = dir.join(".jitbench-fsync-probe");
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let _ = std::fs::remove_file(&path);
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(fail)?;
    let line = [b'x'; 199];
    let mut us = Vec::with_capacity(count);
    let result = (|| {
        for _ in 0..count {
            let t = Instant::now();
            f.write_all(&line)?;
            f.write_all(b"\n")?;
            f.sync_data()?;
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    result.map_err(fail)?;
    us.sort_by(f64::total_cmp);
    // Nearest rank, as bench/add's own percentiles.
    let rank = |p: f64| us[((p * count as f64).ceil() as usize).clamp(1, count) - 1];
    Ok((rank(0.50), rank(0.95), us[count - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("jitbench-fsync-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn percentiles_are_ordered_and_the_file_is_gone() {
        let d = scratch("ok");
        let (p50, p95, max) = measure(20, &d).unwrap();
        assert!(p50 > 0.0 && p50 <= p95 && p95 <= max, "{p50} {p95} {max}");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_nothing_to_measure_and_a_missing_directory() {
        let d = scratch("bad");
        assert!(measure(0, &d).unwrap_err().contains("at least 1"));
        assert!(measure(3, &d.join("absent")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
