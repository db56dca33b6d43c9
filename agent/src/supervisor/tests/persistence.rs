//! Supervisor tests: persistence (serde round trip) and the contract names.

use super::*;

// ---------------------------------------------------------------------------
// Persistence
// ---------------------------------------------------------------------------

#[test]
fn supervision_survives_a_serde_round_trip() {
    let mut d = Dyno::web().started_up();
    d.crash();
    d.spawned();
    d.port_bound();
    d.stop();
    let json = serde_json::to_string(&d.sup).unwrap();
    let back: Supervision = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d.sup);
    assert!(json.contains(r#""state":"up""#), "{json}");
    assert!(json.contains(r#""intent":"stop""#), "{json}");
    assert!(json.contains(r#""reason":"exit""#), "{json}");
}

#[test]
fn contract_names() {
    for (state, name) in [
        (State::Starting, "starting"),
        (State::Up, "up"),
        (State::Crashed, "crashed"),
        (State::Down, "down"),
    ] {
        assert_eq!(state.as_str(), name);
        assert_eq!(state.to_string(), name);
        assert_eq!(serde_json::to_string(&state).unwrap(), format!("\"{name}\""));
    }
    for (reason, name) in [
        (ExitReason::Exit, "exit"),
        (ExitReason::Signal, "signal"),
        (ExitReason::Oom, "oom"),
        (ExitReason::BootTimeout, "boot_timeout"),
        (ExitReason::Lost, "lost"),
        (ExitReason::Stopped, "stopped"),
        (ExitReason::StopTimeout, "stop_timeout"),
    ] {
        assert_eq!(reason.as_str(), name);
        assert_eq!(serde_json::to_string(&reason).unwrap(), format!("\"{name}\""));
    }
}
