//! The API's listeners: the Unix socket (mode 0660, a stale one replaced,
//! a live one refused) and the optional TCP listener with TLS (client
//! certificates required when a CA is configured).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tonic::transport::server::Router;
use tracing::info;

use super::shutdown::Shutdown;
use crate::config::Config;

/// The TCP listener's TLS: the agent's certificate and key, and when
/// `tls_client_ca` is set, client certificates required and verified.
pub(super) fn server_tls(cfg: &Config) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    // Parsed here (tonic only parses when the server starts), so that a bad
    // file is refused before the agent starts anything, naming key and file.
    let read = |key: &str, path: &Option<PathBuf>| -> anyhow::Result<Vec<u8>> {
        let path = path.as_ref().with_context(|| format!("listen: needs {key}"))?;
        let pem = std::fs::read(path).with_context(|| format!("{key}: reading {}", path.display()))?;
        let bad = |what: String| anyhow::anyhow!("{key}: {}: {what}", path.display());
        if key == "tls_key" {
            PrivateKeyDer::from_pem_slice(&pem).map_err(|e| bad(format!("no PEM private key ({e})")))?;
        } else {
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("not a PEM certificate bundle ({e})")))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
        }
        Ok(pem)
    };
    let (cert, key) = (read("tls_cert", &cfg.tls_cert)?, read("tls_key", &cfg.tls_key)?);
    key_matches_cert(&cert, &key, cfg)?;
    let identity = Identity::from_pem(cert, key);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if cfg.tls_client_ca.is_some() {
        tls = tls.client_ca_root(Certificate::from_pem(read("tls_client_ca", &cfg.tls_client_ca)?));
    }
    Ok(tls)
}

/// A key that is not the certificate's is refused now, naming both files
/// (rustls would only say "key mismatch" when the first client connects).
fn key_matches_cert(cert: &[u8], key: &[u8], cfg: &Config) -> anyhow::Result<()> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let show = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let (cert_file, key_file) = (show(&cfg.tls_cert), show(&cfg.tls_key));
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls_cert: {cert_file}"))?;
    let key = PrivateKeyDer::from_pem_slice(key).with_context(|| format!("tls_key: {key_file}"))?;
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain, key, &provider) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => bail!(
            "tls_key {key_file} does not match tls_cert {cert_file}: the key is not the one of the certificate's public key"
        ),
        Err(e) => bail!("tls_key {key_file} with tls_cert {cert_file}: {e}"),
    }
}

/// A server builder for the TCP listener, with the TLS [`server_tls`] read.
pub(super) fn tls_builder(tls: tonic::transport::ServerTlsConfig) -> anyhow::Result<tonic::transport::Server> {
    tonic::transport::Server::builder()
        .tls_config(tls)
        .context("listen: TLS configuration")
}

/// Binds `addr` and serves `router` on it (TLS) until `shutdown`.
pub(super) async fn serve_tcp(
    addr: &str,
    router: Router,
    client_ca: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen: binding {addr}"))?;
    info!(listen = %listener.local_addr()?, client_ca, "serving the API on TCP with TLS");
    let server = router.serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        shutdown.wait(),
    );
    Ok(tokio::spawn(server))
}

/// Binds the API's Unix socket, mode 0660; a stale socket is replaced, one
/// another agent serves on is refused.
pub(super) async fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!("{}: another agent is serving on this socket", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    // Bound under a name of its own until the agent has recovered: a
    // client never meets a half-recovered agent ([`publish_socket`]).
    let starting = starting_name(path);
    let _ = std::fs::remove_file(&starting);
    let listener =
        tokio::net::UnixListener::bind(&starting).with_context(|| format!("binding {}", starting.display()))?;
    std::fs::set_permissions(&starting, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", starting.display()))?;
    Ok(listener)
}

/// Where [`bind_socket`] binds the socket `path` until it is published:
/// `.<name>.starting` beside it.
pub(super) fn starting_name(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.starting"))
}

/// Renames the socket bound by [`bind_socket`] to `path`, once re-adoption
/// and reaping are done: from then on clients can connect.
pub(super) fn publish_socket(path: &Path) -> anyhow::Result<()> {
    let starting = starting_name(path);
    std::fs::rename(&starting, path).with_context(|| format!("renaming {} to {}", starting.display(), path.display()))
}
