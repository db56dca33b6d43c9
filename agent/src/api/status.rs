//! The one mapping of the agent's [`Error`] to gRPC status codes: bad input
//! is `INVALID_ARGUMENT`, an unknown dyno `NOT_FOUND`, no room
//! `RESOURCE_EXHAUSTED`, a request id reused for another request
//! `FAILED_PRECONDITION`, a start a stop cancelled `ABORTED`, never `UNKNOWN`.
//!
//! Every status also carries the richer error model's details (in
//! `grpc-status-details-bin`, a `google.rpc.Status`): a `google.rpc.ErrorInfo`
//! whose `reason` a program can match on (domain [`DOMAIN`]), and for bad
//! input a `google.rpc.BadRequest` naming the field.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;

/// The `ErrorInfo.domain` of every error the agent sends.
pub const DOMAIN: &str = "dynoagent";

/// A status with its details: `ErrorInfo { reason, domain, metadata }`, and
/// a `BadRequest` field violation when `field` is given.
pub fn detailed(code: Code, message: impl Into<String>, reason: &str, field: Option<&str>) -> Status {
    let message = message.into();
    let mut metadata = HashMap::new();
    if let Some(field) = field {
        metadata.insert("field".to_string(), field.to_string());
    }
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, metadata);
    if let Some(field) = field {
        details.add_bad_request_violation(field, crate::names::cut(&message, 300));
    }
    Status::with_error_details(code, message, details)
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        let msg = e.to_string();
        match e {
            Error::InvalidArgument { field, .. } => detailed(Code::InvalidArgument, msg, "INVALID_FIELD", Some(&field)),
            Error::NotFound(_) => detailed(Code::NotFound, msg, "DYNO_NOT_FOUND", None),
            Error::FailedPrecondition(r, _) => detailed(Code::FailedPrecondition, msg, r.as_str(), None),
            Error::ResourceExhausted(r, _) => detailed(Code::ResourceExhausted, msg, r.as_str(), None),
            Error::Aborted(_) => detailed(Code::Aborted, msg, "START_CANCELLED", None),
            Error::Unavailable(_) => detailed(Code::Unavailable, msg, "AGENT_UNAVAILABLE", None),
            Error::Upstream(_) => detailed(Code::Unavailable, msg, "UPSTREAM_FAILED", None),
            Error::Internal(_) => detailed(Code::Internal, msg, "INTERNAL", None),
        }
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
