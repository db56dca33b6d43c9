//! Test support shared by the agent's unit tests and the end-to-end kit
//! (`dyno-tests`, through the `testkit` feature): the one loopback HTTP/1.1
//! server that serves slugs.
//!
//! [`TestServer`] runs on real sockets, one thread per connection. Its
//! replies are scripted per request ([`TestServer::start`]: request `i`
//! gets `script[i]`, whatever the path) or per path ([`TestServer::paths`]:
//! unknown paths get a 404), and each [`Reply`] can inject a fault (a status,
//! a body cut short, a stall, a huge announced length, a slow answer, a
//! redirect). It counts the GETs it answers, in total and per path, and can
//! [`hold`](TestServer::hold) every reply until the test lets it go.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a reply is held ([`TestServer::hold`], [`Reply::Stall`],
/// [`Reply::Huge`]) before the connection gives up on its own.
const HOLD_LIMIT: Duration = Duration::from_secs(60);

/// What the server does for one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this body.
    Body(Vec<u8>),
    /// This status, empty body.
    Status(u16),
    /// 200 announcing the whole body, sending its first `n` bytes, closing.
    Cut(Vec<u8>, usize),
    /// 200 announcing the whole body, sending its first `n` bytes, then
    /// nothing more while the connection stays open.
    Stall(Vec<u8>, usize),
    /// 200 with this Content-Length and no body; the connection stays open.
    Huge(u64),
    /// Waits, then 200 with the body.
    Slow(Duration, Vec<u8>),
    /// 302 to this location.
    Redirect(String),
}

/// Which reply a request gets.
enum Routes {
    /// Request `i` (counting from 0, any path) gets `script[i]`, the last
    /// one repeating.
    Script(Vec<Reply>),
    /// By path; a path not listed gets a 404.
    Paths(HashMap<String, Reply>),
}

/// What the accept loop and every connection thread share.
struct Shared {
    routes: Routes,
    gets: AtomicUsize,
    gets_by_path: Mutex<HashMap<String, usize>>,
    held: AtomicBool,
    stop: AtomicBool,
}

/// A loopback HTTP/1.1 server on `127.0.0.1`; stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Request `i` (counting from 0, whatever its path) gets `script[i]`, the
    /// last one repeating.
    pub fn start(script: Vec<Reply>) -> TestServer {
        assert!(!script.is_empty());
        TestServer::listen(Routes::Script(script))
    }

    /// Every GET of a path listed gets its reply; any other path a 404.
    pub fn paths(paths: Vec<(&str, Reply)>) -> TestServer {
        TestServer::listen(Routes::Paths(
            paths.into_iter().map(|(p, r)| (p.to_string(), r)).collect(),
        ))
    }

    fn listen(routes: Routes) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            routes,
            gets: AtomicUsize::new(0),
            gets_by_path: Mutex::new(HashMap::new()),
            held: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                while !shared.stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let shared = shared.clone();
                            std::thread::spawn(move || serve(conn, &shared));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        TestServer {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET requests seen so far, on every path.
    pub fn gets(&self) -> usize {
        self.shared.gets.load(Ordering::SeqCst)
    }

    /// GET requests of `path` seen so far.
    pub fn gets_of(&self, path: &str) -> usize {
        let by_path = self.shared.gets_by_path.lock().expect("gets lock");
        by_path.get(path).copied().unwrap_or(0)
    }

    /// While on, every GET is counted at once but its reply waits until the
    /// hold is lifted (or the server dropped).
    pub fn hold(&self, on: bool) {
        self.shared.held.store(on, Ordering::SeqCst);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.hold(false);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Waits while `busy` holds, until the server stops or `HOLD_LIMIT` passes.
fn wait_while(shared: &Shared, busy: impl Fn() -> bool) {
    let until = Instant::now() + HOLD_LIMIT;
    while busy() && !shared.stop.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn serve(mut conn: TcpStream, shared: &Shared) {
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the end of the head, or bytes that cannot be HTTP (a TLS hello).
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.first().is_none_or(u8::is_ascii_uppercase) {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if !head.starts_with(b"GET ") {
        let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let path = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let i = shared.gets.fetch_add(1, Ordering::SeqCst);
    *shared
        .gets_by_path
        .lock()
        .expect("gets lock")
        .entry(path.clone())
        .or_default() += 1;
    wait_while(shared, || shared.held.load(Ordering::SeqCst));
    let reply = match &shared.routes {
        Routes::Script(script) => &script[i.min(script.len() - 1)],
        Routes::Paths(paths) => match paths.get(&path) {
            Some(reply) => reply,
            None => &Reply::Status(404),
        },
    };
    let _ = answer(&mut conn, reply, shared);
}

fn answer(conn: &mut TcpStream, reply: &Reply, shared: &Shared) -> std::io::Result<()> {
    let ok = |len: u64| format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
    let hold = || wait_while(shared, || true);
    match reply {
        Reply::Body(body) => {
            conn.write_all(ok(body.len() as u64).as_bytes())?;
            conn.write_all(body)
        }
        Reply::Status(code) => conn.write_all(
            format!("HTTP/1.1 {code} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
        ),
        Reply::Cut(body, n) => {
            conn.write_all(ok(body.len() as u64).as_bytes())?;
            conn.write_all(&body[..*n])
        }
        Reply::Stall(body, n) => {
            let r = conn
                .write_all(ok(body.len() as u64).as_bytes())
                .and_then(|()| conn.write_all(&body[..*n]));
            hold();
            r
        }
        Reply::Huge(len) => {
            let r = conn.write_all(ok(*len).as_bytes());
            hold();
            r
        }
        Reply::Slow(wait, body) => {
            std::thread::sleep(*wait);
            conn.write_all(ok(body.len() as u64).as_bytes())?;
            conn.write_all(body)
        }
        Reply::Redirect(to) => conn.write_all(
            format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        ),
    }
}
