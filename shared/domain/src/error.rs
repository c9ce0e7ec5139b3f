//! A validation failure that names the field it is about, so the API can answer
//! INVALID_ARGUMENT with a field violation.

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
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

#[cfg(test)]
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
}
