use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::*;

fn default_list() -> Conflist {
    Conflist::load(None).expect("the built-in chain parses")
}

#[test]
fn the_built_in_chain_is_ptp_then_portmap_in_its_own_subnet() {
    let list = default_list();
    assert_eq!(list.name, "dynoagent");
    assert_eq!(list.types().collect::<Vec<_>>(), ["ptp", "portmap"]);
    assert_eq!(list.subnets(), ["10.213.0.0/16"]);
    assert!(list.maps_ports());
}

#[test]
fn a_bad_conflist_is_refused_naming_what_is_wrong() {
    let cases = [
        ("{", "not JSON"),
        (r#"{"cniVersion":"1.0.0","plugins":[{"type":"ptp"}]}"#, "`name`"),
        (r#"{"name":"n","plugins":[{"type":"ptp"}]}"#, "`cniVersion`"),
        (r#"{"name":"n","cniVersion":"1.0.0"}"#, "`plugins` must be a list"),
        (
            r#"{"name":"n","cniVersion":"1.0.0","plugins":[]}"#,
            "`plugins` is empty",
        ),
        (
            r#"{"name":"n","cniVersion":"1.0.0","plugins":[3]}"#,
            "must be an object",
        ),
        (
            r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"../../bin/sh"}]}"#,
            "plugins[0].type",
        ),
        (r#"{"name":"n","cniVersion":"1.0.0","plugins":[{}]}"#, "plugins[0].type"),
        (
            r#"{"name":"a b","cniVersion":"1.0.0","plugins":[{"type":"ptp"}]}"#,
            "`name`",
        ),
    ];
    for (text, expect) in cases {
        let err = Conflist::parse(text, "cni_config /x.conflist").unwrap_err();
        assert!(err.starts_with("cni_config /x.conflist"), "{err}");
        assert!(err.contains(expect), "{text}: {err}");
    }
}

#[test]
fn a_missing_cni_config_names_the_file() {
    let err = Conflist::load(Some(Path::new("/nonexistent/dyno.conflist"))).unwrap_err();
    assert!(err.contains("cni_config /nonexistent/dyno.conflist"), "{err}");
}

#[test]
fn subnets_come_from_ranges_and_the_older_subnet_form() {
    let list = Conflist::parse(
        r#"{"name":"n","cniVersion":"0.4.0","plugins":[
            {"type":"bridge","ipam":{"type":"host-local","subnet":"10.9.0.0/24"}},
            {"type":"x","ipam":{"ranges":[[{"subnet":"10.8.0.0/16"},{"subnet":"fd00:1::/64"}]]}},
            {"type":"firewall"}]}"#,
        "t",
    )
    .unwrap();
    assert_eq!(list.subnets(), ["10.9.0.0/24", "10.8.0.0/16", "fd00:1::/64"]);
    assert!(!list.maps_ports());
}

#[test]
fn each_plugin_gets_the_name_the_version_its_previous_result_and_its_capabilities() {
    let list = default_list();
    let runner = Runner {
        bin_dir: PathBuf::from("/usr/lib/cni"),
    };
    let at = Attachment {
        container_id: "dn-1",
        netns: Path::new("/x/dn-1.ns"),
        port: Some(20001),
    };
    let ptp = runner.config(&list, &list.plugins[0], &at, None);
    assert_eq!(ptp["name"], "dynoagent");
    assert_eq!(ptp["cniVersion"], "1.0.0");
    assert_eq!(ptp["type"], "ptp");
    assert!(ptp.get("prevResult").is_none());
    assert!(ptp.get("runtimeConfig").is_none(), "ptp declares no capability: {ptp}");

    let prev = json!({"ips":[{"address":"10.213.0.9/16"}]});
    let portmap = runner.config(&list, &list.plugins[1], &at, Some(&prev));
    assert_eq!(portmap["prevResult"], prev);
    assert_eq!(
        portmap["runtimeConfig"]["portMappings"],
        json!([{"hostPort": 20001, "containerPort": 20001, "protocol": "tcp"}])
    );
    let worker = Attachment { port: None, ..at };
    let portmap = runner.config(&list, &list.plugins[1], &worker, Some(&prev));
    assert_eq!(portmap["runtimeConfig"]["portMappings"], json!([]));
}

#[test]
fn the_dynos_address_is_the_first_ipv4_of_the_result() {
    let r = json!({"ips":[{"address":"fd00::5/64"},{"address":"10.213.0.7/16","gateway":"10.213.0.1"}]});
    assert_eq!(ipv4_of(&r), Some(Ipv4Addr::new(10, 213, 0, 7)));
    assert_eq!(ipv4_of(&json!({"ips":[]})), None);
    assert_eq!(ipv4_of(&Value::Null), None);
}

/// A fake plugin: appends `<name> <CNI_COMMAND> <CNI_CONTAINERID>
/// <CNI_IFNAME>` and its stdin to `calls`, then prints `output` and exits
/// with 1 for the command `fails` names (0 otherwise).
fn fake_plugin(dir: &Path, name: &str, output: &str, fails: Option<&str>) {
    let calls = dir.join("calls");
    let fails = fails.unwrap_or("none");
    let script = format!(
        "#!/bin/sh\necho \"{name} $CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME $CNI_NETNS\" >> {calls}\ncat >> {calls}\necho >> {calls}\nprintf '%s' '{output}'\n[ \"$CNI_COMMAND\" = {fails} ] && exit 1\nexit 0\n",
        calls = calls.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A worker's attachment (no port) of lease `id`, kept by `/x/<id>.ns`.
fn worker_at(id: &'static str) -> Attachment<'static> {
    let netns: &'static Path = Box::leak(PathBuf::from(format!("/x/{id}.ns")).into_boxed_path());
    Attachment {
        container_id: id,
        netns,
        port: None,
    }
}

fn chain(names: &[&str]) -> Conflist {
    let plugins: Vec<Value> = names.iter().map(|n| json!({"type": n})).collect();
    Conflist::parse(
        &json!({"name":"t","cniVersion":"1.0.0","plugins":plugins}).to_string(),
        "test chain",
    )
    .unwrap()
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('{') && !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn add_runs_the_chain_in_order_passing_each_result_on_and_del_runs_it_backwards() {
    let dir = tempfile::tempdir().unwrap();
    fake_plugin(
        dir.path(),
        "first",
        r#"{"cniVersion":"1.0.0","ips":[{"address":"10.7.0.2/24"}]}"#,
        None,
    );
    fake_plugin(
        dir.path(),
        "second",
        r#"{"cniVersion":"1.0.0","ips":[{"address":"10.7.0.3/24"}]}"#,
        None,
    );
    let runner = Runner {
        bin_dir: dir.path().to_path_buf(),
    };
    let at = worker_at("dn-7");
    let list = chain(&["first", "second"]);
    let result = runner.add(&list, &at).await.unwrap();
    assert_eq!(
        ipv4_of(&result),
        Some(Ipv4Addr::new(10, 7, 0, 3)),
        "the last plugin's result"
    );
    let log = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    // The second plugin got the first one's result.
    let second_input = log.lines().skip_while(|l| !l.starts_with("second")).nth(1).unwrap();
    let second_input: Value = serde_json::from_str(second_input).unwrap();
    assert_eq!(ipv4_of(&second_input["prevResult"]), Some(Ipv4Addr::new(10, 7, 0, 2)));

    runner.del(&list, &at, Some(&result)).await.unwrap();
    assert_eq!(
        calls(dir.path()),
        [
            "first ADD dn-7 eth0 /x/dn-7.ns",
            "second ADD dn-7 eth0 /x/dn-7.ns",
            "second DEL dn-7 eth0 /x/dn-7.ns",
            "first DEL dn-7 eth0 /x/dn-7.ns",
        ]
    );
}

#[tokio::test]
async fn a_failing_plugin_is_named_with_its_message_and_what_was_added_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    fake_plugin(dir.path(), "good", r#"{"cniVersion":"1.0.0"}"#, None);
    fake_plugin(
        dir.path(),
        "bad",
        r#"{"cniVersion":"1.0.0","code":11,"msg":"no addresses left","details":"range full"}"#,
        Some("ADD"),
    );
    let runner = Runner {
        bin_dir: dir.path().to_path_buf(),
    };
    let at = worker_at("dn-8");
    let err = runner.add(&chain(&["good", "bad"]), &at).await.unwrap_err();
    assert!(err.contains("CNI plugin bad ADD (dn-8)"), "{err}");
    assert!(err.contains("no addresses left: range full"), "{err}");
    // The rollback deletes both (DEL is idempotent), the failed one first.
    assert_eq!(
        calls(dir.path()),
        [
            "good ADD dn-8 eth0 /x/dn-8.ns",
            "bad ADD dn-8 eth0 /x/dn-8.ns",
            "bad DEL dn-8 eth0 /x/dn-8.ns",
            "good DEL dn-8 eth0 /x/dn-8.ns",
        ]
    );
}

#[tokio::test]
async fn a_missing_plugin_or_a_result_that_is_not_json_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fake_plugin(dir.path(), "garbled", "not json", None);
    let runner = Runner {
        bin_dir: dir.path().to_path_buf(),
    };
    let at = worker_at("dn-9");
    let err = runner.add(&chain(&["absent"]), &at).await.unwrap_err();
    assert!(err.contains("CNI plugin absent ADD") && err.contains("absent"), "{err}");
    let err = runner.add(&chain(&["garbled"]), &at).await.unwrap_err();
    assert!(err.contains("not JSON"), "{err}");
}

#[test]
fn the_gateway_and_the_hosts_end_come_from_the_result() {
    let r = json!({
        "interfaces": [{"name": "veth1234"}, {"name": "eth0", "sandbox": "/x/dn-1.ns"}, {"name": "../x"}],
        "ips": [{"address": "fd00::2/64", "gateway": "fd00::1"}, {"address": "10.213.0.2/16", "gateway": "10.213.0.1"}]
    });
    assert_eq!(gateway_of(&r), Some(Ipv4Addr::new(10, 213, 0, 1)));
    assert_eq!(host_interfaces(&r), ["veth1234"]);
}

#[tokio::test]
async fn del_stops_at_a_failing_plugin_so_no_address_is_freed_under_a_live_port_rule() {
    let dir = tempfile::tempdir().unwrap();
    fake_plugin(dir.path(), "addresses", r#"{"cniVersion":"1.0.0"}"#, None);
    fake_plugin(
        dir.path(),
        "ports",
        r#"{"cniVersion":"1.0.0","code":11,"msg":"xtables lock"}"#,
        Some("DEL"),
    );
    let runner = Runner {
        bin_dir: dir.path().to_path_buf(),
    };
    let at = worker_at("dn-10");
    let err = runner
        .del(&chain(&["addresses", "ports"]), &at, None)
        .await
        .unwrap_err();
    assert!(
        err.contains("CNI plugin ports DEL (dn-10)") && err.contains("xtables lock"),
        "{err}"
    );
    assert_eq!(
        calls(dir.path()),
        ["ports DEL dn-10 eth0 /x/dn-10.ns"],
        "the address plugin ran"
    );
}
