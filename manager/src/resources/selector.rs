//! Calico label selectors (`IPPool.nodeSelector`, `BGPPeer.nodeSelector`/`peerSelector`).
//!
//! Grammar, lowest precedence first:
//!
//! ```text
//! or      := and ('||' and)*
//! and     := unary ('&&' unary)*
//! unary   := '!' unary | '(' or ')' | 'all()' | 'global()' | 'has(' key ')' | key op
//! op      := ('==' | '!=' | 'contains' | 'starts with' | 'ends with') string
//!          | ['not'] 'in' '{' [string (',' string)*] '}'
//! ```
//!
//! An empty (or whitespace-only) selector means `all()`. Error columns are
//! 1-based and count chars, not bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

type Res<T> = Result<T, SelectorError>;

/// Deeper nesting of `(` and `!` is rejected so recursion stays bounded.
const MAX_DEPTH: usize = 64;

/// A parsed selector; build one with [`Selector::parse`] or [`Selector::all`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    expr: Expr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    All,
    Has(String),
    Label(String, Op),
    Not(Box<Expr>),
    // Flat lists, so long `a && b && ...` chains don't build deep trees.
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// A test on one label's value. Sets are ordered so `{'b','a'}` equals `{'a','b'}`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Eq(String),
    Ne(String),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
}

/// A parse error pointing at a 1-based char column of `input`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct SelectorError {
    pub column: usize,
    pub message: String,
    pub input: String,
}

impl SelectorError {
    /// The input on one line, then a `^` under the offending column.
    pub fn caret(&self) -> String {
        // Control chars (newlines, tabs) would break the two-line layout.
        let line: String = self
            .input
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        format!("{line}\n{:>width$}", "^", width = self.column.max(1))
    }
}

impl Selector {
    /// Parses a selector; empty or whitespace-only input yields `all()`.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let tokens = lex(input);
        let mut p = Parser {
            tokens,
            pos: 0,
            depth: 0,
            input,
        };
        if p.peek().tok == Tok::End {
            return Ok(Selector::all());
        }
        let expr = p.parse_or()?;
        if p.peek().tok != Tok::End {
            return Err(p.unexpected("'&&', '||' or end of input"));
        }
        Ok(Selector { expr })
    }

    /// The selector that matches every label set.
    pub fn all() -> Selector {
        Selector { expr: Expr::All }
    }

    /// True for `all()`, `global()`, `(all())` and the empty selector.
    pub fn is_all(&self) -> bool {
        self.expr == Expr::All
    }

    /// Evaluates the selector against a label set.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.expr.eval(labels)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl Expr {
    fn eval(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Expr::All => true,
            Expr::Has(key) => labels.contains_key(key),
            Expr::Label(key, op) => op.test(labels.get(key).map(String::as_str)),
            Expr::Not(e) => !e.eval(labels),
            Expr::And(es) => es.iter().all(|e| e.eval(labels)),
            Expr::Or(es) => es.iter().any(|e| e.eval(labels)),
        }
    }
}

impl Op {
    /// Calico semantics: only the negative ops hold for an absent label.
    fn test(&self, label: Option<&str>) -> bool {
        let Some(l) = label else {
            return matches!(self, Op::Ne(_) | Op::NotIn(_));
        };
        match self {
            Op::Eq(v) => l == v,
            Op::Ne(v) => l != v,
            Op::Contains(v) => l.contains(v.as_str()),
            Op::StartsWith(v) => l.starts_with(v.as_str()),
            Op::EndsWith(v) => l.ends_with(v.as_str()),
            Op::In(set) => set.contains(l),
            Op::NotIn(set) => !set.contains(l),
        }
    }
}

/// Double quotes unless the value holds one; a parsed value never holds both.
fn quote(s: &str) -> String {
    if s.contains('"') {
        format!("'{s}'")
    } else {
        format!("\"{s}\"")
    }
}

fn quote_set(set: &BTreeSet<String>) -> String {
    format!("{{{}}}", set.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", "))
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Eq(v) => write!(f, "== {}", quote(v)),
            Op::Ne(v) => write!(f, "!= {}", quote(v)),
            Op::Contains(v) => write!(f, "contains {}", quote(v)),
            Op::StartsWith(v) => write!(f, "starts with {}", quote(v)),
            Op::EndsWith(v) => write!(f, "ends with {}", quote(v)),
            Op::In(set) => write!(f, "in {}", quote_set(set)),
            Op::NotIn(set) => write!(f, "not in {}", quote_set(set)),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let is_list = |e: &Expr| matches!(e, Expr::And(_) | Expr::Or(_));
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Has(key) => write!(f, "has({key})"),
            Expr::Label(key, op) => write!(f, "{key} {op}"),
            Expr::Not(e) if is_list(e) => write!(f, "!({e})"),
            Expr::Not(e) => write!(f, "!{e}"),
            // Nested lists only come from explicit parens; keeping those parens
            // rebuilds the same tree on re-parse (an And in an Or needs none).
            Expr::And(es) => f.write_str(&join(es, " && ", is_list)),
            Expr::Or(es) => f.write_str(&join(es, " || ", |e| matches!(e, Expr::Or(_)))),
        }
    }
}

fn join(es: &[Expr], sep: &str, paren: fn(&Expr) -> bool) -> String {
    let part = |e: &Expr| {
        if paren(e) {
            format!("({e})")
        } else {
            e.to_string()
        }
    };
    es.iter().map(part).collect::<Vec<_>>().join(sep)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Punct(&'static str),
    End,
    // A lexing error ends the stream and surfaces only when the parser reaches
    // it, so an earlier syntax error is still the one reported.
    Bad(String),
}

#[derive(Clone, Debug)]
struct Token {
    col: usize,
    tok: Tok,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-')
}

/// Operators taking one string: (first word, full name, constructor).
type StringOp = (&'static str, &'static str, fn(String) -> Op);
const STRING_OPS: [StringOp; 5] = [
    ("==", "==", Op::Eq),
    ("!=", "!=", Op::Ne),
    ("contains", "contains", Op::Contains),
    ("starts", "starts with", Op::StartsWith),
    ("ends", "ends with", Op::EndsWith),
];

// Two-char operators first, so `!=` is not read as `!`.
const PUNCT: [&str; 10] = ["==", "!=", "&&", "||", "!", "(", ")", "{", "}", ","];

/// Splits the input into tokens; the last one is always `End` or `Bad`.
fn lex(input: &str) -> Vec<Token> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (c, col) = (chars[i], i + 1);
        let rest = &chars[i..];
        let bad = |msg: String| (Tok::Bad(msg), 1);
        let (tok, len) = if c.is_whitespace() {
            i += 1;
            continue;
        } else if let Some(p) = PUNCT.iter().find(|p| rest.iter().take(p.len()).copied().eq(p.chars())) {
            (Tok::Punct(p), p.len())
        } else if c == '\'' || c == '"' {
            match rest[1..].iter().position(|&q| q == c) {
                Some(n) => (Tok::Str(rest[1..=n].iter().collect()), n + 2),
                None => bad(format!("unterminated string, expected closing {c}, found end of input")),
            }
        } else if is_word_char(c) {
            let n = rest.iter().take_while(|&&w| is_word_char(w)).count();
            (Tok::Word(rest[..n].iter().collect()), n)
        } else if matches!(c, '=' | '&' | '|') {
            bad(format!("unknown operator '{c}', expected '{c}{c}'"))
        } else {
            bad(format!("unexpected character {c:?}"))
        };
        let stop = matches!(tok, Tok::Bad(_));
        tokens.push(Token { col, tok });
        if stop {
            return tokens;
        }
        i += len;
    }
    tokens.push(Token {
        col: chars.len() + 1,
        tok: Tok::End,
    });
    tokens
}

/// How a token is named in "found ..." messages.
fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(w) => format!("'{w}'"),
        // Debug escapes newlines, keeping the message on one line.
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Punct(p) => format!("'{p}'"),
        Tok::End => "end of input".to_string(),
        Tok::Bad(m) => m.clone(),
    }
}

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    input: &'a str,
}

impl Parser<'_> {
    /// The stream ends with `End`/`Bad`, which is never stepped past.
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        self.pos = (self.pos + 1).min(self.tokens.len() - 1);
        t
    }

    fn at(&self, p: &str) -> bool {
        match &self.peek().tok {
            Tok::Punct(q) => *q == p,
            Tok::Word(w) => w == p,
            _ => false,
        }
    }

    fn error(&self, column: usize, message: String) -> SelectorError {
        SelectorError {
            column,
            message,
            input: self.input.to_string(),
        }
    }

    /// Error at the next token; a pending lexing error takes precedence.
    fn unexpected(&self, expected: &str) -> SelectorError {
        let t = self.peek();
        match &t.tok {
            Tok::Bad(m) => self.error(t.col, m.clone()),
            tok => self.error(t.col, format!("expected {expected}, found {}", describe(tok))),
        }
    }

    /// Consumes punctuation or a keyword `p`, or reports `expected`.
    fn expect(&mut self, p: &str, expected: &str) -> Res<Token> {
        if self.at(p) {
            Ok(self.bump())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn nested<T>(&mut self, col: usize, f: impl FnOnce(&mut Self) -> Res<T>) -> Res<T> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(col, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn parse_or(&mut self) -> Res<Expr> {
        self.parse_list("||", Self::parse_and, Expr::Or)
    }

    fn parse_and(&mut self) -> Res<Expr> {
        self.parse_list("&&", Self::parse_unary, Expr::And)
    }

    /// `term (sep term)*`; a single term stays itself rather than a one-item list.
    fn parse_list(&mut self, sep: &str, term: fn(&mut Self) -> Res<Expr>, make: fn(Vec<Expr>) -> Expr) -> Res<Expr> {
        let mut terms = vec![term(self)?];
        while self.at(sep) {
            self.bump();
            terms.push(term(self)?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { make(terms) })
    }

    fn parse_unary(&mut self) -> Res<Expr> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Punct("!") => {
                self.bump();
                self.nested(t.col, |p| Ok(Expr::Not(Box::new(p.parse_unary()?))))
            }
            Tok::Punct("(") => {
                self.bump();
                let closing = format!("')' to close '(' at column {}", t.col);
                self.nested(t.col, |p| {
                    let e = p.parse_or()?;
                    p.expect(")", &closing).map(|_| e)
                })
            }
            Tok::Word(w) => {
                self.bump();
                self.parse_word(w, t.col)
            }
            _ => Err(self.unexpected("a label key, 'has(', 'all()', '!' or '('")),
        }
    }

    /// A word is a function name when `(` follows, otherwise a label key.
    fn parse_word(&mut self, word: String, col: usize) -> Res<Expr> {
        let func = self.at("(") && matches!(word.as_str(), "all" | "global" | "has");
        if !func {
            let key = self.check_key(word, col)?;
            let op = self.parse_op(&key)?;
            return Ok(Expr::Label(key, op));
        }
        self.bump();
        if word == "has" {
            let t = self.peek().clone();
            let Tok::Word(key) = t.tok else {
                return Err(self.unexpected("a label key inside 'has('"));
            };
            self.bump();
            let key = self.check_key(key, t.col)?;
            self.expect(")", "')' after the label key in 'has('")?;
            return Ok(Expr::Has(key));
        }
        self.expect(")", &format!("')' after '{word}('"))?;
        Ok(Expr::All)
    }

    /// Kubernetes-style key: `[prefix/]name`, each part starting alphanumeric.
    fn check_key(&self, key: String, col: usize) -> Res<String> {
        let alnum_start = |s: &str| s.starts_with(|c: char| c.is_ascii_alphanumeric());
        // Words are ASCII, so byte offsets are char offsets.
        let problem = match key.split_once('/') {
            _ if !alnum_start(&key) => Some((0, "must start with a letter or digit")),
            Some((prefix, name)) if name.contains('/') => Some((
                prefix.len() + 1 + name.find('/').unwrap_or(0),
                "at most one '/' is allowed",
            )),
            Some((prefix, name)) if !alnum_start(name) => {
                Some((prefix.len() + 1, "the name after '/' must start with a letter or digit"))
            }
            _ => None,
        };
        match problem {
            Some((offset, why)) => Err(self.error(col + offset, format!("invalid label key '{key}': {why}"))),
            None => Ok(key),
        }
    }

    fn parse_op(&mut self, key: &str) -> Res<Op> {
        let t = self.peek().clone();
        let word = match &t.tok {
            Tok::Punct(p) => *p,
            Tok::Word(w) => w.as_str(),
            _ => "",
        };
        if let Some(&(_, name, make)) = STRING_OPS.iter().find(|(w, ..)| *w == word) {
            self.bump();
            if name.ends_with(" with") {
                self.expect("with", &format!("'with' after '{word}'"))?;
            }
            return Ok(make(self.parse_string(&format!("a quoted string after '{name}'"))?));
        }
        match word {
            "in" => {
                self.bump();
                Ok(Op::In(self.parse_set("in")?))
            }
            "not" => {
                self.bump();
                self.expect("in", "'in' after 'not'")?;
                Ok(Op::NotIn(self.parse_set("not in")?))
            }
            _ => Err(self.unexpected(&format!(
                "an operator (==, !=, in, not in, contains, starts with, ends with) after '{key}'"
            ))),
        }
    }

    fn parse_string(&mut self, expected: &str) -> Res<String> {
        match self.peek().tok.clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(s)
            }
            _ => Err(self.unexpected(expected)),
        }
    }

    fn parse_set(&mut self, op: &str) -> Res<BTreeSet<String>> {
        let open = self.expect("{", &format!("'{{' after '{op}'"))?;
        let mut values = BTreeSet::new();
        if !self.at("}") {
            values.insert(self.parse_string("a quoted string in the set")?);
            while self.at(",") {
                self.bump();
                values.insert(self.parse_string("a quoted string in the set")?);
            }
        }
        self.expect("}", &format!("',' or '}}' to close '{{' at column {}", open.col))?;
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let owned = |(k, v): &(&str, &str)| (k.to_string(), v.to_string());
        pairs.iter().map(owned).collect()
    }

    fn parse(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}\n{}", e.caret()))
    }

    /// Parse must succeed, and the canonical form must re-parse to the same tree.
    fn round_trip(s: &str) -> Selector {
        let sel = parse(s);
        assert_eq!(parse(&sel.to_string()), sel, "{s:?} displayed as {sel}");
        sel
    }

    /// Expected results on: no labels, {a=1}, {a=hello, b=2}.
    fn check(cases: &[(&str, [bool; 3])]) {
        let sets = [
            labels(&[]),
            labels(&[("a", "1")]),
            labels(&[("a", "hello"), ("b", "2")]),
        ];
        for (sel, want) in cases {
            let got = sets.clone().map(|l| round_trip(sel).matches(&l));
            assert_eq!(&got, want, "{sel}");
        }
    }

    const T: bool = true;
    const F: bool = false;

    #[test]
    fn evaluates_every_operator() {
        check(&[
            ("a == '1'", [F, T, F]),
            ("a != '1'", [T, F, T]),
            ("has(a)", [F, T, T]),
            ("!has(b)", [T, T, F]),
            ("a in {'1', \"hello\"}", [F, T, T]),
            ("a in {'2','3'}", [F, F, F]),
            ("a in {}", [F, F, F]),
            ("a not in {'1'}", [T, F, T]),
            ("a not in {}", [T, T, T]),
            ("a contains 'ell'", [F, F, T]),
            ("a contains ''", [F, T, T]),
            ("a starts with 'he'", [F, F, T]),
            ("a starts with '1'", [F, T, F]),
            ("a ends with 'lo'", [F, F, T]),
            ("a ends with 'h'", [F, F, F]),
            ("all()", [T, T, T]),
            ("global()", [T, T, T]),
            ("", [T, T, T]),
            (" \t\n ", [T, T, T]),
            ("!all()", [F, F, F]),
            ("a=='1'||b!=\"2\"", [T, T, F]),
        ]);
    }

    #[test]
    fn precedence_and_parens() {
        check(&[
            ("a == '1' || b == '2' && has(b)", [F, T, T]),
            ("(a == '1' || b == '2') && has(b)", [F, F, T]),
            ("b == '2' && has(b) || a == '1'", [F, T, T]),
            ("b == '2' && (has(b) || a == '1')", [F, F, T]),
            ("!a == '1'", [T, F, T]),
            ("!(has(a) || has(b))", [T, F, F]),
            ("!has(a) || has(b)", [T, F, T]),
            ("!!has(b)", [F, F, T]),
            ("  ( ( has(b) ) )  ", [F, F, T]),
            ("has(a) && (has(b) || (has(c) || a == '1'))", [F, T, T]),
        ]);
    }

    #[test]
    fn seed_examples() {
        let node = [("rr-group", "rr1"), ("rack", "rack-1"), ("route-reflector", "true")];
        let node = labels(&node);
        for s in ["rr-group == 'rr1'", "rack == 'rack-1'", "route-reflector == 'true'"] {
            assert!(round_trip(s).matches(&node), "{s}");
        }
        assert!(round_trip("all()").matches(&node));
        assert!(round_trip("has(route-reflector)").matches(&node));
        assert!(!round_trip("has(route-reflector)").matches(&labels(&[])));
        let s = round_trip("!has(x) && (a in {'1','2'} || b != \"z\")");
        assert!(s.matches(&labels(&[("a", "1")])));
        assert!(s.matches(&labels(&[("b", "y")])));
        assert!(!s.matches(&labels(&[("b", "z")])));
        assert!(!s.matches(&labels(&[("x", ""), ("a", "1")])));
        let k8s = labels(&[("kubernetes.io/hostname", "n1"), ("topology.kubernetes.io/zone", "z")]);
        let s = "kubernetes.io/hostname == 'n1' && has(topology.kubernetes.io/zone)";
        assert!(round_trip(s).matches(&k8s));
        // Keywords are still usable as label keys, and values may be non-ASCII.
        assert!(round_trip("has == 'x'").matches(&labels(&[("has", "x")])));
        assert!(round_trip("in in {'x'}").matches(&labels(&[("in", "x")])));
        assert!(round_trip("a == 'ü'").matches(&labels(&[("a", "ü")])));
    }

    #[test]
    fn display_is_canonical() {
        let cases = [
            ("rack == 'rack-1'", "rack == \"rack-1\""),
            ("a in {'b','a', 'b'}", "a in {\"a\", \"b\"}"),
            ("a not in {}", "a not in {}"),
            ("a == '\"q\"'", "a == '\"q\"'"),
            ("a starts  with 'x'", "a starts with \"x\""),
            ("!has(x) && (a in {'1','2'})", "!has(x) && a in {\"1\", \"2\"}"),
            ("(has(a) && has(b)) || has(c)", "has(a) && has(b) || has(c)"),
            ("has(a) && (has(b) && has(c))", "has(a) && (has(b) && has(c))"),
            ("!(has(a) || has(b))", "!(has(a) || has(b))"),
            ("(!has(a))", "!has(a)"),
            ("", "all()"),
            ("global()", "all()"),
        ];
        for (input, want) in cases {
            assert_eq!(round_trip(input).to_string(), want);
        }
        assert_eq!(parse("a in {'b','a'}"), parse("a in {'a','b'}"));
    }

    #[test]
    fn is_all_and_from_str() {
        assert!(Selector::all().is_all());
        for s in ["", "  ", "all()", "global()", "(all())"] {
            assert!(parse(s).is_all(), "{s:?}");
        }
        assert!(!parse("all() && has(a)").is_all());
        let sel: Selector = "has(a)".parse().unwrap();
        assert_eq!(sel, parse(" has( a ) "));
        assert!("has(".parse::<Selector>().is_err());
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases = [
            ("rack == rack1", 9, "expected a quoted string after '==', found 'rack1'"),
            ("rack ==", 8, "after '==', found end of input"),
            ("a == 'x", 6, "unterminated string"),
            ("a == \"x' && b", 6, "unterminated string"),
            ("a = 'x'", 3, "unknown operator '='"),
            ("a == 'x' & b", 10, "unknown operator '&'"),
            ("a | b", 3, "unknown operator '|'"),
            ("a is 'x'", 3, "expected an operator (==, !=, in, not in, contains, "),
            ("a is 'x'", 3, "starts with, ends with) after 'a', found 'is'"),
            ("a", 2, "expected an operator"),
            ("(a == 'x'", 10, "expected ')' to close '(' at column 1"),
            ("(a == 'x'", 10, "found end of input"),
            ("a in {'x', 'y'", 15, "expected ',' or '}' to close '{' at column 6"),
            ("a in {'x' 'y'}", 11, "found string \"y\""),
            ("a in {'x',}", 11, "expected a quoted string in the set, found '}'"),
            ("a in 'x'", 6, "expected '{' after 'in', found string \"x\""),
            ("a not 'x'", 7, "expected 'in' after 'not'"),
            ("a starts 'x'", 10, "expected 'with' after 'starts'"),
            ("a ends with x", 13, "after 'ends with', found 'x'"),
            ("a == 'x' b", 10, "expected '&&', '||' or end of input, found 'b'"),
            ("a == 'x')", 9, "found ')'"),
            ("a == 'x' &&", 12, "expected a label key"),
            ("()", 2, "found ')'"),
            ("-a == 'x'", 1, "invalid label key '-a': must start with a letter"),
            ("a/b/c == 'x'", 4, "at most one '/'"),
            ("a/.b == 'x'", 3, "the name after '/'"),
            ("has('a')", 5, "expected a label key inside 'has(', found string"),
            ("has(a", 6, "expected ')' after the label key"),
            ("has(-a)", 5, "invalid label key"),
            ("all(x)", 5, "expected ')' after 'all('"),
            ("a @ 'x'", 3, "unexpected character '@'"),
            ("é == 'x'", 1, "unexpected character 'é'"),
            ("a == 'ü' && ü == 'x'", 13, "unexpected character 'ü'"),
            ("a b \"unterminated", 3, "expected an operator"),
            ("a == 'x\ny' b", 12, "found 'b'"),
        ];
        for (input, column, fragment) in cases {
            let err = Selector::parse(input).expect_err(input);
            assert_eq!(err.column, column, "{input:?}: {err}");
            assert!(err.message.contains(fragment), "{input:?}: {err}");
            assert_eq!(err.input, input);
        }
    }

    #[test]
    fn error_display_and_caret() {
        let err = Selector::parse("rack == rack1").unwrap_err();
        let want = "column 9: expected a quoted string after '==', found 'rack1'";
        assert_eq!(err.to_string(), want);
        assert_eq!(err.caret(), "rack == rack1\n        ^");
        let err = Selector::parse("a ==\t'x' )").unwrap_err();
        assert_eq!(err.caret(), "a == 'x' )\n         ^");
    }

    #[test]
    fn nesting_is_capped() {
        let nest = |n: usize| format!("{}has(a){}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nest(MAX_DEPTH)).matches(&labels(&[("a", "1")])));
        let err = Selector::parse(&nest(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!((err.column, err.message.contains("nesting")), (MAX_DEPTH + 1, true));
        for deep in ["(".repeat(100_000), "!".repeat(100_000), "!(".repeat(50_000)] {
            assert_eq!(Selector::parse(&deep).unwrap_err().column, MAX_DEPTH + 1);
        }
        // Long flat chains are lists, not deep trees.
        let chain = vec!["has(a)"; 100_000].join(" && ");
        assert!(parse(&chain).matches(&labels(&[("a", "1")])));
    }

    /// Every outcome must be a clean Ok or an Err whose column lies within the input.
    fn check_robust(input: &str) {
        match Selector::parse(input) {
            Ok(sel) => {
                assert_eq!(parse(&sel.to_string()), sel, "{input:?}");
                sel.matches(&labels(&[("a", "1")]));
            }
            Err(e) => {
                assert!((1..=input.chars().count() + 1).contains(&e.column), "{input:?}: {e}");
                assert!(!e.to_string().contains('\n'), "{input:?}: {e}");
                assert_eq!(e.caret().lines().count(), 2, "{input:?}");
            }
        }
    }

    #[test]
    fn never_panics_on_mutations() {
        let seeds = [
            "!has(x) && (a in {'1','2'} || b != \"z\")",
            "kubernetes.io/hostname starts with 'n' || rr-group not in {}",
            "all() && !(a contains 'é' || b ends with \"ü\")",
            "has(a) && a == 'x' && global()",
        ];
        let extra = "(){}'\"!=&|, é/-x";
        for seed in seeds {
            let chars: Vec<char> = seed.chars().collect();
            let text = |v: &[char]| v.iter().collect::<String>();
            for i in 0..=chars.len() {
                check_robust(&text(&chars[..i]));
                check_robust(&text(&chars[i..]));
                for c in extra.chars() {
                    let mut v = chars.clone();
                    v.insert(i, c);
                    check_robust(&text(&v));
                    if i < chars.len() {
                        v.remove(i + 1); // now a replacement
                        check_robust(&text(&v));
                        v.remove(i); // now a deletion
                        check_robust(&text(&v));
                    }
                }
            }
        }
    }
}
