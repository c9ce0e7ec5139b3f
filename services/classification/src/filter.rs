//! The filter of ListClassifications and Reclassify: the AIP-160 subset a CRM user
//! expects. Comparisons `name = "VALUE"` on a dimension's label ("lifecycle_stage",
//! "trait", "rfm_segment", ...; `trait:"LOYAL"` too), on `region`, and numeric ones
//! (`=`, `!=`, `<`, `<=`, `>`, `>=`) on the features (`share_of_sales_bp >= 1000`),
//! joined by AND and OR, negated by NOT (or `-`), grouped by parentheses. AND binds
//! tighter than OR, as in AIP-160.
//!
//! A filter is evaluated where it can be: the labels, region, revenue and share of sales
//! are columns, so the database applies them; the other features are in each result's
//! stored inputs, so the database applies what it can (a condition every match meets)
//! and the rest is evaluated on the decoded results ([`Filter::matches`]).

use clientela_domain::text::quote;
use clientela_runtime::Error;

use crate::classification::Codes;
use crate::facts::Features;
use crate::labels::Dimension;

/// Characters of a filter.
pub const FILTER_MAX: usize = 2_000;
/// Comparisons in a filter.
pub const TERMS_MAX: usize = 32;
/// Parentheses and NOTs inside one another.
pub const DEPTH_MAX: usize = 8;

/// A parsed filter (the default: everyone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub expr: Option<Expr>,
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// Has (or, negated, has not) this label.
    Label {
        dimension: Dimension,
        code: String,
        equal: bool,
    },
    /// In (or not in) this region, exactly as the registry has it.
    Region {
        region: String,
        equal: bool,
    },
    /// A numeric feature compared with a number.
    Number {
        field: Numeric,
        op: Op,
        value: i64,
    },
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, left: i64, right: i64) -> bool {
        match self {
            Op::Eq => left == right,
            Op::Ne => left != right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
        }
    }

    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// The numeric features a filter compares, by their names in `Features` of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numeric {
    ShareOfSalesBp,
    RevenueInWindow,
    CompanyRevenueInWindow,
    PurchasesTotal,
    PurchasesInWindow,
    RevenuePrevWindow,
    MeanInterpurchaseCentidays,
    CvInterpurchaseBp,
    DiscountedShareBp,
    ComplaintsInWindow,
    OpenComplaints,
    LatestNps,
    LatestCsat,
    ReferralsConverted,
    AudienceReach,
    RevenueGrowthBp,
    CostToServeMinor,
}

impl Numeric {
    const ALL: [(&'static str, Numeric); 17] = [
        ("share_of_sales_bp", Numeric::ShareOfSalesBp),
        ("revenue_in_window", Numeric::RevenueInWindow),
        ("company_revenue_in_window", Numeric::CompanyRevenueInWindow),
        ("purchases_total", Numeric::PurchasesTotal),
        ("purchases_in_window", Numeric::PurchasesInWindow),
        ("revenue_prev_window", Numeric::RevenuePrevWindow),
        (
            "mean_interpurchase_centidays",
            Numeric::MeanInterpurchaseCentidays,
        ),
        ("cv_interpurchase_bp", Numeric::CvInterpurchaseBp),
        ("discounted_share_bp", Numeric::DiscountedShareBp),
        ("complaints_in_window", Numeric::ComplaintsInWindow),
        ("open_complaints", Numeric::OpenComplaints),
        ("latest_nps", Numeric::LatestNps),
        ("latest_csat", Numeric::LatestCsat),
        ("referrals_converted", Numeric::ReferralsConverted),
        ("audience_reach", Numeric::AudienceReach),
        ("revenue_growth_bp", Numeric::RevenueGrowthBp),
        ("cost_to_serve_minor", Numeric::CostToServeMinor),
    ];

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// Its value for a result (None: the result has none, and no comparison holds), as
    /// the API shows it.
    pub fn of(self, s: &Subject<'_>) -> Option<i64> {
        let f = s.features;
        Some(match self {
            Numeric::ShareOfSalesBp => s.share_of_sales_bp,
            Numeric::RevenueInWindow => f.revenue_in_window,
            Numeric::CompanyRevenueInWindow => s.company_revenue,
            Numeric::PurchasesTotal => f.purchases_total,
            Numeric::PurchasesInWindow => f.purchases_in_window,
            Numeric::RevenuePrevWindow => f.revenue_prev_window,
            Numeric::MeanInterpurchaseCentidays => f.mean_gap_secs * 100 / 86_400,
            Numeric::CvInterpurchaseBp => f.cv_interpurchase_bp,
            Numeric::DiscountedShareBp => f.discounted_share_bp,
            Numeric::ComplaintsInWindow => f.complaints_in_window,
            Numeric::OpenComplaints => f.open_complaints,
            Numeric::LatestNps => f.latest_nps.map_or(-1, |(score, _)| i64::from(score)),
            Numeric::LatestCsat => f.latest_csat.map_or(-1, |(score, _)| i64::from(score)),
            Numeric::ReferralsConverted => f.referrals_converted,
            Numeric::AudienceReach => f.audience_reach,
            Numeric::RevenueGrowthBp => return f.revenue_growth_bp(),
            Numeric::CostToServeMinor => return f.cost_to_serve_minor,
        })
    }

    /// Whether the database holds it as a column (see `store::queries`).
    pub fn is_column(self) -> bool {
        matches!(
            self,
            Numeric::ShareOfSalesBp | Numeric::RevenueInWindow | Numeric::CompanyRevenueInWindow
        )
    }
}

/// What a filter is evaluated on: one stored result.
pub struct Subject<'a> {
    pub region: &'a str,
    pub codes: &'a Codes,
    pub features: &'a Features,
    pub share_of_sales_bp: i64,
    pub company_revenue: i64,
}

fn bad(field: &str, why: impl Into<String>) -> Error {
    Error::invalid(field, why)
}

impl Filter {
    /// Parses `text` (empty: everyone); errors name `field` and what is wrong where.
    pub fn parse(text: &str, field: &str) -> Result<Self, Error> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Filter::default());
        }
        let length = text.chars().count();
        if length > FILTER_MAX {
            return Err(bad(
                field,
                format!("at most {FILTER_MAX} characters (got {length})"),
            ));
        }
        let tokens = lex(text).map_err(|why| bad(field, why))?;
        let mut parser = Parser {
            tokens,
            at: 0,
            terms: 0,
        };
        let expr = parser.or(0).map_err(|why| bad(field, why))?;
        if let Some(token) = parser.peek() {
            return Err(bad(
                field,
                format!("expected AND, OR or the end, found {}", token.show()),
            ));
        }
        Ok(Filter { expr: Some(expr) })
    }

    /// Whether the database can apply all of it (else [`Filter::matches`] must finish).
    pub fn is_exact(&self) -> bool {
        self.expr.as_ref().is_none_or(Expr::is_exact)
    }

    /// Whether a result passes.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        self.expr.as_ref().is_none_or(|e| e.matches(s))
    }
}

impl Expr {
    fn is_exact(&self) -> bool {
        match self {
            Expr::And(all) | Expr::Or(all) => all.iter().all(Expr::is_exact),
            Expr::Not(e) => e.is_exact(),
            Expr::Label { .. } | Expr::Region { .. } => true,
            Expr::Number { field, .. } => field.is_column(),
        }
    }

    fn matches(&self, s: &Subject<'_>) -> bool {
        match self {
            Expr::And(all) => all.iter().all(|e| e.matches(s)),
            Expr::Or(any) => any.iter().any(|e| e.matches(s)),
            Expr::Not(e) => !e.matches(s),
            Expr::Label {
                dimension,
                code,
                equal,
            } => s.codes.has(*dimension, code) == *equal,
            Expr::Region { region, equal } => (s.region == region) == *equal,
            Expr::Number { field, op, value } => field.of(s).is_some_and(|v| op.holds(v, *value)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Text(String),
    Number(i64),
    Op(Op),
    Has,
    Open,
    Close,
    Minus,
}

impl Token {
    fn show(&self) -> String {
        match self {
            Token::Word(w) => quote(w),
            Token::Text(t) => format!("the text {}", quote(t)),
            Token::Number(n) => n.to_string(),
            Token::Op(op) => format!("\"{}\"", op.sql().replace("<>", "!=")),
            Token::Has => "\":\"".into(),
            Token::Open => "\"(\"".into(),
            Token::Close => "\")\"".into(),
            Token::Minus => "\"-\"".into(),
        }
    }
}

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|(_, c)| *c);
        let token = match c {
            c if c.is_whitespace() => continue,
            '(' => Token::Open,
            ')' => Token::Close,
            ':' => Token::Has,
            '=' => Token::Op(Op::Eq),
            '!' if next == Some('=') => {
                chars.next();
                Token::Op(Op::Ne)
            }
            '<' | '>' => {
                let or_equal = next == Some('=');
                if or_equal {
                    chars.next();
                }
                Token::Op(match (c, or_equal) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                })
            }
            '"' => {
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, c @ ('"' | '\\'))) => value.push(c),
                            _ => return Err("only \\\" and \\\\ are escapes in a text".into()),
                        },
                        Some((_, c)) => value.push(c),
                        None => {
                            return Err(format!("the text at character {} is not closed", i + 1));
                        }
                    }
                }
                Token::Text(value)
            }
            '-' if next.is_some_and(|c| c.is_ascii_digit()) => {
                number(take(&mut chars, i, text, |c| c.is_ascii_digit()))?
            }
            '-' => Token::Minus,
            c if c.is_ascii_digit() => number(take(&mut chars, i, text, |c| c.is_ascii_digit()))?,
            c if c.is_alphabetic() || c == '_' => {
                let word = take(&mut chars, i, text, |c| c.is_alphanumeric() || c == '_');
                Token::Word(word.to_owned())
            }
            c => {
                return Err(format!(
                    "unexpected {} at character {}",
                    quote(&c.to_string()),
                    i + 1
                ));
            }
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// The text from byte `start` through the run of characters after it that `keep`
/// accepts (the iterator is left after the run).
fn take<'t>(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    start: usize,
    text: &'t str,
    keep: impl Fn(char) -> bool,
) -> &'t str {
    let mut end = text.len();
    while let Some((j, c)) = chars.peek().copied() {
        if !keep(c) {
            end = j;
            break;
        }
        chars.next();
    }
    &text[start..end]
}

fn number(digits: &str) -> Result<Token, String> {
    digits
        .parse()
        .map(Token::Number)
        .map_err(|_| format!("{digits} is not a 64-bit integer"))
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    terms: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    /// AND, OR and NOT in any case (AIP-160 writes them in capitals; earlier versions of
    /// this filter took `and`).
    fn keyword(&mut self, word: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word));
        if found {
            self.at += 1;
        }
        found
    }

    fn or(&mut self, depth: usize) -> Result<Expr, String> {
        let mut any = vec![self.and(depth)?];
        while self.keyword("OR") {
            any.push(self.and(depth)?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Expr::Or(any)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, String> {
        let mut all = vec![self.unary(depth)?];
        while self.keyword("AND") {
            all.push(self.unary(depth)?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::And(all)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, String> {
        if depth >= DEPTH_MAX {
            return Err(format!(
                "at most {DEPTH_MAX} parentheses and NOTs inside one another"
            ));
        }
        if self.keyword("NOT") || self.peek() == Some(&Token::Minus) && self.next().is_some() {
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or(depth + 1)?;
            return match self.next() {
                Some(Token::Close) => Ok(inner),
                Some(t) => Err(format!("expected \")\", found {}", t.show())),
                None => Err("a \"(\" is not closed".into()),
            };
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        self.terms += 1;
        if self.terms > TERMS_MAX {
            return Err(format!("at most {TERMS_MAX} comparisons"));
        }
        let name = match self.next() {
            Some(Token::Word(w))
                if !["AND", "OR", "NOT"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                w
            }
            Some(t) => return Err(format!("expected a field name, found {}", t.show())),
            None => return Err("the filter ends where a comparison was expected".into()),
        };
        let op = match self.next() {
            Some(Token::Op(op)) => op,
            Some(Token::Has) => Op::Eq,
            Some(t) => {
                return Err(format!(
                    "expected =, !=, <, <=, >, >= or : after {}, found {}",
                    quote(&name),
                    t.show()
                ));
            }
            None => return Err(format!("{} has no comparison", quote(&name))),
        };
        let value = self.next();
        if let Some(field) = Numeric::from_name(&name) {
            return match value {
                Some(Token::Number(value)) => Ok(Expr::Number { field, op, value }),
                Some(t) => Err(format!(
                    "{} compares with a number, not {}",
                    quote(&name),
                    t.show()
                )),
                None => Err(format!("{} has no number to compare with", quote(&name))),
            };
        }
        let text = match value {
            Some(Token::Text(text)) => text,
            Some(t) => {
                return Err(format!(
                    "the value of {} must be in double quotes, not {}",
                    quote(&name),
                    t.show()
                ));
            }
            None => return Err(format!("{} has no value", quote(&name))),
        };
        let equal = match op {
            Op::Eq => true,
            Op::Ne => false,
            _ => return Err(format!("{} is compared with = or != only", quote(&name))),
        };
        if name == "region" {
            return Ok(Expr::Region {
                region: text,
                equal,
            });
        }
        let dimension = Dimension::from_name(&name).ok_or_else(|| {
            let mut names: Vec<&str> = Dimension::ALL.iter().map(|d| d.name()).collect();
            names.push("region");
            names.extend(Numeric::ALL.iter().map(|(n, _)| *n));
            format!(
                "unknown field {}; use one of {}",
                quote(&name),
                names.join(", ")
            )
        })?;
        if !dimension.has_label(&text) {
            let codes: Vec<&str> = dimension.labels().into_iter().map(|(c, _, _)| c).collect();
            return Err(format!(
                "{} is not a label of {name}; use one of {}",
                quote(&text),
                codes.join(", ")
            ));
        }
        Ok(Expr::Label {
            dimension,
            code: text,
            equal,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Expr {
        Filter::parse(text, "filter").unwrap().expr.unwrap()
    }

    fn label(dimension: Dimension, code: &str) -> Expr {
        Expr::Label {
            dimension,
            code: code.into(),
            equal: true,
        }
    }

    #[test]
    fn filters_are_bounded() {
        let many = vec![r#"trait = "LOYAL""#; TERMS_MAX + 1].join(" AND ");
        let e = Filter::parse(&many, "filter").unwrap_err();
        assert!(e.to_string().contains("at most 32 comparisons"), "{e}");
        let long = format!(r#"region = "{}""#, "x".repeat(FILTER_MAX));
        let e = Filter::parse(&long, "filter").unwrap_err();
        assert!(e.to_string().contains("at most 2000 characters"), "{e}");
        let deep = format!("{}trait = \"LOYAL\"{}", "(".repeat(9), ")".repeat(9));
        let e = Filter::parse(&deep, "filter").unwrap_err();
        assert!(e.to_string().contains("at most 8 parentheses"), "{e}");
        let nots = format!("{}trait = \"LOYAL\"", "NOT ".repeat(500));
        assert!(Filter::parse(&nots, "filter").is_err());
    }

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_group() {
        let loyal = label(Dimension::Trait, "LOYAL");
        let boss = label(Dimension::AccountTier, "BOSS");
        let share = Expr::Number {
            field: Numeric::ShareOfSalesBp,
            op: Op::Ge,
            value: 1_000,
        };
        assert_eq!(
            parse(r#"trait = "LOYAL" OR account_tier = "BOSS" AND share_of_sales_bp >= 1000"#),
            Expr::Or(vec![
                loyal.clone(),
                Expr::And(vec![boss.clone(), share.clone()])
            ])
        );
        assert_eq!(
            parse(r#"(trait:"LOYAL" OR account_tier = "BOSS") AND share_of_sales_bp>=1000"#),
            Expr::And(vec![Expr::Or(vec![loyal.clone(), boss.clone()]), share])
        );
        assert_eq!(
            parse(r#"NOT trait = "LOYAL" AND -region = "Maule AND Ñuble""#),
            Expr::And(vec![
                Expr::Not(Box::new(loyal)),
                Expr::Not(Box::new(Expr::Region {
                    region: "Maule AND Ñuble".into(),
                    equal: true
                }))
            ])
        );
        assert_eq!(
            parse(r#"account_tier != "BOSS""#),
            Expr::Label {
                dimension: Dimension::AccountTier,
                code: "BOSS".into(),
                equal: false
            }
        );
        assert_eq!(
            parse("latest_nps < -0"),
            Expr::Number {
                field: Numeric::LatestNps,
                op: Op::Lt,
                value: 0
            }
        );
        assert_eq!(Filter::parse("  ", "filter").unwrap(), Filter::default());
    }

    #[test]
    fn mistakes_are_named_with_what_would_do() {
        for (text, needle) in [
            (
                r#"tier = "BOSS""#,
                "unknown field \"tier\"; use one of lifecycle_stage",
            ),
            (
                r#"account_tier = "JEFE""#,
                "\"JEFE\" is not a label of account_tier; use one of",
            ),
            (r#"account_tier = "JEFE""#, "REGULAR"),
            (r#"lifecycle_stage = "LOYAL""#, "\"LOYAL\""),
            ("volume = HIGH", "double quotes"),
            ("volume", "has no comparison"),
            (r#"share_of_sales_bp >= "10""#, "compares with a number"),
            (r#"region > "A""#, "= or != only"),
            (r#"trait = "LOYAL" AND"#, "ends where a comparison"),
            (r#"(trait = "LOYAL""#, "not closed"),
            (r#"trait = "LOYAL")"#, "expected AND, OR or the end"),
            (
                r#"trait = "LOYAL" trait = "LOYAL""#,
                "expected AND, OR or the end",
            ),
            (r#"region = "Maule"#, "not closed"),
            (
                "purchases_total > 99999999999999999999",
                "not a 64-bit integer",
            ),
            ("purchases_total @ 1", "unexpected \"@\""),
        ] {
            let err = Filter::parse(text, "filter").unwrap_err();
            let v = &err.field_violations()[0];
            assert_eq!(v.field, "filter");
            assert!(v.description.contains(needle), "{text}: {}", v.description);
        }
    }

    #[test]
    fn a_filter_matches_labels_region_and_features() {
        let codes = Codes::read(
            [
                "FREQUENT",
                "ACTIVE",
                "",
                "HIGH",
                "NONE",
                "REGULAR",
                "CHAMPIONS",
            ],
            ["LOYAL"],
        );
        let features = Features {
            purchases_total: 7,
            latest_nps: None,
            ..Features::default()
        };
        let subject = Subject {
            region: "Maule",
            codes: &codes,
            features: &features,
            share_of_sales_bp: 1_200,
            company_revenue: 50_000,
        };
        let holds = |text: &str| Filter::parse(text, "f").unwrap().matches(&subject);
        assert!(holds(
            r#"share_of_sales_bp >= 1000 AND account_tier = "REGULAR""#
        ));
        assert!(!holds(
            r#"share_of_sales_bp >= 1000 AND NOT account_tier = "REGULAR""#
        ));
        assert!(holds(
            r#"trait = "PRICE_SENSITIVE" OR (trait:"LOYAL" AND region = "Maule")"#
        ));
        assert!(holds("purchases_total > 6 AND latest_nps = -1"));
        assert!(
            !holds("revenue_growth_bp > -100000"),
            "no growth: no comparison holds"
        );
        assert!(holds("NOT revenue_growth_bp > -100000"));
        assert!(holds(r#"region != "Biobío""#));
        assert!(
            !Filter::parse("purchases_total > 6", "f")
                .unwrap()
                .is_exact()
        );
        assert!(
            Filter::parse(r#"share_of_sales_bp > 6 OR trait = "LOYAL""#, "f")
                .unwrap()
                .is_exact()
        );
    }
}
