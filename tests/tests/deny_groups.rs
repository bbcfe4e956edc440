//! Root-equivalent groups are never granted: jitd's deny list (built-in default, `deny_groups`
//! adds, `allow_groups` lifts one), checked by name and by gid, with a refusal that names the
//! group and the configuration key. Through real `jitctl` against a real jitd.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jit_tests::{code, show, stderr, stdout, Sandbox, SandboxOptions};

/// `jitctl grant add carol --group GROUP --for 1h`.
fn add_group(sb: &Sandbox, group: &str) -> std::process::Output {
    sb.jitctl(&["grant", "add", "carol", "--group", group, "--for", "1h"])
}

fn assert_denied(sb: &Sandbox, group: &str, named: &str) {
    let o = add_group(sb, group);
    let msg = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        code(&o) != 0 && msg.contains(named) && msg.contains("deny_groups"),
        "--group {group} must be refused naming {named:?} and deny_groups: {}",
        show(&o)
    );
    let o = sb.run(&["id", "-nG", "carol"]);
    assert!(
        !stdout(&o).split_whitespace().any(|g| g == group),
        "carol holds {group} after a refusal: {}",
        show(&o)
    );
}

#[test]
fn root_equivalent_groups_are_refused_by_default() {
    let sb = Sandbox::new();
    // Groups Debian always has; docker/lxd/libvirt are added so their names resolve.
    sb.sh_ok("groupadd -g 4701 docker 2>/dev/null || true; groupadd -g 4702 libvirt 2>/dev/null || true; groupadd -o -g \"$(getent group shadow | cut -d: -f3)\" shadow2");
    sb.start_jitd();
    for g in ["shadow", "disk", "kmem", "tty", "docker", "libvirt"] {
        assert_denied(&sb, g, &format!("\"{g}\""));
    }
    // A second name for shadow's gid is shadow.
    assert_denied(&sb, "shadow2", "\"shadow\"");
    // sudo stays grantable: the product manages it.
    sb.grant(&["carol", "--group", "sudo", "--for", "1h"]);
}

#[test]
fn operator_extends_the_list_and_allows_one_explicitly() {
    let sb = Sandbox::with(SandboxOptions {
        extra_config: "deny_groups = [\"devs\"]\nallow_groups = [\"disk\"]\n".into(),
        ..SandboxOptions::default()
    });
    sb.start_jitd();
    // devs is carol's own local group: use dave, who is not a member.
    let o = sb.jitctl(&["grant", "add", "dave", "--group", "devs", "--for", "1h"]);
    let msg = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        code(&o) != 0 && msg.contains("\"devs\"") && msg.contains("deny_groups"),
        "devs added by deny_groups must be refused: {}",
        show(&o)
    );
    let o = add_group(&sb, "disk");
    assert_eq!(
        code(&o),
        0,
        "allow_groups = [\"disk\"] must allow it: {}",
        show(&o)
    );
    assert_denied(&sb, "shadow", "\"shadow\"");
}
