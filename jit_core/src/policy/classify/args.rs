//! Word helpers: basenames, option clusters and operands of an argument vector.

pub(super) fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

pub(super) fn arg<S: AsRef<str>>(args: &[S], i: usize) -> Option<&str> {
    args.get(i).map(AsRef::as_ref)
}

pub(super) fn tail<S>(args: &[S], i: usize) -> &[S] {
    args.get(i..).unwrap_or(&[])
}

/// A short option cluster such as `-ivh` (not `--long`, not `-` alone): its letters.
pub(super) fn short_cluster(a: &str) -> Option<&str> {
    let rest = a.strip_prefix('-')?;
    if rest.is_empty() || rest.starts_with('-') {
        return None;
    }
    Some(rest)
}

pub(super) fn cluster_has(a: &str, letters: &str) -> bool {
    short_cluster(a).is_some_and(|c| c.chars().any(|ch| letters.contains(ch)))
}

pub(super) fn contains_ci(hay: &str, needle: &str) -> bool {
    let n = needle.as_bytes();
    if n.is_empty() {
        return true;
    }
    hay.as_bytes()
        .windows(n.len())
        .any(|w| w.eq_ignore_ascii_case(n))
}

/// `python3.11` is `python`: a name followed only by digits and dots.
pub(super) fn versioned(base: &str, name: &str) -> bool {
    base.strip_prefix(name)
        .is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// The first operand (non-option argument) and its index, skipping options; `value_opts` are
/// options whose value is the next argument.
pub(super) fn first_operand<'x, S: AsRef<str>>(
    args: &'x [S],
    value_opts: &[&str],
) -> Option<(usize, &'x str)> {
    let mut i = 0;
    while let Some(a) = args.get(i).map(AsRef::as_ref) {
        if a == "--" {
            return args.get(i + 1).map(|s| (i + 1, s.as_ref()));
        }
        if a.starts_with('-') && a.len() > 1 {
            i += if value_opts.contains(&a) { 2 } else { 1 };
            continue;
        }
        return Some((i, a));
    }
    None
}

/// The value of `-c CMD` / `--command CMD` / `--command=CMD`.
pub(super) fn opt_value<'x, S: AsRef<str>>(
    args: &'x [S],
    short: &str,
    long: &str,
) -> Option<&'x str> {
    let mut it = args.iter().map(AsRef::as_ref);
    while let Some(a) = it.next() {
        if a == "--" {
            return None;
        }
        if a == short || a == long {
            return it.next();
        }
        if let Some(v) = a.strip_prefix(long).and_then(|r| r.strip_prefix('=')) {
            return Some(v);
        }
    }
    None
}
