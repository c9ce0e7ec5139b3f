//! The codec every generated server and client uses: prost's, except that a request the
//! server cannot decode is the caller's mistake (INVALID_ARGUMENT naming the field, in
//! proto terms), not INTERNAL. tonic-prost maps every decode failure to INTERNAL, which
//! the gRPC status-code table asks for on the client side, where a bad message is the
//! server's fault; that is kept for responses.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.reason` of a request that is not valid protobuf.
pub const MALFORMED_REASON: &str = "MALFORMED_MESSAGE";

/// [`tonic_prost::ProstCodec`] with caller-facing decode errors (see the module doc).
#[derive(Debug, Clone)]
pub struct ClientelaCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ClientelaCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ClientelaCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ClientelaDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ClientelaDecoder(PhantomData)
    }
}

/// Decodes `U` with prost; see [`decode_error`] for what a failure becomes.
#[derive(Debug, Clone)]
pub struct ClientelaDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for ClientelaDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| decode_error(std::any::type_name::<U>(), &e))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// The status for a message of Rust type `rust_type` that failed to decode. Request
/// messages are the only generated types named `…Request` (buf lint's
/// RPC_REQUEST_STANDARD_NAME), so a failure to decode one happens on the server and is
/// the caller's mistake; anything else is a response the server got wrong.
fn decode_error(rust_type: &str, error: &prost::DecodeError) -> Status {
    let message_name = proto_name(rust_type);
    let (field, description) = split_decode_error(&error.to_string());
    if !message_name.ends_with("Request") {
        return Status::internal(format!(
            "the server's {message_name} could not be decoded: {description}"
        ));
    }
    tracing::debug!(message = %message_name, %error, "undecodable request");
    let text = match &field {
        Some(field) => format!("malformed {message_name}: {field}: {description}"),
        None => format!("malformed {message_name}: {description}"),
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(
        MALFORMED_REASON,
        clientela_domain::error::ERROR_DOMAIN,
        std::collections::HashMap::new(),
    );
    details.add_bad_request_violation(field.unwrap_or_default(), description);
    Status::with_error_details(Code::InvalidArgument, text, details)
}

/// `clientela_proto::clientela::registry::v1::Customer` → `clientela.registry.v1.Customer`
/// (the generated modules mirror the proto packages).
fn proto_name(rust_type: &str) -> String {
    let path = rust_type
        .strip_prefix("clientela_proto::")
        .unwrap_or(rust_type);
    path.replace("::", ".")
}

/// prost's `DecodeError` prints "failed to decode Protobuf message: " then one
/// "Message.field: " per nesting level (innermost first), then the reason; it offers no
/// accessor for the parts. The nesting becomes a proto field path ("customer.display_name").
fn split_decode_error(text: &str) -> (Option<String>, String) {
    let rest = text
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(text);
    let mut fields = Vec::new();
    let mut remaining = rest;
    while let Some((head, tail)) = remaining.split_once(": ") {
        let Some((message, field)) = head.split_once('.') else {
            break;
        };
        let is_ident =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_ident(message) || !is_ident(field) {
            break;
        }
        fields.push(field.strip_prefix("r#").unwrap_or(field).to_owned());
        remaining = tail;
    }
    fields.reverse();
    let field = (!fields.is_empty()).then(|| fields.join("."));
    (field, remaining.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::clientela::registry::v1 as pb;

    fn decode<U: Message + Default>(bytes: &[u8]) -> Status {
        U::decode(bytes)
            .map(|_| ())
            .map_err(|e| decode_error(std::any::type_name::<U>(), &e))
            .unwrap_err()
    }

    #[test]
    fn an_undecodable_request_is_invalid_argument_naming_the_proto_field() {
        let customer = pb::Customer {
            display_name: "x".into(),
            ..Default::default()
        };
        let mut bytes = pb::CreateCustomerRequest {
            customer: Some(customer),
            ..Default::default()
        }
        .encode_to_vec();
        // The last byte is the name's one character: make it invalid UTF-8.
        *bytes.last_mut().unwrap() = 0xff;
        let status = decode::<pb::CreateCustomerRequest>(&bytes);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "malformed clientela.registry.v1.CreateCustomerRequest: customer.display_name: \
             invalid string value: data is not UTF-8 encoded"
        );
        let details = status.get_error_details();
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert_eq!(violation.field, "customer.display_name");
        assert_eq!(details.error_info().unwrap().reason, MALFORMED_REASON);
    }

    #[test]
    fn random_bytes_are_invalid_argument_without_a_field() {
        let status = decode::<pb::GetCustomerRequest>(&[0xff, 0xff, 0xff]);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with("malformed clientela.registry.v1.GetCustomerRequest: ")
        );
        assert!(!status.message().contains("failed to decode Protobuf"));
    }

    #[test]
    fn an_undecodable_response_stays_internal() {
        let status = decode::<pb::Customer>(&[0xff, 0xff, 0xff]);
        assert_eq!(status.code(), Code::Internal);
    }
}
