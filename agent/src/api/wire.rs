//! What tonic answers before a handler runs, in the codes DESIGN §9 promises.
//!
//! tonic decodes a request before the handler sees it, and answers a failure
//! itself: bytes that do not decode (invalid UTF-8 in a string, a truncated
//! varint, garbage) are `INTERNAL`, a message over the size limit
//! `OUT_OF_RANGE`. [`Codes`] wraps each served service and rewrites such an
//! answer's status (it travels in the response headers, the call having
//! failed before any reply): bytes that do not decode are `INVALID_ARGUMENT`
//! naming the field prost names, a message over the limit
//! `RESOURCE_EXHAUSTED`. It also bounds every status message, whoever wrote
//! it, to [`MAX_MESSAGE`] bytes: C-core clients reject a reply whose
//! message is too long.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tower::Service;

use super::status::detailed;
use crate::names;

/// The longest status message sent.
pub const MAX_MESSAGE: usize = 1024;

const DECODE: &str = "failed to decode Protobuf message: ";
const COMPRESSION_FLAG: &str = "protocol error: received message with invalid compression flag";
const TOO_LARGE: &str = "Error, decoded message length too large: ";

/// A served service whose early answers carry the right codes (see the module docs).
#[derive(Clone)]
pub struct Codes<S>(pub S);

impl<S: NamedService> NamedService for Codes<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Codes<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = self.0.call(req);
        Box::pin(async move {
            let mut response = fut.await?;
            if let Some(status) = Status::from_header_map(response.headers())
                && status.code() != Code::Ok
                && let Some(fixed) = remap(&status)
            {
                let headers = response.headers_mut();
                headers.remove(Status::GRPC_MESSAGE);
                headers.remove(Status::GRPC_STATUS_DETAILS);
                // Only fails for details that are not valid header bytes; there are none.
                let _ = fixed.add_header(headers);
            }
            Ok(response)
        })
    }
}

/// The status to send instead of `status`, when it is not the one to send.
pub fn remap(status: &Status) -> Option<Status> {
    let msg = status.message();
    let fixed = match status.code() {
        Code::Internal if msg.starts_with(DECODE) => {
            let (field, message) = decode_error(&msg[DECODE.len()..]);
            detailed(Code::InvalidArgument, message, "INVALID_FIELD", Some(&field))
        }
        Code::Internal if msg.starts_with(COMPRESSION_FLAG) => detailed(
            Code::InvalidArgument,
            "request: not a gRPC message (bad compression flag)",
            "INVALID_FIELD",
            Some("request"),
        ),
        Code::OutOfRange if msg.starts_with(TOO_LARGE) => detailed(
            Code::ResourceExhausted,
            format!("request: message too large ({})", &msg[TOO_LARGE.len()..]),
            "MESSAGE_TOO_LARGE",
            None,
        ),
        _ if msg.len() > MAX_MESSAGE => status.clone(),
        _ => return None,
    };
    let bounded = names::cut(fixed.message(), MAX_MESSAGE);
    // The details go with the bounded message.
    Some(Status::with_details(
        fixed.code(),
        bounded,
        fixed.details().to_vec().into(),
    ))
}

/// prost's `Msg.field: Inner.field: description` (innermost first) as
/// the field `field.inner` and the message `field.inner: does not decode:
/// description`.
fn decode_error(rest: &str) -> (String, String) {
    let mut fields = Vec::new();
    let mut description = rest;
    while let Some((head, tail)) = description.split_once(": ") {
        let Some((message, field)) = head.split_once('.') else {
            break;
        };
        let ident = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !message.starts_with(|c: char| c.is_ascii_uppercase()) || !ident(message) || !ident(field) {
            break;
        }
        fields.push(field);
        description = tail;
    }
    fields.reverse();
    let field = if fields.is_empty() {
        "request".to_string()
    } else {
        fields.join(".")
    };
    let message = format!("{field}: does not decode: {description}");
    (field, message)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
