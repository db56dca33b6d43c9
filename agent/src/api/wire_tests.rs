//! Unit tests of the early-answer codes: real prost decode errors and
//! tonic's size answer, remapped.

use dyno_proto::v1 as pb;
use prost::Message;
use tonic::{Code, Status};

use super::*;

/// The status tonic's prost codec sends for `bytes` as a `T`.
fn decode_status<T: Message + Default + std::fmt::Debug>(bytes: &[u8]) -> Status {
    let err = T::decode(bytes).expect_err("does not decode");
    Status::internal(err.to_string())
}

#[test]
fn bytes_that_do_not_decode_are_invalid_argument_naming_the_field() {
    // StartDynoRequest.app (field 1, length-delimited) holding invalid UTF-8.
    let bad_utf8 = [0x0a, 0x02, 0xff, 0xfe];
    let s = remap(&decode_status::<pb::StartDynoRequest>(&bad_utf8)).expect("remapped");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().starts_with("app: does not decode: "), "{}", s.message());

    // time_to_live (field 11) holding a Duration whose nanos varint is cut short.
    let nested = [0x5a, 0x02, 0x10, 0xff];
    let s = remap(&decode_status::<pb::StartDynoRequest>(&nested)).expect("remapped");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().starts_with("time_to_live"), "{}", s.message());

    // A varint cut short names its field.
    let s = remap(&decode_status::<pb::WatchEventsRequest>(&[0x08, 0xff])).expect("remapped");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(s.message(), "after_seq: does not decode: invalid varint");

    // Garbage (a key that is no key): the request as a whole.
    let s = remap(&decode_status::<pb::WatchEventsRequest>(&[0xff; 11])).expect("remapped");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().starts_with("request: does not decode: "), "{}", s.message());
}

#[test]
fn a_message_over_the_limit_is_resource_exhausted() {
    let tonic_says = Status::out_of_range(
        "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
    );
    let s = remap(&tonic_says).expect("remapped");
    assert_eq!(s.code(), Code::ResourceExhausted);
    assert!(s.message().contains("5000000 bytes"), "{}", s.message());
}

#[test]
fn a_bad_compression_flag_is_invalid_argument() {
    let s = remap(&Status::internal(
        "protocol error: received message with invalid compression flag: 7 (valid flags are 0 and 1), while sending request",
    ))
    .expect("remapped");
    assert_eq!(s.code(), Code::InvalidArgument);
}

#[test]
fn other_answers_are_kept_unless_their_message_is_too_long() {
    for s in [
        Status::internal("state dir: disk full"),
        Status::out_of_range("something else"),
        Status::invalid_argument("app: bad"),
    ] {
        assert!(remap(&s).is_none(), "{s:?}");
    }
    let long = Status::not_found("x".repeat(8192));
    let s = remap(&long).expect("cut");
    assert_eq!(s.code(), Code::NotFound);
    assert_eq!(s.message().len(), MAX_MESSAGE);
}

#[test]
fn remapped_answers_carry_their_details() {
    use tonic_types::StatusExt;
    let s = remap(&decode_status::<pb::WatchEventsRequest>(&[0x08, 0xff])).expect("remapped");
    let bad = s.get_details_bad_request().expect("a BadRequest");
    assert_eq!(bad.field_violations[0].field, "after_seq");
    assert_eq!(
        s.get_details_error_info().expect("an ErrorInfo").reason,
        "INVALID_FIELD"
    );

    let s = remap(&Status::out_of_range(
        "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
    ))
    .expect("remapped");
    assert_eq!(
        s.get_details_error_info().expect("an ErrorInfo").reason,
        "MESSAGE_TOO_LARGE"
    );

    // A long message is cut, its details kept.
    let long = crate::api::status::detailed(Code::Internal, "x".repeat(5000), "INTERNAL", None);
    let s = remap(&long).expect("remapped");
    assert!(s.message().len() <= MAX_MESSAGE + 64, "{}", s.message().len());
    assert_eq!(s.get_details_error_info().expect("kept").reason, "INTERNAL");
}
