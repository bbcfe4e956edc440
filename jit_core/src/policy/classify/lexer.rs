//! The shell lexer: `sh -c TEXT` and friends split into simple commands with their
//! redirections.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RedirOp {
    /// `<`
    In,
    /// `>`, `>|`, `&>`, `>&file`: truncates the target.
    Out,
    /// `>>`, `&>>`
    Append,
    /// `<>`
    ReadWrite,
    /// `2>&1`, `<&3`: descriptor duplication, no file.
    DupFd,
    /// `<<`, `<<<`: the word is a delimiter or text, not a file.
    Here,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Redir {
    pub(super) op: RedirOp,
    /// The operator involved `&` or `<>` (what reverse shells use to wire a socket to stdio).
    pub(super) amp: bool,
    pub(super) target: String,
}

#[derive(Default)]
pub(super) struct SimpleCmd {
    pub(super) words: Vec<String>,
    pub(super) redirs: Vec<Redir>,
}

/// Splits shell text into simple commands with their redirections. Not a shell parser: it
/// knows quotes, backslashes, comments, the separators `; & | && || ( ) \``, newlines and the
/// redirection operators, which is what finding commands and files in one-liners needs.
/// `$(...)` and backquoted text is split as commands in place; inside double quotes it is
/// returned in `subs` to be looked at as a script of its own.
pub(super) fn lex(text: &str) -> (Vec<SimpleCmd>, Vec<String>) {
    let mut cmds = Vec::new();
    let mut subs = Vec::new();
    let mut cur = SimpleCmd::default();
    let mut word = String::new();
    let mut have_word = false;
    let mut pending: Option<(RedirOp, bool)> = None;
    let mut chars = text.chars().peekable();

    fn end_word(
        word: &mut String,
        have_word: &mut bool,
        pending: &mut Option<(RedirOp, bool)>,
        cur: &mut SimpleCmd,
        subs: &mut Vec<String>,
    ) {
        if !*have_word && word.is_empty() {
            return;
        }
        let w = std::mem::take(word);
        *have_word = false;
        if let Some(pos) = w.find("$(").or_else(|| w.find('`')) {
            if let Some(inner) = w.get(pos..) {
                subs.push(inner.trim_start_matches(['$', '(', '`']).to_string());
            }
        }
        match pending.take() {
            Some((op, amp)) => cur.redirs.push(Redir { op, amp, target: w }),
            None => cur.words.push(w),
        }
    }
    fn end_cmd(cur: &mut SimpleCmd, cmds: &mut Vec<SimpleCmd>) {
        let c = std::mem::take(cur);
        if !c.words.is_empty() || !c.redirs.is_empty() {
            cmds.push(c);
        }
    }

    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                have_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                have_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        q => word.push(q),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(n) => word.push(n),
            },
            '#' if word.is_empty() && !have_word => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                end_cmd(&mut cur, &mut cmds);
            }
            ' ' | '\t' => end_word(&mut word, &mut have_word, &mut pending, &mut cur, &mut subs),
            '\n' | ';' | '|' | '(' | ')' | '`' => {
                end_word(&mut word, &mut have_word, &mut pending, &mut cur, &mut subs);
                pending = None;
                end_cmd(&mut cur, &mut cmds);
            }
            '&' if chars.peek() == Some(&'>') => {
                end_word(&mut word, &mut have_word, &mut pending, &mut cur, &mut subs);
                chars.next();
                let op = if chars.peek() == Some(&'>') {
                    chars.next();
                    RedirOp::Append
                } else {
                    RedirOp::Out
                };
                pending = Some((op, true));
            }
            '&' => {
                end_word(&mut word, &mut have_word, &mut pending, &mut cur, &mut subs);
                pending = None;
                end_cmd(&mut cur, &mut cmds);
            }
            '<' | '>' => {
                // A word of digits right before is a descriptor number, not an argument.
                if !have_word && !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
                    word.clear();
                }
                end_word(&mut word, &mut have_word, &mut pending, &mut cur, &mut subs);
                let mut op_s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if matches!(n, '<' | '>' | '&' | '|') && op_s.len() < 3 {
                        // `>|` is an operator, `> |` a pipe: only glue `|` right after `>`.
                        if n == '|' && op_s != ">" {
                            break;
                        }
                        op_s.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                let amp = op_s.contains('&') || op_s == "<>";
                let op = match op_s.as_str() {
                    "<" => RedirOp::In,
                    "<>" => RedirOp::ReadWrite,
                    ">>" => RedirOp::Append,
                    "<<" | "<<<" | "<<-" => RedirOp::Here,
                    ">&" | "<&" => {
                        // `2>&1`, `<&3`, `>&-`: descriptors; `>& file`: a file.
                        if chars
                            .peek()
                            .is_some_and(|n| n.is_ascii_digit() || *n == '-')
                        {
                            while chars
                                .peek()
                                .is_some_and(|n| n.is_ascii_digit() || *n == '-')
                            {
                                chars.next();
                            }
                            cur.redirs.push(Redir {
                                op: RedirOp::DupFd,
                                amp: true,
                                target: String::new(),
                            });
                            continue;
                        }
                        if op_s == "<&" {
                            RedirOp::In
                        } else {
                            RedirOp::Out
                        }
                    }
                    _ => RedirOp::Out,
                };
                pending = Some((op, amp));
            }
            c => word.push(c),
        }
    }
    end_word(&mut word, &mut have_word, &mut pending, &mut cur, &mut subs);
    end_cmd(&mut cur, &mut cmds);
    (cmds, subs)
}

/// Shell keywords that may precede a command word.
pub(super) const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}", "time",
    "coproc",
];
