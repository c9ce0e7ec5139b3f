//! Resource names (AIP-122): "customers/{id}" and "customers/{id}/{collection}/{id}".

use crate::Error;
use clientela_domain::ids::CustomerId;
use clientela_domain::text::quote;
use uuid::Uuid;

/// "customers/{id}".
pub fn customer(id: CustomerId) -> String {
    format!("customers/{id}")
}

/// "customers/{id}/{collection}/{child}".
pub fn child(customer: CustomerId, collection: &str, child: impl std::fmt::Display) -> String {
    format!("customers/{customer}/{collection}/{child}")
}

/// A UUID in the one spelling names use: lowercase, hyphenated. Upper case, braces, a
/// URN or no hyphens would make a second name for one resource (a cache key, an etag
/// comparison, a log search that misses), so they are refused.
fn canonical_uuid(s: &str) -> Option<Uuid> {
    Uuid::try_parse(s)
        .ok()
        .filter(|u| u.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == s)
}

/// Parses "customers/{id}"; the error names `field`.
pub fn parse_customer(name: &str, field: &str) -> Result<CustomerId, Error> {
    if name.is_empty() {
        return Err(Error::invalid(field, "required, e.g. customers/0192f0c1-…"));
    }
    name.strip_prefix("customers/")
        .and_then(canonical_uuid)
        .map(CustomerId::from_uuid)
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "{} is not a customer name (customers/{{uuid}})",
                    quote(name)
                ),
            )
        })
}

/// Parses "{collection}/{uuid}", a top-level resource (`collection` e.g.
/// "territoryModels"); the error names `field`.
pub fn parse_top(name: &str, collection: &str, field: &str) -> Result<Uuid, Error> {
    if name.is_empty() {
        return Err(Error::invalid(
            field,
            format!("required, e.g. {collection}/0192f0c1-…"),
        ));
    }
    name.strip_prefix(collection)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(canonical_uuid)
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "{} is not a name of the form {collection}/{{uuid}}",
                    quote(name)
                ),
            )
        })
}

/// Parses a parent that may be "customers/-" (every customer): `None` then.
pub fn parse_parent_or_any(name: &str, field: &str) -> Result<Option<CustomerId>, Error> {
    if name == "customers/-" {
        return Ok(None);
    }
    parse_customer(name, field).map(Some)
}

/// Parses "customers/{id}/{collection}/{child}".
pub fn parse_child(name: &str, collection: &str, field: &str) -> Result<(CustomerId, Uuid), Error> {
    let bad = || {
        Error::invalid(
            field,
            format!(
                "{} is not a name of the form customers/{{uuid}}/{collection}/{{uuid}}",
                quote(name)
            ),
        )
    };
    if name.is_empty() {
        return Err(Error::invalid(
            field,
            format!("required, e.g. customers/…/{collection}/…"),
        ));
    }
    let mut parts = name.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("customers"), Some(c), Some(coll), Some(id), None) if coll == collection => {
            let c = canonical_uuid(c).ok_or_else(bad)?;
            let id = canonical_uuid(id).ok_or_else(bad)?;
            Ok((CustomerId::from_uuid(c), id))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let id = CustomerId::new();
        assert_eq!(parse_customer(&customer(id), "name").unwrap(), id);
        let p = Uuid::now_v7();
        assert_eq!(
            parse_child(&child(id, "purchases", p), "purchases", "name").unwrap(),
            (id, p)
        );
        assert_eq!(parse_parent_or_any("customers/-", "parent").unwrap(), None);
    }

    #[test]
    fn bad_names_name_the_field() {
        for bad in ["", "customer/1", "customers/not-a-uuid", "customers/"] {
            let err = parse_customer(bad, "parent").unwrap_err();
            assert_eq!(err.field_violations()[0].field, "parent", "{bad}");
        }
        // One name per resource: other spellings of the same UUID are refused.
        let id = Uuid::now_v7();
        let hyphenated = id.hyphenated().to_string();
        for other in [
            hyphenated.to_uppercase(),
            format!("{{{hyphenated}}}"),
            id.simple().to_string(),
            id.urn().to_string(),
        ] {
            assert!(
                parse_customer(&format!("customers/{other}"), "name").is_err(),
                "{other}"
            );
            let child_name = format!("customers/{hyphenated}/purchases/{other}");
            assert!(
                parse_child(&child_name, "purchases", "name").is_err(),
                "{other}"
            );
            let parent_name = format!("customers/{other}/purchases/{hyphenated}");
            assert!(
                parse_child(&parent_name, "purchases", "name").is_err(),
                "{other}"
            );
        }
        assert!(parse_customer(&format!("customers/{hyphenated}"), "name").is_ok());
        let id = CustomerId::new();
        assert!(
            parse_child(
                &child(id, "returns", Uuid::now_v7()),
                "purchases",
                "purchase"
            )
            .is_err()
        );
    }
}
