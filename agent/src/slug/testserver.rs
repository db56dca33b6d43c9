//! A loopback HTTP/1.1 server for the fetch tests: real sockets, one thread
//! per connection, replies scripted per request to inject faults.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

pub struct TestServer {
    pub addr: SocketAddr,
    gets: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Request `i` (counting from 0) gets `script[i]`, the last one repeating.
    pub fn start(script: Vec<Reply>) -> TestServer {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let gets = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (gets, stop) = (gets.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (gets, stop, script) = (gets.clone(), stop.clone(), script.clone());
                            std::thread::spawn(move || serve(conn, &gets, &stop, &script));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        TestServer {
            addr,
            gets,
            stop,
            accept: Some(accept),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET requests seen so far.
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream, gets: &AtomicUsize, stop: &AtomicBool, script: &[Reply]) {
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
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
    let i = gets.fetch_add(1, Ordering::SeqCst);
    let reply = &script[i.min(script.len() - 1)];
    let ok = |len: usize| format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
    let hold = || {
        let until = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let _ = match reply {
        Reply::Body(body) => conn
            .write_all(ok(body.len()).as_bytes())
            .and_then(|()| conn.write_all(body)),
        Reply::Status(code) => conn.write_all(
            format!("HTTP/1.1 {code} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
        ),
        Reply::Cut(body, n) => conn
            .write_all(ok(body.len()).as_bytes())
            .and_then(|()| conn.write_all(&body[..*n])),
        Reply::Stall(body, n) => {
            let r = conn
                .write_all(ok(body.len()).as_bytes())
                .and_then(|()| conn.write_all(&body[..*n]));
            hold();
            r
        }
        Reply::Huge(len) => {
            let r = conn
                .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n").as_bytes());
            hold();
            r
        }
        Reply::Slow(wait, body) => {
            std::thread::sleep(*wait);
            conn.write_all(ok(body.len()).as_bytes())
                .and_then(|()| conn.write_all(body))
        }
        Reply::Redirect(to) => conn.write_all(
            format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        ),
    };
}
