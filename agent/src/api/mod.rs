//! The tonic services of `dyno.v1` and everything between the wire and the
//! engine.
//!
//! - [`agent`]: `dyno.v1.Agent`, one handler per call, and `HostInfo`;
//! - [`usage`]: `dyno.v1.Usage`, billing's collect and ack;
//! - [`launch`]: the one path that starts a dyno from a slug (`StartDyno`
//!   and the daemon's sample app);
//! - [`validate`]: request validation, field by field;
//! - [`stream`]: the event and log stream pumps;
//! - [`session`]: `Attach` and `Exec`, a caller's terminal or streams joined
//!   to a command in a dyno;
//! - [`convert`]: engine types ↔ protobuf;
//! - [`status`]: the one `From<Error> for tonic::Status`;
//! - [`wire`]: the codes of what tonic answers before a handler runs
//!   (requests that do not decode, or are too large).
//!
//! Every error leaves through [`crate::error::Error`]'s one mapping to a gRPC
//! code: bad input is `INVALID_ARGUMENT` naming the field, an unknown dyno
//! `NOT_FOUND`; nothing here panics on input.

mod agent;
mod convert;
pub(crate) mod launch;
mod session;
mod status;
mod stream;
mod usage;
mod validate;
mod wire;

pub use self::agent::{AgentService, host_info};
pub use self::convert::{dyno_pb, event_pb, state_pb, timestamp};
pub use self::usage::UsageService;
pub use self::validate::validate_start;
pub use self::wire::{Codes, MAX_MESSAGE, remap};
