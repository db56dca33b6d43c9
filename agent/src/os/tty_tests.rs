use std::io::{Read, Write};
use std::os::fd::AsFd;

use super::*;

#[test]
fn a_pty_carries_bytes_and_its_size() {
    if !nix::unistd::Uid::effective().is_root() {
        // fchown of the slave needs root; the end-to-end tests cover the rest.
        assert!(std::env::var("CI").is_err(), "CI runs the unit tests as root");
        return;
    }
    let (master, slave) = open_pty(0, 0, 33, 101).unwrap();
    assert_eq!(size(slave.as_fd()).unwrap(), (33, 101));
    set_size(master.as_fd(), 40, 120).unwrap();
    assert_eq!(size(slave.as_fd()).unwrap(), (40, 120));
    assert!(is_terminal(&slave));
    std::fs::File::from(slave.try_clone().unwrap())
        .write_all(b"hi\n")
        .unwrap();
    let mut buf = [0u8; 16];
    let n = std::fs::File::from(master).read(&mut buf).unwrap();
    // The line discipline turns \n into \r\n on the way out.
    assert_eq!(&buf[..n], b"hi\r\n");
}

#[test]
fn fds_travel_over_a_socket_with_their_tag() {
    let (a, b) = socketpair().unwrap();
    let (r, w) = crate::os::pipe().unwrap();
    send_fds(a.as_fd(), b'p', &[r.as_fd(), w.as_fd()]).unwrap();
    drop((r, w));
    let (tag, fds) = recv_fds(b.as_fd()).unwrap().unwrap();
    assert_eq!(tag, b'p');
    assert_eq!(fds.len(), 2);
    std::fs::File::from(fds[1].try_clone().unwrap())
        .write_all(b"x")
        .unwrap();
    let mut byte = [0u8; 1];
    std::fs::File::from(fds[0].try_clone().unwrap())
        .read_exact(&mut byte)
        .unwrap();
    assert_eq!(&byte, b"x");
    drop(a);
    assert!(recv_fds(b.as_fd()).unwrap().is_none());
    assert!(send_fds(b.as_fd(), 0, &[]).is_err());
}
