//! Unit tests of the shutdown value: every waiter wakes, early or late.

use std::time::Duration;

#[tokio::test]
async fn every_waiter_wakes_on_fire_or_when_the_trigger_is_gone() {
    let (trigger, shutdown) = super::channel();
    let early = shutdown.wait();
    let waiter = tokio::spawn(shutdown.clone().wait());
    // Bounded wait that proves nothing happens before the fire.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), shutdown.wait())
            .await
            .is_err()
    );
    trigger.fire();
    waiter.await.unwrap();
    early.await;
    shutdown.wait().await;

    let (trigger, shutdown) = super::channel();
    drop(trigger);
    shutdown.wait().await;
}
