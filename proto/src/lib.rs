//! The `dyno.v1` protocol: messages and tonic clients/servers generated from
//! `proto/dyno/v1/dyno.proto` at build time (protox, no system `protoc`).

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("dyno.v1");
}

/// Encoded `FileDescriptorSet` of `dyno.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dyno_descriptor.bin"));
