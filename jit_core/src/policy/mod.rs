//! Pure decisions shared by the modules and jitd. `now` is always a parameter.
//!
//! Nothing in here reads a clock, a file or the environment: `pam_jit`, `sudo_jit` and jitd
//! hand in what they were told (the grant's strings from the snapshot, sudo's `command_info`,
//! `PAM_RHOST`, the local time) and get back a decision, so every rule can be tested at its
//! boundary and every process decides the same way.
//!
//! * [`net`]: `--from` networks and `PAM_RHOST`.
//! * [`window`]: `--window` time windows in host local time.
//! * [`sudo`]: the sudo command scope and run-as targets, with the sudo escape hatches refused.
//! * [`classify`]: revocation classes (`--revoke-on`) of a sudo command.
//! * [`login`]: the login conditions (`--from`, `--service`, `--window`) pam_jit checks.

pub mod classify;
mod error;
pub mod login;
pub mod net;
pub mod sudo;
pub mod window;

pub use error::PolicyError;

use crate::time::UnixTime;

/// The one liveness rule: live from `not_before` (inclusive) to `not_after` (exclusive).
/// At `now == not_after` the grant is over, in every module and in jitd alike.
pub fn is_live(not_before: UnixTime, not_after: UnixTime, now: UnixTime) -> bool {
    not_before <= now && now < not_after
}

#[cfg(test)]
mod tests {
    use super::is_live;

    #[test]
    fn boundary_seconds() {
        let (nb, na) = (1000, 2000);
        assert!(!is_live(nb, na, nb - 1));
        assert!(is_live(nb, na, nb));
        assert!(is_live(nb, na, na - 1));
        assert!(!is_live(nb, na, na));
        assert!(!is_live(nb, na, na + 1));
        assert!(!is_live(2000, 1000, 1500), "inverted window is never live");
    }
}
