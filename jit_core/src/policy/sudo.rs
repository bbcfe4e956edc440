//! The sudo side of a grant: which commands (`--sudo`) may run, as whom (`--runas`), and the
//! sudo features that are never allowed under jit.
//!
//! `sudo_jit` (the approval plugin) fills a [`SudoRequest`] from what sudo resolved — the
//! absolute command path and the numeric run-as ids from `command_info`, not what the user
//! typed — and calls [`scope_allows`] and [`runas_allows`] (or [`sudo_allows`] for both). A
//! [`Refusal`] carries the one-line reason that sudo_jit prints, because sudo itself does not
//! show an approval plugin's error string (docs/design.md#traps).
//!
//! Matching is literal and exact: no globbing, no sudoers escapes, no prefix matching of
//! arguments. A scope can therefore only ever allow less than the administrator wrote, never
//! more (docs/threat-model.md: S3–S6, X12).

//!
//! This file holds the decision entry points; the parts live in one file each: `scope`
//! (parsing and matching `--sudo` entries), `runas` (parsing and judging `--runas` entries) and
//! `request` (the request sudo_jit fills, the refusals and their one-line messages).

mod request;
mod runas;
mod scope;
#[cfg(test)]
mod tests;

pub use request::{shown, Refusal, SudoRequest};
pub use runas::{parse_runas, runas_allows, RunAs, RunAsTarget};
pub(crate) use scope::parse_path_and_args;
pub use scope::{parse_scope_entry, ScopeEntry, MAX_SCOPE_ENTRY_LEN};

/// Judges the command of `req` against the grant's scope.
///
/// In this order: a chroot (`-R`) and a remote host (`-h`) are refused whatever the scope (they
/// make sudo read attacker-chosen files or apply another host's rules); a shell (`-s`/`-i`)
/// and sudoedit need an `ALL` entry (a shell is every command; sudoedit's file list is a
/// different thing from a command's arguments, CVE-2023-22809); otherwise some entry must match
/// the command path exactly and, for entries with arguments, every argument exactly. An empty
/// scope allows nothing.
pub fn scope_allows(scope: &[ScopeEntry], req: &SudoRequest<'_>) -> Result<(), Refusal> {
    if req.chroot.is_some() {
        return Err(Refusal::Chroot);
    }
    if req.remote_host.is_some() {
        return Err(Refusal::RemoteHost);
    }
    let has_all = scope.contains(&ScopeEntry::All);
    if req.shell && !has_all {
        return Err(Refusal::Shell);
    }
    if req.edit && !has_all {
        return Err(Refusal::Edit);
    }
    if scope.iter().any(|e| e.matches(req.command, req.argv)) {
        return Ok(());
    }
    Err(Refusal::OutsideScope {
        command: shown(req.command, 256),
    })
}

/// Both judgements, scope first (so `-R`/`-h` are reported as such), then run-as.
pub fn sudo_allows(
    scope: &[ScopeEntry],
    runas: &[RunAs],
    req: &SudoRequest<'_>,
) -> Result<(), Refusal> {
    scope_allows(scope, req)?;
    runas_allows(runas, req)
}
