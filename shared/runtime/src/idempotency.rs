//! Idempotency keys (`request_id`): a request sent again with the same key gets the
//! first answer, and the same key with a different request is ALREADY_EXISTS (Stripe's
//! rule), so a client that reuses a key by mistake learns it instead of receiving
//! somebody else's resource.

use clientela_domain::text::quote;
use serde::Serialize;

use crate::Error;

/// `ErrorInfo.reason` of a key reused with another request.
pub const REUSED_REASON: &str = "REQUEST_ID_REUSED";

/// A caller's key and the fingerprint of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    /// The key, as given.
    pub id: String,
    /// FNV-1a of the request's validated content (its JSON form: the shape stored events
    /// already keep stable), stored beside the key.
    pub fingerprint: i64,
}

impl RequestKey {
    /// The key `id` of a request whose content is `body`.
    pub fn new(id: String, body: &impl Serialize) -> Result<Self, Error> {
        let json = serde_json::to_vec(body)
            .map_err(|e| Error::Internal(format!("cannot fingerprint a request: {e}")))?;
        Ok(Self {
            id,
            fingerprint: i64::from_ne_bytes(fnv1a(&json).to_ne_bytes()),
        })
    }

    /// Whether an earlier request stored with this key and `stored` fingerprint is this
    /// one. Rows written before fingerprints were kept (`None`) are taken as the same.
    pub fn check_replay(&self, stored: Option<i64>) -> Result<(), Error> {
        match stored {
            Some(stored) if stored != self.fingerprint => Err(Error::already_exists(
                REUSED_REASON,
                format!(
                    "request_id {} was used before with a different request; use a new \
                     request_id for a new request",
                    quote(&self.id)
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// 64-bit FNV-1a: stable across processes and versions, which `DefaultHasher` does not
/// promise; enough to tell a key's requests apart (not a defence against forgery).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_same_request_replays_and_another_is_refused() {
        let key = RequestKey::new("erp-1".into(), &("Ana", 1)).unwrap();
        let again = RequestKey::new("erp-1".into(), &("Ana", 1)).unwrap();
        assert!(again.check_replay(Some(key.fingerprint)).is_ok());
        let other = RequestKey::new("erp-1".into(), &("Ana", 2)).unwrap();
        let refused = other.check_replay(Some(key.fingerprint)).unwrap_err();
        assert_eq!(refused.reason(), REUSED_REASON);
        assert_eq!(refused.code(), tonic::Code::AlreadyExists);
        assert!(other.check_replay(None).is_ok());
        // Pinned (FNV-1a 64 reference value): a stored fingerprint must mean the same
        // thing after an upgrade.
        assert_eq!(fnv1a(b"clientela"), 0x6318_f7e3_ec7a_f3e2);
    }
}
