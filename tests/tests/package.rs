//! The Debian package (`scripts/package-deb`): its control fields and
//! contents, an installation into a throwaway root with dpkg (the default
//! stack built by its postinst, the default configuration valid), and the
//! systemd unit in it (`systemd-analyze verify`).

use std::path::{Path, PathBuf};
use std::process::Command;

use dyno_tests::*;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn field(deb: &Path, name: &str) -> String {
    run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim()
        .to_string()
}

/// Builds the package from the debug binaries the tests already built.
fn build_deb(out: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/package-deb");
    let path = run(Command::new(script).arg(out).env("DEB_PROFILE", "debug"));
    PathBuf::from(path.trim())
}

#[test]
fn the_deb_holds_the_binaries_unit_config_and_stack_builder_and_installs() {
    require_root();
    let tmp = tempfile::Builder::new()
        .prefix("dyno-deb-")
        .tempdir_in(dyno_tests::env::target_tmp())
        .unwrap();
    let deb = build_deb(tmp.path());
    assert!(deb.is_file(), "{}", deb.display());

    assert_eq!(field(&deb, "Package"), "dynoagent");
    assert_eq!(field(&deb, "Version"), env!("CARGO_PKG_VERSION"));
    let depends = field(&deb, "Depends");
    for dep in ["busybox-static", "containernetworking-plugins", "iptables", "systemd"] {
        assert!(depends.split(", ").any(|d| d == dep), "{dep} not in Depends: {depends}");
    }
    let contents = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for file in [
        "./usr/bin/dynoagent",
        "./usr/bin/dynoctl",
        "./usr/bin/dynoagent-build-stack",
        "./lib/systemd/system/dynoagent.service",
        "./etc/dynoagent/dynoagent.toml",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(file) && l.contains("root/root")),
            "{file} (owned by root) not in:\n{contents}"
        );
    }
    let conffiles = run(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/dynoagent/dynoagent.toml");

    // Installed with dpkg into a root of its own (maintainer scripts run
    // with DPKG_ROOT, outside a chroot).
    let root = tmp.path().join("root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-depends", "--force-script-chrootless", "--log=/dev/null", "-i"])
        .arg(&deb));
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(
        status.contains("Package: dynoagent\nStatus: install ok installed"),
        "{status}"
    );
    let version = run(Command::new(root.join("usr/bin/dynoagent")).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    assert!(
        root.join("var/lib/dynoagent/stacks/default/bin/busybox").is_file(),
        "postinst built no stack"
    );
    let config = root.join("etc/dynoagent/dynoagent.toml");
    let cfg = dyno_agent::config::Config::load(Some(&config), std::iter::empty(), &Default::default())
        .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    assert_eq!(cfg.socket, Path::new("/run/dynoagent/dynoagent.sock"));
    assert_eq!(cfg.stacks["default"], Path::new("/var/lib/dynoagent/stacks/default"));

    // The unit as installed: systemd's own check, against that root (with
    // the host's units beside it, for the targets it is ordered against;
    // the package's own files are kept).
    let unit = root.join("lib/systemd/system/dynoagent.service");
    run(Command::new("cp")
        .arg("-an")
        .arg("/lib/systemd/system/.")
        .arg(root.join("lib/systemd/system")));
    let verify = Command::new("systemd-analyze")
        .arg(format!("--root={}", root.display()))
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian's systemd)");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {}\n{said}",
        verify.status
    );
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Delegate=yes",
        "KillMode=process",
        "Restart=on-failure",
        "RuntimeDirectory=dynoagent",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in the unit");
    }
}
