//! A validation failure that names the field it is about, so the API can answer
//! INVALID_ARGUMENT with a field violation.

/// `ErrorInfo.domain` of every error Clientela returns.
pub const ERROR_DOMAIN: &str = "clientela";

/// One bad field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {description}")]
pub struct FieldViolation {
    /// Path of the field, relative to whatever validated it (callers prefix it).
    pub field: String,
    /// What is wrong, for people.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The same violation with its field under `prefix` ("address" + "region" →
    /// "address.region"; an empty field becomes the prefix itself).
    #[must_use]
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else if prefix.is_empty() {
            self.field
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// Collects violations so one answer names every bad field, not just the first. A field
/// is named once: a part that failed to translate and then counts as missing to the rule
/// that reads it gives one violation, the first.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>, std::collections::HashSet<String>);

impl Violations {
    /// Keeps `Ok` values, records errors.
    pub fn check<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(e);
                None
            }
        }
    }

    /// Keeps `Ok` values, records every violation of an `Err`.
    pub fn check_all<T>(&mut self, result: Result<T, Vec<FieldViolation>>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                e.into_iter().for_each(|e| self.add(e));
                None
            }
        }
    }

    /// Records one violation.
    pub fn push(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.add(FieldViolation::new(field, description));
    }

    fn add(&mut self, violation: FieldViolation) {
        // A set, not a scan: 5,000 bad lines make 20,000 violations, and a scan per one
        // took seconds.
        if self.1.insert(violation.field.clone()) {
            self.0.push(violation);
        }
    }

    /// How many so far: a caller compares before and after to tell whether a part failed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Err` with every violation, if any.
    pub fn finish(self) -> Result<(), Vec<FieldViolation>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }

    /// `value` when nothing was recorded; every violation otherwise.
    pub fn done<T>(self, value: Option<T>) -> Result<T, Vec<FieldViolation>> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            // A part that failed always recorded why, so `None` with no violation is a
            // bug of the caller's: say so rather than answer with nothing.
            _ if self.0.is_empty() => Err(vec![FieldViolation::new("", "incomplete")]),
            _ => Err(self.0),
        }
    }
}

/// Every violation under `prefix` (see [`FieldViolation::under`]).
pub fn under(prefix: &str, violations: Vec<FieldViolation>) -> Vec<FieldViolation> {
    violations.into_iter().map(|v| v.under(prefix)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn under_prefixes_the_field() {
        assert_eq!(
            FieldViolation::new("region", "x")
                .under("customer.address")
                .field,
            "customer.address.region"
        );
        assert_eq!(
            FieldViolation::new("", "x")
                .under("customer.emails[0]")
                .field,
            "customer.emails[0]"
        );
    }

    #[test]
    fn violations_collect_and_finish() {
        let mut v = Violations::default();
        assert_eq!(v.check(Ok::<_, FieldViolation>(1)), Some(1));
        assert!(v.is_empty());
        assert_eq!(v.check::<i32>(Err(FieldViolation::new("a", "x"))), None);
        v.push("b", "y");
        v.push("b", "said once");
        assert_eq!(
            v.check_all::<i32>(Err(vec![FieldViolation::new("c", "z")])),
            None
        );
        assert_eq!(v.len(), 3);
        let all = v.finish().unwrap_err();
        let fields: Vec<&str> = all.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["a", "b", "c"]);
        assert_eq!(Violations::default().done(Some(7)), Ok(7));
        assert_eq!(
            Violations::default().done::<i32>(None).unwrap_err()[0].description,
            "incomplete"
        );
        assert_eq!(
            under("purchase", vec![FieldViolation::new("lines[0]", "x")])[0].field,
            "purchase.lines[0]"
        );
        assert_eq!(
            FieldViolation::new("[2]", "x")
                .under("customer.emails")
                .field,
            "customer.emails[2]"
        );
    }
}
