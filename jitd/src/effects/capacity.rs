//! Room in the snapshot files for a new grant (the rule: `engine::capacity`). The load is what
//! the last whole write measured plus the weight (`snapshot_out::spec_weight`) of each grant
//! admitted since, which the deltas carry but no measured file holds yet.

use jit_core::time::UnixTime;
use jit_proto::ErrorCode;
use serde_json::json;

use crate::audit::{Event, Severity};
use crate::daemon::{Daemon, Inner};
use crate::engine::capacity::{self, Load, Room, REFUSE_PERCENT};
use crate::engine::{refuse, Refusal};
use crate::poison::lock;

impl Daemon {
    /// Under the state lock: the files' load now. Before the first whole write of this jitd,
    /// the sizes of the files on disk (none: zero) stand for the measurement.
    pub(crate) fn snapshot_load(&self, inner: &mut Inner) -> Load {
        let measured = lock(&self.snapshot.measured).at;
        let (since, base) = match measured {
            Some((generation, load)) => (generation, load),
            None => {
                let on_disk = crate::snapshot_out::SnapshotFiles::of(&self.cfg.snapshot_path)
                    .map(|f| f.sizes());
                let (public, gates) = on_disk.unwrap_or((0, 0));
                (0, Load { public, gates })
            }
        };
        // A grant is in every projection of a generation above the one current when it was
        // admitted: those the measured write holds are counted in its sizes.
        inner.unmeasured.retain(|(g, _)| *g >= since);
        let pending: u64 = inner.unmeasured.iter().map(|(_, w)| *w).sum();
        base.plus(pending)
    }

    /// Under the state lock: refuses a grant of `weight` bytes the files have no room for;
    /// audits `snapshot.room_low` once when the room gets low.
    pub(crate) fn room_in_snapshot(
        &self,
        inner: &mut Inner,
        weight: u64,
        now: UnixTime,
    ) -> Result<(), Refusal> {
        let load = self.snapshot_load(inner);
        match capacity::room(load, weight) {
            Ok(Room::Ample) => {
                inner.room_low = false;
                Ok(())
            }
            Ok(Room::Low(s)) => {
                if !inner.room_low {
                    inner.room_low = true;
                    self.audit.record(
                        now,
                        Severity::Warning,
                        Event::SnapshotRoomLow,
                        json!({
                            "file": s.file, "percent": s.percent, "bytes": s.bytes,
                            "limit_bytes": s.limit, "public_bytes": load.public,
                            "gates_bytes": load.gates, "refuse_at": REFUSE_PERCENT,
                        }),
                    );
                }
                Ok(())
            }
            Err(why) => Err(refuse(ErrorCode::Refused, why)),
        }
    }

    /// Under the state lock, once a grant of `weight` is durable: counted until a whole write
    /// holds it.
    pub(crate) fn count_unmeasured(&self, inner: &mut Inner, weight: u64) {
        let generation = self.generation_now();
        inner.unmeasured.push((generation, weight));
    }

    /// After a whole write of `generation` with files of `(public, gates)` bytes: the new
    /// measurement; a file above what the modules read is audited (once per episode).
    pub(crate) fn measure(&self, generation: u64, (public, gates): (u64, u64), now: UnixTime) {
        let mut m = lock(&self.snapshot.measured);
        // Whole writes finish in generation order (one at a time, newest projection first).
        m.at = Some((generation, Load { public, gates }));
        let over = capacity::over_limit(Load { public, gates });
        if let Some(s) = over.filter(|_| !m.over_reported) {
            self.audit.record(
                now,
                Severity::Error,
                Event::SnapshotOverLimit,
                json!({
                    "file": s.file, "bytes": s.bytes, "limit_bytes": s.limit,
                    "effect": "the modules refuse it: no jit account resolves, every jit login and sudo is refused until it fits",
                }),
            );
        }
        m.over_reported = over.is_some();
    }

    /// The `snapshot room:` line of `jitctl status`, and the load.
    pub(crate) fn room_status(&self, inner: &mut Inner) -> (String, Load) {
        let load = self.snapshot_load(inner);
        let s = load.fullest();
        let line = format!(
            "{} % (gates file {} of {} MiB, public snapshot {} of {} MiB); new grants refused from {REFUSE_PERCENT} %",
            s.percent,
            capacity::mib(load.gates),
            capacity::GATES_LIMIT_BYTES / (1024 * 1024),
            capacity::mib(load.public),
            capacity::PUBLIC_LIMIT_BYTES / (1024 * 1024),
        );
        (line, load)
    }
}
