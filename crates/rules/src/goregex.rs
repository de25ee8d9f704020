//! Compiles Go (RE2) regular expressions with the `regex` crate.
//!
//! The two dialects are close but not identical, and rules written for Traefik rely on Go's
//! reading. The differences handled here:
//! * a `{` that does not start a valid repetition (`{n}`, `{n,}`, `{n,m}`) is a literal in Go
//!   (so v2-style `{name:re}` text is literal in v3 regex matchers); `regex` rejects it;
//! * `\d`, `\w`, `\s`, `\b` are ASCII-only in Go, Unicode-aware in `regex`;
//! * inside a class, Go treats `[` (other than `[:name:]`), `&` and `~` literally, whereas `regex`
//!   reads nested classes and set operators;
//! * Go supports octal escapes (`\123`) and `\Q...\E` quoting;
//! * `\<` and `\>` are literal characters in Go but word boundaries in `regex`.

use regex::Regex;

/// Compiles a Go regular expression. The error message is suitable for a rule error.
pub(crate) fn compile(pattern: &str) -> Result<Regex, String> {
    let translated = translate(pattern)?;
    Regex::new(&translated).map_err(|e| format!("invalid regular expression {pattern:?}: {e}"))
}

/// Rewrites a Go pattern into an equivalent `regex` pattern.
pub(crate) fn translate(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    // Position right after `[` or `[^`, where a `]` is a literal member.
    let mut class_start = false;
    while i < chars.len() {
        let c = chars[i];
        let at_class_start = class_start;
        class_start = false;
        match c {
            '\\' => {
                i = escape(&chars, i, in_class, &mut out)?;
                continue;
            }
            '[' if in_class => {
                if chars.get(i + 1) == Some(&':') {
                    // POSIX class such as [:alpha:]; both dialects agree.
                    if let Some(end) = find_posix_end(&chars, i + 2) {
                        out.extend(&chars[i..=end]);
                        i = end + 1;
                        continue;
                    }
                }
                out.push_str("\\[");
            }
            '[' => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
            }
            ']' if in_class && at_class_start => out.push_str("\\]"),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '{' if !in_class => match repeat_end(&chars, i) {
                Some(end) => {
                    out.extend(&chars[i..=end]);
                    i = end + 1;
                    continue;
                }
                None => out.push_str("\\{"),
            },
            '}' if !in_class => out.push_str("\\}"),
            _ => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

fn find_posix_end(chars: &[char], from: usize) -> Option<usize> {
    let mut j = from;
    while j + 1 < chars.len() {
        if chars[j] == ':' && chars[j + 1] == ']' {
            return Some(j + 1);
        }
        if !chars[j].is_ascii_alphabetic() && chars[j] != '^' {
            return None;
        }
        j += 1;
    }
    None
}

/// If `chars[start]` (a `{`) opens a Go repetition, the index of its `}`.
fn repeat_end(chars: &[char], start: usize) -> Option<usize> {
    let mut j = start + 1;
    let digits_from = j;
    while chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
        j += 1;
    }
    if j == digits_from {
        return None;
    }
    if chars.get(j) == Some(&',') {
        j += 1;
        while chars.get(j).is_some_and(|c| c.is_ascii_digit()) {
            j += 1;
        }
    }
    (chars.get(j) == Some(&'}')).then_some(j)
}

/// Translates the escape starting at `chars[i]` (a backslash); returns the next index.
fn escape(chars: &[char], i: usize, in_class: bool, out: &mut String) -> Result<usize, String> {
    let Some(&e) = chars.get(i + 1) else {
        return Err("trailing backslash at end of expression".to_string());
    };
    let class = |set: &str, negated: bool| -> String {
        match (in_class, negated) {
            (true, false) => set.to_string(),
            (true, true) => format!("[^{set}]"),
            (false, false) => format!("[{set}]"),
            (false, true) => format!("[^{set}]"),
        }
    };
    match e {
        'd' => out.push_str(&class("0-9", false)),
        'D' => out.push_str(&class("0-9", true)),
        'w' => out.push_str(&class("0-9A-Za-z_", false)),
        'W' => out.push_str(&class("0-9A-Za-z_", true)),
        's' => out.push_str(&class("\\t\\n\\f\\r ", false)),
        'S' => out.push_str(&class("\\t\\n\\f\\r ", true)),
        'b' if !in_class => out.push_str("(?-u:\\b)"),
        'B' if !in_class => out.push_str("(?-u:\\B)"),
        'Q' => {
            // Literal text up to \E (or the end of the pattern).
            let mut j = i + 2;
            let mut literal = String::new();
            while j < chars.len() {
                if chars[j] == '\\' && chars.get(j + 1) == Some(&'E') {
                    j += 2;
                    break;
                }
                literal.push(chars[j]);
                j += 1;
            }
            out.push_str(&regex::escape(&literal));
            return Ok(j);
        }
        'E' => {} // a stray \E is ignored by Go
        // Escaped punctuation is the literal character in Go, but `regex` reads `\<` and `\>`
        // as word-boundary assertions.
        '<' | '>' => out.push(e),
        '0'..='7' => {
            // Go: a single non-zero digit is a back-reference (unsupported); otherwise up to
            // three octal digits form a character code.
            if e != '0' && !chars.get(i + 2).is_some_and(|c| ('0'..='7').contains(c)) {
                return Err(format!("invalid escape sequence: \\{e}"));
            }
            let mut j = i + 1;
            let mut value = 0u32;
            while j < i + 4 && chars.get(j).is_some_and(|c| ('0'..='7').contains(c)) {
                value = value * 8 + chars[j].to_digit(8).unwrap_or(0);
                j += 1;
            }
            out.push_str(&format!("\\x{{{value:X}}}"));
            return Ok(j);
        }
        _ => {
            out.push('\\');
            out.push(e);
        }
    }
    Ok(i + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        compile(pattern).unwrap().is_match(text)
    }

    #[test]
    fn literal_braces() {
        assert!(m("http{secure:s?}", "http{secure:}"));
        assert!(m("http{secure:s?}", "http{secure:s}"));
        assert!(!m("http{secure:s?}", "https"));
        assert!(m("/{path:(css|js)}", "/{path:css}"));
        assert!(m("^a{2}$", "aa"));
        assert!(m("^a{2,}$", "aaa"));
        assert!(m("^a{1,2}$", "aa"));
        assert!(m("^a{,2}$", "a{,2}"));
        assert!(m("^}$", "}"));
    }

    #[test]
    fn ascii_classes() {
        assert!(!m(r"^\d$", "٣"));
        assert!(m(r"^\d+$", "123"));
        assert!(!m(r"^\w$", "é"));
        assert!(m(r"^[\d\s]+$", "1 2"));
        assert!(m(r"^[^\D]$", "5"));
        assert!(m(r"\bfoo\b", "a foo b"));
        assert!(m(r"^\<a\>$", "<a>"));
    }

    #[test]
    fn classes() {
        assert!(m("^[[]$", "["));
        assert!(m("^[]a]$", "]"));
        assert!(m("^[a&&b]$", "&"));
        assert!(m("^[[:alpha:]]+$", "abc"));
        assert!(m("^[^]]$", "a"));
    }

    #[test]
    fn octal_and_quote() {
        assert!(m(r"^\101$", "A"));
        assert!(m(r"^\0$", "\0"));
        assert!(compile(r"\1").is_err());
        assert!(m(r"^\Qa.b\E$", "a.b"));
        assert!(!m(r"^\Qa.b\E$", "axb"));
    }

    #[test]
    fn errors() {
        assert!(compile("(example.com").is_err());
        assert!(compile("a\\").is_err());
        assert!(compile("*a").is_err());
    }
}
