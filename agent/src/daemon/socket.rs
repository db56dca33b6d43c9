//! The API's Unix socket kept reachable: connections are accepted on a task
//! of their own, which also checks every [`CHECK`] that the socket file is
//! still the one it listens on. One deleted (a careless `rm`, a cleaner of
//! `/run`) or replaced by a dead file is bound again, and the agent says so;
//! one another process serves on is left alone, loudly.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{error, warn};

use super::listen::{bind_socket, publish_socket};

/// How often the socket file is checked.
const CHECK: Duration = Duration::from_secs(2);

/// The connections of the socket at `path`, which `listener` is bound to,
/// as the server's incoming stream; ends when the server drops it.
pub(super) fn incoming(path: PathBuf, listener: UnixListener) -> ReceiverStream<std::io::Result<UnixStream>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept(path, listener, tx));
    ReceiverStream::new(rx)
}

/// The inode of the file at `path`, if there is one.
fn inode(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

async fn accept(path: PathBuf, mut listener: UnixListener, tx: mpsc::Sender<std::io::Result<UnixStream>>) {
    let mut ours = inode(&path);
    let mut check = tokio::time::interval(CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last failure to bind again, said once until it changes.
    let mut failing: Option<String> = None;
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    if tx.send(Ok(stream)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    warn!(socket = %path.display(), error = %e, "cannot accept an API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = check.tick() => {
                if ours.is_some() && inode(&path) == ours {
                    continue;
                }
                match bind_socket(&path).await.and_then(|fresh| publish_socket(&path).map(|()| fresh)) {
                    Ok(fresh) => {
                        listener = fresh;
                        ours = inode(&path);
                        failing = None;
                        error!(socket = %path.display(), "THE API SOCKET WAS REMOVED OR REPLACED: bound it again");
                    }
                    Err(e) => {
                        let why = format!("{e:#}");
                        if failing.as_ref() != Some(&why) {
                            error!(socket = %path.display(), error = %why,
                                "THE API SOCKET WAS REMOVED OR REPLACED and cannot be bound again: the API is unreachable there");
                        }
                        failing = Some(why);
                    }
                }
            },
            _ = tx.closed() => return,
        }
    }
}
