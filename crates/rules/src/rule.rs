//! A compiled rule: the boolean tree over matchers, and what can be learned about it statically
//! (which hosts it is restricted to).

use crate::matcher::Matcher;
use crate::matcher_v2::MatcherV2;
use crate::parser::{self, Expr};
use crate::request::RequestInfo;
use crate::{RuleError, Syntax};

/// A compiled routing rule.
#[derive(Clone, Debug)]
pub struct Rule {
    text: String,
    syntax: Syntax,
    root: Node,
}

/// Boolean tree with compiled leaves.
#[derive(Clone, Debug)]
enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    V3(Matcher),
    V2(MatcherV2),
}

impl Rule {
    /// Parses and validates a rule; regexes are compiled here, once.
    pub fn parse(text: &str, syntax: Syntax) -> Result<Rule, RuleError> {
        let expr = parser::parse(text)?;
        let root = compile(&expr, syntax)?;
        Ok(Rule {
            text: text.to_string(),
            syntax,
            root,
        })
    }

    /// Whether the request satisfies the rule.
    pub fn matches(&self, req: &RequestInfo<'_>) -> bool {
        self.root.matches(req)
    }

    /// The rule text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The matcher set the rule was parsed with.
    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// `Some(hosts)` when the rule can only match requests whose canonical host (lower-cased,
    /// trailing dot trimmed) is one of `hosts`; entries may be one-label wildcards like
    /// `*.example.com`. `None` when the rule is not restricted to literal hosts.
    pub fn literal_hosts(&self) -> Option<Vec<String>> {
        let mut hosts = self.root.restriction(false)?;
        dedup_in_order(&mut hosts);
        Some(hosts)
    }

    /// Every host named by a `Host` matcher that is not negated (lower-cased, in rule order,
    /// without duplicates; the catch-all `Host(`*`)` contributes nothing).
    pub fn hosts(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.root.collect_hosts(false, &mut out);
        dedup_in_order(&mut out);
        out
    }
}

fn dedup_in_order(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|h| seen.insert(h.clone()));
}

fn compile(expr: &Expr, syntax: Syntax) -> Result<Node, RuleError> {
    Ok(match expr {
        Expr::Or(items) => Node::Or(
            items
                .iter()
                .map(|e| compile(e, syntax))
                .collect::<Result<_, _>>()?,
        ),
        Expr::And(items) => Node::And(
            items
                .iter()
                .map(|e| compile(e, syntax))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Not(inner) => Node::Not(Box::new(compile(inner, syntax)?)),
        Expr::Call(call) => match syntax {
            Syntax::V3 => Node::V3(Matcher::compile(call)?),
            Syntax::V2 => Node::V2(MatcherV2::compile(call)?),
        },
    })
}

impl Node {
    fn matches(&self, req: &RequestInfo<'_>) -> bool {
        match self {
            Node::Or(items) => items.iter().any(|n| n.matches(req)),
            Node::And(items) => items.iter().all(|n| n.matches(req)),
            Node::Not(inner) => !inner.matches(req),
            Node::V3(m) => m.matches(req),
            Node::V2(m) => m.matches(req),
        }
    }

    /// Host restriction of this node when evaluated under `negated` (De Morgan pushes the
    /// negation down: a negated AND behaves as an OR of negations and vice versa).
    fn restriction(&self, negated: bool) -> Option<Vec<String>> {
        let conjunction = matches!((self, negated), (Node::And(_), false) | (Node::Or(_), true));
        match self {
            Node::Or(items) | Node::And(items) if conjunction => {
                // All must hold: any restricted child restricts the whole; keep the smallest set.
                items
                    .iter()
                    .filter_map(|n| n.restriction(negated))
                    .min_by_key(Vec::len)
            }
            Node::Or(items) | Node::And(items) => {
                // One must hold: restricted only if every branch is, to the union of their sets.
                let mut all = Vec::new();
                for n in items {
                    all.extend(n.restriction(negated)?);
                }
                Some(all)
            }
            Node::Not(inner) => inner.restriction(!negated),
            // A negated matcher can match any host.
            _ if negated => None,
            Node::V3(m) => m.literal_hosts(),
            Node::V2(m) => m.literal_hosts(),
        }
    }

    fn collect_hosts(&self, negated: bool, out: &mut Vec<String>) {
        match self {
            Node::Or(items) | Node::And(items) => {
                for n in items {
                    n.collect_hosts(negated, out);
                }
            }
            Node::Not(inner) => inner.collect_hosts(!negated, out),
            _ if negated => {}
            Node::V3(m) => out.extend(m.hosts()),
            Node::V2(m) => out.extend(m.hosts()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(text: &str) -> Option<Vec<String>> {
        Rule::parse(text, Syntax::V3).unwrap().literal_hosts()
    }

    fn strs(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn literal_hosts() {
        assert_eq!(lit("Host(`A.com.`)"), strs(&["a.com"]));
        assert_eq!(lit("Host(`a.com`) && PathPrefix(`/x`)"), strs(&["a.com"]));
        assert_eq!(
            lit("Host(`a.com`) || Host(`*.b.com`)"),
            strs(&["a.com", "*.b.com"])
        );
        assert_eq!(lit("Host(`a.com`) || Path(`/b`)"), None);
        assert_eq!(lit("Path(`/b`)"), None);
        assert_eq!(lit("Host(`*`)"), None);
        assert_eq!(lit("Host(`*`) && Host(`a.com`)"), strs(&["a.com"]));
        assert_eq!(lit("HostRegexp(`a`)"), None);
        assert_eq!(lit("!Host(`a.com`)"), None);
        assert_eq!(lit("!!Host(`a.com`)"), strs(&["a.com"]));
        assert_eq!(lit("!(!Host(`a.com`) || !Path(`/`))"), strs(&["a.com"]));
        assert_eq!(lit("!(Host(`a.com`) && Path(`/`))"), None);
        assert_eq!(lit("Host(`*foo.com`)"), None);
        assert_eq!(
            lit("(Host(`a.com`) || Host(`b.com`)) && Host(`a.com`)"),
            strs(&["a.com"])
        );
        assert_eq!(lit("Host(`a.com`) || Host(`a.com`)"), strs(&["a.com"]));
        let v2 = Rule::parse("Host(`a.com`, `b.com.`) && Path(`/`)", Syntax::V2).unwrap();
        assert_eq!(v2.literal_hosts(), strs(&["a.com", "b.com"]));
    }

    #[test]
    fn hosts() {
        let r = Rule::parse(
            "Host(`A.com`) && !Host(`b.com`) || !(!Host(`c.com`)) || Host(`*.d.com`) || Host(`*`)",
            Syntax::V3,
        )
        .unwrap();
        assert_eq!(r.hosts(), vec!["a.com", "c.com", "*.d.com"]);
        assert!(r.text().ends_with("Host(`*`)"));
        assert_eq!(r.syntax(), Syntax::V3);
    }
}
