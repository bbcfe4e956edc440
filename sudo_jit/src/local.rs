//! Reading /etc/passwd and /etc/group directly (never through NSS: the jit module answers
//! there, and a hung directory service must not hang sudo) to tell local ids from jit's.

use std::collections::HashSet;

/// Largest local database file read (far above any real one).
const MAX_DB_BYTES: u64 = 16 * 1024 * 1024;

/// The ids (third field) of a passwd- or group-format file; empty when unreadable, which makes
/// every id in jit's range look like jit's (fails closed for jit, never for root).
pub fn ids_in(path: &str) -> HashSet<u32> {
    use std::io::Read;
    let mut buf = Vec::new();
    let ok = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_DB_BYTES).read_to_end(&mut buf))
        .is_ok();
    if !ok {
        return HashSet::new();
    }
    parse_ids(&buf)
}

/// The pure part of [`ids_in`].
pub fn parse_ids(data: &[u8]) -> HashSet<u32> {
    data.split(|&b| b == b'\n')
        .filter_map(|line| {
            let field = line.split(|&b| b == b':').nth(2)?;
            std::str::from_utf8(field).ok()?.parse::<u32>().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_ids() {
        let ids =
            super::parse_ids(b"root:x:0:0::/root:/bin/sh\nbad\nbob:x:70005:70005::/:/x\n+nis\n");
        assert!(ids.contains(&0) && ids.contains(&70005) && ids.len() == 2);
    }
}
