//! Idempotency keys (`request_id`): a request sent again with the same key gets the
//! first answer, and the same key with a different request is ALREADY_EXISTS (Stripe's
//! rule), so a client that reuses a key by mistake learns it instead of receiving
//! somebody else's resource.

use clientela_domain::text::quote;
use sea_orm::sea_query::{Alias, Expr, OnConflict, Query, Table, TableCreateStatement};
use sea_orm::{ConnectionTrait, ExprTrait};
use sea_orm_migration::schema::{big_integer, blob, text, timestamp_with_time_zone};
use serde::Serialize;

use crate::{Db, Error, WriteTx};

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

    /// The key `id` of a command: the method, the caller and the request as encoded
    /// (prost encodes a message's fields in a fixed order), so the same key sent to
    /// another method or by another caller is refused too.
    pub fn of_command(
        id: String,
        method: &str,
        actor: &str,
        request: &impl prost::Message,
    ) -> Self {
        let mut bytes = Vec::with_capacity(method.len() + actor.len() + 2 + request.encoded_len());
        for part in [method, actor] {
            bytes.extend_from_slice(part.as_bytes());
            bytes.push(0);
        }
        request.encode_raw(&mut bytes);
        Self {
            id,
            fingerprint: i64::from_ne_bytes(fnv1a(&bytes).to_ne_bytes()),
        }
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

/// The table where a service keeps each command's answer by its key; the service's
/// migration creates it with [`answers_table`].
const ANSWERS: &str = "command_answers";

/// `command_answers`, for a service's migration.
pub fn answers_table() -> TableCreateStatement {
    Table::create()
        .table(Alias::new(ANSWERS))
        .col(text(Alias::new("request_id")).primary_key())
        .col(big_integer(Alias::new("fingerprint")))
        .col(blob(Alias::new("answer")))
        .col(timestamp_with_time_zone(Alias::new("created_at")))
        .to_owned()
}

/// The answer stored under `key`, if any; ALREADY_EXISTS when the key came with another
/// request.
async fn answer_of<R: prost::Message + Default>(
    conn: &impl ConnectionTrait,
    key: &RequestKey,
) -> Result<Option<R>, Error> {
    let select = Query::select()
        .columns([Alias::new("fingerprint"), Alias::new("answer")])
        .from(Alias::new(ANSWERS))
        .and_where(Expr::col(Alias::new("request_id")).eq(key.id.as_str()))
        .to_owned();
    let Some(row) = conn.query_one(&select).await? else {
        return Ok(None);
    };
    key.check_replay(Some(row.try_get("", "fingerprint")?))?;
    let bytes: Vec<u8> = row.try_get("", "answer")?;
    R::decode(bytes.as_slice())
        .map(Some)
        .map_err(|e| Error::Internal(format!("stored answer of {}: {e}", quote(&key.id))))
}

/// Runs `command` in one write transaction and commits it; with a key, at most once: the
/// answer is stored in the same transaction, and the key again answers with it (a
/// concurrent twin that loses the race on the key rolls back and answers the winner's).
/// An error is not stored: a retry runs again against what is there then.
pub async fn once<R>(
    db: &Db,
    key: Option<&RequestKey>,
    command: impl AsyncFnOnce(&WriteTx) -> Result<R, Error>,
) -> Result<R, Error>
where
    R: prost::Message + Default,
{
    let tx = db.begin_write().await?;
    if let Some(key) = key
        && let Some(answer) = answer_of(tx.conn(), key).await?
    {
        return Ok(answer);
    }
    let answer = command(&tx).await?;
    if let Some(key) = key {
        let insert = Query::insert()
            .into_table(Alias::new(ANSWERS))
            .columns([
                Alias::new("request_id"),
                Alias::new("fingerprint"),
                Alias::new("answer"),
                Alias::new("created_at"),
            ])
            .values_panic([
                key.id.as_str().into(),
                key.fingerprint.into(),
                answer.encode_to_vec().into(),
                crate::time::now().into(),
            ])
            .on_conflict(
                OnConflict::column(Alias::new("request_id"))
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        if tx.conn().execute(&insert).await?.rows_affected() == 0 {
            drop(tx);
            return answer_of(db.conn(), key).await?.ok_or_else(|| {
                Error::Internal(format!("the answer of {} vanished", quote(&key.id)))
            });
        }
    }
    tx.commit().await?;
    Ok(answer)
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
        // A command's key tells the method and the caller apart as well as the body.
        let body = prost_types::Timestamp {
            seconds: 7,
            nanos: 0,
        };
        let of = |method: &str, actor: &str, seconds: i64| {
            let body = prost_types::Timestamp { seconds, ..body };
            RequestKey::of_command("k".into(), method, actor, &body).fingerprint
        };
        assert_eq!(of("Assign", "ana", 7), of("Assign", "ana", 7));
        for other in [
            of("Unpin", "ana", 7),
            of("Assign", "beto", 7),
            of("Assign", "ana", 8),
        ] {
            assert_ne!(other, of("Assign", "ana", 7));
        }
        // Pinned (FNV-1a 64 reference value): a stored fingerprint must mean the same
        // thing after an upgrade.
        assert_eq!(fnv1a(b"clientela"), 0x6318_f7e3_ec7a_f3e2);
    }
}
