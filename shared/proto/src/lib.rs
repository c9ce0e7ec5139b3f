//! Generated protobuf messages and tonic clients/servers for every Clientela service,
//! plus the encoded file descriptor set that server reflection serves.

#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

include!(concat!(env!("OUT_DIR"), "/mod.rs"));

pub mod codec;
pub mod maps;

/// Every Clientela proto file (and its imports), encoded as a `FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/clientela_descriptor.bin"));
