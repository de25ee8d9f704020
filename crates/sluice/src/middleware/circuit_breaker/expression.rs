//! The small predicate language of `circuitBreaker.expression` and `buffering.retryExpression`:
//! function calls with numeric arguments, compared to numbers, combined with `&&`, `||`, `!`
//! and parentheses — e.g. `NetworkErrorRatio() > 0.30 || ResponseCodeRatio(500, 600, 0, 600) > 0.25`.
//!
//! Each user supplies its table of functions; a parse error names the column (1-based).

use std::fmt;

/// What a function yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A number: must be compared (`NetworkErrorRatio() > 0.5`).
    Number,
    /// A condition: used as is (`IsNetworkError()`).
    Bool,
}

/// One function the language knows.
#[derive(Debug, Clone, Copy)]
pub struct Function {
    pub name: &'static str,
    pub arity: usize,
    pub kind: Kind,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// A call to a known function: its index in the table and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub function: usize,
    pub args: Vec<f64>,
}

/// A parsed predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare(Call, Op, f64),
    Test(Call),
}

impl Expr {
    /// Evaluates with `value` giving each call's result (conditions as 0 or 1). `&&` and `||`
    /// stop as soon as the answer is known.
    pub fn eval(&self, value: &mut dyn FnMut(&Call) -> f64) -> bool {
        match self {
            Expr::Or(a, b) => a.eval(value) || b.eval(value),
            Expr::And(a, b) => a.eval(value) && b.eval(value),
            Expr::Not(e) => !e.eval(value),
            Expr::Test(call) => value(call) != 0.0,
            Expr::Compare(call, op, right) => {
                let left = value(call);
                match op {
                    Op::Lt => left < *right,
                    Op::Le => left <= *right,
                    Op::Gt => left > *right,
                    Op::Ge => left >= *right,
                    Op::Eq => left == *right,
                    Op::Ne => left != *right,
                }
            }
        }
    }
}

/// Why an expression was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based character column.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Number(f64),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
    Cmp(Op),
    End,
}

/// Parses `text` against `functions`.
pub fn parse(text: &str, functions: &[Function]) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        functions,
    };
    if parser.peek().0 == Token::End {
        return Err(ParseError {
            column: 1,
            message: "the expression is empty".into(),
        });
    }
    let expr = parser.or()?;
    match parser.peek() {
        (Token::End, _) => Ok(expr),
        (token, column) => Err(ParseError {
            column,
            message: format!("unexpected {}", describe(&token)),
        }),
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Ident(name) => format!("`{name}`"),
        Token::Number(n) => format!("number {n}"),
        Token::LParen => "`(`".into(),
        Token::RParen => "`)`".into(),
        Token::Comma => "`,`".into(),
        Token::And => "`&&`".into(),
        Token::Or => "`||`".into(),
        Token::Not => "`!`".into(),
        Token::Cmp(_) => "comparison operator".into(),
        Token::End => "end of expression".into(),
    }
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        let two = |second: char| chars.get(i + 1) == Some(&second);
        let (token, width) = match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
                continue;
            }
            '(' => (Token::LParen, 1),
            ')' => (Token::RParen, 1),
            ',' => (Token::Comma, 1),
            '&' if two('&') => (Token::And, 2),
            '|' if two('|') => (Token::Or, 2),
            '=' if two('=') => (Token::Cmp(Op::Eq), 2),
            '!' if two('=') => (Token::Cmp(Op::Ne), 2),
            '!' => (Token::Not, 1),
            '<' if two('=') => (Token::Cmp(Op::Le), 2),
            '<' => (Token::Cmp(Op::Lt), 1),
            '>' if two('=') => (Token::Cmp(Op::Ge), 2),
            '>' => (Token::Cmp(Op::Gt), 1),
            c if c.is_ascii_digit() || c == '.' || c == '-' => {
                let mut end = i + 1;
                while end < chars.len() && (chars[end].is_ascii_digit() || chars[end] == '.') {
                    end += 1;
                }
                let literal: String = chars[i..end].iter().collect();
                let number = literal.parse::<f64>().map_err(|_| ParseError {
                    column,
                    message: format!("`{literal}` is not a number"),
                })?;
                (Token::Number(number), end - i)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut end = i + 1;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_')
                {
                    end += 1;
                }
                (Token::Ident(chars[i..end].iter().collect()), end - i)
            }
            other => {
                return Err(ParseError {
                    column,
                    message: format!("unexpected character `{other}`"),
                })
            }
        };
        tokens.push((token, column));
        i += width;
    }
    tokens.push((Token::End, chars.len() + 1));
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<(Token, usize)>,
    at: usize,
    functions: &'a [Function],
}

impl Parser<'_> {
    fn peek(&self) -> (Token, usize) {
        self.tokens
            .get(self.at)
            .cloned()
            .unwrap_or((Token::End, usize::MAX))
    }

    fn bump(&mut self) -> (Token, usize) {
        let token = self.peek();
        self.at += 1;
        token
    }

    fn expect(&mut self, wanted: Token, what: &str) -> Result<(), ParseError> {
        let (token, column) = self.bump();
        if token == wanted {
            Ok(())
        } else {
            Err(ParseError {
                column,
                message: format!("expected {what}, found {}", describe(&token)),
            })
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.peek().0 == Token::Or {
            self.bump();
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while self.peek().0 == Token::And {
            self.bump();
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let (token, column) = self.peek();
        match token {
            Token::Not => {
                self.bump();
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Token::LParen => {
                self.bump();
                let inner = self.or()?;
                self.expect(Token::RParen, "`)`")?;
                Ok(inner)
            }
            Token::Ident(name) => {
                self.bump();
                self.call(&name, column)
            }
            other => Err(ParseError {
                column,
                message: format!("expected a function call, found {}", describe(&other)),
            }),
        }
    }

    fn call(&mut self, name: &str, column: usize) -> Result<Expr, ParseError> {
        let Some(index) = self.functions.iter().position(|f| f.name == name) else {
            let known: Vec<&str> = self.functions.iter().map(|f| f.name).collect();
            return Err(ParseError {
                column,
                message: format!("unknown function `{name}` (known: {})", known.join(", ")),
            });
        };
        let function = self.functions[index];
        self.expect(Token::LParen, "`(` after the function name")?;
        let mut args = Vec::new();
        if self.peek().0 != Token::RParen {
            loop {
                match self.bump() {
                    (Token::Number(n), _) => args.push(n),
                    (other, at) => {
                        return Err(ParseError {
                            column: at,
                            message: format!(
                                "expected a number argument, found {}",
                                describe(&other)
                            ),
                        })
                    }
                }
                if self.peek().0 == Token::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        self.expect(Token::RParen, "`)`")?;
        if args.len() != function.arity {
            return Err(ParseError {
                column,
                message: format!(
                    "{name} takes {} argument(s), not {}",
                    function.arity,
                    args.len()
                ),
            });
        }
        let call = Call {
            function: index,
            args,
        };
        match (self.peek(), function.kind) {
            ((Token::Cmp(op), _), _) => {
                self.bump();
                match self.bump() {
                    (Token::Number(value), _) => Ok(Expr::Compare(call, op, value)),
                    (other, at) => Err(ParseError {
                        column: at,
                        message: format!(
                            "expected a number to compare with, found {}",
                            describe(&other)
                        ),
                    }),
                }
            }
            (_, Kind::Bool) => Ok(Expr::Test(call)),
            ((_, at), Kind::Number) => Err(ParseError {
                column: at,
                message: format!("{name}() gives a number: compare it (e.g. `{name}() > 0.5`)"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUNCTIONS: &[Function] = &[
        Function {
            name: "Ratio",
            arity: 0,
            kind: Kind::Number,
        },
        Function {
            name: "Codes",
            arity: 4,
            kind: Kind::Number,
        },
        Function {
            name: "Flag",
            arity: 0,
            kind: Kind::Bool,
        },
    ];

    fn eval(text: &str, ratio: f64, flag: bool) -> bool {
        parse(text, FUNCTIONS)
            .unwrap()
            .eval(&mut |call: &Call| match call.function {
                0 => ratio,
                1 => call.args.iter().sum(),
                _ => f64::from(u8::from(flag)),
            })
    }

    #[test]
    fn precedence_and_grouping() {
        assert!(eval("Ratio() > 0.5 || Flag() && Ratio() < 0", 0.6, false));
        assert!(!eval("(Ratio() > 0.5 || Flag()) && Ratio() < 0", 0.6, true));
        assert!(eval("!Flag() && Ratio() >= 1", 1.0, false));
        assert!(eval("Codes(500, 600, 0, 600) == 1700", 0.0, false));
        assert!(eval("Ratio() != 2 && Ratio() <= 1.5", 1.5, false));
    }

    #[test]
    fn errors_name_the_column() {
        let e = parse("Ratio() > 0.5 && Nope()", FUNCTIONS).unwrap_err();
        assert_eq!(e.column, 18);
        assert!(e.message.contains("unknown function `Nope`"), "{e}");
        let e = parse("Ratio() > ", FUNCTIONS).unwrap_err();
        assert_eq!(e.column, 11);
        let e = parse("Ratio()", FUNCTIONS).unwrap_err();
        assert!(e.message.contains("compare it"), "{e}");
        let e = parse("Codes(1, 2) > 0", FUNCTIONS).unwrap_err();
        assert_eq!(
            (e.column, e.message.as_str()),
            (1, "Codes takes 4 argument(s), not 2")
        );
        let e = parse("Ratio() > 1 & Flag()", FUNCTIONS).unwrap_err();
        assert_eq!(e.column, 13);
        let e = parse("(Flag()", FUNCTIONS).unwrap_err();
        assert_eq!(e.column, 8);
        assert!(parse("  ", FUNCTIONS).is_err());
    }
}
