//! `dynoagent`: the per-host dyno runtime agent (and, as `dynoagent shim`,
//! the parent of one dyno run).
fn main() {
    std::process::exit(dyno_agent::daemon::main());
}
