//! Login conditions of a grant: where from (`--from`), through which PAM service
//! (`--service`) and when (`--window`) a person may log in under it.
//!
//! `pam_jit` hands in the grant's condition strings from the snapshot, `PAM_RHOST`,
//! `PAM_SERVICE` and the host-local time, and gets back either `Ok` or a refusal that names the
//! condition in words a person can act on ("grant g-1234 allows logins from 10.0.0.0/8 only").
//!
//! Rules:
//! * an empty list does not restrict; a non-empty list must be met;
//! * one malformed entry in any list refuses every login under the grant. jitd validated the
//!   strings before writing them, so a bad one means corruption or a newer writer; dropping it
//!   instead could turn `--from 10.0.0.0/8` into an empty, unrestricted list;
//! * the client address is `PAM_RHOST` read by [`parse_rhost`]: a missing value (a local
//!   login) or a host name does not fit a `--from` list (names are not trusted);
//! * services are compared exactly, case included (`sshd` is not `SSHD`), as Linux-PAM names
//!   its service files;
//! * a local time outside the valid range (the caller could not read the clock or the zone)
//!   is in no window, so a `--window` grant refuses rather than guesses.

use super::net::{from_allows, parse_cidr, parse_rhost, Cidr};
use super::sudo::shown;
use super::window::{parse_window, window_allows, LocalTime, Window};

/// Longest PAM service name accepted in a `--service` list.
pub const MAX_SERVICE_LEN: usize = 64;
/// Entries of a list shown in a refusal before it is cut short.
const SHOWN_ENTRIES: usize = 6;

/// Why a login does not fit a grant's conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    /// A condition string does not parse: the grant admits no login.
    Malformed {
        /// `"--from"`, `"--service"` or `"--window"`.
        condition: &'static str,
        /// What is wrong, value escaped.
        error: String,
    },
    /// `PAM_SERVICE` is not in the grant's `--service` list.
    Service {
        /// The service of this login, escaped.
        service: String,
        /// The allowed services, escaped and joined.
        allowed: String,
    },
    /// The client address is in none of the grant's networks, or there is no usable address.
    From {
        /// `PAM_RHOST` as given (escaped), `None` when absent or empty.
        rhost: Option<String>,
        /// Whether `rhost` read as an IP address (a host name does not).
        rhost_is_address: bool,
        /// The allowed networks, canonical and joined.
        allowed: String,
    },
    /// The host-local time is in none of the grant's windows.
    Window {
        /// The allowed windows, canonical and joined.
        allowed: String,
        /// False when the local time could not be read (then no window can be met).
        time_known: bool,
    },
}

impl LoginRefusal {
    /// The condition this refusal is about: `--from`, `--service` or `--window` (for logs).
    pub fn condition(&self) -> &'static str {
        match self {
            LoginRefusal::Malformed { condition, .. } => condition,
            LoginRefusal::Service { .. } => "--service",
            LoginRefusal::From { .. } => "--from",
            LoginRefusal::Window { .. } => "--window",
        }
    }

    /// The line shown to a person, naming the grant: `grant g-1234 allows logins from
    /// 10.0.0.0/8 only (this client: 192.0.2.7)`.
    pub fn message(&self, grant_id: &str) -> String {
        format!("grant {} {self}", shown(grant_id, 64))
    }
}

/// Reads as the end of a sentence that starts with `grant <id>` (see [`LoginRefusal::message`]).
impl std::fmt::Display for LoginRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginRefusal::Malformed { condition, error } => {
                write!(
                    f,
                    "has a malformed {condition} condition ({error}): no login"
                )
            }
            LoginRefusal::Service { service, allowed } => {
                write!(
                    f,
                    "allows logins through {allowed} only (this login: {service})"
                )
            }
            LoginRefusal::From {
                rhost,
                rhost_is_address,
                allowed,
            } => {
                write!(f, "allows logins from {allowed} only")?;
                match rhost {
                    None => write!(f, " (this login has no client address)"),
                    Some(r) if *rhost_is_address => write!(f, " (this client: {r})"),
                    Some(r) => write!(f, " (this client, {r}, is not an IP address)"),
                }
            }
            LoginRefusal::Window {
                allowed,
                time_known,
            } => {
                write!(f, "allows logins during {allowed} (host local time) only")?;
                if !*time_known {
                    write!(f, " and the host's local time cannot be read")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoginRefusal {}

/// A grant's login conditions, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoginConditions {
    from: Vec<Cidr>,
    services: Vec<String>,
    windows: Vec<Window>,
}

fn joined<T: std::fmt::Display>(items: &[T]) -> String {
    let mut out: Vec<String> = items
        .iter()
        .take(SHOWN_ENTRIES)
        .map(|i| i.to_string())
        .collect();
    if items.len() > SHOWN_ENTRIES {
        out.push(format!("{} more", items.len() - SHOWN_ENTRIES));
    }
    out.join(", ")
}

/// A `--service` entry: a PAM service file name (`sshd`, `su`, `login`): 1 to 64 printable
/// ASCII characters without spaces or `/`.
fn valid_service(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SERVICE_LEN
        && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

impl LoginConditions {
    /// Parses the three lists; any malformed entry refuses (see the module documentation).
    ///
    /// # Errors
    /// [`LoginRefusal::Malformed`] naming the first bad entry.
    pub fn parse(from: &[&str], services: &[&str], windows: &[&str]) -> Result<Self, LoginRefusal> {
        let from = from
            .iter()
            .map(|s| parse_cidr(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LoginRefusal::Malformed {
                condition: "--from",
                error: e.to_string(),
            })?;
        if let Some(bad) = services.iter().find(|s| !valid_service(s)) {
            return Err(LoginRefusal::Malformed {
                condition: "--service",
                error: format!("invalid service {}", shown(bad, 64)),
            });
        }
        let windows = windows
            .iter()
            .map(|s| parse_window(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LoginRefusal::Malformed {
                condition: "--window",
                error: e.to_string(),
            })?;
        Ok(LoginConditions {
            from,
            services: services.iter().map(|s| (*s).to_string()).collect(),
            windows,
        })
    }

    /// Whether a login through `service` from `rhost` at local time `t` fits. Checked in the
    /// order service, source, window; the first unmet condition is the refusal.
    ///
    /// # Errors
    /// The unmet condition.
    pub fn allows(
        &self,
        rhost: Option<&str>,
        service: &str,
        t: LocalTime,
    ) -> Result<(), LoginRefusal> {
        if !self.services.is_empty() && !self.services.iter().any(|s| s == service) {
            let allowed: Vec<String> = self.services.iter().map(|s| shown(s, 64)).collect();
            return Err(LoginRefusal::Service {
                service: if service.is_empty() {
                    "(no service)".to_string()
                } else {
                    shown(service, 64)
                },
                allowed: joined(&allowed),
            });
        }
        let rhost = rhost.filter(|r| !r.is_empty());
        let addr = rhost.and_then(parse_rhost);
        if !from_allows(&self.from, addr.as_ref()) {
            return Err(LoginRefusal::From {
                rhost: rhost.map(|r| shown(r, 64)),
                rhost_is_address: addr.is_some(),
                allowed: joined(&self.from),
            });
        }
        if !window_allows(&self.windows, t) {
            return Err(LoginRefusal::Window {
                allowed: joined(&self.windows),
                time_known: t.weekday < 7 && t.minute < 1440,
            });
        }
        Ok(())
    }
}

/// The whole check: parse a grant's `from`, `services` and `windows` and judge one login.
///
/// # Errors
/// A malformed condition, or the first unmet one.
pub fn login_allows(
    from: &[&str],
    services: &[&str],
    windows: &[&str],
    rhost: Option<&str>,
    service: &str,
    t: LocalTime,
) -> Result<(), LoginRefusal> {
    LoginConditions::parse(from, services, windows)?.allows(rhost, service, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MON: u8 = 0;
    const SAT: u8 = 5;
    const SUN: u8 = 6;

    fn at(weekday: u8, hour: u8, minute: u8) -> LocalTime {
        LocalTime::new(weekday, hour, minute)
    }

    fn noon() -> LocalTime {
        at(MON, 12, 0)
    }

    #[test]
    fn no_conditions_allow_everything() {
        assert_eq!(login_allows(&[], &[], &[], None, "", noon()), Ok(()));
        assert_eq!(
            login_allows(&[], &[], &[], Some("host.example"), "sshd", noon()),
            Ok(())
        );
        // Even an unreadable clock: no window, nothing to check.
        let unknown = LocalTime {
            weekday: 7,
            minute: 0,
        };
        assert_eq!(login_allows(&[], &[], &[], None, "su", unknown), Ok(()));
    }

    #[test]
    fn ipv4_networks() {
        let from = ["10.0.0.0/8", "192.0.2.7"];
        for (rhost, ok) in [
            ("10.0.0.1", true),
            ("10.255.255.255", true),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("11.0.0.1", false),
            ("9.255.255.255", false),
            ("::ffff:10.1.2.3", true),
            ("[::ffff:10.1.2.3]", true),
            ("::ffff:11.1.2.3", false),
            ("::10.1.2.3", false),
            ("2001:db8::1", false),
        ] {
            let r = login_allows(&from, &[], &[], Some(rhost), "sshd", noon());
            assert_eq!(r.is_ok(), ok, "{rhost}: {r:?}");
        }
    }

    #[test]
    fn ipv6_networks() {
        let from = ["2001:db8::/32", "fe80::/10"];
        for (rhost, ok) in [
            ("2001:db8::1", true),
            ("[2001:db8:ffff::1]", true),
            ("2001:db9::1", false),
            ("fe80::1%eth0", true),
            ("[fe80::1%eth0]", true),
            ("fec0::1", false),
            ("10.0.0.1", false),
            ("::1", false),
        ] {
            let r = login_allows(&from, &[], &[], Some(rhost), "sshd", noon());
            assert_eq!(r.is_ok(), ok, "{rhost}: {r:?}");
        }
        // An IPv4-mapped block written in IPv6 form matches a plain IPv4 client and back.
        assert!(login_allows(
            &["::ffff:10.0.0.0/104"],
            &[],
            &[],
            Some("10.9.9.9"),
            "s",
            noon()
        )
        .is_ok());
        assert!(login_allows(
            &["10.0.0.0/8"],
            &[],
            &[],
            Some("::ffff:10.9.9.9"),
            "s",
            noon()
        )
        .is_ok());
    }

    #[test]
    fn missing_or_named_rhost_does_not_fit_from() {
        let from = ["0.0.0.0/0", "::/0"];
        for rhost in [None, Some(""), Some("localhost"), Some("host.example.com")] {
            let r = login_allows(&from, &[], &[], rhost, "sshd", noon());
            assert!(
                matches!(r, Err(LoginRefusal::From { .. })),
                "{rhost:?}: {r:?}"
            );
        }
        let none = login_allows(&["10.0.0.0/8"], &[], &[], None, "su", noon()).unwrap_err();
        assert_eq!(
            none.message("g-1234"),
            "grant g-1234 allows logins from 10.0.0.0/8 only (this login has no client address)"
        );
        let named = login_allows(
            &["10.0.0.0/8"],
            &[],
            &[],
            Some("evil.example"),
            "sshd",
            noon(),
        )
        .unwrap_err();
        assert_eq!(
            named.message("g-1234"),
            "grant g-1234 allows logins from 10.0.0.0/8 only (this client, evil.example, is not \
             an IP address)"
        );
        let other =
            login_allows(&["10.0.0.0/8"], &[], &[], Some("192.0.2.1"), "sshd", noon()).unwrap_err();
        assert_eq!(
            other.to_string(),
            "allows logins from 10.0.0.0/8 only (this client: 192.0.2.1)"
        );
        assert_eq!(other.condition(), "--from");
    }

    #[test]
    fn services_match_exactly() {
        let services = ["sshd", "su"];
        for (service, ok) in [
            ("sshd", true),
            ("su", true),
            ("SSHD", false),
            ("Sshd", false),
            ("sshd ", false),
            (" sshd", false),
            ("sshd\0", false),
            ("ssh", false),
            ("sshd-extra", false),
            ("login", false),
            ("", false),
        ] {
            let r = login_allows(&[], &services, &[], None, service, noon());
            assert_eq!(r.is_ok(), ok, "{service:?}: {r:?}");
        }
        let r = login_allows(&[], &services, &[], None, "login", noon()).unwrap_err();
        assert_eq!(
            r.message("g-ab12"),
            "grant g-ab12 allows logins through sshd, su only (this login: login)"
        );
        let r = login_allows(&[], &services, &[], None, "", noon()).unwrap_err();
        assert!(r.to_string().contains("(no service)"), "{r}");
        // A hostile service name is escaped in the message.
        let r = login_allows(&[], &services, &[], None, "x\x1b[2J", noon()).unwrap_err();
        assert!(!r.to_string().contains('\x1b'), "{r}");
    }

    #[test]
    fn window_edges() {
        let windows = ["Mon-Fri 09:00-18:00"];
        for (t, ok) in [
            (at(MON, 8, 59), false),
            (at(MON, 9, 0), true),
            (at(MON, 17, 59), true),
            (at(MON, 18, 0), false),
            (at(SAT, 12, 0), false),
            (at(SUN, 9, 0), false),
        ] {
            assert_eq!(
                login_allows(&[], &[], &windows, None, "sshd", t).is_ok(),
                ok,
                "{t:?}"
            );
        }
        // Across midnight, belonging to the start day.
        let night = ["Sat 22:00-06:00"];
        assert!(login_allows(&[], &[], &night, None, "s", at(SAT, 22, 0)).is_ok());
        assert!(login_allows(&[], &[], &night, None, "s", at(SUN, 5, 59)).is_ok());
        assert!(login_allows(&[], &[], &night, None, "s", at(SUN, 6, 0)).is_err());
        assert!(login_allows(&[], &[], &night, None, "s", at(SAT, 5, 0)).is_err());
        // Any of several windows.
        let two = ["Mon 09:00-10:00", "Sat 10:00-12:00"];
        assert!(login_allows(&[], &[], &two, None, "s", at(SAT, 11, 59)).is_ok());
        let r = login_allows(&[], &[], &two, None, "s", at(SAT, 12, 0)).unwrap_err();
        assert_eq!(
            r.message("g-0001"),
            "grant g-0001 allows logins during Mon 09:00-10:00, Sat 10:00-12:00 (host local \
             time) only"
        );
    }

    #[test]
    fn unknown_local_time_fails_closed() {
        for t in [
            LocalTime {
                weekday: 7,
                minute: 0,
            },
            LocalTime {
                weekday: 0,
                minute: 1440,
            },
            LocalTime {
                weekday: 255,
                minute: u16::MAX,
            },
        ] {
            let r = login_allows(&[], &[], &["* 00:00-24:00"], None, "sshd", t).unwrap_err();
            assert_eq!(
                r,
                LoginRefusal::Window {
                    allowed: "* 00:00-24:00".into(),
                    time_known: false
                }
            );
            assert!(r.to_string().contains("cannot be read"), "{r}");
        }
    }

    #[test]
    fn malformed_entries_refuse() {
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a str);
        let cases: &[Case] = &[
            (&["10.0.0.0/33"], &[], &[], "--from"),
            (&["10.0.0.0/8", "bogus"], &[], &[], "--from"),
            (&[""], &[], &[], "--from"),
            (&["host.example.com"], &[], &[], "--from"),
            (&[], &[""], &[], "--service"),
            (&[], &["sshd", "ss hd"], &[], "--service"),
            (&[], &["a/b"], &[], "--service"),
            (&[], &["sshd\n"], &[], "--service"),
            (&[], &["s\u{e9}"], &[], "--service"),
            (&[], &[], &["Mon 25:00-26:00"], "--window"),
            (&[], &[], &["* 00:00-24:00", "whenever"], "--window"),
            (&[], &[], &[""], "--window"),
        ];
        let long = "s".repeat(MAX_SERVICE_LEN + 1);
        let long_services = [long.as_str()];
        for (from, services, windows, cond) in
            cases
                .iter()
                .copied()
                .chain([(&[][..], &long_services[..], &[][..], "--service")])
        {
            // Even a login that would fit every well-formed entry is refused.
            let r = login_allows(from, services, windows, Some("10.0.0.1"), "sshd", noon());
            match r {
                Err(LoginRefusal::Malformed { condition, .. }) => assert_eq!(condition, cond),
                other => panic!("{from:?} {services:?} {windows:?}: {other:?}"),
            }
        }
        let r = login_allows(&["10.0.0.0/8", "x\x1b"], &[], &[], None, "s", noon()).unwrap_err();
        assert!(!r.to_string().contains('\x1b'), "{r}");
        assert!(
            r.message("g-1")
                .starts_with("grant g-1 has a malformed --from"),
            "{r}"
        );
    }

    #[test]
    fn order_service_then_from_then_window() {
        let r = login_allows(
            &["10.0.0.0/8"],
            &["sshd"],
            &["Mon 09:00-10:00"],
            Some("192.0.2.1"),
            "su",
            at(SUN, 3, 0),
        )
        .unwrap_err();
        assert_eq!(r.condition(), "--service");
        let r = login_allows(
            &["10.0.0.0/8"],
            &["sshd"],
            &["Mon 09:00-10:00"],
            Some("192.0.2.1"),
            "sshd",
            at(SUN, 3, 0),
        )
        .unwrap_err();
        assert_eq!(r.condition(), "--from");
        let r = login_allows(
            &["10.0.0.0/8"],
            &["sshd"],
            &["Mon 09:00-10:00"],
            Some("10.0.0.1"),
            "sshd",
            at(SUN, 3, 0),
        )
        .unwrap_err();
        assert_eq!(r.condition(), "--window");
        assert!(login_allows(
            &["10.0.0.0/8"],
            &["sshd"],
            &["Mon 09:00-10:00"],
            Some("10.0.0.1"),
            "sshd",
            at(MON, 9, 30),
        )
        .is_ok());
    }

    #[test]
    fn long_lists_are_cut_short_in_messages() {
        let nets: Vec<String> = (0..20).map(|i| format!("10.{i}.0.0/16")).collect();
        let from: Vec<&str> = nets.iter().map(String::as_str).collect();
        let r = login_allows(&from, &[], &[], Some("192.0.2.1"), "sshd", noon()).unwrap_err();
        let s = r.to_string();
        assert!(s.contains("10.5.0.0/16, 14 more"), "{s}");
        assert!(!s.contains("10.6.0.0/16"), "{s}");
    }
}
