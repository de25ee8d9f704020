//! Tokenizer for rule text.
//!
//! Traefik hands rules to Go's expression parser, so the lexical rules here are the subset of Go's
//! that a rule can legitimately use: identifiers, `(`, `)`, `,`, `&&`, `||`, `!`, and the two kinds
//! of string literal. Anything else Go would accept (numbers, rune literals, other operators) can
//! never form a valid rule, so it is reported as an error at its column.

use crate::RuleError;

/// One token with the 1-based character column where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub column: usize,
}

/// Kinds of tokens a rule can contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Ident(String),
    /// A string literal, already unquoted (escapes resolved for `"..."`).
    Str(String),
    /// A numeric literal; kept as a token so the parser can say "arguments must be strings".
    Number(String),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
    /// Text that cannot start any token. The error is reported only when the parser reaches it,
    /// so an earlier, more telling error (e.g. an unquoted argument) wins.
    Invalid(RuleError),
    Eof,
}

impl TokenKind {
    /// Human-readable description used in "unexpected ..." messages.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Ident(name) => format!("identifier {name}"),
            TokenKind::Str(_) => "string literal".to_string(),
            TokenKind::Number(n) => format!("number {n}"),
            TokenKind::LParen => "'('".to_string(),
            TokenKind::RParen => "')'".to_string(),
            TokenKind::Comma => "','".to_string(),
            TokenKind::And => "'&&'".to_string(),
            TokenKind::Or => "'||'".to_string(),
            TokenKind::Not => "'!'".to_string(),
            TokenKind::Invalid(e) => e.message.clone(),
            TokenKind::Eof => "end of rule".to_string(),
        }
    }
}

/// Splits `text` into tokens. The final token is always `Eof` (its column is one past the end);
/// lexing stops at the first invalid text, which becomes an `Invalid` token.
pub(crate) fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    if let Err(e) = lex(&chars, &mut tokens) {
        tokens.push(Token {
            column: e.column,
            kind: TokenKind::Invalid(e),
        });
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        column: chars.len() + 1,
    });
    tokens
}

fn lex(chars: &[char], tokens: &mut Vec<Token>) -> Result<(), RuleError> {
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let kind = match c {
            '(' => {
                i += 1;
                TokenKind::LParen
            }
            ')' => {
                i += 1;
                TokenKind::RParen
            }
            ',' => {
                i += 1;
                TokenKind::Comma
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    return Err(err(column, "unexpected operator '!='"));
                }
                i += 1;
                TokenKind::Not
            }
            '&' => {
                if chars.get(i + 1) != Some(&'&') {
                    return Err(err(column, "unexpected '&' (did you mean '&&'?)"));
                }
                i += 2;
                TokenKind::And
            }
            '|' => {
                if chars.get(i + 1) != Some(&'|') {
                    return Err(err(column, "unexpected '|' (did you mean '||'?)"));
                }
                i += 2;
                TokenKind::Or
            }
            '`' => {
                let (value, next) = raw_string(chars, i)?;
                i = next;
                TokenKind::Str(value)
            }
            '"' => {
                let (value, next) = interpreted_string(chars, i)?;
                i = next;
                TokenKind::Str(value)
            }
            '\'' => return Err(err(
                column,
                "single quotes are not allowed; quote arguments with backticks or double quotes",
            )),
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                TokenKind::Ident(chars[start..i].iter().collect())
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                TokenKind::Number(chars[start..i].iter().collect())
            }
            other => return Err(err(column, &format!("unexpected character {other:?}"))),
        };
        tokens.push(Token { kind, column });
    }
    Ok(())
}

fn err(column: usize, message: &str) -> RuleError {
    RuleError {
        column,
        message: message.to_string(),
    }
}

/// Backtick string starting at `start`: no escapes; Go drops carriage returns from raw strings.
fn raw_string(chars: &[char], start: usize) -> Result<(String, usize), RuleError> {
    let mut value = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '`' => return Ok((value, i + 1)),
            '\r' => {}
            c => value.push(c),
        }
        i += 1;
    }
    Err(err(start + 1, "raw string literal not terminated"))
}

/// Double-quoted Go string starting at `start`, with Go's escape sequences.
fn interpreted_string(chars: &[char], start: usize) -> Result<(String, usize), RuleError> {
    // Octal and \x escapes produce raw bytes, so collect bytes and check UTF-8 at the end.
    let mut bytes: Vec<u8> = Vec::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(err(start + 1, "string literal not terminated"));
        };
        match c {
            '"' => break,
            '\n' => return Err(err(start + 1, "string literal not terminated")),
            '\\' => {
                let esc_col = i + 1;
                let Some(&e) = chars.get(i + 1) else {
                    return Err(err(start + 1, "string literal not terminated"));
                };
                i += 2;
                let simple = match e {
                    'a' => Some(0x07u8),
                    'b' => Some(0x08),
                    'f' => Some(0x0c),
                    'n' => Some(b'\n'),
                    'r' => Some(b'\r'),
                    't' => Some(b'\t'),
                    'v' => Some(0x0b),
                    '\\' => Some(b'\\'),
                    '"' => Some(b'"'),
                    _ => None,
                };
                if let Some(b) = simple {
                    bytes.push(b);
                    continue;
                }
                match e {
                    '0'..='7' => {
                        let digits = take_digits(chars, i - 1, 3, 8)
                            .ok_or_else(|| err(esc_col, "invalid octal escape"))?;
                        if digits > 255 {
                            return Err(err(esc_col, "octal escape value > 255"));
                        }
                        bytes.push(digits as u8);
                        i += 2;
                    }
                    'x' => {
                        let v = take_digits(chars, i, 2, 16)
                            .ok_or_else(|| err(esc_col, "invalid \\x escape"))?;
                        bytes.push(v as u8);
                        i += 2;
                    }
                    'u' | 'U' => {
                        let n = if e == 'u' { 4 } else { 8 };
                        let v = take_digits(chars, i, n, 16)
                            .ok_or_else(|| err(esc_col, "invalid unicode escape"))?;
                        let ch = char::from_u32(v).ok_or_else(|| {
                            err(esc_col, "escape is an invalid Unicode code point")
                        })?;
                        let mut buf = [0u8; 4];
                        bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        i += n;
                    }
                    _ => return Err(err(esc_col, "unknown escape sequence")),
                }
            }
            c => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 1;
            }
        }
    }
    let value = String::from_utf8(bytes)
        .map_err(|_| err(start + 1, "string literal is not valid UTF-8"))?;
    Ok((value, i + 1))
}

/// Reads exactly `count` digits of `radix` at `chars[at..]`.
fn take_digits(chars: &[char], at: usize, count: usize, radix: u32) -> Option<u32> {
    let mut value: u32 = 0;
    for k in 0..count {
        let d = chars.get(at + k)?.to_digit(radix)?;
        value = value * radix + d;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(text).into_iter().map(|t| t.kind).collect()
    }

    /// The deferred lexical error, if any.
    fn lex_err(text: &str) -> Option<RuleError> {
        tokenize(text).into_iter().find_map(|t| match t.kind {
            TokenKind::Invalid(e) => Some(e),
            _ => None,
        })
    }

    #[test]
    fn tokens_and_columns() {
        let toks = tokenize("Host(`a`) && !Path(\"/b\")");
        let cols: Vec<usize> = toks.iter().map(|t| t.column).collect();
        assert_eq!(cols, vec![1, 5, 6, 9, 11, 14, 15, 19, 20, 24, 25]);
        assert_eq!(toks[2].kind, TokenKind::Str("a".into()));
        assert_eq!(toks[8].kind, TokenKind::Str("/b".into()));
    }

    #[test]
    fn go_escapes() {
        assert_eq!(
            kinds(r#""a\n\t\\\"\x41\101\u00e9\U0001F600""#)[0],
            TokenKind::Str("a\n\t\\\"AAé😀".into())
        );
        assert!(lex_err(r#""\q""#).is_some());
        assert!(lex_err(r#""\'""#).is_some());
        assert!(lex_err(r#""\xff""#).is_some()); // not UTF-8
        assert!(lex_err(r#""\uD800""#).is_some()); // surrogate
    }

    #[test]
    fn raw_strings_keep_backslashes_and_drop_cr() {
        assert_eq!(kinds("`a\\nb\r\nc`")[0], TokenKind::Str("a\\nb\nc".into()));
    }

    #[test]
    fn lexical_errors_have_columns() {
        assert_eq!(lex_err("Host(`abc").unwrap().column, 6);
        assert_eq!(lex_err("Host(\"abc").unwrap().column, 6);
        assert_eq!(lex_err("Host('a')").unwrap().column, 6);
        assert_eq!(lex_err("A & B").unwrap().column, 3);
        assert_eq!(lex_err("A | B").unwrap().column, 3);
        assert_eq!(lex_err("é + x").unwrap().column, 3);
    }
}
