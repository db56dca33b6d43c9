//! The agent's error type. Its one mapping to gRPC status codes is in
//! `api/status.rs`.

/// What went wrong with a request or inside the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; `field` names what was wrong.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// An unknown dyno.
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what the agent already holds (a request id
    /// reused for another request, a live dyno to remove, a cordoned host).
    #[error("{1}")]
    FailedPrecondition(Reason, String),
    /// A concurrent request undid this one (a stop cancelled a start in
    /// flight).
    #[error("{0}")]
    Aborted(String),
    /// No room on the host.
    #[error("{1}")]
    ResourceExhausted(Reason, String),
    /// The agent is shutting down.
    #[error("agent unavailable: {0}")]
    Unavailable(String),
    /// Something the agent depends on (a slug's server) failed in a way that
    /// may pass: worth retrying later.
    #[error("{0}")]
    Upstream(String),
    /// Anything else: I/O on the state directory, a spawn failure.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a request was refused, for a program to act on: the
/// `google.rpc.ErrorInfo` reason of `RESOURCE_EXHAUSTED` and
/// `FAILED_PRECONDITION` answers (stable names, DESIGN §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Admission: the size's memory does not fit what the host has left.
    InsufficientMemory,
    NoFreePort,
    NoFreeUid,
    /// Every `run.N` of the app is taken.
    NoOneOffNumber,
    /// The state disk is full: nothing durable can be written.
    StateDiskFull,
    /// The host is cordoned: no new starts.
    HostCordoned,
    /// Only a `down` dyno can be removed.
    DynoNotDown,
    /// A request id already belongs to another request.
    RequestIdReused,
    /// Exec or attach needs a running dyno (or one-off) and it is not.
    DynoNotRunning,
    /// An exec session could not be set up in the dyno.
    ExecFailed,
    /// The agent's descriptor limit (`RLIMIT_NOFILE`) has no room for the
    /// start (see `engine/fds.rs`).
    NoFreeDescriptors,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InsufficientMemory => "INSUFFICIENT_MEMORY",
            Reason::NoFreePort => "NO_FREE_PORT",
            Reason::NoFreeUid => "NO_FREE_UID",
            Reason::NoOneOffNumber => "NO_ONE_OFF_NUMBER",
            Reason::StateDiskFull => "STATE_DISK_FULL",
            Reason::HostCordoned => "HOST_CORDONED",
            Reason::DynoNotDown => "DYNO_NOT_DOWN",
            Reason::RequestIdReused => "REQUEST_ID_REUSED",
            Reason::DynoNotRunning => "DYNO_NOT_RUNNING",
            Reason::ExecFailed => "EXEC_FAILED",
            Reason::NoFreeDescriptors => "NO_FREE_DESCRIPTORS",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
