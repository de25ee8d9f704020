//! Recursive-descent parser: rule text -> expression tree.
//!
//! Grammar (Go operator precedence, `!` binds tighter than `&&`, which binds tighter than `||`):
//!
//! ```text
//! or      := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | primary
//! primary := "(" or ")" | IDENT "(" [ STRING ( "," STRING )* [ "," ] ] ")"
//! ```
//!
//! The trailing comma is accepted because Go's call syntax allows it. Matcher names and argument
//! counts are not checked here; that is the job of the matcher compilers, which know the syntax.

use crate::lexer::{tokenize, Token, TokenKind};
use crate::RuleError;

/// Deepest nesting accepted; keeps hostile input from exhausting the stack.
const MAX_DEPTH: usize = 200;

/// A parsed rule expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Call(Call),
}

/// A matcher call such as ``Host(`example.com`)``.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    pub name: String,
    /// Column of the first character of the name.
    pub column: usize,
    pub args: Vec<Arg>,
}

/// One string argument of a matcher call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Arg {
    pub value: String,
    /// Column of the opening quote.
    pub column: usize,
}

/// Parses a whole rule.
pub(crate) fn parse(text: &str) -> Result<Expr, RuleError> {
    let tokens = tokenize(text);
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    if parser.peek().kind == TokenKind::Eof {
        return Err(RuleError {
            column: 1,
            message: "empty rule".to_string(),
        });
    }
    let expr = parser.or()?;
    let next = parser.peek();
    if next.kind != TokenKind::Eof {
        return Err(unexpected(next, "expected '&&', '||' or end of rule"));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

fn unexpected(tok: &Token, expected: &str) -> RuleError {
    if let TokenKind::Invalid(e) = &tok.kind {
        return e.clone();
    }
    RuleError {
        column: tok.column,
        message: format!("unexpected {}, {expected}", tok.kind.describe()),
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        // tokenize always ends with Eof and we never advance past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let tok = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        tok
    }

    fn or(&mut self) -> Result<Expr, RuleError> {
        let mut items = vec![self.and()?];
        while self.peek().kind == TokenKind::Or {
            self.bump();
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, RuleError> {
        let mut items = vec![self.unary()?];
        while self.peek().kind == TokenKind::And {
            self.bump();
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, RuleError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(RuleError {
                column: self.peek().column,
                message: "rule is nested too deeply".to_string(),
            });
        }
        let result = if self.peek().kind == TokenKind::Not {
            self.bump();
            self.unary().map(|e| Expr::Not(Box::new(e)))
        } else {
            self.primary()
        };
        self.depth -= 1;
        result
    }

    fn primary(&mut self) -> Result<Expr, RuleError> {
        let tok = self.bump();
        match tok.kind {
            TokenKind::LParen => {
                let inner = self.or()?;
                let close = self.bump();
                if close.kind != TokenKind::RParen {
                    return Err(unexpected(&close, "expected ')'"));
                }
                Ok(inner)
            }
            TokenKind::Ident(name) => {
                let open = self.bump();
                if let TokenKind::Invalid(e) = open.kind {
                    return Err(e);
                }
                if open.kind != TokenKind::LParen {
                    return Err(RuleError {
                        column: tok.column,
                        message: format!("{name} is not a matcher call (expected '(' after it)"),
                    });
                }
                let args = self.args()?;
                Ok(Expr::Call(Call {
                    name,
                    column: tok.column,
                    args,
                }))
            }
            _ => Err(unexpected(&tok, "expected a matcher, '!' or '('")),
        }
    }

    /// Arguments after the opening parenthesis, up to and including the closing one.
    fn args(&mut self) -> Result<Vec<Arg>, RuleError> {
        let mut args = Vec::new();
        loop {
            let tok = self.bump();
            match tok.kind {
                TokenKind::RParen => return Ok(args),
                TokenKind::Str(value) => args.push(Arg {
                    value,
                    column: tok.column,
                }),
                TokenKind::Number(_) | TokenKind::Ident(_) => {
                    return Err(RuleError {
                        column: tok.column,
                        message:
                            "matcher arguments must be quoted strings (backticks or double quotes)"
                                .to_string(),
                    })
                }
                _ => return Err(unexpected(&tok, "expected a string argument or ')'")),
            }
            let sep = self.bump();
            match sep.kind {
                TokenKind::Comma => {}
                TokenKind::RParen => return Ok(args),
                _ => return Err(unexpected(&sep, "expected ',' or ')'")),
            }
        }
    }
}

/// Compact rendering used by tests to check tree shapes.
#[cfg(test)]
pub(crate) fn render(expr: &Expr) -> String {
    match expr {
        Expr::Or(items) => format!(
            "or({})",
            items.iter().map(render).collect::<Vec<_>>().join(", ")
        ),
        Expr::And(items) => format!(
            "and({})",
            items.iter().map(render).collect::<Vec<_>>().join(", ")
        ),
        Expr::Not(inner) => format!("not({})", render(inner)),
        Expr::Call(call) => format!(
            "{}({})",
            call.name,
            call.args
                .iter()
                .map(|a| a.value.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str) -> String {
        render(&parse(text).unwrap())
    }

    fn err_col(text: &str) -> usize {
        parse(text).unwrap_err().column
    }

    #[test]
    fn single_call() {
        assert_eq!(shape("Host(`a`)"), "Host(a)");
        assert_eq!(shape("  Host( \"a\" , `b` , )  "), "Host(a,b)");
        assert_eq!(shape("Host()"), "Host()");
    }

    #[test]
    fn precedence() {
        assert_eq!(
            shape("A(`1`) || B(`2`) && C(`3`)"),
            "or(A(1), and(B(2), C(3)))"
        );
        assert_eq!(
            shape("A(`1`) && B(`2`) || C(`3`)"),
            "or(and(A(1), B(2)), C(3))"
        );
        assert_eq!(
            shape("(A(`1`) || B(`2`)) && C(`3`)"),
            "and(or(A(1), B(2)), C(3))"
        );
        assert_eq!(shape("!A(`1`) && B(`2`)"), "and(not(A(1)), B(2))");
        assert_eq!(shape("!(A(`1`) && B(`2`))"), "not(and(A(1), B(2)))");
        assert_eq!(shape("!!A(`1`)"), "not(not(A(1)))");
        assert_eq!(
            shape("A(`1`) && B(`2`) && C(`3`) || D(`4`) || E(`5`)"),
            "or(and(A(1), B(2), C(3)), D(4), E(5))"
        );
        assert_eq!(shape("((A(`1`)))"), "A(1)");
    }

    #[test]
    fn newlines_are_whitespace() {
        assert_eq!(shape("A(`1`)\n&&\tB(`2`)\n"), "and(A(1), B(2))");
    }

    #[test]
    fn error_columns() {
        assert_eq!(err_col(""), 1);
        assert_eq!(err_col("   "), 1);
        assert_eq!(err_col("rulewithnotmatcher"), 1);
        assert_eq!(err_col("Host(example.com)"), 6);
        assert_eq!(err_col("Host(`a`) &&"), 13);
        assert_eq!(err_col("&& Host(`a`)"), 1);
        assert_eq!(err_col("Host(`a`) || || Path(`/`)"), 14);
        assert_eq!(err_col("(Host(`a`)"), 11);
        assert_eq!(err_col("Host(`a`))"), 10);
        assert_eq!(err_col("Host(`a` `b`)"), 10);
        assert_eq!(err_col("Host(`a`) Path(`/`)"), 11);
        assert_eq!(err_col("Host(1)"), 6);
        assert_eq!(err_col("Host(`a`,,)"), 10);
        assert_eq!(err_col("Host(`a`) && Path(`/b"), 19);
        assert_eq!(err_col("é(`a`) && ("), 12);
    }

    #[test]
    fn error_messages() {
        let e = parse("Host(`a`) &&").unwrap_err();
        assert!(e.message.contains("end of rule"), "{}", e.message);
        let e = parse("Host(`a`").unwrap_err();
        assert!(e.message.contains("expected ',' or ')'"), "{}", e.message);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("{}A(`1`){}", "(".repeat(5000), ")".repeat(5000));
        assert!(parse(&text).is_err());
        let text = format!("{}A(`1`)", "!".repeat(5000));
        assert!(parse(&text).is_err());
    }
}
