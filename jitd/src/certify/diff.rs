//! Compares two fingerprints into a certification: every item added, removed or changed, with
//! its state before and after; root-equivalent changes first.

use jit_proto::certification::{
    Certification, CertificationStatus, ChangeKind, Difference, ItemState, MAX_DIFFERENCES,
};

use super::fingerprint::Fingerprint;

/// Whether a change to this item gives root (or hides who has it).
fn root_equivalent(area: &str, item: &str, st: Option<&ItemState>) -> bool {
    let Some(st) = st else { return false };
    match area {
        "account" => st.owner == Some(0) || st.group == Some(0),
        "group" => st.group == Some(0),
        "setuid" => {
            let mode = st
                .mode
                .as_deref()
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .unwrap_or(0);
            (mode & 0o4000 != 0 && st.owner == Some(0))
                || (mode & 0o2000 != 0 && st.group == Some(0))
        }
        "sudoers" | "ld_preload" | "sudo_conf" | "device" => true,
        "authorized_keys" => item.starts_with("/root/"),
        _ => false,
    }
}

/// The certification of `end` against `baseline` (None: no baseline).
pub fn certify(baseline: Option<&Fingerprint>, end: &Fingerprint) -> Certification {
    let mut unreadable: Vec<String> = end.unreadable.clone();
    let Some(base) = baseline else {
        unreadable.truncate(MAX_DIFFERENCES);
        return Certification {
            status: CertificationStatus::NoBaseline,
            baseline_at: None,
            taken_at: end.taken_at,
            items: end.items.len(),
            differences: Vec::new(),
            omitted: 0,
            unreadable,
        };
    };
    for u in &base.unreadable {
        if !unreadable.contains(u) {
            unreadable.push(u.clone());
        }
    }
    let mut diffs = Vec::new();
    for (key, (area, before)) in &base.items {
        match end.items.get(key) {
            None => diffs.push(Difference {
                area: area.clone(),
                item: key.clone(),
                change: ChangeKind::Removed,
                root_equivalent: root_equivalent(area, key, Some(before)),
                before: Some(before.clone()),
                after: None,
            }),
            Some((_, after)) if after != before => diffs.push(Difference {
                area: area.clone(),
                item: key.clone(),
                change: ChangeKind::Changed,
                root_equivalent: root_equivalent(area, key, Some(before))
                    || root_equivalent(area, key, Some(after)),
                before: Some(before.clone()),
                after: Some(after.clone()),
            }),
            Some(_) => {}
        }
    }
    for (key, (area, after)) in &end.items {
        if !base.items.contains_key(key) {
            diffs.push(Difference {
                area: area.clone(),
                item: key.clone(),
                change: ChangeKind::Added,
                root_equivalent: root_equivalent(area, key, Some(after)),
                before: None,
                after: Some(after.clone()),
            });
        }
    }
    // Root-equivalent first, then by area and item (stable, so the record reads the same each
    // time).
    diffs.sort_by(|a, b| {
        (!a.root_equivalent, &a.area, &a.item).cmp(&(!b.root_equivalent, &b.area, &b.item))
    });
    let omitted = diffs.len().saturating_sub(MAX_DIFFERENCES);
    diffs.truncate(MAX_DIFFERENCES);
    unreadable.truncate(MAX_DIFFERENCES);
    Certification {
        status: if diffs.is_empty() {
            CertificationStatus::Clean
        } else {
            CertificationStatus::Changed
        },
        baseline_at: Some(base.taken_at),
        taken_at: end.taken_at,
        items: end.items.len(),
        differences: diffs,
        omitted,
        unreadable,
    }
}

/// One line per difference, for people (`jitctl grant show --certification`, audit summaries).
pub fn describe(d: &Difference) -> String {
    let st = |s: &ItemState| {
        let mut v = vec![s.kind.clone()];
        if let Some(o) = s.owner {
            v.push(format!("owner={o}"));
        }
        if let Some(g) = s.group {
            v.push(format!("group={g}"));
        }
        if let Some(m) = &s.mode {
            v.push(format!("mode={m}"));
        }
        if let Some(h) = &s.sha256 {
            v.push(format!("sha256={}", &h[..h.len().min(16)]));
        }
        if let Some(x) = &s.detail {
            v.push(x.clone());
        }
        v.join(" ")
    };
    let change = match d.change {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Changed => "changed",
    };
    format!(
        "{}{change} {} {}{}{}",
        if d.root_equivalent { "ROOT " } else { "" },
        d.area,
        d.item,
        d.before
            .as_ref()
            .map_or(String::new(), |b| format!(" before[{}]", st(b))),
        d.after
            .as_ref()
            .map_or(String::new(), |a| format!(" after[{}]", st(a))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(owner: u32, mode: &str, hash: &str) -> ItemState {
        ItemState {
            kind: "file".into(),
            owner: Some(owner),
            group: Some(0),
            mode: Some(mode.into()),
            size: Some(1),
            sha256: Some(hash.into()),
            detail: None,
        }
    }

    fn fp(items: &[(&str, &str, ItemState)]) -> Fingerprint {
        Fingerprint {
            taken_at: 1,
            elapsed_ms: 0,
            items: items
                .iter()
                .map(|(k, a, s)| (k.to_string(), (a.to_string(), s.clone())))
                .collect(),
            unreadable: Vec::new(),
        }
    }

    #[test]
    fn same_state_is_clean() {
        let a = fp(&[("/etc/sudoers", "sudoers", file(0, "0440", "aa"))]);
        let c = certify(Some(&a), &a);
        assert_eq!(c.status, CertificationStatus::Clean);
        assert!(c.differences.is_empty());
    }

    #[test]
    fn added_removed_changed_and_root_first() {
        let a = fp(&[
            ("/etc/pam.d/su", "pam", file(0, "0644", "aa")),
            ("/etc/cron.d/x", "cron", file(0, "0644", "bb")),
        ]);
        let b = fp(&[
            ("/etc/pam.d/su", "pam", file(0, "0644", "cc")),
            ("/var/tmp/sh", "setuid", file(0, "4755", "dd")),
        ]);
        let c = certify(Some(&a), &b);
        assert_eq!(c.status, CertificationStatus::Changed);
        let got: Vec<(&str, ChangeKind, bool)> = c
            .differences
            .iter()
            .map(|d| (d.item.as_str(), d.change, d.root_equivalent))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/var/tmp/sh", ChangeKind::Added, true),
                ("/etc/cron.d/x", ChangeKind::Removed, false),
                ("/etc/pam.d/su", ChangeKind::Changed, false),
            ]
        );
    }

    #[test]
    fn uid0_account_is_root_equivalent() {
        let acct = |uid: u32| ItemState {
            kind: "account".into(),
            owner: Some(uid),
            group: Some(uid),
            mode: None,
            size: None,
            sha256: None,
            detail: Some(format!("uid={uid}")),
        };
        let a = fp(&[]);
        let b = fp(&[
            ("account:toor", "account", acct(0)),
            ("account:bob", "account", acct(1001)),
        ]);
        let c = certify(Some(&a), &b);
        assert!(c.differences[0].root_equivalent && c.differences[0].item == "account:toor");
        assert!(!c.differences[1].root_equivalent);
    }

    #[test]
    fn no_baseline_certifies_nothing() {
        let b = fp(&[]);
        assert_eq!(certify(None, &b).status, CertificationStatus::NoBaseline);
    }

    #[test]
    fn differences_are_capped() {
        let a = fp(&[]);
        let items: Vec<(String, ItemState)> = (0..MAX_DIFFERENCES + 5)
            .map(|i| (format!("/etc/cron.d/{i}"), file(0, "0644", "aa")))
            .collect();
        let refs: Vec<(&str, &str, ItemState)> = items
            .iter()
            .map(|(k, s)| (k.as_str(), "cron", s.clone()))
            .collect();
        let c = certify(Some(&a), &fp(&refs));
        assert_eq!(c.differences.len(), MAX_DIFFERENCES);
        assert_eq!(c.omitted, 5);
    }
}
