//! The event feed's wire form: events stored encoded as the feed sends them, and
//! decoded back into messages for tonic's codec.

use super::*;

/// The feed's wire form of an event: an encoded `clientela.registry.v1.Event`.
pub fn wire_encoder() -> WireEncoder {
    WireEncoder::new(|event| prost::Message::encode_to_vec(&event_to(event)))
}

/// Decodes stored wire forms. Decoding and re-encoding costs a fraction of parsing the
/// JSON record and converting it (docs/BENCHMARKS.md); tonic's codec needs a message.
pub(super) fn decode_events(wire: &[(i64, Vec<u8>)]) -> Result<Vec<pb::Event>, Error> {
    wire.iter()
        .map(|(sequence, bytes)| {
            prost::Message::decode(bytes.as_slice()).map_err(|e| {
                Error::Internal(format!("corrupt event {sequence} in the database: {e}"))
            })
        })
        .collect()
}
