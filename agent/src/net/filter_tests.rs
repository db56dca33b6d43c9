use super::*;

fn rules() -> Rules {
    Rules {
        network: "dynoagent".into(),
        subnets: vec!["10.213.0.0/16".into()],
        dns: vec!["10.255.255.53".into()],
        allow: vec!["10.5.0.0/16".into()],
        deny: vec!["10.0.0.0/8".into()],
        local_dns: None,
        max_conns: 4096,
    }
}

/// The line number of the first rule of `script` containing every one of `parts`.
fn line_of(script: &str, parts: &[&str]) -> usize {
    script
        .lines()
        .position(|l| parts.iter().all(|p| l.contains(p)))
        .unwrap_or_else(|| panic!("no rule with {parts:?} in\n{script}"))
}

#[test]
fn forward_rules_come_in_the_order_that_makes_them_mean_what_the_design_says() {
    let s = rules().restore_script();
    let replies = line_of(&s, &["DYNO-FWD-dynoagent", "ESTABLISHED"]);
    let invalid = line_of(&s, &["DYNO-FWD-dynoagent", "INVALID -j DROP"]);
    let dyno_to_dyno = line_of(&s, &["-s 10.213.0.0/16 -d 10.213.0.0/16"]);
    let published = line_of(&s, &["-d 10.213.0.0/16 -m conntrack --ctstate DNAT -j ACCEPT"]);
    let inbound = line_of(&s, &["-A DYNO-FWD-dynoagent -d 10.213.0.0/16 -j REJECT"]);
    let connlimit = line_of(&s, &["--connlimit-above 4096", "--connlimit-saddr"]);
    let link_local = line_of(&s, &["-d 169.254.0.0/16"]);
    let dns = line_of(&s, &["-d 10.255.255.53", "--dport 53", "ACCEPT"]);
    let allow = line_of(&s, &["-d 10.5.0.0/16 -j ACCEPT"]);
    let deny = line_of(&s, &["-d 10.0.0.0/8", "REJECT"]);
    let rest = line_of(&s, &["-A DYNO-FWD-dynoagent -s 10.213.0.0/16 -j ACCEPT"]);
    // A dyno reaching another through its published port is DNATed: the
    // dyno-to-dyno refusal must come before the published-port accept.
    assert!(replies < invalid && invalid < dyno_to_dyno, "{s}");
    assert!(
        replies < dyno_to_dyno && dyno_to_dyno < published && published < inbound,
        "{s}"
    );
    // Link-local is refused whatever allow says; DNS passes whatever deny says.
    assert!(inbound < connlimit && connlimit < link_local && link_local < dns, "{s}");
    assert!(link_local < allow && dns < deny && allow < deny && deny < rest, "{s}");
    assert_eq!(s.lines().last(), Some("COMMIT"));
}

#[test]
fn input_refuses_everything_new_from_a_dyno_to_the_host() {
    let s = rules().restore_script();
    let input: Vec<&str> = s.lines().filter(|l| l.starts_with("-A DYNO-IN-dynoagent")).collect();
    assert_eq!(
        input.len(),
        3,
        "without a loopback resolver nothing new gets in: {input:?}"
    );
    assert!(input[0].contains("ESTABLISHED") && input[0].ends_with("-j ACCEPT"));
    assert!(input[1].contains("tcp-reset") && input[2].contains("REJECT"));
    // Both chains are emptied first, so a changed configuration replaces the old rules.
    assert!(s.contains("-F DYNO-IN-dynoagent\n-F DYNO-FWD-dynoagent\n"), "{s}");
}

#[test]
fn jumps_cover_both_directions_of_forwarding_and_chain_names_fit_iptables() {
    let r = Rules {
        network: "a-network-name-far-too-long-for-iptables".into(),
        ..rules()
    };
    assert!(r.input_chain().len() <= 28 && r.forward_chain().len() <= 28);
    assert!(r.forward_chain().starts_with("DYNO-FWD-a-network"));
    let jumps = r.jumps();
    assert_eq!(jumps.len(), 4);
    assert_eq!((jumps[0].0, jumps[0].1), ("filter", "INPUT"));
    assert_eq!(
        jumps[0].2,
        ["-s", "10.213.0.0/16", "!", "-i", "lo", "-j", &r.input_chain()]
    );
    assert_eq!(jumps[1].2, ["-s", "10.213.0.0/16", "-j", &r.forward_chain()]);
    assert_eq!(jumps[2].2, ["-d", "10.213.0.0/16", "-j", &r.forward_chain()]);
    let s = r.restore_script();
    let nat = &s[s.find("*nat").expect("a nat section")..];
    assert!(
        !nat.contains("-A "),
        "no resolver on loopback: the DNS chain is emptied, not filled: {nat}"
    );
}

#[test]
fn a_loopback_resolver_is_reached_through_any_host_address_on_port_53_only() {
    let r = Rules {
        local_dns: Some("127.0.0.53".into()),
        ..rules()
    };
    let s = r.restore_script();
    let nat = &s[s.find("*nat").expect("a nat section")..];
    let dnat: Vec<&str> = nat.lines().filter(|l| l.starts_with("-A DYNO-DNS-dynoagent")).collect();
    assert_eq!(dnat.len(), 2, "{nat}");
    for (rule, proto) in dnat.iter().zip(["udp", "tcp"]) {
        assert!(rule.contains(&format!("-p {proto} --dport 53")), "{rule}");
        assert!(
            rule.contains("--dst-type LOCAL") && rule.ends_with("--to-destination 127.0.0.53"),
            "{rule}"
        );
    }
    // INPUT lets the forwarded query in before it refuses the rest.
    // INPUT lets the forwarded query in before it refuses the rest, but no
    // more of them than a dyno may have connections.
    let bound = line_of(&s, &["-A DYNO-IN-dynoagent -m conntrack --ctstate NEW -m connlimit"]);
    let accept = line_of(&s, &["-A DYNO-IN-dynoagent -d 127.0.0.53 -p udp --dport 53 -j ACCEPT"]);
    let reject = line_of(&s, &["-A DYNO-IN-dynoagent -p tcp -j REJECT"]);
    assert!(bound < accept && accept < reject, "{s}");
    let jumps = r.jumps();
    assert_eq!((jumps[3].0, jumps[3].1), ("nat", "PREROUTING"));
    assert_eq!(jumps[3].2, ["-s", "10.213.0.0/16", "-j", &r.dns_chain()]);
}
