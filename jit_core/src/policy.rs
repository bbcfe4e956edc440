//! Pure decisions shared by the modules and jitd. `now` is always a parameter.

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
