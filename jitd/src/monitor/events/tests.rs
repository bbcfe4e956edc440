use super::*;

fn w() -> Watched {
    Watched {
        grant: "g-000000000001".into(),
        user: "carol".into(),
        home: Some("/home/carol".into()),
    }
}

#[test]
fn file_classes() {
    let c = |mask, p: &str| file_class(&w(), mask, Path::new(p));
    assert_eq!(c(libc::FAN_OPEN, "/etc/shadow"), Some("sensitive-read"));
    assert_eq!(
        c(libc::FAN_CLOSE_WRITE, "/etc/passwd"),
        Some("account-change")
    );
    assert_eq!(
        c(libc::FAN_CLOSE_WRITE, "/etc/passwd+"),
        Some("account-change")
    );
    assert_eq!(
        c(libc::FAN_CLOSE_WRITE, "/etc/sudoers.d/x"),
        Some("account-change")
    );
    assert_eq!(
        c(libc::FAN_CLOSE_WRITE, "/root/.ssh/authorized_keys"),
        Some("account-change")
    );
    assert_eq!(
        c(libc::FAN_CLOSE_WRITE, "/home/carol/.ssh/authorized_keys"),
        None
    );
    assert_eq!(
        c(libc::FAN_CLOSE_WRITE, "/var/lib/dpkg/status"),
        Some("software-install")
    );
    assert_eq!(
        c(libc::FAN_CLOSE_WRITE, "/usr/local/bin/tool"),
        Some("software-install")
    );
    assert_eq!(c(libc::FAN_CLOSE_WRITE, "/home/carol/build/a.o"), None);
    assert_eq!(c(libc::FAN_CLOSE_WRITE, "/etc/hostname"), None);
}
