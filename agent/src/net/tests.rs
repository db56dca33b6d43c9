use super::*;

#[test]
fn ipv4_ranges_are_told_from_ipv6_and_garbage() {
    for good in ["10.0.0.0/8", "169.254.169.254", "0.0.0.0/0", "192.168.1.1/32"] {
        assert!(is_v4_cidr(good), "{good}");
    }
    for bad in ["fc00::/7", "10.0.0.0/33", "10.0.0/8", "x", "", "10.0.0.0/"] {
        assert!(!is_v4_cidr(bad), "{bad}");
    }
}

#[test]
fn the_hosts_nameservers_are_its_resolv_confs_ipv4_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    std::fs::write(
        &path,
        "# generated\nsearch example.com\nnameserver 10.255.255.53\nnameserver fd00::53\n  nameserver 1.1.1.1 \noptions ndots:2\n",
    )
    .unwrap();
    assert_eq!(
        host_nameservers(&path),
        [Ipv4Addr::new(10, 255, 255, 53), Ipv4Addr::new(1, 1, 1, 1)]
    );
    assert!(host_nameservers(&dir.path().join("absent")).is_empty());
}
