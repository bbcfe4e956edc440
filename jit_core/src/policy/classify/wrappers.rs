//! Wrappers: commands that run another command given in their arguments (`env`, `nice`,
//! `timeout`, `sudo`, `xargs`, ...), and where in their arguments that command starts.

use super::args::{arg, short_cluster};

pub(super) struct Wrapper {
    pub(super) names: &'static [&'static str],
    /// Short option letters taking a value (next argument, or glued: `-n5`).
    pub(super) short_values: &'static str,
    /// Long options taking the next argument as value (`--opt=value` is handled anyway).
    pub(super) long_values: &'static [&'static str],
    /// Short letters / long options after which no command runs (`sudo -l`, `command -v`).
    pub(super) stop_short: &'static str,
    pub(super) stop_long: &'static [&'static str],
    /// Operands to skip before the command (`timeout DURATION`, `chroot DIR`).
    pub(super) positionals: usize,
    /// `NAME=value` operands are skipped (env).
    pub(super) assignments: bool,
}

pub(super) const WRAPPERS: &[Wrapper] = &[
    Wrapper {
        names: &["env"],
        short_values: "uCS",
        long_values: &["--unset", "--chdir", "--split-string"],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: true,
    },
    Wrapper {
        names: &["nohup", "builtin", "setsid", "catchsegv", "unbuffer"],
        short_values: "",
        long_values: &[],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["nice"],
        short_values: "n",
        long_values: &["--adjustment"],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["ionice"],
        short_values: "cn",
        long_values: &["--class", "--classdata"],
        stop_short: "pPu",
        stop_long: &["--pid", "--pgid", "--uid"],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["timeout"],
        short_values: "sk",
        long_values: &["--signal", "--kill-after"],
        stop_short: "",
        stop_long: &[],
        positionals: 1,
        assignments: false,
    },
    Wrapper {
        names: &["stdbuf"],
        short_values: "ioe",
        long_values: &["--input", "--output", "--error"],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["time"],
        short_values: "fo",
        long_values: &["--format", "--output"],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["command"],
        short_values: "",
        long_values: &[],
        stop_short: "vV",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["exec"],
        short_values: "a",
        long_values: &[],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["chrt"],
        short_values: "TPD",
        long_values: &["--sched-runtime", "--sched-period", "--sched-deadline"],
        stop_short: "pm",
        stop_long: &["--pid", "--max"],
        positionals: 1,
        assignments: false,
    },
    Wrapper {
        names: &["taskset"],
        short_values: "",
        long_values: &[],
        stop_short: "p",
        stop_long: &["--pid"],
        positionals: 1,
        assignments: false,
    },
    Wrapper {
        names: &["sudo"],
        short_values: "ughpCDRTUrt",
        long_values: &[
            "--user",
            "--group",
            "--host",
            "--prompt",
            "--close-from",
            "--chdir",
            "--chroot",
            "--command-timeout",
            "--other-user",
            "--role",
            "--type",
        ],
        stop_short: "elvVK",
        stop_long: &[
            "--edit",
            "--list",
            "--validate",
            "--version",
            "--remove-timestamp",
        ],
        positionals: 0,
        assignments: true,
    },
    Wrapper {
        names: &["doas"],
        short_values: "u",
        long_values: &[],
        stop_short: "C",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["chroot"],
        short_values: "",
        long_values: &["--userspec", "--groups"],
        stop_short: "",
        stop_long: &[],
        positionals: 1,
        assignments: false,
    },
    Wrapper {
        names: &["xargs"],
        short_values: "adEILnPs",
        long_values: &[
            "--arg-file",
            "--delimiter",
            "--eof",
            "--replace",
            "--max-lines",
            "--max-args",
            "--max-procs",
            "--max-chars",
            "--process-slot-var",
        ],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["flock"],
        short_values: "wE",
        long_values: &["--timeout", "--conflict-exit-code"],
        stop_short: "c",
        stop_long: &["--command"],
        positionals: 1,
        assignments: false,
    },
    Wrapper {
        names: &["nsenter"],
        short_values: "tSGUC",
        long_values: &["--target", "--setuid", "--setgid"],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["unshare", "busybox"],
        short_values: "",
        long_values: &[],
        stop_short: "",
        stop_long: &["--list"],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["systemd-run"],
        short_values: "upEMH",
        long_values: &[
            "--unit",
            "--property",
            "--setenv",
            "--machine",
            "--host",
            "--description",
            "--slice",
            "--uid",
            "--gid",
            "--nice",
            "--working-directory",
        ],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
    Wrapper {
        names: &["strace", "ltrace"],
        short_values: "oepsuEPIbaX",
        long_values: &["--output", "--expr", "--attach", "--string-limit", "--user"],
        stop_short: "",
        stop_long: &[],
        positionals: 0,
        assignments: false,
    },
];

pub(super) fn is_assignment(a: &str) -> bool {
    match a.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        None => false,
    }
}

/// For a wrapper, the index in `args` where the wrapped command starts: `Some(Some(i))`;
/// `Some(None)` when the wrapper runs no command (`sudo -l`, `env` alone); `None` for a
/// command that is no wrapper.
pub(super) fn unwrap_index<S: AsRef<str>>(base: &str, args: &[S]) -> Option<Option<usize>> {
    let w = WRAPPERS.iter().find(|w| w.names.contains(&base))?;
    let mut i = 0;
    let mut skip_pos = w.positionals;
    while let Some(a) = arg(args, i) {
        if a == "--" {
            i += 1;
            break;
        }
        if let Some(long) = a.strip_prefix("--").filter(|l| !l.is_empty()) {
            let name = format!("--{}", long.split('=').next().unwrap_or(""));
            if w.stop_long.contains(&name.as_str()) {
                return Some(None);
            }
            i += if !long.contains('=') && w.long_values.contains(&name.as_str()) {
                2
            } else {
                1
            };
            continue;
        }
        if let Some(cluster) = short_cluster(a) {
            // Old `nice -10 cmd` and `kill -9`-like numeric options carry no value.
            let mut consumed = 1;
            for (pos, ch) in cluster.char_indices() {
                if w.stop_short.contains(ch) {
                    return Some(None);
                }
                if w.short_values.contains(ch) {
                    if cluster
                        .get(pos + ch.len_utf8()..)
                        .is_some_and(str::is_empty)
                    {
                        consumed = 2;
                    }
                    break;
                }
            }
            i += consumed;
            continue;
        }
        if w.assignments && is_assignment(a) {
            i += 1;
            continue;
        }
        if skip_pos > 0 {
            skip_pos -= 1;
            i += 1;
            continue;
        }
        break;
    }
    Some((i < args.len()).then_some(i))
}
