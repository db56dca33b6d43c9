//! Builders shared by the engine's unit tests: dyno specs and records
//! without a state directory, a fixed time.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use chrono::TimeZone;

use super::Key;
use super::model::{DynoRecord, DynoSpec};
use crate::supervisor::{State, Supervision};
use crate::time::Time;

pub(super) fn t0() -> Time {
    chrono::Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

/// A worker (or `web.N`: a web) dyno of app `shop`.
pub(super) fn spec(name: &str, size: &str) -> DynoSpec {
    DynoSpec {
        app: "shop".into(),
        name: name.into(),
        ptype: name.split('.').next().unwrap_or(name).into(),
        command: "bundle exec sidekiq".into(),
        size: size.into(),
        release: "v1".into(),
        env: BTreeMap::from([("RACK_ENV".to_string(), "production".to_string())]),
        slug: "/slugs/shop.tgz".into(),
        slug_sha256: Some("ab".repeat(32)),
        app_dir: PathBuf::from("/var/lib/dynoagent/slugs/ab/app"),
        stack: "heroku-24".into(),
        one_off: false,
        time_to_live_secs: 24 * 3600,
        port: None,
        memory_quota_bytes: 512 << 20,
        labels: BTreeMap::new(),
        attach: None,
    }
}

/// A dyno record in `state`, with `uid`.
pub(super) fn record(name: &str, size: &str, state: State, uid: u32) -> DynoRecord {
    let mut sup = Supervision::new(format!("id-{name}"), t0());
    sup.state = state;
    DynoRecord {
        id: format!("id-{name}"),
        spec: spec(name, size),
        sup,
        created_at: t0(),
        request_id: None,
        past_request_ids: VecDeque::new(),
        uid,
        address: None,
        last_spawn_error: None,
    }
}

pub(super) fn key(name: &str) -> Key {
    ("shop".into(), name.into())
}
