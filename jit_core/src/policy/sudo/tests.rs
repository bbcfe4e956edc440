use super::*;
use crate::policy::PolicyError;

fn scope(entries: &[&str]) -> Vec<ScopeEntry> {
    entries
        .iter()
        .map(|e| parse_scope_entry(e).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect()
}

fn runas(entries: &[&str]) -> Vec<RunAs> {
    entries
        .iter()
        .map(|e| parse_runas(e).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect()
}

fn req<'a>(command: &'a str, argv: &'a [&'a str]) -> SudoRequest<'a> {
    SudoRequest::new("alice", 70001, command, argv)
}

#[test]
fn scope_entries_parse() {
    let any = |p: &str| ScopeEntry::AnyArgs { path: p.into() };
    let exact = |p: &str, a: &[&str]| ScopeEntry::ExactArgs {
        path: p.into(),
        args: a.iter().map(|s| s.to_string()).collect(),
    };
    let cases: Vec<(&str, ScopeEntry)> = vec![
        ("ALL", ScopeEntry::All),
        (" ALL ", ScopeEntry::All),
        ("/usr/bin/systemctl", any("/usr/bin/systemctl")),
        ("  /usr/bin/systemctl  ", any("/usr/bin/systemctl")),
        (
            "/usr/bin/systemctl restart nginx",
            exact("/usr/bin/systemctl", &["restart", "nginx"]),
        ),
        (
            "/usr/bin/systemctl  restart   nginx ",
            exact("/usr/bin/systemctl", &["restart", "nginx"]),
        ),
        ("/usr/bin/id \"\"", exact("/usr/bin/id", &[])),
        (
            "/usr/bin/journalctl -u nginx --since=-1h",
            exact("/usr/bin/journalctl", &["-u", "nginx", "--since=-1h"]),
        ),
        ("/usr/bin/grep a\\b", exact("/usr/bin/grep", &["a\\b"])),
        (
            "/usr/bin/find / -name *.log",
            exact("/usr/bin/find", &["/", "-name", "*.log"]),
        ),
        ("/opt/app-1.2/bin/ctl", any("/opt/app-1.2/bin/ctl")),
        ("/usr/bin/echo héllo", exact("/usr/bin/echo", &["héllo"])),
    ];
    for (input, want) in cases {
        let got = parse_scope_entry(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(got, want, "{input:?}");
        assert_eq!(
            parse_scope_entry(&got.to_string()).unwrap(),
            got,
            "round trip"
        );
    }
}

#[test]
fn scope_entries_refused() {
    let long_path = format!("/{}", "a".repeat(5000));
    let long_args = format!("/usr/bin/echo {}", "a ".repeat(3000));
    for bad in [
        "",
        "   ",
        "all",
        "All",
        "ALL /usr/bin/id",
        "ALL:ALL",
        "systemctl",
        "./systemctl",
        "usr/bin/systemctl",
        "~/bin/x",
        "/usr/bin/../bin/sh",
        "/usr/bin/./sh",
        "/usr//bin/sh",
        "/usr/bin/",
        "/",
        "/..",
        "/usr/bin/*",
        "/usr/bin/system?tl",
        "/usr/bin/[s]h",
        "/usr/bin/{a,b}",
        "/usr/bin/sh\0",
        "/usr/bin/sh\n/bin/bash",
        "/usr/bin/systemctl\trestart",
        "/usr/bin/systemctl\u{a0}restart",
        "/usr/bin/systemctl restart\u{2003}nginx",
        "/usr/bin/sys\u{202e}tem",
        "/usr/bin/\x1b[31m",
        "\"/usr/bin/systemctl\"",
        "/usr/bin/echo \"hello world\"",
        "/usr/bin/echo 'hello world'",
        "/usr/bin/echo a \"\"",
        "/usr/bin/echo \"\" \"\"",
        "/usr/bin/echo \"\" a",
        "/usr/bin/a\\b",
        "sudoedit /etc/hosts",
        long_path.as_str(),
        long_args.as_str(),
    ] {
        assert!(parse_scope_entry(bad).is_err(), "{bad:?} accepted");
    }
    let msg = parse_scope_entry("/usr/bin/../bin/sh")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("\"/usr/bin/../bin/sh\"") && msg.contains(".."),
        "{msg}"
    );
}

#[test]
fn scope_matching_table() {
    let s = scope(&[
        "/usr/bin/systemctl restart nginx",
        "/usr/bin/journalctl",
        "/usr/bin/id \"\"",
    ]);
    let cases: &[(&str, &[&str], bool)] = &[
        ("/usr/bin/systemctl", &["restart", "nginx"], true),
        ("/usr/bin/systemctl", &["restart"], false),
        ("/usr/bin/systemctl", &["restart", "nginx", "sshd"], false),
        ("/usr/bin/systemctl", &["restart", "nginx "], false),
        ("/usr/bin/systemctl", &["restart", "NGINX"], false),
        ("/usr/bin/systemctl", &["nginx", "restart"], false),
        ("/usr/bin/systemctl", &["restart nginx"], false),
        ("/usr/bin/systemctl", &[], false),
        ("/usr/bin/systemctl", &["stop", "nginx"], false),
        ("/bin/systemctl", &["restart", "nginx"], false),
        ("/usr/bin/journalctl", &[], true),
        ("/usr/bin/journalctl", &["-u", "nginx"], true),
        ("/usr/bin/journalctl", &["--vacuum-time=1s"], true),
        ("/usr/bin/journalctl2", &[], false),
        ("/usr/bin/journal", &[], false),
        ("/usr/bin/journalctl/", &[], false),
        ("/usr/bin/../bin/journalctl", &[], false),
        ("/usr/bin/id", &[], true),
        ("/usr/bin/id", &["-u"], false),
        ("/usr/bin/id", &[""], false),
        ("/usr/bin/apt", &["install", "x"], false),
        ("", &[], false),
        ("journalctl", &[], false),
    ];
    for (cmd, argv, want) in cases {
        let r = scope_allows(&s, &req(cmd, argv));
        assert_eq!(r.is_ok(), *want, "{cmd} {argv:?}: {r:?}");
        if !want {
            assert!(matches!(r, Err(Refusal::OutsideScope { .. })));
        }
    }
    assert!(
        scope_allows(&[], &req("/usr/bin/id", &[])).is_err(),
        "empty scope"
    );
    let all = scope(&["ALL"]);
    assert!(scope_allows(&all, &req("/usr/bin/apt", &["install", "x"])).is_ok());
    assert!(scope_allows(&all, &req("/bin/sh", &[])).is_ok());
}

#[test]
fn escape_hatches_refused() {
    let narrow = scope(&["/usr/bin/systemctl", "/bin/bash"]);
    let all = scope(&["ALL"]);
    let argv: &[&str] = &[];
    let base = req("/usr/bin/systemctl", argv);
    assert!(scope_allows(&narrow, &base).is_ok());

    let shell = SudoRequest {
        command: "/bin/bash",
        shell: true,
        ..base
    };
    assert_eq!(scope_allows(&narrow, &shell), Err(Refusal::Shell));
    assert!(scope_allows(&all, &shell).is_ok());

    let edit = SudoRequest {
        command: "/usr/bin/systemctl",
        edit: true,
        ..base
    };
    assert_eq!(scope_allows(&narrow, &edit), Err(Refusal::Edit));
    assert!(scope_allows(&all, &edit).is_ok());

    for dir in ["/tmp/evil", "/", ""] {
        let chroot = SudoRequest {
            chroot: Some(dir),
            ..base
        };
        assert_eq!(scope_allows(&narrow, &chroot), Err(Refusal::Chroot));
        assert_eq!(
            scope_allows(&all, &chroot),
            Err(Refusal::Chroot),
            "even ALL"
        );
        assert_eq!(
            sudo_allows(&all, &runas(&["ALL:ALL"]), &chroot),
            Err(Refusal::Chroot)
        );
    }
    for host in ["otherhost", "localhost", ""] {
        let remote = SudoRequest {
            remote_host: Some(host),
            ..base
        };
        assert_eq!(scope_allows(&narrow, &remote), Err(Refusal::RemoteHost));
        assert_eq!(
            scope_allows(&all, &remote),
            Err(Refusal::RemoteHost),
            "even ALL"
        );
    }
    // Chroot is reported before everything else, also with a shell.
    let both = SudoRequest {
        shell: true,
        chroot: Some("/x"),
        remote_host: Some("h"),
        ..base
    };
    assert_eq!(scope_allows(&narrow, &both), Err(Refusal::Chroot));
}

#[test]
fn runas_entries_parse() {
    let name = |n: &str| Some(RunAsTarget::Name(n.into()));
    let cases: &[(&str, RunAs)] = &[
        ("root", RunAs::root()),
        (
            "postgres",
            RunAs {
                user: name("postgres"),
                group: None,
            },
        ),
        (
            "www-data:adm",
            RunAs {
                user: name("www-data"),
                group: name("adm"),
            },
        ),
        (
            ":adm",
            RunAs {
                user: None,
                group: name("adm"),
            },
        ),
        (
            "ALL",
            RunAs {
                user: Some(RunAsTarget::All),
                group: None,
            },
        ),
        (
            "ALL:ALL",
            RunAs {
                user: Some(RunAsTarget::All),
                group: Some(RunAsTarget::All),
            },
        ),
        (
            "root:ALL",
            RunAs {
                user: name("root"),
                group: Some(RunAsTarget::All),
            },
        ),
        (
            ":ALL",
            RunAs {
                user: None,
                group: Some(RunAsTarget::All),
            },
        ),
    ];
    for (input, want) in cases {
        let got = parse_runas(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(&got, want, "{input}");
        assert_eq!(got.to_string(), *input);
    }
    for bad in [
        "",
        ":",
        "root:",
        "root:adm:x",
        "#0",
        "#-1",
        "#4294967295",
        "root:#0",
        ":#0",
        "all",
        "Root",
        "ro ot",
        "root\n",
        "-root",
        "../root",
        "a.b",
        "root,postgres",
        "(root)",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        assert!(parse_runas(bad).is_err(), "{bad:?} accepted");
    }
    assert!(matches!(
        parse_runas(&"a".repeat(10_000)),
        Err(PolicyError::TooLong(..))
    ));
}

fn as_user<'a>(
    base: SudoRequest<'a>,
    user: &'a str,
    uid: u32,
    group: Option<(&'a str, u32)>,
) -> SudoRequest<'a> {
    SudoRequest {
        runas_user: user,
        runas_uid: uid,
        runas_group: group.map(|g| g.0),
        runas_gid: group.map(|g| g.1),
        ..base
    }
}

#[test]
fn runas_table() {
    let argv: &[&str] = &[];
    let base = req("/usr/bin/id", argv);
    let default: &[&str] = &[];
    type Case<'a> = (&'a [&'a str], &'a str, u32, Option<(&'a str, u32)>, bool);
    let cases: &[Case<'_>] = &[
        // Default list: root only, no -g.
        (default, "root", 0, None, true),
        (default, "root", 0, Some(("root", 0)), false),
        (default, "postgres", 115, None, false),
        (default, "toor", 0, None, false),
        (default, "#0", 0, None, false),
        (default, "#-1", u32::MAX, None, false),
        (default, "#4294967295", u32::MAX, None, false),
        (default, "root", 5, None, false), // "root" must be uid 0
        (default, "alice", 70001, None, false),
        // Named targets.
        (&["postgres"], "postgres", 115, None, true),
        (&["postgres"], "root", 0, None, false),
        (&["postgres"], "postgres", 0, None, false), // a uid-0 alias named postgres
        (&["postgres"], "#115", 115, None, false),
        (
            &["postgres"],
            "postgres",
            115,
            Some(("postgres", 115)),
            false,
        ),
        (&["postgres"], "Postgres", 115, None, false),
        (&["postgres", "root"], "root", 0, None, true),
        (&["www-data:adm"], "www-data", 33, Some(("adm", 4)), true),
        (&["www-data:adm"], "www-data", 33, None, true),
        (&["www-data:adm"], "www-data", 33, Some(("root", 0)), false),
        (&["www-data:adm"], "www-data", 33, Some(("#4", 4)), false),
        (&["www-data:adm"], "www-data", 33, Some(("adm", 0)), false), // gid 0 is root's
        (&["www-data:adm"], "root", 0, Some(("adm", 4)), false),
        (&["root:ALL"], "root", 0, Some(("shadow", 42)), true),
        (&["root:ALL"], "root", 0, Some(("#42", 42)), true),
        (&["root:ALL"], "root", 0, Some(("#42", 43)), false),
        (&["root:ALL"], "root", 0, Some(("#-1", u32::MAX)), false),
        // `:group`: as oneself.
        (&[":adm"], "alice", 70001, Some(("adm", 4)), true),
        (&[":adm"], "alice", 70002, Some(("adm", 4)), false),
        (&[":adm"], "bob", 70002, Some(("adm", 4)), false),
        (&[":adm"], "root", 0, Some(("adm", 4)), false),
        (&[":adm"], "alice", 70001, Some(("sudo", 27)), false),
        (&[":adm"], "alice", 70001, None, true),
        // ALL and ALL:ALL.
        (&["ALL"], "postgres", 115, None, true),
        (&["ALL"], "toor", 0, None, true),
        (&["ALL"], "#115", 115, None, true),
        (&["ALL"], "#115", 116, None, false), // number and uid disagree
        (&["ALL"], "#0", 0, None, true),
        (&["ALL"], "#-1", u32::MAX, None, false),
        (&["ALL"], "#4294967295", u32::MAX, None, false),
        (&["ALL"], "#4294967295", 4_294_967_295, None, false),
        (&["ALL"], "#2147483648", 2_147_483_648, None, false),
        (&["ALL"], "#2147483647", 2_147_483_647, None, true),
        (&["ALL"], "#99999999999", 0, None, false),
        (&["ALL"], "#", 0, None, false),
        (&["ALL"], "#1x", 1, None, false),
        (&["ALL"], "#+1", 1, None, false),
        (&["ALL"], "", 0, None, false),
        (&["ALL"], "postgres", 115, Some(("adm", 4)), false), // (ALL) allows no -g
        (&["ALL:ALL"], "postgres", 115, Some(("adm", 4)), true),
        (&["ALL:ALL"], "#-1", u32::MAX, None, false),
        (&["ALL:ALL"], "root", 0, Some(("#-1", u32::MAX)), false),
        (&["ALL:ALL"], "root", 0, Some(("x", 3_000_000_000)), false),
        (&["ALL:ALL"], "root", 0, Some(("root", 7)), false),
        (&["ALL:ALL"], "root", 7, None, false),
    ];
    for (list, user, uid, group, want) in cases {
        let r = runas_allows(&runas(list), &as_user(base, user, *uid, *group));
        assert_eq!(
            r.is_ok(),
            *want,
            "{list:?} as {user}({uid}) {group:?}: {r:?}"
        );
        if let Err(e) = r {
            assert!(matches!(e, Refusal::RunAs { .. }));
        }
    }
    // A group name without a gid (or the reverse) is an inconsistent request.
    let odd = SudoRequest {
        runas_group: Some("adm"),
        runas_gid: None,
        ..base
    };
    assert!(runas_allows(&runas(&["ALL:ALL"]), &odd).is_err());
    let odd = SudoRequest {
        runas_group: None,
        runas_gid: Some(4),
        ..base
    };
    assert!(runas_allows(&runas(&["ALL:ALL"]), &odd).is_err());
}

#[test]
fn messages() {
    let id = "g-1234";
    let cases = [
        (
            Refusal::OutsideScope {
                command: "/usr/bin/apt".into(),
            },
            "jit: /usr/bin/apt is outside grant g-1234",
        ),
        (
            Refusal::RunAs {
                target: "postgres".into(),
            },
            "jit: running as postgres is outside grant g-1234",
        ),
        (
            Refusal::Shell,
            "jit: a shell (-s/-i) needs an ALL grant (grant g-1234)",
        ),
        (
            Refusal::Edit,
            "jit: sudoedit needs an ALL grant (grant g-1234)",
        ),
        (
            Refusal::Chroot,
            "jit: sudo -R/--chroot is never allowed under jit",
        ),
        (
            Refusal::RemoteHost,
            "jit: sudo -h/--host is never allowed under jit",
        ),
    ];
    for (r, want) in cases {
        assert_eq!(r.message(id), want);
        assert!(!r.code().is_empty());
    }
    // Through the deciding functions, with untrusted text escaped.
    let argv: &[&str] = &[];
    let r = scope_allows(&[], &req("/usr/bin/apt", argv)).unwrap_err();
    assert_eq!(r.message(id), "jit: /usr/bin/apt is outside grant g-1234");
    let r = scope_allows(&[], &req("/tmp/\x1b[2Jx\ny", argv)).unwrap_err();
    assert_eq!(
        r.message(id),
        "jit: /tmp/\\u{1b}[2Jx\\ny is outside grant g-1234"
    );
    let base = req("/usr/bin/id", argv);
    let r = runas_allows(&[], &as_user(base, "#-1", u32::MAX, None)).unwrap_err();
    assert_eq!(r.message(id), "jit: running as #-1 is outside grant g-1234");
    let r = runas_allows(&[], &as_user(base, "www-data", 33, Some(("adm", 4)))).unwrap_err();
    assert_eq!(
        r.message(id),
        "jit: running as www-data:adm is outside grant g-1234"
    );
    let long = "/x".repeat(1000);
    let r = scope_allows(&[], &req(&long, argv)).unwrap_err();
    assert!(r.message(id).len() < 400);
    assert!(Refusal::Shell.message("g-\n").contains("g-\\n"));
}

#[test]
fn combined_decision() {
    let s = scope(&["/usr/bin/systemctl restart nginx"]);
    let argv: &[&str] = &["restart", "nginx"];
    let base = req("/usr/bin/systemctl", argv);
    assert!(sudo_allows(&s, &[], &base).is_ok());
    let as_pg = as_user(base, "postgres", 115, None);
    assert!(matches!(
        sudo_allows(&s, &[], &as_pg),
        Err(Refusal::RunAs { .. })
    ));
    assert!(sudo_allows(&s, &runas(&["postgres"]), &as_pg).is_ok());
    let other: &[&str] = &["stop", "nginx"];
    assert!(matches!(
        sudo_allows(&s, &[], &req("/usr/bin/systemctl", other)),
        Err(Refusal::OutsideScope { .. })
    ));
}

#[test]
fn huge_inputs_do_not_panic() {
    // docs/threat-model.md#b10: 10 000 argv entries and a 1 MiB argument.
    let many: Vec<String> = (0..10_000).map(|i| format!("arg{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let big = "A".repeat(1 << 20);
    let big_argv: &[&str] = &[big.as_str()];
    let s = scope(&["/usr/bin/systemctl restart nginx", "/usr/bin/journalctl"]);
    assert!(scope_allows(&s, &req("/usr/bin/systemctl", &many)).is_err());
    assert!(scope_allows(&s, &req("/usr/bin/journalctl", &many)).is_ok());
    assert!(scope_allows(&s, &req("/usr/bin/systemctl", big_argv)).is_err());
    let r = scope_allows(&s, &req(&big, big_argv)).unwrap_err();
    assert!(r.message("g-1234").len() < 400);
    let base = req("/usr/bin/id", big_argv);
    let r = runas_allows(&[], &as_user(base, &big, 5, Some((&big, 5)))).unwrap_err();
    assert!(r.message("g-1234").len() < 400);
    assert!(parse_scope_entry(&big).is_err());
    assert!(parse_runas(&big).is_err());
}
