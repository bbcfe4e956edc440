//! Client-supplied text made safe to echo: in an error reply, in a log-safe request
//! description, in the audit trail. A hostile client controls names of up to a frame's size
//! (1 MiB) with any bytes serde accepts, so what is echoed is one line, has every control or
//! invisible-formatting character escaped, and is cut to a fixed size.

/// Longest error message jitd sends, in bytes of escaped text (the reply then always fits a
/// frame with room to spare).
pub const MAX_MESSAGE: usize = 1024;

/// Longest client-supplied name echoed in a log-safe request description, in bytes of escaped
/// text. Valid names are far shorter (32 characters); anything longer is hostile or a mistake.
pub const MAX_NAME: usize = 64;

/// Whether `c` must not reach a terminal or a log line as itself: control characters (newline,
/// escape, DEL, C1) and the invisible formatting characters that reorder or hide text (bidi
/// overrides, zero-width characters, the BOM).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}')
}

/// `s` as one line of at most `max` bytes (plus a short marker when cut): control and
/// formatting characters become `\u{XXXX}`, and a cut says how many bytes of the original were
/// left out.
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 32);
    for (i, c) in s.char_indices() {
        let piece_len = if needs_escape(c) {
            format!("\\u{{{:x}}}", u32::from(c)).len()
        } else {
            c.len_utf8()
        };
        if out.len() + piece_len > max {
            out.push_str(&format!("… ({} more bytes)", s.len() - i));
            return out;
        }
        if needs_escape(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A client-supplied name for a log-safe description: quoted, escaped, at most [`MAX_NAME`]
/// bytes of it.
pub fn quoted_name(s: &str) -> String {
    format!("\"{}\"", one_line(s, MAX_NAME).replace('"', "\\\""))
}

/// An optional client-supplied name, as `Some(` [`quoted_name`] `)` or `None`.
pub fn quoted_opt(s: Option<&str>) -> String {
    s.map_or_else(
        || "None".to_string(),
        |s| format!("Some({})", quoted_name(s)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_format_characters_are_escaped() {
        assert_eq!(one_line("a\nb\x1b[31mc", 100), "a\\u{a}b\\u{1b}[31mc");
        assert_eq!(
            one_line("x\u{202e}y\u{200b}z\u{7f}", 100),
            "x\\u{202e}y\\u{200b}z\\u{7f}"
        );
        assert_eq!(one_line("plain ünïcode", 100), "plain ünïcode");
    }

    #[test]
    fn long_text_is_cut_and_says_so() {
        let s = "a".repeat(1 << 20);
        let o = one_line(&s, MAX_MESSAGE);
        assert!(o.len() < MAX_MESSAGE + 40, "{}", o.len());
        assert!(o.ends_with(&format!("… ({} more bytes)", (1 << 20) - MAX_MESSAGE)));
        let n = "\n".repeat(1 << 20);
        let o = one_line(&n, MAX_MESSAGE);
        assert!(
            o.len() < MAX_MESSAGE + 40 && !o.contains('\n'),
            "{}",
            o.len()
        );
    }

    #[test]
    fn quoted_names_are_short() {
        let q = quoted_name(&"\"x".repeat(100_000));
        assert!(q.len() < 2 * MAX_NAME + 40, "{}", q.len());
        assert_eq!(quoted_name("alice"), "\"alice\"");
        assert_eq!(quoted_opt(None), "None");
        assert_eq!(quoted_opt(Some("g-1")), "Some(\"g-1\")");
    }
}
