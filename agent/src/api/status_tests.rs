//! Unit tests of the error → gRPC status mapping.

use tonic::Code;

use crate::error::Error;

#[test]
fn every_variant_maps_to_a_specific_code() {
    let cases = [
        (Error::invalid("app", "bad"), Code::InvalidArgument),
        (Error::NotFound("x".into()), Code::NotFound),
        (Error::ResourceExhausted("x".into()), Code::ResourceExhausted),
        (Error::FailedPrecondition("x".into()), Code::FailedPrecondition),
        (Error::Unavailable("x".into()), Code::Unavailable),
        (Error::Upstream("x".into()), Code::Unavailable),
        (Error::Internal("x".into()), Code::Internal),
    ];
    for (e, code) in cases {
        assert_eq!(tonic::Status::from(e).code(), code);
    }
    assert_eq!(
        tonic::Status::from(Error::invalid("env.1X", "bad key")).message(),
        "env.1X: bad key"
    );
}
