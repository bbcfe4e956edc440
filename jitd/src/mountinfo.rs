//! Reading /proc/self/mountinfo: the mount points it lists (field 5, with the kernel's `\ooo`
//! escapes of space, tab, newline and backslash undone).

use std::path::PathBuf;

/// `s` with mountinfo's `\ooo` escapes undone.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every mount point in a mountinfo text (lines without one are skipped).
pub fn mount_points(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| PathBuf::from(unescape(mp)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_with_escapes() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    40 22 0:33 / /home/a\\040b/mnt rw - tmpfs x rw\n\
                    short line\n";
        assert_eq!(
            mount_points(text),
            vec![PathBuf::from("/"), PathBuf::from("/home/a b/mnt")]
        );
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(
            unescape("/x\\0"),
            "/x\\0",
            "a short escape is kept as it is"
        );
    }
}
