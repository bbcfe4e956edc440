//! Room in the snapshot files for one more grant.
//!
//! Every reader of the snapshot files refuses one larger than `MAX_SNAPSHOT_BYTES` (64 MiB;
//! docs/snapshot-format.md §6.1): libnss_jit then answers for no jit account, pam_jit and
//! sudo_jit refuse every jit user. That is the safe way for a reader to fail, but a file past
//! the cap would take every grant on the host down at once, and grants are what make it grow:
//! about 1.2 KB of the public file each for an ordinary grant (≈ 57 000 grants), but up to
//! ~800 KB for one carrying sixteen 16 KiB ssh keys (≈ 80 such grants). So admission keeps the
//! files inside the cap: a new grant is refused when, with it, either file could pass
//! [`REFUSE_PERCENT`] of the cap, and jitd warns from [`WARN_PERCENT`]. Nothing else is ever
//! refused for room: ends and revocations only make the files smaller, and they are written
//! whatever the size.
//!
//! The load is the files' sizes at their last whole write plus an upper bound
//! (`snapshot_out::spec_weight`) for each grant admitted since, which only deltas carry yet.

use jit_core::constants::MAX_SNAPSHOT_BYTES;

/// What every reader accepts.
pub const LIMIT_BYTES: u64 = MAX_SNAPSHOT_BYTES;
/// New grants are refused from this share of [`LIMIT_BYTES`]: the rest is room for the grants
/// admitted between two whole writes and for local groups growing.
pub const REFUSE_PERCENT: u64 = 90;
/// A warning (audited, and in `jitctl status`) from this share.
pub const WARN_PERCENT: u64 = 75;

/// Bytes in (or bound for) each snapshot file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// The public snapshot (NSS, jit-authorized-keys).
    pub public: u64,
    /// The gates file (pam_jit, sudo_jit).
    pub gates: u64,
}

impl Load {
    /// `bytes` more in each file.
    pub fn plus(self, bytes: u64) -> Load {
        Load {
            public: self.public.saturating_add(bytes),
            gates: self.gates.saturating_add(bytes),
        }
    }

    /// The fuller file and its share of [`LIMIT_BYTES`] in percent (rounded down).
    pub fn fullest(self) -> (&'static str, u64, u64) {
        let (file, bytes) = if self.public >= self.gates {
            ("public snapshot", self.public)
        } else {
            ("gates file", self.gates)
        };
        (file, bytes, bytes.saturating_mul(100) / LIMIT_BYTES)
    }
}

/// There is room for the grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Below [`WARN_PERCENT`] with it.
    Ample,
    /// At or above [`WARN_PERCENT`] with it (the percentage).
    Low(u64),
}

/// Whether a grant of `weight` bytes fits on top of `load`.
///
/// # Errors
/// The refusal's message: which file, how full, and what to do.
pub fn room(load: Load, weight: u64) -> Result<Room, String> {
    let with = load.plus(weight);
    let (file, bytes, percent) = with.fullest();
    if bytes.saturating_mul(100) >= LIMIT_BYTES * REFUSE_PERCENT {
        return Err(format!(
            "no new grants: with this one the {file} could reach {} of the {} MiB every jit module reads ({percent} %); jitd refuses new grants from {REFUSE_PERCENT} % so that the files never outgrow what the modules accept. End grants (an ended grant leaves the files at once) or ask for fewer or smaller ssh keys",
            mib(bytes),
            LIMIT_BYTES / (1024 * 1024)
        ));
    }
    Ok(if percent >= WARN_PERCENT {
        Room::Low(percent)
    } else {
        Room::Ample
    })
}

/// `bytes` as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    let tenths = bytes.saturating_mul(10) / (1024 * 1024);
    format!("{}.{} MiB", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn room_is_measured_on_the_fuller_file_with_the_grant() {
        let empty = Load::default();
        assert_eq!(room(empty, 4096), Ok(Room::Ample));
        // 47 MiB is 73 % of 64 MiB: ample; a grant that takes it to 48 MiB (75 %) warns.
        let public = Load {
            public: 47 * MIB,
            gates: 20 * MIB,
        };
        assert_eq!(room(public, 4096), Ok(Room::Ample));
        assert_eq!(room(public, MIB), Ok(Room::Low(75)));
        // The gates file counts as much as the public one.
        let gates = Load {
            public: MIB,
            gates: 57 * MIB,
        };
        assert_eq!(room(gates, 0), Ok(Room::Low(89)));
        let e = room(gates, MIB).unwrap_err();
        assert!(
            e.contains("gates file could reach 58.0 MiB of the 64 MiB"),
            "{e}"
        );
        assert!(e.contains("(90 %)"), "{e}");
    }

    #[test]
    fn the_refusal_comes_before_the_cap_whatever_the_weight() {
        // The last byte count below 90 %: one byte more refuses.
        let edge = (LIMIT_BYTES * REFUSE_PERCENT).div_ceil(100) - 1;
        let at = Load {
            public: edge,
            gates: 0,
        };
        assert!(room(at, 0).is_ok());
        assert!(room(at, 1).is_err());
        // Sizes that would overflow refuse rather than wrap.
        assert!(room(at, u64::MAX).is_err());
        let huge = Load {
            public: u64::MAX,
            gates: u64::MAX,
        };
        assert!(room(huge, 1).is_err());
    }

    #[test]
    fn mib_rounds_down_to_a_tenth() {
        assert_eq!(mib(0), "0.0 MiB");
        assert_eq!(mib(3 * MIB / 2), "1.5 MiB");
        assert_eq!(mib(64 * MIB - 1), "63.9 MiB");
    }
}
