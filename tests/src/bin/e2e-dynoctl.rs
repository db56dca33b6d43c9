//! `dynoctl`: the ops command line of dynoagent.
fn main() {
    std::process::exit(dyno_agent::ctl::main());
}
