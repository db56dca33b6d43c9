//! The quick-start sample app (`dynoagent --sample`): a static page served by
//! busybox httpd on $PORT, started as `sample/web.1` through the same path
//! as `StartDyno`. Its directory (under the state directory) is accepted as
//! a directory slug root of its own: the sample needs no `slug_dir_root`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use dyno_proto::v1 as pb;
use tracing::info;

use crate::config::Config;
use crate::engine::Engine;
use crate::slug::SlugCache;

/// Writes the sample slug into the state directory and starts its web dyno.
pub(super) async fn start_sample(engine: &Engine, cfg: &Config, slugs: &Arc<SlugCache>) -> anyhow::Result<()> {
    if cfg.default_stack().is_none() && !cfg.allow_unjailed {
        bail!("--sample needs a stack: --stack default=DIR (rootfs/build.sh DIR builds one)");
    }
    let root: PathBuf = cfg.state_dir.join("sample-slug");
    let app = root.join("app");
    std::fs::create_dir_all(app.join("public"))?;
    std::fs::write(
        app.join("Procfile"),
        "web: exec busybox httpd -f -v -p $PORT -h public\n",
    )?;
    std::fs::write(
        app.join("public/index.html"),
        "<!doctype html><title>dynoagent sample</title><h1>Hello from a dyno</h1>\n",
    )?;
    // The sample's own directory is a directory slug root of its own, so
    // that it runs without `slug_dir_root` (it holds only what is written here).
    slugs.allow_dir_root(&root)?;
    // The command comes from the Procfile; size and stack are the defaults.
    let request = pb::StartDynoRequest {
        app: "sample".into(),
        name: "web.1".into(),
        release: "v1".into(),
        slug: root.display().to_string(),
        ..Default::default()
    };
    let view = crate::api::launch::start(engine, cfg, slugs, request).await?;
    let port = view.port.unwrap_or_default();
    info!(port, "sample dyno sample/web.1 started");
    println!(
        "sample dyno sample/web.1 is {}: curl http://127.0.0.1:{port}/",
        view.state
    );
    Ok(())
}
