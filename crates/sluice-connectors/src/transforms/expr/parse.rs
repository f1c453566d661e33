//! Lexer and recursive-descent parser of the expression language (grammar in
//! `docs/transforms.md`). Pure: no schema is involved, so every syntax error is found when the
//! job is built. Every node keeps the byte span it came from, so later type errors can quote
//! the part of the expression they are about.
//!
//! Binding, evaluation and dropping walk the tree recursively, so its depth is bounded:
//! [`MAX_DEPTH`] levels of nesting (parentheses, `NOT`, signs, operators), checked here with an
//! error rather than left to overflow a thread's stack. Lists do not nest: `AND`/`OR` chains are
//! n-ary nodes and an `IN` list is a vector, so their length is limited only by memory.

use std::fmt;

/// The deepest expression accepted: levels of nesting of parentheses, `NOT`, signs and operators
/// (`AND`/`OR` chains and `IN` lists count as one level whatever their length). Even in a debug
/// build, parsing and binding one this deep takes less than half of the main thread's 8 MiB
/// stack, and evaluating it less than a quarter of a 2 MiB runtime worker's
/// (`deepest_accepted_expression_binds_and_evaluates_on_a_small_stack`).
pub const MAX_DEPTH: usize = 64;

/// Byte range `start..end` of a node in the expression text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    fn to(self, other: Span) -> Span {
        Span {
            start: self.start,
            end: other.end,
        }
    }
}

/// A literal as written. Numbers keep their text so they can be converted exactly to the
/// type they are compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `42`, `-7` (the text, with sign).
    Integer(String),
    /// `12.50`, `-0.5` (the text, with sign).
    Decimal(String),
    /// `1e3`, `2.5E-4`.
    Float(String),
    Str(String),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "<>",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        })
    }
}

/// A parsed expression node.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// Levels of the tree from here down (1 for a leaf), at most [`MAX_DEPTH`].
    depth: usize,
}

impl Expr {
    /// A node over already built children, refused when it would be deeper than
    /// [`MAX_DEPTH`]: the limit is checked as the tree grows, so no deeper tree ever exists
    /// (dropping one would recurse as deep).
    fn new(kind: ExprKind, span: Span) -> Result<Expr, ParseError> {
        let mut e = Expr {
            kind,
            span,
            depth: 1,
        };
        e.depth = 1 + children(&e).iter().map(|c| c.depth).max().unwrap_or(0);
        if e.depth > MAX_DEPTH {
            return Err(ParseError::too_deep(span));
        }
        Ok(e)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Column(String),
    Literal(Literal),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// Two or more conditions, all true (a chain `a AND b AND c` is one node).
    And(Vec<Expr>),
    /// Two or more conditions, one true.
    Or(Vec<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
}

/// A syntax error (where, what the parser expected there, and what it found), or an expression
/// beyond a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset into the expression.
    pub pos: usize,
    /// Bytes from `pos` the error is about (the offending token), at least 1 when shown.
    pub len: usize,
    pub expected: String,
    pub found: String,
    /// Set instead of `expected`/`found` when a limit was exceeded.
    pub limit: Option<String>,
}

impl ParseError {
    /// The expression is nested deeper than [`MAX_DEPTH`] at `span`.
    fn too_deep(span: Span) -> ParseError {
        ParseError {
            pos: span.start,
            len: 1,
            expected: String::new(),
            found: String::new(),
            limit: Some(format!(
                "the expression is nested more than {MAX_DEPTH} levels deep here (parentheses, \
                 NOT, signs and operators count; AND/OR chains and IN lists do not)"
            )),
        }
    }

    /// The message without the position.
    pub fn what(&self) -> String {
        match &self.limit {
            Some(l) => l.clone(),
            None => format!("expected {}, found {}", self.expected, self.found),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.pos, self.what())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A `"double quoted"` identifier: never a keyword.
    Quoted(String),
    Keyword(Kw),
    Int(String),
    Dec(String),
    Float(String),
    Str(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    And,
    Or,
    Not,
    Is,
    Null,
    In,
    Like,
    Between,
    True,
    False,
}

const KEYWORDS: &[(&str, Kw)] = &[
    ("and", Kw::And),
    ("or", Kw::Or),
    ("not", Kw::Not),
    ("is", Kw::Is),
    ("null", Kw::Null),
    ("in", Kw::In),
    ("like", Kw::Like),
    ("between", Kw::Between),
    ("true", Kw::True),
    ("false", Kw::False),
];

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "name `{s}`"),
            Tok::Quoted(s) => write!(f, "name \"{s}\""),
            Tok::Keyword(k) => {
                let name = KEYWORDS
                    .iter()
                    .find(|(_, kw)| kw == k)
                    .map_or("?", |(n, _)| n);
                write!(f, "keyword {}", name.to_ascii_uppercase())
            }
            Tok::Int(s) | Tok::Dec(s) | Tok::Float(s) => write!(f, "number {s}"),
            Tok::Str(s) => write!(f, "string '{}'", s.replace('\'', "''")),
            Tok::Op(o) => write!(f, "`{o}`"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::End => f.write_str("the end of the expression"),
        }
    }
}

fn lex(src: &str) -> Result<Vec<(Tok, Span)>, ParseError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = src[i..].chars().next().unwrap_or(' ');
        let start = i;
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let tok = if c.is_alphabetic() || c == '_' {
            while let Some(ch) = src[i..].chars().next() {
                if ch.is_alphanumeric() || ch == '_' {
                    i += ch.len_utf8();
                } else {
                    break;
                }
            }
            let word = &src[start..i];
            let lower = word.to_ascii_lowercase();
            match KEYWORDS.iter().find(|(k, _)| *k == lower) {
                Some((_, kw)) => Tok::Keyword(*kw),
                None => Tok::Ident(word.to_string()),
            }
        } else if c.is_ascii_digit()
            || (c == '.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            lex_number(src, &mut i)?
        } else if c == '\'' || c == '"' {
            let mut text = String::new();
            i += 1;
            loop {
                let Some(ch) = src[i..].chars().next() else {
                    let what = if c == '\'' { "string" } else { "quoted name" };
                    return Err(ParseError {
                        pos: start,
                        len: 1,
                        expected: format!("a closing {c} for this {what}"),
                        found: "the end of the expression".into(),
                        limit: None,
                    });
                };
                i += ch.len_utf8();
                if ch == c {
                    if bytes.get(i) == Some(&(c as u8)) {
                        text.push(c);
                        i += 1;
                    } else {
                        break;
                    }
                } else {
                    text.push(ch);
                }
            }
            if c == '\'' {
                Tok::Str(text)
            } else {
                Tok::Quoted(text)
            }
        } else {
            let two = src.get(i..i + 2).unwrap_or("");
            let op: Option<&'static str> = match two {
                "<=" => Some("<="),
                ">=" => Some(">="),
                "<>" => Some("<>"),
                "!=" => Some("!="),
                _ => None,
            };
            if let Some(op) = op {
                i += 2;
                Tok::Op(op)
            } else {
                i += c.len_utf8();
                match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    ',' => Tok::Comma,
                    '=' => Tok::Op("="),
                    '<' => Tok::Op("<"),
                    '>' => Tok::Op(">"),
                    '+' => Tok::Op("+"),
                    '-' => Tok::Op("-"),
                    '*' => Tok::Op("*"),
                    '/' => Tok::Op("/"),
                    '%' => Tok::Op("%"),
                    _ => {
                        return Err(ParseError {
                            pos: start,
                            len: c.len_utf8(),
                            expected: "a name, literal, operator or parenthesis".into(),
                            found: format!("character {c:?}"),
                            limit: None,
                        });
                    }
                }
            }
        };
        out.push((tok, Span { start, end: i }));
    }
    out.push((
        Tok::End,
        Span {
            start: src.len(),
            end: src.len(),
        },
    ));
    Ok(out)
}

fn lex_number(src: &str, i: &mut usize) -> Result<Tok, ParseError> {
    let bytes = src.as_bytes();
    let start = *i;
    let digits = |i: &mut usize| {
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
    };
    digits(i);
    let mut dec = false;
    if bytes.get(*i) == Some(&b'.') {
        dec = true;
        *i += 1;
        digits(i);
    }
    let mut float = false;
    if matches!(bytes.get(*i), Some(b'e' | b'E')) {
        let mut j = *i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if !bytes.get(j).is_some_and(u8::is_ascii_digit) {
            return Err(ParseError {
                pos: j,
                len: 1,
                expected: "digits of the exponent".into(),
                found: found_at(src, j),
                limit: None,
            });
        }
        *i = j;
        digits(i);
        float = true;
    }
    if bytes
        .get(*i)
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        return Err(ParseError {
            pos: *i,
            len: 1,
            expected: "an operator after the number".into(),
            found: found_at(src, *i),
            limit: None,
        });
    }
    let text = src[start..*i].to_string();
    Ok(if float {
        Tok::Float(text)
    } else if dec {
        Tok::Dec(text)
    } else {
        Tok::Int(text)
    })
}

fn found_at(src: &str, pos: usize) -> String {
    match src.get(pos..).and_then(|s| s.chars().next()) {
        Some(c) => format!("{c:?}"),
        None => "the end of the expression".into(),
    }
}

/// Parses a whole expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        depth: 0,
    };
    let e = p.expr()?;
    match p.peek() {
        Tok::End => {}
        Tok::RParen => {
            return Err(p.err("an operator or the end of the expression (unbalanced `)`)"));
        }
        _ => return Err(p.err("an operator (AND, OR, =, <, +, …) or the end of the expression")),
    }
    Ok(e)
}

/// The sub-expressions of `e`.
fn children(e: &Expr) -> Vec<&Expr> {
    use ExprKind as K;
    match &e.kind {
        K::Column(_) | K::Literal(_) => vec![],
        K::Neg(x) | K::Not(x) | K::IsNull { expr: x, .. } => vec![x],
        K::Arith(_, l, r) | K::Cmp(_, l, r) => vec![l, r],
        K::Like { expr, pattern, .. } => vec![expr, pattern],
        K::Between {
            expr, low, high, ..
        } => vec![expr, low, high],
        K::And(xs) | K::Or(xs) => xs.iter().collect(),
        K::InList { expr, list, .. } => std::iter::once(&**expr).chain(list).collect(),
    }
}

struct Parser {
    toks: Vec<(Tok, Span)>,
    i: usize,
    /// Current nesting of recursive calls (parentheses, NOT, signs), bounded by [`MAX_DEPTH`].
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i.min(self.toks.len() - 1)].0
    }
    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.i + n).min(self.toks.len() - 1)].0
    }
    fn span(&self) -> Span {
        self.toks[self.i.min(self.toks.len() - 1)].1
    }
    fn prev_span(&self) -> Span {
        self.toks[self.i.saturating_sub(1)].1
    }
    fn bump(&mut self) -> Span {
        let s = self.span();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        s
    }
    fn err(&self, expected: &str) -> ParseError {
        let span = self.span();
        ParseError {
            pos: span.start,
            len: span.end - span.start,
            expected: expected.to_string(),
            found: self.peek().to_string(),
            limit: None,
        }
    }
    /// Enters one more level of recursion for the token at `at`, or refuses past
    /// [`MAX_DEPTH`].
    fn enter(&mut self, at: Span) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::too_deep(at));
        }
        Ok(())
    }
    fn leave(&mut self) {
        self.depth -= 1;
    }
    fn eat_kw(&mut self, kw: Kw) -> bool {
        if *self.peek() == Tok::Keyword(kw) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn expect_kw(&mut self, kw: Kw, name: &str) -> Result<(), ParseError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.err(name))
        }
    }
    fn expect(&mut self, t: Tok, name: &str) -> Result<Span, ParseError> {
        if *self.peek() == t {
            Ok(self.bump())
        } else {
            Err(self.err(name))
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let first = self.and()?;
        let mut terms = vec![first];
        while self.eat_kw(Kw::Or) {
            terms.push(self.and()?);
        }
        chain(terms, ExprKind::Or, |k| match k {
            ExprKind::Or(xs) => Ok(xs),
            other => Err(other),
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let first = self.not()?;
        let mut terms = vec![first];
        while self.eat_kw(Kw::And) {
            terms.push(self.not()?);
        }
        chain(terms, ExprKind::And, |k| match k {
            ExprKind::And(xs) => Ok(xs),
            other => Err(other),
        })
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if *self.peek() == Tok::Keyword(Kw::Not) {
            let start = self.bump();
            self.enter(start)?;
            let e = self.not()?;
            self.leave();
            let span = start.to(e.span);
            return Expr::new(ExprKind::Not(Box::new(e)), span);
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, ParseError> {
        let l = self.additive()?;
        let cmp = match self.peek() {
            Tok::Op("=") => Some(CmpOp::Eq),
            Tok::Op("!=" | "<>") => Some(CmpOp::NotEq),
            Tok::Op("<") => Some(CmpOp::Lt),
            Tok::Op("<=") => Some(CmpOp::LtEq),
            Tok::Op(">") => Some(CmpOp::Gt),
            Tok::Op(">=") => Some(CmpOp::GtEq),
            _ => None,
        };
        if let Some(op) = cmp {
            self.bump();
            let r = self.additive()?;
            let span = l.span.to(r.span);
            return Expr::new(ExprKind::Cmp(op, Box::new(l), Box::new(r)), span);
        }
        if self.eat_kw(Kw::Is) {
            let negated = self.eat_kw(Kw::Not);
            self.expect_kw(Kw::Null, if negated { "NULL" } else { "NULL or NOT NULL" })?;
            let span = l.span.to(self.prev_span());
            let kind = ExprKind::IsNull {
                expr: Box::new(l),
                negated,
            };
            return Expr::new(kind, span);
        }
        let negated = match (self.peek(), self.peek_at(1)) {
            (Tok::Keyword(Kw::Not), Tok::Keyword(Kw::In | Kw::Like | Kw::Between)) => {
                self.bump();
                true
            }
            (Tok::Keyword(Kw::Not), _) => {
                self.bump();
                return Err(self.err("IN, LIKE or BETWEEN after NOT"));
            }
            _ => false,
        };
        if self.eat_kw(Kw::In) {
            self.expect(Tok::LParen, "`(` to open the IN list")?;
            let mut list = vec![self.expr()?];
            while *self.peek() == Tok::Comma {
                self.bump();
                list.push(self.expr()?);
            }
            let end = self.expect(Tok::RParen, "`,` or `)` to close the IN list")?;
            let span = l.span.to(end);
            let kind = ExprKind::InList {
                expr: Box::new(l),
                list,
                negated,
            };
            return Expr::new(kind, span);
        }
        if self.eat_kw(Kw::Like) {
            let pattern = self.additive()?;
            let span = l.span.to(pattern.span);
            let kind = ExprKind::Like {
                expr: Box::new(l),
                pattern: Box::new(pattern),
                negated,
            };
            return Expr::new(kind, span);
        }
        if self.eat_kw(Kw::Between) {
            let low = self.additive()?;
            self.expect_kw(Kw::And, "AND between the bounds of BETWEEN")?;
            let high = self.additive()?;
            let span = l.span.to(high.span);
            let kind = ExprKind::Between {
                expr: Box::new(l),
                low: Box::new(low),
                high: Box::new(high),
                negated,
            };
            return Expr::new(kind, span);
        }
        Ok(l)
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Op("+") => ArithOp::Add,
                Tok::Op("-") => ArithOp::Sub,
                _ => return Ok(l),
            };
            self.bump();
            let r = self.multiplicative()?;
            let span = l.span.to(r.span);
            l = Expr::new(ExprKind::Arith(op, Box::new(l), Box::new(r)), span)?;
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Op("*") => ArithOp::Mul,
                Tok::Op("/") => ArithOp::Div,
                Tok::Op("%") => ArithOp::Rem,
                _ => return Ok(l),
            };
            self.bump();
            let r = self.unary()?;
            let span = l.span.to(r.span);
            l = Expr::new(ExprKind::Arith(op, Box::new(l), Box::new(r)), span)?;
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Tok::Op("-") => {
                let start = self.bump();
                self.enter(start)?;
                let e = self.unary()?;
                self.leave();
                let span = start.to(e.span);
                // Fold the sign into a number literal, so `-9223372036854775808` fits int64.
                let kind = match e.kind {
                    ExprKind::Literal(Literal::Integer(t)) => {
                        ExprKind::Literal(Literal::Integer(negate(&t)))
                    }
                    ExprKind::Literal(Literal::Decimal(t)) => {
                        ExprKind::Literal(Literal::Decimal(negate(&t)))
                    }
                    ExprKind::Literal(Literal::Float(t)) => {
                        ExprKind::Literal(Literal::Float(negate(&t)))
                    }
                    other => ExprKind::Neg(Box::new(Expr {
                        kind: other,
                        span: e.span,
                        depth: e.depth,
                    })),
                };
                Expr::new(kind, span)
            }
            Tok::Op("+") => {
                let start = self.bump();
                self.enter(start)?;
                let e = self.unary();
                self.leave();
                e
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let span = self.span();
        let kind = match self.peek().clone() {
            Tok::Ident(n) | Tok::Quoted(n) => ExprKind::Column(n),
            Tok::Int(t) => ExprKind::Literal(Literal::Integer(t)),
            Tok::Dec(t) => ExprKind::Literal(Literal::Decimal(t)),
            Tok::Float(t) => ExprKind::Literal(Literal::Float(t)),
            Tok::Str(s) => ExprKind::Literal(Literal::Str(s)),
            Tok::Keyword(Kw::True) => ExprKind::Literal(Literal::Bool(true)),
            Tok::Keyword(Kw::False) => ExprKind::Literal(Literal::Bool(false)),
            Tok::Keyword(Kw::Null) => ExprKind::Literal(Literal::Null),
            Tok::LParen => {
                self.bump();
                self.enter(span)?;
                let mut e = self.expr()?;
                self.leave();
                let end = self.expect(Tok::RParen, "`)`")?;
                e.span = span.to(end);
                return Ok(e);
            }
            Tok::Keyword(_) => {
                return Err(self.err(
                    "a value (column, literal or parenthesis); quote a column named like a \
                     keyword: \"name\"",
                ));
            }
            _ => return Err(self.err("a value (column, literal or parenthesis)")),
        };
        self.bump();
        Expr::new(kind, span)
    }
}

/// One `AND` or `OR` node over `terms` (or the single term), with nested nodes of the same
/// kind (`(a AND b) AND c`) spliced in, so a chain never deepens the tree.
fn chain(
    terms: Vec<Expr>,
    make: fn(Vec<Expr>) -> ExprKind,
    same: fn(ExprKind) -> Result<Vec<Expr>, ExprKind>,
) -> Result<Expr, ParseError> {
    if terms.len() == 1 {
        return Ok(terms.into_iter().next().expect("one term"));
    }
    let span = terms[0].span.to(terms[terms.len() - 1].span);
    let mut flat = Vec::with_capacity(terms.len());
    for t in terms {
        let Expr { kind, span, depth } = t;
        match same(kind) {
            Ok(xs) => flat.extend(xs),
            Err(kind) => flat.push(Expr { kind, span, depth }),
        }
    }
    Expr::new(make(flat), span)
}

fn negate(t: &str) -> String {
    match t.strip_prefix('-') {
        Some(rest) => rest.to_string(),
        None => format!("-{t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders the tree fully parenthesised, to check precedence.
    fn show(e: &Expr) -> String {
        use ExprKind as K;
        match &e.kind {
            K::Column(c) => c.clone(),
            K::Literal(Literal::Integer(t) | Literal::Decimal(t) | Literal::Float(t)) => t.clone(),
            K::Literal(Literal::Str(s)) => format!("'{s}'"),
            K::Literal(Literal::Bool(b)) => b.to_string(),
            K::Literal(Literal::Null) => "NULL".into(),
            K::Neg(x) => format!("(-{})", show(x)),
            K::Not(x) => format!("(NOT {})", show(x)),
            K::Arith(op, l, r) => {
                let o = match op {
                    ArithOp::Add => "+",
                    ArithOp::Sub => "-",
                    ArithOp::Mul => "*",
                    ArithOp::Div => "/",
                    ArithOp::Rem => "%",
                };
                format!("({} {o} {})", show(l), show(r))
            }
            K::Cmp(op, l, r) => format!("({} {op} {})", show(l), show(r)),
            K::And(xs) => format!(
                "({})",
                xs.iter().map(show).collect::<Vec<_>>().join(" AND ")
            ),
            K::Or(xs) => format!("({})", xs.iter().map(show).collect::<Vec<_>>().join(" OR ")),
            K::IsNull { expr, negated } => {
                format!(
                    "({} IS {}NULL)",
                    show(expr),
                    if *negated { "NOT " } else { "" }
                )
            }
            K::InList {
                expr,
                list,
                negated,
            } => format!(
                "({} {}IN [{}])",
                show(expr),
                if *negated { "NOT " } else { "" },
                list.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            K::Like {
                expr,
                pattern,
                negated,
            } => {
                format!(
                    "({} {}LIKE {})",
                    show(expr),
                    if *negated { "NOT " } else { "" },
                    show(pattern)
                )
            }
            K::Between {
                expr,
                low,
                high,
                negated,
            } => format!(
                "({} {}BETWEEN {} AND {})",
                show(expr),
                if *negated { "NOT " } else { "" },
                show(low),
                show(high)
            ),
        }
    }

    fn p(s: &str) -> String {
        show(&parse(s).unwrap_or_else(|e| panic!("{s}: {e}")))
    }

    #[test]
    fn precedence() {
        assert_eq!(p("a + b * c - d"), "((a + (b * c)) - d)");
        assert_eq!(
            p("a = 1 OR b = 2 AND c = 3"),
            "((a = 1) OR ((b = 2) AND (c = 3)))"
        );
        assert_eq!(p("NOT a = 1 AND b"), "((NOT (a = 1)) AND b)");
        assert_eq!(p("(a OR b) AND c"), "((a OR b) AND c)");
        assert_eq!(p("a - -b * 2"), "(a - ((-b) * 2))");
        assert_eq!(p("x BETWEEN 1 AND 5 AND y"), "((x BETWEEN 1 AND 5) AND y)");
        assert_eq!(p("price * (1 - discount)"), "(price * (1 - discount))");
        assert_eq!(p("a % 2 = 0"), "((a % 2) = 0)");
    }

    #[test]
    fn predicates_and_literals() {
        assert_eq!(
            p("amount >= 100 AND status IN ('paid', 'shipped') AND note IS NOT NULL"),
            "((amount >= 100) AND (status IN ['paid', 'shipped']) AND (note IS NOT NULL))"
        );
        assert_eq!(p("s not like 'a%'"), "(s NOT LIKE 'a%')");
        assert_eq!(
            p("x NOT BETWEEN -1.5 AND 2e3"),
            "(x NOT BETWEEN -1.5 AND 2e3)"
        );
        assert_eq!(p("x not in (1)"), "(x NOT IN [1])");
        assert_eq!(
            p("\"Order \"\"Id\"\"\" = 'it''s'"),
            "(Order \"Id\" = 'it's')"
        );
        assert_eq!(
            p("\"and\" = TRUE OR b IS NULL"),
            "((and = true) OR (b IS NULL))"
        );
        assert_eq!(p("-9223372036854775808"), "-9223372036854775808");
        assert_eq!(p("a <> 1 AND b != 2"), "((a <> 1) AND (b <> 2))");
        assert_eq!(p("größe > .5"), "(größe > .5)");
    }

    #[test]
    fn spans_cover_the_source() {
        let src = "a = 1 AND (b > 2)";
        let e = parse(src).unwrap();
        assert_eq!((e.span.start, e.span.end), (0, src.len()));
        let ExprKind::And(xs) = e.kind else { panic!() };
        assert_eq!(&src[xs[0].span.start..xs[0].span.end], "a = 1");
        assert_eq!(&src[xs[1].span.start..xs[1].span.end], "(b > 2)");
    }

    fn e(s: &str) -> ParseError {
        parse(s).unwrap_err()
    }

    #[test]
    fn errors_have_positions() {
        let x = e("amount >= AND x");
        assert_eq!(x.pos, 10);
        assert!(x.expected.contains("a value"), "{x}");
        assert_eq!(x.found, "keyword AND");
        let x = e("a = 'oops");
        assert_eq!(
            (x.pos, x.expected.as_str()),
            (4, "a closing ' for this string")
        );
        let x = e("(a = 1");
        assert_eq!((x.pos, x.expected.as_str()), (6, "`)`"));
        let x = e("a = 1)");
        assert_eq!(x.pos, 5);
        let x = e("a < b < c");
        assert_eq!(x.pos, 6);
        let x = e("a IS 5");
        assert_eq!((x.pos, x.expected.as_str()), (5, "NULL or NOT NULL"));
        let x = e("a IN 1, 2");
        assert_eq!(x.pos, 5);
        let x = e("a BETWEEN 1 OR 2");
        assert_eq!(x.pos, 12);
        let x = e("a = 1e");
        assert_eq!(x.pos, 6);
        let x = e("a ; b");
        assert_eq!((x.pos, x.found.as_str()), (2, "character ';'"));
        let x = e("");
        assert_eq!((x.pos, x.found.as_str()), (0, "the end of the expression"));
        let x = e("a NOT b");
        assert_eq!(x.pos, 6);
        let x = e("12abc > 1");
        assert_eq!(x.pos, 2);
        // The offending token's length, for the caret.
        let x = e("amount >= AND x");
        assert_eq!((x.pos, x.len), (10, 3));
    }

    #[test]
    fn and_or_chains_and_in_lists_are_flat() {
        assert_eq!(p("a OR b OR c"), "(a OR b OR c)");
        assert_eq!(p("(a AND b) AND (c AND d)"), "(a AND b AND c AND d)");
        assert_eq!(p("(a OR b) AND c OR d"), "(((a OR b) AND c) OR d)");
        // 100,000 items, 10,000 OR terms: no depth, no limit.
        let items: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
        let e = parse(&format!("x IN ({})", items.join(", "))).unwrap();
        let ExprKind::InList { list, .. } = e.kind else {
            panic!()
        };
        assert_eq!(list.len(), 100_000);
        let terms: Vec<String> = (0..10_000).map(|i| format!("x = {i}")).collect();
        let e = parse(&terms.join(" OR ")).unwrap();
        let ExprKind::Or(xs) = e.kind else { panic!() };
        assert_eq!(xs.len(), 10_000);
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_with_its_position() {
        let nested = |n: usize| format!("{}x = 1{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nested(MAX_DEPTH - 2)).is_ok());
        // Parentheses: refused at the first one too many, however deep the text goes.
        for n in [MAX_DEPTH + 1, 100_000] {
            let x = e(&nested(n));
            assert_eq!(x.pos, MAX_DEPTH, "{n}");
            assert!(
                x.limit
                    .as_ref()
                    .unwrap()
                    .contains("nested more than 64 levels"),
                "{x}"
            );
            assert!(
                x.to_string()
                    .starts_with("at byte 64: the expression is nested"),
                "{x}"
            );
        }
        // NOT and signs recurse as well.
        let x = e(&format!("{}x", "NOT ".repeat(100_000)));
        assert_eq!(x.pos, MAX_DEPTH * 4);
        assert!(e(&format!("{}x", "- ".repeat(100_000))).limit.is_some());
        // An operator chain nests without parentheses: the tree's depth is checked.
        let sum = |n: usize| format!("x = {}", vec!["1"; n].join(" + "));
        assert!(parse(&sum(MAX_DEPTH - 1)).is_ok());
        let x = e(&sum(50_000));
        assert!(x.limit.is_some(), "{x}");
        assert_eq!(x.pos, 4, "{x}");
    }
}
