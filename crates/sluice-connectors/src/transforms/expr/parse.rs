//! Lexer and recursive-descent parser of the expression language (grammar in
//! `docs/transforms.md`). Pure: no schema is involved, so every syntax error is found when the
//! job is built. Every node keeps the byte span it came from, so later type errors can quote
//! the part of the expression they are about.

use std::fmt;

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
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Column(String),
    Literal(Literal),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
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

/// A syntax error: where, what the parser expected there, and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset into the expression.
    pub pos: usize,
    pub expected: String,
    pub found: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at byte {}: expected {}, found {}",
            self.pos, self.expected, self.found
        )
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
                        expected: format!("a closing {c} for this {what}"),
                        found: "the end of the expression".into(),
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
                            expected: "a name, literal, operator or parenthesis".into(),
                            found: format!("character {c:?}"),
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
                expected: "digits of the exponent".into(),
                found: found_at(src, j),
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
            expected: "an operator after the number".into(),
            found: found_at(src, *i),
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
    let mut p = Parser { toks, i: 0 };
    let e = p.expr()?;
    match p.peek() {
        Tok::End => Ok(e),
        Tok::RParen => Err(p.err("an operator or the end of the expression (unbalanced `)`)")),
        _ => Err(p.err("an operator (AND, OR, =, <, +, …) or the end of the expression")),
    }
}

struct Parser {
    toks: Vec<(Tok, Span)>,
    i: usize,
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
        ParseError {
            pos: self.span().start,
            expected: expected.to_string(),
            found: self.peek().to_string(),
        }
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
        let mut l = self.and()?;
        while self.eat_kw(Kw::Or) {
            let r = self.and()?;
            l = node(l.span.to(r.span), ExprKind::Or, l, r);
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.not()?;
        while self.eat_kw(Kw::And) {
            let r = self.not()?;
            l = node(l.span.to(r.span), ExprKind::And, l, r);
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if *self.peek() == Tok::Keyword(Kw::Not) {
            let start = self.bump();
            let e = self.not()?;
            return Ok(Expr {
                span: start.to(e.span),
                kind: ExprKind::Not(Box::new(e)),
            });
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
            return Ok(node(
                l.span.to(r.span),
                |l, r| ExprKind::Cmp(op, l, r),
                l,
                r,
            ));
        }
        if self.eat_kw(Kw::Is) {
            let negated = self.eat_kw(Kw::Not);
            self.expect_kw(Kw::Null, if negated { "NULL" } else { "NULL or NOT NULL" })?;
            let span = l.span.to(self.prev_span());
            return Ok(Expr {
                span,
                kind: ExprKind::IsNull {
                    expr: Box::new(l),
                    negated,
                },
            });
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
            let kind = ExprKind::InList {
                expr: Box::new(l.clone()),
                list,
                negated,
            };
            return Ok(Expr {
                span: l.span.to(end),
                kind,
            });
        }
        if self.eat_kw(Kw::Like) {
            let pattern = self.additive()?;
            let span = l.span.to(pattern.span);
            let kind = ExprKind::Like {
                expr: Box::new(l),
                pattern: Box::new(pattern),
                negated,
            };
            return Ok(Expr { span, kind });
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
            return Ok(Expr { span, kind });
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
            l = node(l.span.to(r.span), |l, r| ExprKind::Arith(op, l, r), l, r);
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
            l = node(l.span.to(r.span), |l, r| ExprKind::Arith(op, l, r), l, r);
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Tok::Op("-") => {
                let start = self.bump();
                let e = self.unary()?;
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
                    })),
                };
                Ok(Expr { kind, span })
            }
            Tok::Op("+") => {
                self.bump();
                self.unary()
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
                let mut e = self.expr()?;
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
        Ok(Expr { kind, span })
    }
}

fn node(span: Span, f: impl FnOnce(Box<Expr>, Box<Expr>) -> ExprKind, l: Expr, r: Expr) -> Expr {
    Expr {
        kind: f(Box::new(l), Box::new(r)),
        span,
    }
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
            K::And(l, r) => format!("({} AND {})", show(l), show(r)),
            K::Or(l, r) => format!("({} OR {})", show(l), show(r)),
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
            "(((amount >= 100) AND (status IN ['paid', 'shipped'])) AND (note IS NOT NULL))"
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
        let ExprKind::And(l, r) = e.kind else {
            panic!()
        };
        assert_eq!(&src[l.span.start..l.span.end], "a = 1");
        assert_eq!(&src[r.span.start..r.span.end], "(b > 2)");
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
    }
}
