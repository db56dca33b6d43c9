//! Supervisor tests: the whole cool-off schedule, in paused tokio time.

use super::*;

// ---------------------------------------------------------------------------
// The whole cool-off schedule, in paused tokio time
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn cooloff_schedule_with_paused_time() {
    use tokio::time::{Instant, advance};

    let base = t0();
    let origin = Instant::now();
    // The driver's clock: wall time that moves with tokio's paused time.
    let clock = || base + (Instant::now() - origin);
    // The tokio instant the driver sleeps until for a wall-clock deadline.
    let wake_at = |t: Time| origin + (t - base).to_std().unwrap();

    let profile = worker();
    let policy = Policy {
        cycle: None,
        ..Policy::default()
    };
    let mut sup = Supervision::new("worker.1", clock());
    let step = |sup: &mut Supervision, input: Input, u: f64| {
        let mut jitter = move || u;
        let mut cx = ctx(&profile, &policy, clock(), &mut jitter);
        sup.step(&mut cx, input)
    };

    // (jitter, half, full in minutes) for crashes 1..=8.
    let schedule: [(f64, u64, u64); 8] = [
        (0.5, 0, 0),
        (0.0, 10, 20),
        (0.999, 20, 40),
        (0.5, 30, 60),
        (0.0, 90, 180),
        (0.999, 160, 320),
        (0.25, 160, 320),
        (0.0, 160, 320),
    ];

    step(&mut sup, Input::Start, 0.5);
    for (i, (u, half, full)) in schedule.into_iter().enumerate() {
        let n = i as u32 + 1;
        let run_id = sup.run.as_ref().unwrap().id.clone();
        let at = clock();
        step(
            &mut sup,
            Input::Spawned {
                run_id: run_id.clone(),
                pid: 100 + n,
                at,
            },
            u,
        );
        assert_eq!(sup.state, State::Up, "crash {n}");
        // Up for a while, shorter than the stable window.
        advance(Duration::from_secs(42)).await;
        let crashed_at = clock();
        let out = step(
            &mut sup,
            Input::Exited {
                run_id,
                end: exited_code(1, crashed_at),
            },
            u,
        );
        assert_eq!(sup.crashes, n, "crash {n}");
        assert_eq!(logs(&out)[0], "Process exited with status 1");

        if n == 1 {
            // Restarted at once, no cool-off.
            assert_eq!(sup.state, State::Starting);
            assert_eq!(sup.next_restart_at, None);
            assert_eq!(sup.next_deadline(), None);
            assert_eq!(out.last(), Some(&spawn("worker.1.2")));
            continue;
        }

        assert_eq!(sup.state, State::Crashed, "crash {n}");
        let deadline = sup.next_deadline().expect("a restart deadline");
        assert_eq!(Some(deadline), sup.next_restart_at, "crash {n}");
        let delay = (deadline - crashed_at).to_std().unwrap();
        let (half, full) = (mins(half), mins(full));
        assert!(delay >= half && delay <= full, "crash {n}: {delay:?}");
        assert_eq!(delay, full.mul_f64(0.5 + 0.5 * u), "crash {n}");

        // Just short of the deadline: nothing happens.
        let wake = wake_at(deadline);
        advance(wake - Instant::now() - Duration::from_secs(1)).await;
        assert_eq!(step(&mut sup, Input::Tick, u), vec![], "crash {n}");
        assert_eq!(sup.state, State::Crashed);

        // At the deadline the restart is spawned.
        advance(wake - Instant::now()).await;
        assert_eq!(Instant::now(), wake);
        assert_eq!(clock(), deadline);
        assert_eq!(Instant::now() - origin - (crashed_at - base).to_std().unwrap(), delay);
        let out = step(&mut sup, Input::Tick, u);
        let next_run = format!("worker.1.{}", n + 1);
        assert_eq!(
            out,
            start_actions(State::Crashed, "crash_restart", WORKER_CMD, &next_run),
            "crash {n}"
        );
        assert_eq!(sup.next_restart_at, None);
        assert_eq!(sup.restarts, n);
    }
    assert_eq!(sup.runs, 9);
}
