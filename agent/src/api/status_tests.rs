//! Unit tests of the error → gRPC status mapping and its details.

use tonic::Code;
use tonic_types::StatusExt;

use crate::error::{Error, Reason};

#[test]
fn every_variant_maps_to_a_specific_code_and_reason() {
    let cases = [
        (Error::invalid("app", "bad"), Code::InvalidArgument, "INVALID_FIELD"),
        (Error::NotFound("x".into()), Code::NotFound, "DYNO_NOT_FOUND"),
        (
            Error::ResourceExhausted(Reason::NoFreePort, "x".into()),
            Code::ResourceExhausted,
            "NO_FREE_PORT",
        ),
        (
            Error::FailedPrecondition(Reason::HostCordoned, "x".into()),
            Code::FailedPrecondition,
            "HOST_CORDONED",
        ),
        (Error::Aborted("x".into()), Code::Aborted, "START_CANCELLED"),
        (Error::Unavailable("x".into()), Code::Unavailable, "AGENT_UNAVAILABLE"),
        (Error::Upstream("x".into()), Code::Unavailable, "UPSTREAM_FAILED"),
        (Error::Internal("x".into()), Code::Internal, "INTERNAL"),
    ];
    for (e, code, reason) in cases {
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), code);
        let info = status.get_details_error_info().expect("every status has an ErrorInfo");
        assert_eq!(info.reason, reason);
        assert_eq!(info.domain, "dynoagent");
    }
}

#[test]
fn bad_input_names_its_field_in_a_bad_request() {
    let status = tonic::Status::from(Error::invalid("env.1X", "bad key"));
    assert_eq!(status.message(), "env.1X: bad key");
    let bad = status.get_details_bad_request().expect("a BadRequest detail");
    assert_eq!(bad.field_violations.len(), 1);
    assert_eq!(bad.field_violations[0].field, "env.1X");
    assert_eq!(bad.field_violations[0].description, "env.1X: bad key");
    let info = status.get_details_error_info().expect("an ErrorInfo detail");
    assert_eq!(info.metadata.get("field").map(String::as_str), Some("env.1X"));
}

#[test]
fn other_codes_carry_no_bad_request() {
    let status = tonic::Status::from(Error::ResourceExhausted(Reason::InsufficientMemory, "full".into()));
    assert!(status.get_details_bad_request().is_none());
    assert_eq!(status.message(), "full");
}
