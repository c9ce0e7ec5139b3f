//! Opaque page tokens (AIP-158): a cursor plus a fingerprint of the request's filters,
//! so a token cannot be replayed against a different query.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Default and maximum page sizes.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// See [`DEFAULT_PAGE_SIZE`].
pub const MAX_PAGE_SIZE: u64 = 1000;

/// The page size a request asked for: 0 means the default, above the maximum is capped,
/// negative is an error.
pub fn page_size(requested: i32, field: &str) -> Result<u64, Error> {
    match u64::try_from(requested) {
        Err(_) => Err(Error::invalid(field, "must not be negative")),
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) => Ok(n.min(MAX_PAGE_SIZE)),
    }
}

#[derive(Serialize, serde::Deserialize)]
struct Envelope<C> {
    /// Fingerprint of the query the token belongs to.
    q: u64,
    /// The position after the last item returned.
    c: C,
}

/// Encodes a cursor for the query whose filters hash to `query`.
pub fn encode<C: Serialize>(query: u64, cursor: &C) -> String {
    // Serializing plain cursor structs cannot fail; an empty token just ends paging.
    serde_json::to_vec(&Envelope {
        q: query,
        c: cursor,
    })
    .map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
    .unwrap_or_default()
}

/// Decodes a token produced by [`encode`] for the same query. Empty → `None`.
pub fn decode<C: DeserializeOwned>(
    token: &str,
    query: u64,
    field: &str,
) -> Result<Option<C>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let envelope: Envelope<C> = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            // Named after the field: a preview token is not a page token.
            let kind = field.replace('_', " ");
            Error::invalid(field, format!("not a {kind} this server issued"))
        })?;
    if envelope.q != query {
        let kind = field.replace('_', " ");
        return Err(Error::invalid(
            field,
            format!("the {kind} belongs to a request with other filters or order"),
        ));
    }
    Ok(Some(envelope.c))
}

/// A stable fingerprint of a query's parameters (FNV-1a over their debug text).
pub fn fingerprint(parts: &impl std::fmt::Debug) -> u64 {
    crate::idempotency::fnv1a(format!("{parts:?}").as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_query() {
        let q = fingerprint(&("CUSTOMER", "tag"));
        let token = encode(q, &(42_i64, "abc".to_owned()));
        let back: Option<(i64, String)> = decode(&token, q, "page_token").unwrap();
        assert_eq!(back, Some((42, "abc".to_owned())));
        let other = fingerprint(&("PROSPECT", "tag"));
        assert!(decode::<(i64, String)>(&token, other, "page_token").is_err());
        assert!(decode::<(i64, String)>("garbage!", q, "page_token").is_err());
        assert_eq!(decode::<(i64, String)>("", q, "page_token").unwrap(), None);
        // The message names the kind of token the field takes.
        let refused = decode::<(i64, String)>("garbage!", q, "preview_token").unwrap_err();
        assert!(
            format!("{refused}").contains("not a preview token this server issued"),
            "{refused}"
        );
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0, "page_size").unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(5000, "page_size").unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(-1, "page_size").is_err());
    }
}
