//! Who may ask what. The peer is the uid from SO_PEERCRED, never a name from the payload:
//! root (jitctl as root, pam_jit, sudo_jit) may change grants and speak for the modules; any
//! other peer may only read its own grants and sessions and activate its own armed grants.

use jit_proto::{ErrorCode, Grant};

use crate::daemon::{Daemon, Inner};
use crate::engine::{refuse, Refusal};

/// Refuses a peer other than root.
pub(crate) fn root_only(peer: super::Peer, what: &str) -> Result<(), Refusal> {
    if peer.uid == 0 {
        Ok(())
    } else {
        Err(refuse(
            ErrorCode::PermissionDenied,
            format!("only root (pam_jit, sudo_jit, jitctl as root) may {what}"),
        ))
    }
}

impl Daemon {
    /// The name a peer acts as: a local user, or an ephemeral account (by ledger uid).
    pub(crate) fn peer_name(&self, peer_uid: u32, inner: &Inner) -> Option<String> {
        if let Ok(l) = self.local_db() {
            if let Some(u) = l.users.iter().find(|u| u.uid == peer_uid) {
                return Some(u.name.clone());
            }
        }
        inner
            .state
            .uid_ledger
            .iter()
            .find(|(_, &u)| u == peer_uid)
            .map(|(n, _)| n.to_string())
    }

    /// Which grants a peer may see: all for root, else only its own. The peer's name is
    /// resolved once per request (it reads /etc/passwd), not once per grant.
    pub(crate) fn may_see(&self, peer_uid: u32, inner: &Inner) -> impl Fn(&Grant) -> bool {
        let may_see_user = self.may_see_user(peer_uid, inner);
        move |g| may_see_user(&g.user)
    }

    /// Whose grants and sessions a peer may see: everyone's for root, else only its own
    /// (the peer's name resolved once per request).
    pub(crate) fn may_see_user(&self, peer_uid: u32, inner: &Inner) -> impl Fn(&str) -> bool {
        let own = (peer_uid != 0).then(|| self.peer_name(peer_uid, inner));
        move |user| match &own {
            None => true,
            Some(name) => name.as_deref() == Some(user),
        }
    }
}
