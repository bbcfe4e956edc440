//! Which grant, if any, lets this person log in here now. Pure: snapshot + login context in,
//! a fitting grant or the reason there is none out.
//!
//! A grant *fits* when it is the person's gate record, live (`not_before <= now < not_after`),
//! of the right kind (`GATE_ACCOUNT` for a jit identity, `GATE_ENABLE` for a managed admin),
//! and its login conditions (`--from`, `--service`, `--window`) admit this login
//! (`jit_core::policy::login`). An armed grant fits too: it needs a verification code, and the
//! login that proves it activates it (docs/design.md#activation).
//!
//! Among several fitting grants one without MFA is preferred (the approver did not ask for a
//! code for it), then the one that ends last, then the smallest id, so the auth, account and
//! session phases of one login pick the same grant from the same snapshot.

use crate::identity::Kind;
use crate::person::Person;
use jit_core::policy::login::{LoginConditions, LoginRefusal};
use jit_core::policy::sudo::shown;
use jit_core::policy::window::LocalTime;
use jit_core::snapshot::GateView;
use jit_core::time::UnixTime;
use jit_core::types::{GATE_ACCOUNT, GATE_ARMED, GATE_ENABLE, GATE_MFA};

/// What a login looks like to the gate.
pub struct Context<'a> {
    /// `PAM_SERVICE` (empty if unset).
    pub service: &'a str,
    /// `PAM_RHOST`, if set.
    pub rhost: Option<&'a str>,
    /// The wall clock.
    pub now: UnixTime,
    /// The host-local time, asked only when a grant has a `--window` (an out-of-range value
    /// when it cannot be told: then no window admits the login).
    pub local_time: &'a dyn Fn() -> LocalTime,
}

/// The grant a login is admitted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    /// Grant id.
    pub id: String,
    /// The login needs a verification code (`GATE_MFA`, or armed).
    pub mfa: bool,
    /// Its end.
    pub not_after: UnixTime,
}

/// Why no grant fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoFit {
    /// No grant of the right kind at all.
    NoGrant,
    /// Every grant of the right kind has ended (the latest one named).
    Ended {
        /// Grant id.
        id: String,
    },
    /// The earliest grant of the right kind starts later.
    NotYet {
        /// Grant id.
        id: String,
    },
    /// A live grant of the right kind does not admit this login.
    Refused {
        /// Grant id.
        id: String,
        /// The unmet condition.
        why: LoginRefusal,
    },
}

impl NoFit {
    /// The one-line reason shown to the person (without the `jit: ` prefix).
    pub fn message(&self, user: &str, kind: Kind) -> String {
        match self {
            NoFit::NoGrant => match kind {
                Kind::Jit => format!("no live grant lets {} log in", shown(user, 64)),
                Kind::Managed => format!("no grant enables {}", shown(user, 64)),
            },
            NoFit::Ended { id } => format!("grant {} has ended", shown(id, 64)),
            NoFit::NotYet { id } => format!("grant {} is not valid yet", shown(id, 64)),
            NoFit::Refused { id, why } => why.message(id),
        }
    }

    /// Short code for logs.
    pub fn code(&self) -> &'static str {
        match self {
            NoFit::NoGrant => "no-grant",
            NoFit::Ended { .. } => "ended",
            NoFit::NotYet { .. } => "not-yet",
            NoFit::Refused { why, .. } => match why {
                LoginRefusal::Malformed { .. } => "malformed-condition",
                LoginRefusal::Service { .. } => "service",
                LoginRefusal::From { .. } => "from",
                LoginRefusal::Window { .. } => "window",
            },
        }
    }
}

fn required_flag(kind: Kind) -> u32 {
    match kind {
        Kind::Jit => GATE_ACCOUNT,
        Kind::Managed => GATE_ENABLE,
    }
}

/// Judges one live gate record's conditions.
fn admits(g: &GateView<'_>, ctx: &Context<'_>) -> Result<(), LoginRefusal> {
    let from: Vec<&str> = g.from().collect();
    let services: Vec<&str> = g.services().collect();
    let windows: Vec<&str> = g.windows().collect();
    let conditions = LoginConditions::parse(&from, &services, &windows)?;
    // Only a grant with windows needs the local time (and only then is it read).
    let t = if windows.is_empty() {
        LocalTime::new(0, 0, 0)
    } else {
        (ctx.local_time)()
    };
    conditions.allows(ctx.rhost, ctx.service, t)
}

/// The fitting grant of `user` for a login of `kind`, or why there is none.
///
/// # Errors
/// [`NoFit`], most useful reason first: a live grant's unmet condition, then a grant not yet
/// valid (the earliest), then an ended one (the latest), then none at all.
pub fn select(snap: &Person<'_>, user: &str, kind: Kind, ctx: &Context<'_>) -> Result<Fit, NoFit> {
    let flag = required_flag(kind);
    let mut best: Option<Fit> = None;
    let mut refused: Option<(String, LoginRefusal)> = None;
    let mut not_yet: Option<(UnixTime, String)> = None;
    let mut ended: Option<(UnixTime, String)> = None;
    // grants_for_user returns the person's records in id order; the tie-breaks below rely on
    // explicit keys, not on that order.
    for g in snap
        .grants_for_user(user)
        .filter(|g| g.user() == user && g.flags() & flag != 0)
    {
        let id = g.id().to_string();
        if ctx.now < g.not_before() {
            let key = (g.not_before(), id);
            if not_yet.as_ref().is_none_or(|cur| key < *cur) {
                not_yet = Some(key);
            }
            continue;
        }
        if !g.is_live(ctx.now) {
            let key = (g.not_after(), id);
            if ended.as_ref().is_none_or(|cur| key > *cur) {
                ended = Some(key);
            }
            continue;
        }
        if let Err(why) = admits(&g, ctx) {
            if refused.as_ref().is_none_or(|(cur, _)| id < *cur) {
                refused = Some((id, why));
            }
            continue;
        }
        let fit = Fit {
            id,
            mfa: g.flags() & (GATE_MFA | GATE_ARMED) != 0,
            not_after: g.not_after(),
        };
        let better = match &best {
            None => true,
            Some(b) => {
                // false < true: no MFA first; then later end; then smaller id.
                (fit.mfa, std::cmp::Reverse(fit.not_after), &fit.id)
                    < (b.mfa, std::cmp::Reverse(b.not_after), &b.id)
            }
        };
        if better {
            best = Some(fit);
        }
    }
    if let Some(fit) = best {
        return Ok(fit);
    }
    if let Some((id, why)) = refused {
        return Err(NoFit::Refused { id, why });
    }
    if let Some((_, id)) = not_yet {
        return Err(NoFit::NotYet { id });
    }
    if let Some((_, id)) = ended {
        return Err(NoFit::Ended { id });
    }
    Err(NoFit::NoGrant)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use jit_core::snapshot::build_snapshot;
    use jit_core::types::*;

    const NB: i64 = 1_000;
    const NA: i64 = 2_000;

    fn g(id: &str, user: &str, flags: u32) -> GateGrant {
        GateGrant {
            id: id.into(),
            user: user.into(),
            not_before: NB,
            not_after: NA,
            flags,
            ..Default::default()
        }
    }

    fn snap(grants: Vec<GateGrant>) -> Vec<u8> {
        build_snapshot(&SnapshotData {
            generated_at: 1,
            grants,
            managed: vec!["admin".into()],
            ..Default::default()
        })
        .unwrap()
    }

    fn monday_noon() -> LocalTime {
        LocalTime::new(0, 12, 0)
    }

    fn ctx_at(now: i64) -> Context<'static> {
        Context {
            service: "sshd",
            rhost: Some("10.1.2.3"),
            now,
            local_time: &monday_noon,
        }
    }

    fn sel(bytes: &[u8], user: &str, kind: Kind, ctx: &Context<'_>) -> Result<Fit, NoFit> {
        select(
            &Person::whole(jit_core::snapshot::Snapshot::parse(bytes).unwrap()),
            user,
            kind,
            ctx,
        )
    }

    #[test]
    fn liveness_boundaries() {
        let b = snap(vec![g("g-0001", "eve", GATE_ACCOUNT)]);
        for (now, want) in [
            (
                NB - 1,
                Err(NoFit::NotYet {
                    id: "g-0001".into(),
                }),
            ),
            (
                NB,
                Ok(Fit {
                    id: "g-0001".into(),
                    mfa: false,
                    not_after: NA,
                }),
            ),
            (
                NA - 1,
                Ok(Fit {
                    id: "g-0001".into(),
                    mfa: false,
                    not_after: NA,
                }),
            ),
            (
                NA,
                Err(NoFit::Ended {
                    id: "g-0001".into(),
                }),
            ),
            (
                NA + 1,
                Err(NoFit::Ended {
                    id: "g-0001".into(),
                }),
            ),
        ] {
            assert_eq!(sel(&b, "eve", Kind::Jit, &ctx_at(now)), want, "at {now}");
        }
    }

    #[test]
    fn kind_needs_its_flag() {
        let b = snap(vec![
            g("g-0001", "eve", 0), // a group grant: no login
            g("g-0002", "admin", GATE_ACCOUNT),
            g("g-0003", "ops", GATE_ENABLE),
        ]);
        let c = ctx_at(NB);
        assert_eq!(sel(&b, "eve", Kind::Jit, &c), Err(NoFit::NoGrant));
        assert_eq!(sel(&b, "eve", Kind::Managed, &c), Err(NoFit::NoGrant));
        assert_eq!(sel(&b, "admin", Kind::Managed, &c), Err(NoFit::NoGrant));
        assert_eq!(sel(&b, "ops", Kind::Managed, &c).unwrap().id, "g-0003");
        assert_eq!(sel(&b, "ops", Kind::Jit, &c), Err(NoFit::NoGrant));
        assert_eq!(sel(&b, "nobody", Kind::Jit, &c), Err(NoFit::NoGrant));
        // Another user's grant never fits (exact name, no prefix).
        assert_eq!(sel(&b, "op", Kind::Managed, &c), Err(NoFit::NoGrant));
        assert_eq!(sel(&b, "opss", Kind::Managed, &c), Err(NoFit::NoGrant));
    }

    #[test]
    fn mfa_and_armed() {
        let b = snap(vec![
            g("g-0001", "eve", GATE_ACCOUNT | GATE_MFA),
            g("g-0002", "fay", GATE_ACCOUNT | GATE_MFA | GATE_ARMED),
            g("g-0003", "gus", GATE_ACCOUNT | GATE_ARMED),
        ]);
        let c = ctx_at(NB + 5);
        assert!(sel(&b, "eve", Kind::Jit, &c).unwrap().mfa);
        assert!(
            sel(&b, "fay", Kind::Jit, &c).unwrap().mfa,
            "armed grants fit, with a code"
        );
        assert!(
            sel(&b, "gus", Kind::Jit, &c).unwrap().mfa,
            "armed means a code is needed"
        );
    }

    #[test]
    fn preference_among_fitting_grants() {
        let mut long_mfa = g("g-0001", "eve", GATE_ACCOUNT | GATE_MFA);
        long_mfa.not_after = NA + 500;
        let short_plain = g("g-0002", "eve", GATE_ACCOUNT);
        let mut longer_plain = g("g-0003", "eve", GATE_ACCOUNT);
        longer_plain.not_after = NA + 100;
        let twin = {
            let mut t = g("g-0004", "eve", GATE_ACCOUNT);
            t.not_after = NA + 100;
            t
        };
        let c = ctx_at(NB);
        let b = snap(vec![long_mfa.clone(), short_plain.clone()]);
        assert_eq!(
            sel(&b, "eve", Kind::Jit, &c).unwrap().id,
            "g-0002",
            "no MFA first"
        );
        let b = snap(vec![long_mfa.clone(), short_plain, longer_plain, twin]);
        assert_eq!(
            sel(&b, "eve", Kind::Jit, &c).unwrap().id,
            "g-0003",
            "then the later end, then the smaller id"
        );
        let b = snap(vec![long_mfa]);
        let f = sel(&b, "eve", Kind::Jit, &c).unwrap();
        assert!(f.mfa && f.id == "g-0001");
    }

    #[test]
    fn conditions() {
        let mut from = g("g-0001", "eve", GATE_ACCOUNT);
        from.lists_mut().from = vec!["10.0.0.0/8".into()];
        let mut svc = g("g-0002", "fay", GATE_ACCOUNT);
        svc.lists_mut().services = vec!["sshd".into()];
        let mut win = g("g-0003", "gus", GATE_ACCOUNT);
        win.lists_mut().windows = vec!["Mon-Fri 09:00-18:00".into()];
        let mut bad = g("g-0004", "hal", GATE_ACCOUNT);
        bad.lists_mut().from = vec!["not-a-network".into()];
        let b = snap(vec![from, svc, win, bad]);
        let ok = ctx_at(NB);
        for u in ["eve", "fay", "gus"] {
            assert!(sel(&b, u, Kind::Jit, &ok).is_ok(), "{u}");
        }
        let other = Context {
            rhost: Some("192.0.2.1"),
            ..ctx_at(NB)
        };
        let r = sel(&b, "eve", Kind::Jit, &other).unwrap_err();
        assert_eq!(r.code(), "from");
        assert_eq!(
            r.message("eve", Kind::Jit),
            "grant g-0001 allows logins from 10.0.0.0/8 only (this client: 192.0.2.1)"
        );
        let local = Context {
            rhost: None,
            ..ctx_at(NB)
        };
        assert_eq!(
            sel(&b, "eve", Kind::Jit, &local).unwrap_err().code(),
            "from"
        );
        let su = Context {
            service: "su",
            ..ctx_at(NB)
        };
        assert_eq!(
            sel(&b, "fay", Kind::Jit, &su).unwrap_err().code(),
            "service"
        );
        let sunday = || LocalTime::new(6, 12, 0);
        let weekend = Context {
            local_time: &sunday,
            ..ctx_at(NB)
        };
        assert_eq!(
            sel(&b, "gus", Kind::Jit, &weekend).unwrap_err().code(),
            "window"
        );
        let unknown = || LocalTime {
            weekday: 7,
            minute: 0,
        };
        let no_clock = Context {
            local_time: &unknown,
            ..ctx_at(NB)
        };
        assert_eq!(
            sel(&b, "gus", Kind::Jit, &no_clock).unwrap_err().code(),
            "window"
        );
        assert!(
            sel(&b, "eve", Kind::Jit, &no_clock).is_ok(),
            "a grant without windows never asks for the time"
        );
        assert_eq!(
            sel(&b, "hal", Kind::Jit, &ok).unwrap_err().code(),
            "malformed-condition"
        );
    }

    #[test]
    fn local_time_is_read_only_for_windows() {
        let b = snap(vec![g("g-0001", "eve", GATE_ACCOUNT)]);
        let boom = || -> LocalTime { panic!("no window: the time must not be read") };
        let c = Context {
            local_time: &boom,
            ..ctx_at(NB)
        };
        assert!(sel(&b, "eve", Kind::Jit, &c).is_ok());
    }

    #[test]
    fn reason_priority() {
        let mut refused = g("g-0003", "eve", GATE_ACCOUNT);
        refused.lists_mut().from = vec!["10.0.0.0/8".into()];
        let mut later = g("g-0004", "eve", GATE_ACCOUNT);
        later.not_before = NA + 10;
        later.not_after = NA + 20;
        let mut much_later = g("g-0005", "eve", GATE_ACCOUNT);
        much_later.not_before = NA + 100;
        much_later.not_after = NA + 200;
        let mut old = g("g-0001", "eve", GATE_ACCOUNT);
        old.not_before = 10;
        old.not_after = 20;
        let mut older = g("g-0002", "eve", GATE_ACCOUNT);
        older.not_before = 5;
        older.not_after = 15;
        let away = Context {
            rhost: Some("192.0.2.1"),
            ..ctx_at(NB)
        };
        let b = snap(vec![
            old.clone(),
            older.clone(),
            refused,
            later.clone(),
            much_later.clone(),
        ]);
        assert_eq!(sel(&b, "eve", Kind::Jit, &away).unwrap_err().code(), "from");
        let b = snap(vec![old.clone(), older.clone(), much_later, later]);
        assert_eq!(
            sel(&b, "eve", Kind::Jit, &ctx_at(NB)),
            Err(NoFit::NotYet {
                id: "g-0004".into()
            })
        );
        let b = snap(vec![older, old]);
        let r = sel(&b, "eve", Kind::Jit, &ctx_at(NB)).unwrap_err();
        assert_eq!(
            r,
            NoFit::Ended {
                id: "g-0001".into()
            }
        );
        assert_eq!(r.message("eve", Kind::Jit), "grant g-0001 has ended");
        assert_eq!(
            NoFit::NoGrant.message("admin", Kind::Managed),
            "no grant enables admin"
        );
        assert_eq!(
            NoFit::NotYet { id: "g-1".into() }.message("x", Kind::Jit),
            "grant g-1 is not valid yet"
        );
    }
}
