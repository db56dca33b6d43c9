//! Runtime metrics lines with every field of Heroku's log-runtime-metrics
//! (DESIGN §10a), sane for a busy and an idle dyno; the dyno metadata
//! variables as a dyno itself sees them.

use std::collections::BTreeMap;

use dyno_tests::*;

/// The `key=value` fields of a metrics line, in order.
fn fields(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap_or_else(|| panic!("{f:?} in {line}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn number(v: &str, unit: &str) -> f64 {
    v.strip_suffix(unit)
        .unwrap_or_else(|| panic!("{v:?} does not end in {unit:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{v:?}: {e}"))
}

/// The dyno's metrics lines so far.
fn metrics_lines(a: &TestAgent, dyno: &str) -> Vec<String> {
    texts(&a.ctl_ok(&["logs", "--app", "shop", "--dyno", dyno, "-n", "100000"]))
        .into_iter()
        .filter(|l| l.starts_with(&format!("source={dyno} ")))
        .collect()
}

const FIELDS: [&str; 13] = [
    "source",
    "dyno",
    "sample#load_avg_1m",
    "sample#load_avg_5m",
    "sample#load_avg_15m",
    "sample#memory_total",
    "sample#memory_rss",
    "sample#memory_cache",
    "sample#memory_swap",
    "sample#memory_pgpgin",
    "sample#memory_pgpgout",
    "sample#memory_quota",
    "sample#cpu_ms",
];

#[test]
fn metrics_lines_carry_every_field_with_sane_values_for_a_busy_and_an_idle_dyno() {
    let a = TestAgent::start("metrics_interval = \"1s\"");
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "busy.1", &slug, "while :; do :; done");
    a.start_dyno("shop", "idle.1", &slug, "exec sleep 600");
    let busy = a.wait_state("shop", "busy.1", "up");
    let idle = a.wait_state("shop", "idle.1", "up");
    // Eight seconds of samples: the busy dyno's 1-minute load is then about
    // 1 - e^(-8/60) = 0.12 of its one runnable task.
    wait_for("eight metrics lines of each dyno", || {
        (metrics_lines(&a, "busy.1").len() >= 8 && metrics_lines(&a, "idle.1").len() >= 8).then_some(())
    });
    let last = |dyno: &str| -> BTreeMap<String, String> {
        let line = metrics_lines(&a, dyno).pop().unwrap();
        let f = fields(&line);
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, FIELDS, "{line}");
        f.into_iter().collect()
    };
    let (b, i) = (last("busy.1"), last("idle.1"));
    for (m, d, name) in [(&b, &busy, "busy.1"), (&i, &idle, "idle.1")] {
        assert_eq!(m["source"], name);
        assert_eq!(m["dyno"], format!("heroku.shop.{}", d["run_id"].as_str().unwrap()));
        assert_eq!(m["sample#memory_quota"], "512.00MB");
        let total = number(&m["sample#memory_total"], "MB");
        let rss = number(&m["sample#memory_rss"], "MB");
        let cache = number(&m["sample#memory_cache"], "MB");
        let swap = number(&m["sample#memory_swap"], "MB");
        assert!(rss > 0.0 && total >= rss + cache - 0.02 && total < 64.0, "{m:?}");
        assert!(swap >= 0.0 && swap <= total, "{m:?}");
        let pgin = number(&m["sample#memory_pgpgin"], "pages");
        let pgout = number(&m["sample#memory_pgpgout"], "pages");
        assert!(pgin > 0.0 && pgout <= pgin, "{m:?}");
        for k in ["sample#load_avg_1m", "sample#load_avg_5m", "sample#load_avg_15m"] {
            let l: f64 = m[k].parse().unwrap();
            assert!((0.0..=4.0).contains(&l), "{k} {m:?}");
        }
    }
    let load = |m: &BTreeMap<String, String>, k: &str| m[k].parse::<f64>().unwrap();
    // The busy dyno's own load (the host's is never 0 with it spinning).
    assert!(load(&b, "sample#load_avg_1m") >= 0.05, "{b:?}");
    assert!(
        load(&b, "sample#load_avg_1m") > load(&b, "sample#load_avg_15m"),
        "{b:?}"
    );
    // The idle dyno's: nothing of the busy one or of the host.
    for k in ["sample#load_avg_1m", "sample#load_avg_5m", "sample#load_avg_15m"] {
        assert_eq!(i[k], "0.00", "{i:?}");
    }
    let cpu = |m: &BTreeMap<String, String>| m["sample#cpu_ms"].parse::<u64>().unwrap();
    assert!(cpu(&b) >= 2000, "{b:?}");
    assert!(cpu(&i) < 500, "{i:?}");
    a.ctl_ok(&["stop", "--all"]);
    a.wait_state("shop", "busy.1", "down");
}

#[test]
fn the_dyno_metadata_variables_are_in_the_dynos_environment() {
    let a = TestAgent::start("");
    let slug = a.slug("s", &[]);
    a.ctl_ok(&start_args(
        "shop",
        "worker.1",
        &show(&slug),
        &[
            "--release",
            "v42",
            "--env",
            "HEROKU_DYNO_ID=forged",
            "--command",
            "echo \"meta app=$HEROKU_APP_NAME id=$HEROKU_DYNO_ID release=$HEROKU_RELEASE_VERSION dyno=$DYNO\"; exec sleep 600",
        ],
    ));
    let meta = |a: &TestAgent, run: &str| {
        let want = format!("meta app=shop id={run} release=v42 dyno=worker.1");
        wait_for("the dyno to print its metadata", || {
            texts(&a.ctl_ok(&["logs", "--app", "shop", "--dyno", "worker.1"]))
                .contains(&want)
                .then_some(())
        });
    };
    let d = a.wait_state("shop", "worker.1", "up");
    let first = d["run_id"].as_str().unwrap().to_string();
    meta(&a, &first);
    // A new run has a new id.
    a.ctl_ok(&["restart", "--app", "shop", "worker.1"]);
    let d = a.wait_dyno("shop", "worker.1", "a new run up", |d| {
        d["state"] == "up" && d["run_id"].as_str() != Some(first.as_str())
    });
    meta(&a, d["run_id"].as_str().unwrap());
    a.ctl_ok(&["stop", "--all"]);
    a.wait_state("shop", "worker.1", "down");
}
