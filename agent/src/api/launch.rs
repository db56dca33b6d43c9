//! The one path that starts a dyno from a slug: validate the request, name a
//! one-off, resolve (fetch, verify, unpack) the slug, take the command from
//! the Procfile when the request has none, and hand the engine its spec.
//! `StartDyno` and the daemon's sample app both go through [`start`].

use std::collections::BTreeMap;
use std::sync::Arc;

use dyno_proto::v1 as pb;

use super::convert::opt;
use super::validate::validate_start;
use crate::config::Config;
use crate::engine::{Attach, DynoSpec, DynoView, Engine, StartRequest};
use crate::error::{Error, Result};
use crate::names;
use crate::slug::{self, SlugCache};

/// Starts (or, for a repeated request, finds) the dyno `req` describes.
pub(crate) async fn start(
    engine: &Engine,
    cfg: &Config,
    slugs: &Arc<SlugCache>,
    req: pb::StartDynoRequest,
) -> Result<DynoView> {
    start_with(engine, cfg, slugs, req, None).await
}

/// Starts the attached one-off `req` describes (see `Attach`).
pub(crate) async fn start_attached(
    engine: &Engine,
    cfg: &Config,
    slugs: &Arc<SlugCache>,
    req: pb::StartDynoRequest,
    attach: Attach,
) -> Result<DynoView> {
    start_with(engine, cfg, slugs, req, Some(attach)).await
}

async fn start_with(
    engine: &Engine,
    cfg: &Config,
    slugs: &Arc<SlugCache>,
    req: pb::StartDynoRequest,
    attach: Option<Attach>,
) -> Result<DynoView> {
    validate_start(&req, cfg)?;
    let name = match req.name.as_str() {
        "" => engine.next_one_off(&req.app).await?,
        n => n.to_string(),
    };
    let ptype = names::parse_dyno_name(&name)
        .map(|(t, _)| t.to_string())
        .ok_or_else(|| {
            Error::invalid(
                "name",
                format!("{} must be <type>.<n>, like web.1", names::quote(&name)),
            )
        })?;
    let one_off = req.one_off || ptype == "run";
    // Known to the engine from here: a stop while the slug is prepared
    // cancels this start rather than missing it.
    let pending = engine.pending(&req.app, &name, opt(&req.request_id)).await?;
    let slug = slugs
        .resolve(&req.slug, opt(&req.sha256).as_deref())
        .await
        .map_err(Error::from)?;
    let command = match req.command.trim() {
        "" => {
            let (app_dir, ptype) = (slug.app_dir.clone(), ptype.clone());
            tokio::task::spawn_blocking(move || slug::procfile_command(&app_dir, &ptype))
                .await
                .map_err(|e| Error::Internal(format!("procfile task: {e}")))??
        }
        _ => req.command.clone(),
    };
    if let Some(digest) = &slug.sha256 {
        let shown = slug::fetch::shown(&req.slug);
        tracing::info!(app = %req.app, slug = %shown, sha256 = %digest, "slug verified");
    }
    let ttl = req.time_to_live.map_or(cfg.oneoff_ttl.as_secs(), |d| d.seconds as u64);
    let size = opt(&req.size).unwrap_or_else(|| cfg.default_size.clone());
    let spec = DynoSpec {
        app: req.app,
        name,
        ptype,
        command,
        memory_quota_bytes: cfg.sizes.get(&size).map_or(0, |s| s.memory_bytes),
        size,
        release: req.release,
        env: req.env.into_iter().collect::<BTreeMap<_, _>>(),
        slug: req.slug,
        slug_sha256: slug.sha256,
        app_dir: slug.app_dir,
        stack: opt(&req.stack)
            .or_else(|| cfg.default_stack().map(str::to_string))
            .unwrap_or_default(),
        one_off,
        time_to_live_secs: if one_off { ttl } else { 0 },
        port: None,
        labels: req.labels.into_iter().collect(),
        attach,
    };
    engine
        .start(StartRequest {
            spec,
            request_id: opt(&req.request_id),
            picked_name: req.name.is_empty(),
            pending: Some(pending.token()),
        })
        .await
}
