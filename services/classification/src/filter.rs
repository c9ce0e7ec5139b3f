//! The filter of ListClassifications and Reclassify: terms `name = "VALUE"` joined by
//! AND, where a name is a dimension ("lifecycle_stage", "trait", "rfm_segment", ...)
//! and the value one of its label codes, or `region = "..."`.

use clientela_domain::text::quote;
use clientela_runtime::Error;

use crate::classification::Codes;
use crate::labels::Dimension;

/// A parsed filter: every term must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// (dimension, label code) terms.
    pub labels: Vec<(Dimension, String)>,
    /// Region, exactly as the registry has it.
    pub region: Option<String>,
}

/// Characters of a filter.
pub const FILTER_MAX: usize = 2_000;
/// Terms of a filter (there are fewer dimensions than this).
pub const TERMS_MAX: usize = 32;

fn bad(field: &str, why: impl Into<String>) -> Error {
    Error::invalid(field, why)
}

impl Filter {
    /// Parses `text` (empty: everyone); errors name `field` and the bad term.
    pub fn parse(text: &str, field: &str) -> Result<Self, Error> {
        let mut filter = Filter::default();
        let text = text.trim();
        if text.is_empty() {
            return Ok(filter);
        }
        let length = text.chars().count();
        if length > FILTER_MAX {
            return Err(bad(
                field,
                format!("at most {FILTER_MAX} characters (got {length})"),
            ));
        }
        let terms = split_and(text);
        if terms.len() > TERMS_MAX {
            return Err(bad(
                field,
                format!("at most {TERMS_MAX} terms (got {})", terms.len()),
            ));
        }
        for term in terms {
            let (name, value) = term.split_once('=').ok_or_else(|| {
                bad(
                    field,
                    format!("{} is not a term of the form name = \"VALUE\"", quote(term)),
                )
            })?;
            let name = name.trim();
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .filter(|v| !v.contains('"'))
                .ok_or_else(|| {
                    bad(
                        field,
                        format!("the value of {} must be in double quotes", quote(name)),
                    )
                })?;
            if name == "region" {
                if filter.region.replace(value.to_owned()).is_some() {
                    return Err(bad(field, "region is given twice"));
                }
                continue;
            }
            let dimension = Dimension::from_name(name).ok_or_else(|| {
                let names: Vec<&str> = Dimension::ALL.iter().map(|d| d.name()).collect();
                bad(
                    field,
                    format!(
                        "unknown dimension {}; use one of {} or region",
                        quote(name),
                        names.join(", ")
                    ),
                )
            })?;
            if !dimension.has_label(value) {
                return Err(bad(
                    field,
                    format!("{} is not a label of {name}", quote(value)),
                ));
            }
            filter.labels.push((dimension, value.to_owned()));
        }
        Ok(filter)
    }

    /// Whether a classification in `region` with `codes` passes.
    pub fn matches(&self, region: &str, codes: &Codes) -> bool {
        self.region.as_ref().is_none_or(|r| r == region)
            && self.labels.iter().all(|(d, code)| codes.has(*d, code))
    }
}

/// The terms of `text` split on the word AND (any case) outside quotes.
fn split_and(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => quoted = !quoted,
            b if !quoted
                && b.is_ascii_whitespace()
                && text[i..].len() > 5
                && text
                    .get(i + 1..i + 4)
                    .is_some_and(|w| w.eq_ignore_ascii_case("and"))
                && bytes[i + 4].is_ascii_whitespace() =>
            {
                terms.push(text[start..i].trim());
                start = i + 5;
                i += 4;
            }
            _ => {}
        }
        i += 1;
    }
    terms.push(text[start..].trim());
    terms
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_bounded() {
        let many = vec![r#"trait = "LOYAL""#; TERMS_MAX + 1].join(" AND ");
        let e = Filter::parse(&many, "filter").unwrap_err();
        assert!(e.to_string().contains("at most 32 terms (got 33)"), "{e}");
        let long = format!(r#"region = "{}""#, "x".repeat(FILTER_MAX));
        let e = Filter::parse(&long, "filter").unwrap_err();
        assert!(e.to_string().contains("at most 2000 characters"), "{e}");
    }

    #[test]
    fn terms_are_joined_by_and() {
        let f = Filter::parse(
            r#"lifecycle_stage = "FREQUENT" and trait="LOYAL" AND region = "Los Ríos and Maule""#,
            "filter",
        )
        .unwrap();
        assert_eq!(
            f.labels,
            vec![
                (Dimension::LifecycleStage, "FREQUENT".to_owned()),
                (Dimension::Trait, "LOYAL".to_owned())
            ]
        );
        assert_eq!(f.region.as_deref(), Some("Los Ríos and Maule"));
        assert_eq!(Filter::parse("  ", "filter").unwrap(), Filter::default());
        // Multi-byte text next to a space is not split inside a character.
        assert!(Filter::parse(r#"region = "a ñño""#, "filter").is_ok());
    }

    #[test]
    fn unknown_names_and_labels_are_named() {
        for (text, needle) in [
            (r#"tier = "BOSS""#, "\"tier\""),
            (r#"account_tier = "JEFE""#, "\"JEFE\""),
            (r#"lifecycle_stage = "LOYAL""#, "\"LOYAL\""),
            ("volume = HIGH", "double quotes"),
            ("volume", "name = "),
        ] {
            let err = Filter::parse(text, "filter").unwrap_err();
            let v = &err.field_violations()[0];
            assert_eq!(v.field, "filter");
            assert!(v.description.contains(needle), "{text}: {}", v.description);
        }
    }
}
