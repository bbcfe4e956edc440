//! `lateral-movement`: a grant's process reaching for another host. Two signs: the exec of a
//! remote-login client (`ssh`, `scp`, `sftp`, `telnet`, RDP and WinRM clients), and an
//! outbound TCP connection (connecting or established) to a remote-login port (default ssh 22,
//! telnet 23, rdp 3389, winrm 5985/5986; `lateral_ports` in jitd.toml). Connections are found
//! in /proc/net/tcp{,6} and tied to a process by its socket inode under /proc/PID/fd, checked
//! only for the grant's processes.

use std::collections::HashSet;

/// Default remote-login ports.
pub const DEFAULT_PORTS: &[u16] = &[22, 23, 3389, 5985, 5986];

/// Remote-login clients, by executable basename.
const CLIENTS: &[&str] = &[
    "ssh",
    "scp",
    "sftp",
    "slogin",
    "telnet",
    "xfreerdp",
    "xfreerdp3",
    "rdesktop",
    "remmina",
    "evil-winrm",
    "pwsh-winrm",
    "mosh",
    "mosh-client",
    "rsh",
    "rlogin",
    "dbclient",
];

/// The class name as `--revoke-on` takes it.
pub const CLASS: &str = "lateral-movement";

/// Whether an executable (path or name) is a remote-login client.
pub fn is_client(exe: &str) -> bool {
    let base = exe.rsplit('/').next().unwrap_or(exe);
    CLIENTS.contains(&base)
}

/// Socket inodes of outbound TCP connections to one of `ports`, with "addr:port" for the
/// record, from the text of /proc/net/tcp or /proc/net/tcp6.
pub fn outbound(text: &str, ports: &[u16], out: &mut Vec<(u64, String)>) {
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(rem), Some(st), Some(inode)) = (f.get(2), f.get(3), f.get(9)) else {
            continue;
        };
        // 01 ESTABLISHED, 02 SYN_SENT: this host is (becoming) the client.
        if *st != "01" && *st != "02" {
            continue;
        }
        let Some((addr, port)) = rem.split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port, 16) else {
            continue;
        };
        let Ok(inode) = inode.parse::<u64>() else {
            continue;
        };
        if inode == 0 || !ports.contains(&port) {
            continue;
        }
        out.push((inode, format!("{}:{port}", show_addr(addr))));
    }
}

/// A /proc/net address (little-endian hex words) for people.
fn show_addr(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    if bytes.len() == 4 {
        format!("{}.{}.{}.{}", bytes[3], bytes[2], bytes[1], bytes[0])
    } else if bytes.len() == 16 {
        // Four host-order 32-bit words.
        let mut v: Vec<u8> = Vec::with_capacity(16);
        for w in bytes.chunks(4) {
            v.extend(w.iter().rev());
        }
        let segs: Vec<String> = v
            .chunks(2)
            .map(|c| format!("{:x}", u16::from(c[0]) << 8 | u16::from(c[1])))
            .collect();
        format!("[{}]", segs.join(":"))
    } else {
        hex.to_string()
    }
}

/// Socket inodes a process holds (from /proc/PID/fd).
pub fn socket_inodes(pid: i32) -> HashSet<u64> {
    let mut s = HashSet::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                if let Some(n) = t
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|n| n.parse().ok())
                {
                    s.insert(n);
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_by_basename() {
        assert!(is_client("/usr/bin/ssh") && is_client("scp") && is_client("/usr/bin/sftp"));
        assert!(!is_client("/usr/sbin/sshd") && !is_client("/usr/bin/ssh-keygen"));
    }

    #[test]
    fn outbound_connections_to_listed_ports() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n\
   1: 0100007F:A000 0100007F:0016 01 00000000:00000000 00:00000000 00000000  1000        0 222 1\n\
   2: 0100007F:A001 0100007F:0050 01 00000000:00000000 00:00000000 00000000  1000        0 333 1\n\
   3: 0100007F:A002 0100007F:0D3D 02 00000000:00000000 00:00000000 00000000  1000        0 444 1\n";
        let mut v = Vec::new();
        outbound(t, DEFAULT_PORTS, &mut v);
        assert_eq!(
            v,
            vec![
                (222, "127.0.0.1:22".to_string()),
                (444, "127.0.0.1:3389".to_string())
            ]
        );
    }

    #[test]
    fn ipv6_loopback() {
        assert_eq!(
            show_addr("00000000000000000000000001000000"),
            "[0:0:0:0:0:0:0:1]"
        );
    }
}
