//! Room in the snapshot files for one more grant.
//!
//! Every reader of the snapshot files refuses to copy more than `MAX_SNAPSHOT_BYTES` (64 MiB)
//! of one at once, and to open one above `MAX_SNAPSHOT_FILE_BYTES` (256 MiB;
//! docs/snapshot-format.md §6.1). pam_jit and sudo_jit copy the gates file whole for a jit
//! user, so it must stay within 64 MiB; the public snapshot is only ever read in parts (a
//! shard, its base region, listing chunks), each smaller than the gates file, which holds the
//! same base sections and more, so it must stay within 256 MiB. Past either, the modules fail
//! closed: no jit account resolves, pam_jit and sudo_jit refuse every jit user. That is the
//! safe way for a reader to fail, but it would take every grant on the host down at once, and
//! grants are what make the files grow: about 0.6 KB of the gates file each for an ordinary
//! grant (its limit near 95 000 of them), but ~0.5 MB for one with the widest sudo scope
//! admission allows (≈ 120 such grants). So admission keeps the files inside: a new grant is refused
//! when, with it, either file could pass [`REFUSE_PERCENT`] of its limit, and jitd warns from
//! [`WARN_PERCENT`]. Nothing else is ever refused for room: ends and revocations only make the
//! files smaller, and they are written whatever the size.
//!
//! The load is the files' sizes at their last whole write plus an upper bound
//! (`snapshot_out::spec_weight`) for each grant admitted since, which only deltas carry yet.

use jit_core::constants::{MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_FILE_BYTES};

/// The largest gates file: pam_jit and sudo_jit copy it whole for a jit user.
pub const GATES_LIMIT_BYTES: u64 = MAX_SNAPSHOT_BYTES;
/// The largest public snapshot: readers open it up to this size and copy parts of it.
pub const PUBLIC_LIMIT_BYTES: u64 = MAX_SNAPSHOT_FILE_BYTES;
/// New grants are refused from this share of a limit: the rest is room for the grants
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

/// One file's share of its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Which file.
    pub file: &'static str,
    /// Its bytes.
    pub bytes: u64,
    /// Its limit.
    pub limit: u64,
    /// `bytes` of `limit` in percent, rounded down.
    pub percent: u64,
}

impl Load {
    /// `bytes` more in each file.
    pub fn plus(self, bytes: u64) -> Load {
        Load {
            public: self.public.saturating_add(bytes),
            gates: self.gates.saturating_add(bytes),
        }
    }

    /// The file nearest its limit (the gates file on a tie).
    pub fn fullest(self) -> Share {
        let share = |file, bytes: u64, limit| Share {
            file,
            bytes,
            limit,
            percent: bytes.saturating_mul(100) / limit,
        };
        let gates = share("gates file", self.gates, GATES_LIMIT_BYTES);
        let public = share("public snapshot", self.public, PUBLIC_LIMIT_BYTES);
        // Compared exactly (bytes × the other limit), not by the rounded percentages.
        if u128::from(public.bytes) * u128::from(GATES_LIMIT_BYTES)
            > u128::from(gates.bytes) * u128::from(PUBLIC_LIMIT_BYTES)
        {
            public
        } else {
            gates
        }
    }
}

/// There is room for the grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Below [`WARN_PERCENT`] with it.
    Ample,
    /// At or above [`WARN_PERCENT`] with it: the fuller file.
    Low(Share),
}

/// Whether a grant of `weight` bytes fits on top of `load`.
///
/// # Errors
/// The refusal's message: which file, how full, and what to do.
pub fn room(load: Load, weight: u64) -> Result<Room, String> {
    let s = load.plus(weight).fullest();
    if u128::from(s.bytes) * 100 >= u128::from(s.limit) * u128::from(REFUSE_PERCENT) {
        return Err(format!(
            "no new grants: with this one the {} could reach {} of the {} MiB the jit modules read ({} %); jitd refuses new grants from {REFUSE_PERCENT} % so that the files never outgrow what the modules accept. End grants (an ended grant leaves the files at once) or ask for fewer or smaller ssh keys",
            s.file,
            mib(s.bytes),
            s.limit / (1024 * 1024),
            s.percent
        ));
    }
    Ok(if s.percent >= WARN_PERCENT {
        Room::Low(s)
    } else {
        Room::Ample
    })
}

/// The file above its limit, if one is (the modules refuse it).
pub fn over_limit(load: Load) -> Option<Share> {
    let s = load.fullest();
    (s.bytes > s.limit).then_some(s)
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
    fn room_is_measured_on_the_file_nearest_its_limit_with_the_grant() {
        let empty = Load::default();
        assert_eq!(room(empty, 4096), Ok(Room::Ample));
        // The gates file, 64 MiB limit: 47 MiB is 73 %, ample; a grant that takes it to
        // 48 MiB (75 %) warns.
        let gates = Load {
            public: 90 * MIB,
            gates: 47 * MIB,
        };
        assert_eq!(room(gates, 4096), Ok(Room::Ample));
        let Ok(Room::Low(s)) = room(gates, MIB) else {
            panic!("{:?}", room(gates, MIB));
        };
        assert_eq!((s.file, s.bytes, s.percent), ("gates file", 48 * MIB, 75));
        let e = room(
            Load {
                public: MIB,
                gates: 57 * MIB,
            },
            MIB,
        )
        .unwrap_err();
        assert!(
            e.contains("gates file could reach 58.0 MiB of the 64 MiB the jit modules read (90 %)"),
            "{e}"
        );
        // The public snapshot, 256 MiB limit: 200 MiB (78 %) with a gates file at 12 %.
        let public = Load {
            public: 200 * MIB,
            gates: 8 * MIB,
        };
        let Ok(Room::Low(s)) = room(public, 0) else {
            panic!()
        };
        assert_eq!((s.file, s.percent), ("public snapshot", 78));
        let e = room(public, 31 * MIB).unwrap_err();
        assert!(
            e.contains("public snapshot could reach 231.0 MiB of the 256 MiB"),
            "{e}"
        );
    }

    #[test]
    fn the_refusal_comes_before_either_limit_whatever_the_weight() {
        for (limit, at) in [
            (
                GATES_LIMIT_BYTES,
                (|b| Load {
                    public: 0,
                    gates: b,
                }) as fn(u64) -> Load,
            ),
            (PUBLIC_LIMIT_BYTES, |b| Load {
                public: b,
                gates: 0,
            }),
        ] {
            // The last byte count below 90 %: one byte more refuses.
            let edge = at((limit * REFUSE_PERCENT).div_ceil(100) - 1);
            assert!(room(edge, 0).is_ok());
            assert!(room(edge, 1).is_err());
            // Sizes that would overflow refuse rather than wrap.
            assert!(room(edge, u64::MAX).is_err());
            assert!(room(at(u64::MAX), 1).is_err());
        }
    }

    #[test]
    fn over_the_limit_is_past_it_not_at_it() {
        let at = Load {
            public: PUBLIC_LIMIT_BYTES,
            gates: GATES_LIMIT_BYTES,
        };
        assert_eq!(over_limit(at), None);
        let s = over_limit(Load {
            gates: GATES_LIMIT_BYTES + 1,
            ..at
        })
        .unwrap();
        assert_eq!((s.file, s.limit), ("gates file", GATES_LIMIT_BYTES));
        let s = over_limit(Load {
            public: PUBLIC_LIMIT_BYTES + 1,
            gates: 0,
        })
        .unwrap();
        assert_eq!((s.file, s.limit), ("public snapshot", PUBLIC_LIMIT_BYTES));
    }

    #[test]
    fn mib_rounds_down_to_a_tenth() {
        assert_eq!(mib(0), "0.0 MiB");
        assert_eq!(mib(3 * MIB / 2), "1.5 MiB");
        assert_eq!(mib(64 * MIB - 1), "63.9 MiB");
    }
}
