//! One page of a list reply (`list_grants`, `list_sessions`): a reply is one frame (1 MiB), and
//! a bastion's grants or sessions do not fit in one. The client passes the cursor of the last
//! entry it has; the page holds the entries after it, in the list's order, as many as fit in
//! [`PAGE_BYTES`] (at least one), and the cursor of its last entry when more follow.

use jit_proto::message::{Cursor, ListPage};
use serde::Serialize;

/// The most entry JSON in one page: well inside a frame with the reply's envelope, and above
/// the largest entry (a grant with every list full is ~0.6 MB).
pub(crate) const PAGE_BYTES: usize = jit_proto::MAX_FRAME * 3 / 4;

/// The page of `sorted` (ordered by `key`) that `page` asks for, each entry made by `copy`
/// (only the page's entries are copied), and the cursor of the next page, if any.
pub(crate) fn page_of<T, O: Serialize>(
    sorted: &[&T],
    key: impl Fn(&T) -> (i64, &str),
    page: &ListPage,
    copy: impl Fn(&T) -> O,
) -> (Vec<O>, Option<Cursor>) {
    let start = match &page.after {
        None => 0,
        // Compared borrowed: the cursor is the client's (any length a frame allows).
        Some(c) => sorted.partition_point(|e| key(e) <= (c.at, c.id.as_str())),
    };
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for e in sorted.iter().skip(start) {
        let entry = copy(e);
        let size = json_len(&entry);
        if !out.is_empty() && bytes.saturating_add(size) > PAGE_BYTES {
            let last = sorted.get(start + out.len() - 1).map(|l| key(l));
            let next = last.map(|(at, id)| Cursor {
                at,
                id: id.to_string(),
            });
            return (out, next);
        }
        bytes = bytes.saturating_add(size);
        out.push(entry);
    }
    (out, None)
}

/// The length of `v` as JSON, counted as it is written, not kept (`usize::MAX` if it cannot be
/// written: it then fills a page by itself).
fn json_len(v: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(b.len());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    serde_json::to_writer(&mut c, v).map_or(usize::MAX, |()| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct E {
        at: i64,
        id: String,
        body: String,
    }

    fn key(e: &E) -> (i64, &str) {
        (e.at, &e.id)
    }

    fn copy(e: &E) -> E {
        E {
            at: e.at,
            id: e.id.clone(),
            body: e.body.clone(),
        }
    }

    /// The ids of each page, the entries copied whole (the budget counts the copies).
    fn pages(sorted: &[&E]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut page = ListPage::default();
        loop {
            let (p, next) = page_of(sorted, key, &page, copy);
            assert!(
                serde_json::to_vec(&p).unwrap().len() <= PAGE_BYTES + 16,
                "a page within the budget"
            );
            out.push(p.into_iter().map(|e| e.id).collect());
            match next {
                Some(c) => page.after = Some(c),
                None => return out,
            }
        }
    }

    #[test]
    fn pages_hold_each_entry_once_in_order_within_the_budget() {
        // 40 entries of ~100 KB: seven or so a page.
        let all: Vec<E> = (0..40)
            .map(|i| E {
                at: i / 3,
                id: format!("e{i:02}"),
                body: "x".repeat(100_000),
            })
            .collect();
        let sorted: Vec<&E> = all.iter().collect();
        let got = pages(&sorted);
        assert!(got.len() >= 5, "{} pages", got.len());
        assert!(got.iter().all(|p| !p.is_empty()));
        let flat: Vec<String> = got.iter().flatten().cloned().collect();
        let want: Vec<String> = all.iter().map(|e| e.id.clone()).collect();
        assert_eq!(flat, want);
    }

    #[test]
    fn an_entry_above_the_budget_still_gets_a_page_of_its_own() {
        let big = E {
            at: 1,
            id: "big".into(),
            body: "x".repeat(PAGE_BYTES + 1),
        };
        let small = E {
            at: 2,
            id: "small".into(),
            body: String::new(),
        };
        let sorted = [&big, &small];
        let (p, next) = page_of(&sorted, key, &ListPage::default(), copy);
        assert_eq!(p.len(), 1);
        let next = next.expect("more");
        assert_eq!((next.at, next.id.as_str()), (1, "big"));
        let (p, next) = page_of(&sorted, key, &ListPage { after: Some(next) }, copy);
        assert_eq!((p.len(), next), (1, None));
    }

    #[test]
    fn a_cursor_between_or_past_the_entries_starts_after_it() {
        let all: Vec<E> = [(1, "a"), (1, "c"), (2, "b")]
            .into_iter()
            .map(|(at, id)| E {
                at,
                id: id.into(),
                body: String::new(),
            })
            .collect();
        let sorted: Vec<&E> = all.iter().collect();
        let from = |at, id: &str| {
            let page = ListPage {
                after: Some(Cursor { at, id: id.into() }),
            };
            page_of(&sorted, key, &page, |e| e.id.clone()).0
        };
        // An entry gone since (or never there) still places the cursor.
        assert_eq!(from(1, "b"), ["c", "b"]);
        assert_eq!(from(1, "c"), ["b"]);
        assert_eq!(from(9, ""), Vec::<String>::new());
        assert_eq!(from(i64::MIN, ""), ["a", "c", "b"]);
    }
}
