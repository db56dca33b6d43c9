//! End-to-end tests of dynoagent live in `tests/*.rs`; their harness is
//! `tests/common/mod.rs` (included by each test file, so that it can name the
//! binaries under test through `CARGO_BIN_EXE_*`).
