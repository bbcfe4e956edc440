//! Source-address conditions: the `--from CIDR` list of a grant and the `PAM_RHOST` it is
//! checked against.
//!
//! Every address is compared in one 128-bit space: an IPv4 address `a.b.c.d` is the IPv4-mapped
//! IPv6 address `::ffff:a.b.c.d` and `10.0.0.0/8` is `::ffff:10.0.0.0/104`. So a client that a
//! dual-stack sshd reports as `::ffff:10.1.2.3` is judged exactly like `10.1.2.3`, and no
//! separate code path exists in which the two could disagree.
//!
//! Host names are never trusted for `--from`: whoever controls reverse DNS controls the name, so
//! [`parse_rhost`] answers `None` for them and a grant with a `--from` list then refuses.

use super::PolicyError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const WHAT: &str = "CIDR";
/// Far above the longest real CIDR (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128`).
const MAX_CIDR_LEN: usize = 64;
/// `PAM_RHOST` longer than a DNS name cannot be an address either.
const MAX_RHOST_LEN: usize = 255;
/// `::ffff:0:0/96`: the IPv4-mapped block, where IPv4 lives in the unified space.
const MAPPED_PREFIX: u128 = 0xffff_u128 << 32;

/// A network: an address block in the unified IPv6 space (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// Network address, host bits cleared.
    net: u128,
    /// Prefix length in the unified space (an IPv4 `/n` is `96 + n`).
    prefix: u8,
}

fn mask(prefix: u8) -> u128 {
    // A shift by 128 (prefix 0) is not defined for u128: checked_shl says None, and /0 is
    // the empty mask.
    u128::MAX
        .checked_shl(128_u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

fn unified(addr: &IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => MAPPED_PREFIX | u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

impl Cidr {
    /// True when `addr` lies in this network. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, addr: &IpAddr) -> bool {
        unified(addr) & mask(self.prefix) == self.net
    }

    /// Whether this is an IPv4 network (written as IPv4 or as an IPv4-mapped block of /96+).
    pub fn is_ipv4(&self) -> bool {
        self.prefix >= 96 && self.net & !0xffff_ffff_u128 == MAPPED_PREFIX
    }

    /// The network address, in its own family.
    pub fn network(&self) -> IpAddr {
        if self.is_ipv4() {
            IpAddr::V4(Ipv4Addr::from((self.net & 0xffff_ffff) as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.net))
        }
    }

    /// The prefix length in its own family (0..=32 for IPv4, 0..=128 for IPv6).
    pub fn prefix_len(&self) -> u8 {
        if self.is_ipv4() {
            self.prefix.saturating_sub(96)
        } else {
            self.prefix
        }
    }
}

/// The canonical form, as `parse_cidr` reads it back (`10.0.0.0/8`, `2001:db8::/32`).
impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len())
    }
}

/// Parses a `--from` network: `10.0.0.0/8`, `192.0.2.7` (= /32), `2001:db8::/32`, `::1`
/// (= /128).
///
/// Host bits are accepted and cleared (`10.1.2.3/8` is `10.0.0.0/8`), as `ip route` does: the
/// meaning is unambiguous and refusing would only annoy. Refused: empty values, spaces and any
/// character an address does not have (zone ids `%eth0` included: a scope is not a network),
/// a prefix above 32 or 128, a prefix with a sign or leading zeros, IPv4 with leading zeros or
/// fewer than four parts (`010.0.0.1`, `10.1` mean other addresses to `inet_aton`), and an
/// IPv4-mapped address with a prefix shorter than /96 (it would silently become an IPv6 block).
pub fn parse_cidr(s: &str) -> Result<Cidr, PolicyError> {
    if s.is_empty() {
        return Err(PolicyError::Empty(WHAT));
    }
    if s.len() > MAX_CIDR_LEN {
        return Err(PolicyError::TooLong(WHAT, MAX_CIDR_LEN));
    }
    if s.bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(PolicyError::invalid(
            WHAT,
            s,
            "contains a space or a control character",
        ));
    }
    if s.contains('%') {
        return Err(PolicyError::invalid(
            WHAT,
            s,
            "a zone id (%...) is not allowed in a network",
        ));
    }
    let (addr_s, prefix_s) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr_s.parse().map_err(|_| {
        PolicyError::invalid(
            WHAT,
            s,
            "not an IPv4 or IPv6 address (use e.g. 10.0.0.0/8 or 2001:db8::/32)",
        )
    })?;
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_s {
        None => max,
        Some(p) => parse_prefix(p).ok_or_else(|| {
            PolicyError::invalid(WHAT, s, "the prefix after '/' must be a plain number")
        })?,
    };
    if prefix > max {
        return Err(PolicyError::invalid(
            WHAT,
            s,
            format!("the prefix is longer than {max}"),
        ));
    }
    let (value, unified_prefix) = match addr {
        IpAddr::V4(_) => (unified(&addr), prefix.saturating_add(96)),
        IpAddr::V6(v6) => {
            if v6.to_ipv4_mapped().is_some() && prefix < 96 {
                return Err(PolicyError::invalid(
                    WHAT,
                    s,
                    "an IPv4-mapped network needs a prefix of at least 96 (write it as IPv4)",
                ));
            }
            (unified(&addr), prefix)
        }
    };
    Ok(Cidr {
        net: value & mask(unified_prefix),
        prefix: unified_prefix,
    })
}

/// `0`..=`128` written plainly: no sign, no leading zero, at most three digits.
fn parse_prefix(p: &str) -> Option<u8> {
    let b = p.as_bytes();
    if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 1 && b.first() == Some(&b'0') {
        return None;
    }
    p.parse().ok()
}

/// Reads a `PAM_RHOST` value as an address: `192.0.2.7`, `2001:db8::7`, `[2001:db8::7]`,
/// `fe80::1%eth0` (the zone is dropped: it names an interface, not a host). An IPv4-mapped
/// IPv6 address comes back as IPv4. Anything else, a host name above all, is `None`: names are
/// not trusted for `--from`.
pub fn parse_rhost(s: &str) -> Option<IpAddr> {
    if s.is_empty() || s.len() > MAX_RHOST_LEN {
        return None;
    }
    let (inner, bracketed) = match s.strip_prefix('[') {
        Some(rest) => (rest.strip_suffix(']')?, true),
        None => (s, false),
    };
    let (addr_s, zone) = match inner.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (inner, None),
    };
    if let Some(z) = zone {
        let zone_ok = !z.is_empty()
            && z.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !zone_ok {
            return None;
        }
    }
    match addr_s.parse::<IpAddr>().ok()? {
        // Brackets and zones belong to IPv6 only; `[10.0.0.1]` is not something sshd writes.
        IpAddr::V4(_) if bracketed || zone.is_some() => None,
        IpAddr::V4(v4) => Some(IpAddr::V4(v4)),
        IpAddr::V6(v6) => Some(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }),
    }
}

/// The `--from` condition: an empty list does not restrict; otherwise the client must have an
/// address (`None`: a local login, or a host name) inside one of the networks.
pub fn from_allows(nets: &[Cidr], rhost: Option<&IpAddr>) -> bool {
    if nets.is_empty() {
        return true;
    }
    match rhost {
        Some(addr) => nets.iter().any(|n| n.contains(addr)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_contains_table() {
        // (cidr, address, expected)
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.0.0.0", true),
            ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "9.255.255.255", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "::ffff:11.1.2.3", false),
            ("10.0.0.0/8", "::10.1.2.3", false), // IPv4-compatible is not IPv4-mapped
            ("10.0.0.0/8", "2001:db8::1", false),
            ("10.1.2.3/8", "10.200.0.1", true), // host bits masked
            ("192.0.2.7", "192.0.2.7", true),
            ("192.0.2.7", "192.0.2.8", false),
            ("192.0.2.7/32", "::ffff:192.0.2.7", true),
            ("192.0.2.0/24", "192.0.2.255", true),
            ("192.0.2.0/24", "192.0.3.0", false),
            ("192.0.2.128/25", "192.0.2.127", false),
            ("192.0.2.128/25", "192.0.2.128", true),
            ("0.0.0.0/0", "1.2.3.4", true),
            ("0.0.0.0/0", "255.255.255.255", true),
            ("0.0.0.0/0", "::ffff:1.2.3.4", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("0.0.0.0/0", "::1", false),
            ("2001:db8::/32", "2001:db8::1", true),
            (
                "2001:db8::/32",
                "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
                true,
            ),
            ("2001:db8::/32", "2001:db9::1", false),
            ("2001:db8::/32", "10.0.0.1", false),
            ("2001:db8::1", "2001:db8::1", true),
            ("2001:db8::1", "2001:db8::2", false),
            ("2001:db8::1/128", "2001:db8::1", true),
            ("::1", "::1", true),
            ("::1", "127.0.0.1", false),
            ("::/0", "2001:db8::1", true),
            ("::/0", "::", true),
            ("::/0", "10.0.0.1", true), // all of IPv6, and IPv4 lives in it as mapped
            ("fe80::/10", "fe80::1", true),
            ("fe80::/10", "febf::1", true),
            ("fe80::/10", "fec0::1", false),
            ("::ffff:10.0.0.0/104", "10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "11.9.9.9", false),
            ("::ffff:0:0/96", "1.2.3.4", true),
            ("::ffff:0:0/96", "2001:db8::1", false),
            ("127.0.0.0/8", "127.0.0.1", true),
            ("10.0.0.0/31", "10.0.0.1", true),
            ("10.0.0.0/31", "10.0.0.2", false),
        ];
        for (c, a, want) in cases {
            let cidr = parse_cidr(c).unwrap_or_else(|e| panic!("{c}: {e}"));
            assert_eq!(cidr.contains(&ip(a)), *want, "{c} contains {a}");
        }
    }

    #[test]
    fn cidr_canonical_form() {
        for (input, shown) in [
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("192.0.2.7", "192.0.2.7/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("2001:db8::1/32", "2001:db8::/32"),
            ("::1", "::1/128"),
            ("::/0", "::/0"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:10.1.2.3", "10.1.2.3/32"),
            ("FE80::1/10", "fe80::/10"),
        ] {
            let c = parse_cidr(input).unwrap();
            assert_eq!(c.to_string(), shown, "{input}");
            assert_eq!(parse_cidr(shown).unwrap(), c, "{shown} round trip");
        }
        assert!(parse_cidr("10.0.0.0/8").unwrap().is_ipv4());
        assert!(!parse_cidr("::/0").unwrap().is_ipv4());
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().prefix_len(), 8);
    }

    #[test]
    fn cidr_refused() {
        let long = format!("10.0.0.0/{}", "8".repeat(100));
        for bad in [
            "",
            " ",
            "10.0.0.0/8 ",
            " 10.0.0.0/8",
            "10.0.0.0 /8",
            "10.0.0.0/ 8",
            "10.0.0.0\t/8",
            "10.0.0.0/8\n",
            "10.0.0.0/33",
            "10.0.0.0/99",
            "10.0.0.0/256",
            "2001:db8::/129",
            "::/200",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/8/8",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/08",
            "10.0.0.0/0x8",
            "10.0.0.0/8.0",
            "10.0.0",
            "10.1",
            "10",
            "010.0.0.1",
            "0x0a.0.0.1",
            "256.0.0.0/8",
            "10.0.0.0.0/8",
            "1.2.3.4/",
            "host.example.com",
            "localhost",
            "any",
            "*",
            "fe80::1%eth0/64",
            "fe80::1%eth0",
            "[2001:db8::]/32",
            "2001:db8:::/32",
            "2001:db8::g/32",
            "::ffff:10.0.0.0/8",
            "::ffff:10.0.0.0/95",
            "１0.0.0.0/8",
            long.as_str(),
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_cidr(""), Err(PolicyError::Empty("CIDR")));
        assert!(matches!(parse_cidr(&long), Err(PolicyError::TooLong(..))));
        let msg = parse_cidr("10.0.0.0/33").unwrap_err().to_string();
        assert!(
            msg.contains("\"10.0.0.0/33\"") && msg.contains("32"),
            "{msg}"
        );
    }

    #[test]
    fn cidr_edge_prefixes() {
        let v4_0 = parse_cidr("0.0.0.0/0").unwrap();
        let v4_32 = parse_cidr("255.255.255.255/32").unwrap();
        let v6_0 = parse_cidr("::/0").unwrap();
        let v6_128 = parse_cidr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128").unwrap();
        assert!(v4_32.contains(&ip("255.255.255.255")));
        assert!(!v4_32.contains(&ip("255.255.255.254")));
        assert!(v6_128.contains(&ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!v6_128.contains(&ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")));
        assert!(v4_0.contains(&ip("0.0.0.0")));
        assert!(v6_0.contains(&ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        // Every prefix length parses and contains its own network address.
        for p in 0..=32u8 {
            let c = parse_cidr(&format!("203.0.113.77/{p}")).unwrap();
            assert!(c.contains(&ip("203.0.113.77")), "/{p}");
            assert_eq!(c.prefix_len(), p);
        }
        for p in 0..=128u8 {
            let c = parse_cidr(&format!("2001:db8:1234:5678::9/{p}")).unwrap();
            assert!(c.contains(&ip("2001:db8:1234:5678::9")), "/{p}");
            assert_eq!(c.prefix_len(), p);
        }
    }

    #[test]
    fn rhost_values() {
        let cases: &[(&str, Option<&str>)] = &[
            ("192.0.2.7", Some("192.0.2.7")),
            ("2001:db8::7", Some("2001:db8::7")),
            ("[2001:db8::7]", Some("2001:db8::7")),
            ("fe80::1%eth0", Some("fe80::1")),
            ("[fe80::1%enp0s31f6]", Some("fe80::1")),
            ("fe80::1%2", Some("fe80::1")),
            ("::ffff:10.1.2.3", Some("10.1.2.3")),
            ("[::ffff:10.1.2.3]", Some("10.1.2.3")),
            ("::1", Some("::1")),
            ("", None),
            ("host.example.com", None),
            ("localhost", None),
            ("10.0.0.1.example.com", None),
            ("10.0.0.1 ", None),
            (" 10.0.0.1", None),
            ("010.0.0.1", None),
            ("127.1", None),
            ("0x7f.0.0.1", None),
            ("2130706433", None),
            ("[10.0.0.1]", None),
            ("10.0.0.1%eth0", None),
            ("fe80::1%", None),
            ("fe80::1%eth 0", None),
            ("fe80::1%eth0%x", None),
            ("[2001:db8::7", None),
            ("2001:db8::7]", None),
            ("[2001:db8::7]:22", None),
            ("10.0.0.1:22", None),
            ("10.0.0.0/8", None),
            ("10.0.0.1\n", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_rhost(input), want.map(ip), "{input:?}");
        }
        assert_eq!(parse_rhost(&"a".repeat(10_000)), None);
    }

    #[test]
    fn from_condition() {
        let nets = [
            parse_cidr("10.0.0.0/8").unwrap(),
            parse_cidr("2001:db8::/32").unwrap(),
        ];
        assert!(from_allows(&[], None), "no --from: unrestricted");
        assert!(from_allows(&[], Some(&ip("1.2.3.4"))));
        assert!(from_allows(&nets, Some(&ip("10.1.1.1"))));
        assert!(from_allows(&nets, Some(&ip("2001:db8::5"))));
        assert!(from_allows(&nets, parse_rhost("::ffff:10.9.9.9").as_ref()));
        assert!(!from_allows(&nets, Some(&ip("192.0.2.1"))));
        assert!(
            !from_allows(&nets, None),
            "no address (local, host name) fails closed"
        );
        assert!(!from_allows(
            &nets,
            parse_rhost("evil.example.com").as_ref()
        ));
    }
}
