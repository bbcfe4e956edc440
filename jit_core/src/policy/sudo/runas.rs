//! Run-as entries (`--runas`): parsing, and judging the user/group sudo will switch to.

use super::request::{shown, Refusal, SudoRequest};
use crate::policy::PolicyError;
use crate::validate::validate_name;

const WHAT_RUNAS: &str = "run-as target";

/// Who a run-as entry lets the user become.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunAsTarget {
    /// `ALL`: anyone, numeric `#<id>` included.
    All,
    /// One user or group, by name.
    Name(String),
}

/// One `--runas` entry: `user`, `user:group`, `:group`, `ALL`, `ALL:ALL`, `user:ALL`, ...
///
/// As in sudoers, an entry without a group allows no `-g` (the command runs with the target
/// user's own groups), and `:group` lets the user run as *themselves* with that group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunAs {
    /// `None`: the invoking user only (the `:group` form).
    pub user: Option<RunAsTarget>,
    /// `None`: no `-g` allowed.
    pub group: Option<RunAsTarget>,
}

impl RunAs {
    /// The default when a grant names no run-as target: `root`, no `-g`.
    pub fn root() -> RunAs {
        RunAs {
            user: Some(RunAsTarget::Name("root".to_string())),
            group: None,
        }
    }
}

/// The canonical form, which [`parse_runas`] reads back.
impl std::fmt::Display for RunAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let part = |t: &RunAsTarget| match t {
            RunAsTarget::All => "ALL".to_string(),
            RunAsTarget::Name(n) => n.clone(),
        };
        if let Some(u) = &self.user {
            f.write_str(&part(u))?;
        }
        if let Some(g) = &self.group {
            write!(f, ":{}", part(g))?;
        }
        Ok(())
    }
}

fn parse_runas_part(s: &str, whole: &str) -> Result<RunAsTarget, PolicyError> {
    if s == "ALL" {
        return Ok(RunAsTarget::All);
    }
    if s.eq_ignore_ascii_case("all") {
        // A user called `all` would read as ALL to every reviewer of the grant.
        return Err(PolicyError::invalid(
            WHAT_RUNAS,
            whole,
            "write ALL in capitals (a target named \"all\" is not accepted)",
        ));
    }
    if s.starts_with('#') {
        return Err(PolicyError::invalid(
            WHAT_RUNAS,
            whole,
            "numeric ids are not accepted: name the user or group (or ALL)",
        ));
    }
    validate_name(WHAT_RUNAS, s)
        .map_err(|e| PolicyError::invalid(WHAT_RUNAS, whole, e.to_string()))?;
    Ok(RunAsTarget::Name(s.to_string()))
}

/// Parses one `--runas` entry: `user`, `user:group`, `:group`, with `ALL` allowed for either
/// part. Names follow the jit name rules; numeric `#<id>` forms are refused (a grant names
/// people's targets, and `#-1` is how CVE-2019-14287 reached root).
pub fn parse_runas(s: &str) -> Result<RunAs, PolicyError> {
    if s.is_empty() {
        return Err(PolicyError::Empty(WHAT_RUNAS));
    }
    if s.len() > 2 * crate::constants::MAX_NAME_LEN + 1 {
        return Err(PolicyError::TooLong(
            WHAT_RUNAS,
            2 * crate::constants::MAX_NAME_LEN + 1,
        ));
    }
    let (user_s, group_s) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let user = if user_s.is_empty() {
        if group_s.is_none() {
            return Err(PolicyError::Empty(WHAT_RUNAS));
        }
        None
    } else {
        Some(parse_runas_part(user_s, s)?)
    };
    let group = match group_s {
        None => None,
        Some("") => {
            return Err(PolicyError::invalid(
                WHAT_RUNAS,
                s,
                "nothing after ':' (write user, user:group or :group)",
            ))
        }
        Some(g) => Some(parse_runas_part(g, s)?),
    };
    Ok(RunAs { user, group })
}

/// `#<digits>` as a number, for `-u#1000` / `-g#1000`. Anything else (`#-1`, `#`, `#1x`,
/// `#99999999999`) is `Err`: the request is refused rather than guessed at.
fn numeric_id(s: &str) -> Option<Result<u32, ()>> {
    let digits = s.strip_prefix('#')?;
    let ok = !digits.is_empty() && digits.len() <= 10 && digits.bytes().all(|b| b.is_ascii_digit());
    Some(if ok {
        digits.parse().map_err(|_| ())
    } else {
        Err(())
    })
}

/// An id a process may switch to under jit: not `(uid_t)-1` (which `setresuid` takes as "leave
/// unchanged", CVE-2019-14287) and not above `i32::MAX` (read as negative by some programs).
fn id_is_sane(id: u32) -> bool {
    id <= i32::MAX as u32
}

/// Judges the run-as user and group of `req` against the grant's `--runas` list (empty: `root`
/// only).
///
/// Names *and* numbers are compared: the uid sudo will really use must be sane (never
/// `u32::MAX`/`#-1` or above `i32::MAX`, under any grant); `root` must mean uid 0 and uid 0
/// must be `root` unless the entry allows `ALL`; a numeric `#<uid>` must agree with the uid and
/// needs an `ALL` entry. The same rules hold for the group.
pub fn runas_allows(list: &[RunAs], req: &SudoRequest<'_>) -> Result<(), Refusal> {
    let refuse = || {
        let mut target = shown(req.runas_user, 64);
        if let Some(g) = req.runas_group {
            target.push(':');
            target.push_str(&shown(g, 64));
        }
        Err(Refusal::RunAs { target })
    };
    // Checks that hold under every grant, ALL:ALL included.
    if !id_is_sane(req.runas_uid) || req.runas_user.is_empty() {
        return refuse();
    }
    if req.runas_group.is_some() != req.runas_gid.is_some() {
        return refuse();
    }
    if req.runas_gid.is_some_and(|g| !id_is_sane(g)) {
        return refuse();
    }
    let user_num = numeric_id(req.runas_user);
    match user_num {
        Some(Ok(n)) if n == req.runas_uid => {}
        Some(_) => return refuse(),
        None if req.runas_user == "root" && req.runas_uid != 0 => return refuse(),
        None => {}
    }
    let group_num = req.runas_group.and_then(numeric_id);
    match (group_num, req.runas_group, req.runas_gid) {
        (Some(Ok(n)), _, Some(gid)) if n == gid => {}
        (Some(_), _, _) => return refuse(),
        (None, Some("root"), Some(gid)) if gid != 0 => return refuse(),
        _ => {}
    }

    let default = [RunAs::root()];
    let list = if list.is_empty() { &default[..] } else { list };
    let user_ok = |entry: &Option<RunAsTarget>| match entry {
        Some(RunAsTarget::All) => true,
        // A named entry never matches a numeric request, and uid 0 only as `root`.
        Some(RunAsTarget::Name(n)) => {
            user_num.is_none() && req.runas_user == n && (req.runas_uid != 0 || n == "root")
        }
        None => user_num.is_none() && req.runas_user == req.user && req.runas_uid == req.uid,
    };
    let group_ok = |entry: &Option<RunAsTarget>| match (entry, req.runas_group, req.runas_gid) {
        (_, None, _) => true,
        (None, Some(_), _) => false,
        (Some(RunAsTarget::All), Some(_), _) => true,
        (Some(RunAsTarget::Name(n)), Some(g), Some(gid)) => {
            group_num.is_none() && g == n && (gid != 0 || n == "root")
        }
        (Some(RunAsTarget::Name(_)), Some(_), None) => false,
    };
    if list.iter().any(|e| user_ok(&e.user) && group_ok(&e.group)) {
        Ok(())
    } else {
        refuse()
    }
}
