//! Unit tests of `process`.

use super::*;

#[test]
fn refuses_to_signal_init_or_everyone() {
    assert!(kill_group(1, libc::SIGTERM).is_err());
    assert!(kill_pid(0, libc::SIGTERM).is_err());
}

#[test]
fn fork_refuses_a_multi_threaded_process() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    let err = fork().expect_err("a second thread is running");
    assert!(err.to_string().contains("threads"), "{err}");
    drop(tx);
    let _ = other.join();
}
