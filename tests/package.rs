//! The Debian package scripts/package builds (cargo-deb), from the debug binary the tests
//! already have (`--binary`: no release build in CI): its files and their modes, the
//! conffiles, the maintainer scripts, the system user, and the systemd units, which
//! `systemd-analyze verify` checks where it is installed.
//!
//! Needs `dpkg-deb`: without it the test says it is skipped, and fails under `CI=true`
//! (scripts/test installs dpkg). scripts/package installs cargo-deb when it is missing.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use tempfile::TempDir;

/// Whether `program` is on PATH.
fn on_path(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn succeeded(what: &str, output: Output) -> Output {
    assert!(
        output.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The package, built once for every test here, in a folder kept for the whole run.
struct Package {
    dir: TempDir,
}

impl Package {
    fn deb(&self) -> std::path::PathBuf {
        self.dir.path().join("fulfill.deb")
    }

    fn dpkg_deb(&self, args: &[&str], to: Option<&Path>) -> Output {
        let mut command = support::env::command("dpkg-deb");
        command.args(args).arg(self.deb());
        command.args(to);
        succeeded(&format!("dpkg-deb {args:?}"), command.output().unwrap())
    }

    /// `dpkg-deb -c`: path (without the leading "./") → mode string, e.g. "-rw-r-----".
    fn contents(&self) -> BTreeMap<String, String> {
        let listing = String::from_utf8(self.dpkg_deb(&["-c"], None).stdout).unwrap();
        listing
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(fields[1], "0/0", "everything belongs to root: {line}");
                let path = fields[5].trim_start_matches("./").to_string();
                (path, fields[0].to_string())
            })
            .collect()
    }

    /// The files unpacked (`dpkg-deb -x`) into `root`.
    fn unpack(&self, root: &Path) {
        self.dpkg_deb(&["-x"], Some(root));
    }

    /// The control files (`dpkg-deb -e`) in `dir`.
    fn control(&self, dir: &Path) {
        self.dpkg_deb(&["-e"], Some(dir));
    }
}

/// The package, or `None` (with a note; a failure under CI=true) without dpkg-deb.
fn package() -> Option<&'static Package> {
    static PACKAGE: OnceLock<Option<Package>> = OnceLock::new();
    PACKAGE
        .get_or_init(|| {
            if !on_path("dpkg-deb") {
                assert!(
                    !support::dovecot::in_ci(),
                    "dpkg-deb is required under CI=true (scripts/test installs dpkg)"
                );
                eprintln!("skipped: dpkg-deb not found, the Debian package not checked");
                return None;
            }
            let dir = tempfile::tempdir().unwrap();
            let started = std::time::Instant::now();
            let output = support::env::command(support::repo().join("scripts/package"))
                .arg("--binary")
                .arg(support::fulfill_binary())
                .arg("--fast")
                .arg("--output")
                .arg(dir.path().join("fulfill.deb"))
                .env("TMPDIR", dir.path())
                .output()
                .unwrap();
            succeeded("scripts/package", output);
            eprintln!("scripts/package took {:?}", started.elapsed());
            Some(Package { dir })
        })
        .as_ref()
}

#[test]
fn the_package_installs_the_binary_docs_config_units_user_and_cron_file() {
    let Some(package) = package() else { return };
    let contents = package.contents();
    let expected = [
        ("usr/bin/fulfill", "-rwxr-xr-x"),
        ("usr/share/man/man1/fulfill.1.gz", "-rw-r--r--"),
        (
            "usr/share/bash-completion/completions/fulfill",
            "-rw-r--r--",
        ),
        ("usr/share/zsh/vendor-completions/_fulfill", "-rw-r--r--"),
        (
            "usr/share/fish/vendor_completions.d/fulfill.fish",
            "-rw-r--r--",
        ),
        ("etc/fulfill/config.toml", "-rw-r-----"),
        ("etc/cron.d/fulfill", "-rw-r--r--"),
        ("usr/lib/systemd/system/fulfill.service", "-rw-r--r--"),
        ("usr/lib/systemd/system/fulfill.timer", "-rw-r--r--"),
        ("usr/lib/sysusers.d/fulfill.conf", "-rw-r--r--"),
    ];
    for (path, mode) in expected {
        assert_eq!(
            contents.get(path).map(String::as_str),
            Some(mode),
            "{path} in the package, mode {mode}: {contents:#?}"
        );
    }

    let control = tempfile::tempdir().unwrap();
    package.control(control.path());
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap();
    let conffiles: Vec<&str> = conffiles.lines().collect();
    assert!(
        conffiles.contains(&"/etc/fulfill/config.toml"),
        "{conffiles:?}"
    );
    assert!(conffiles.contains(&"/etc/cron.d/fulfill"), "{conffiles:?}");
    let info = String::from_utf8(package.dpkg_deb(&["-I"], None).stdout).unwrap();
    assert!(info.contains("Package: fulfill"), "{info}");
}

#[test]
fn the_maintainer_scripts_create_the_user_and_give_it_the_config() {
    let Some(package) = package() else { return };
    let control = tempfile::tempdir().unwrap();
    package.control(control.path());
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join(script);
        let mode = std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions());
        assert_eq!(mode & 0o111, 0o111, "{script} is executable");
        succeeded(
            &format!("sh -n {script}"),
            Command::new("sh").arg("-n").arg(&path).output().unwrap(),
        );
    }
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    for needed in [
        "command -v systemd-sysusers",
        "systemd-sysusers fulfill.conf",
        "chown root:fulfill /etc/fulfill/config.toml",
        "chmod 0640 /etc/fulfill/config.toml",
    ] {
        assert!(
            postinst.contains(needed),
            "postinst lacks {needed}:\n{postinst}"
        );
    }

    let root = tempfile::tempdir().unwrap();
    package.unpack(root.path());
    let sysusers =
        std::fs::read_to_string(root.path().join("usr/lib/sysusers.d/fulfill.conf")).unwrap();
    assert!(
        sysusers
            .lines()
            .any(|l| l.starts_with("u ") && l.split_whitespace().nth(1) == Some("fulfill")),
        "{sysusers}"
    );
    if !on_path("systemd-sysusers") {
        eprintln!("skipped: systemd-sysusers not found, the sysusers.d file not dry-run");
        return;
    }
    let output = succeeded(
        "systemd-sysusers --dry-run",
        Command::new("systemd-sysusers")
            .arg(format!("--root={}", root.path().display()))
            .arg("--dry-run")
            .output()
            .unwrap(),
    );
    let said = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("Creating user 'fulfill'"), "{said}");
    assert!(!said.contains("not a valid"), "{said}");
}

#[test]
fn the_units_run_as_fulfill_with_its_state_directory_and_verify() {
    let Some(package) = package() else { return };
    let root = tempfile::tempdir().unwrap();
    package.unpack(root.path());
    let units = root.path().join("usr/lib/systemd/system");
    let service = std::fs::read_to_string(units.join("fulfill.service")).unwrap();
    for line in [
        "User=fulfill",
        "StateDirectory=fulfill",
        "StateDirectoryMode=0700",
        "SuccessExitStatus=3 75",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "the service lacks {line}"
        );
    }
    let exec_start = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    assert!(
        exec_start.starts_with("/usr/bin/fulfill ")
            && exec_start.contains("--config /etc/fulfill/config.toml")
            && exec_start.contains("--db /var/lib/fulfill/fulfill.db"),
        "{exec_start}"
    );
    let cron = std::fs::read_to_string(root.path().join("etc/cron.d/fulfill")).unwrap();
    assert!(
        cron.lines()
            .all(|l| l.starts_with('#') || l.trim().is_empty()),
        "the cron file stays commented out:\n{cron}"
    );
    assert!(
        cron.contains(exec_start),
        "the cron job runs what the service runs"
    );

    if !on_path("systemd-analyze") {
        eprintln!("skipped: systemd-analyze not found, the units not verified");
        return;
    }
    // Against the unpacked package as root (--root), so /usr/bin/fulfill exists there; the
    // man page is checked by tests/man_and_completions.rs, and sysinit.target and the like
    // belong to the host, not to this package.
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .args(["--man=no", "--recursive-errors=no"])
        .arg(units.join("fulfill.service"))
        .arg(units.join("fulfill.timer"))
        .output()
        .unwrap();
    let output = succeeded("systemd-analyze verify", output);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warns:\n{said}"
    );
}

#[test]
fn the_packaged_config_is_all_comments_and_loads() {
    let Some(package) = package() else { return };
    let root = tempfile::tempdir().unwrap();
    package.unpack(root.path());
    let config = root.path().join("etc/fulfill/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.lines()
            .all(|l| l.starts_with('#') || l.trim().is_empty()),
        "every setting is commented out"
    );
    // dpkg-deb -x keeps the 0640 mode; the binary from the package reads it.
    let home = support::Home::new();
    let db = home.path().join("fulfill.db");
    home.process(root.path().join("usr/bin/fulfill"))
        .arg("--config")
        .arg(&config)
        .arg("--db")
        .arg(&db)
        .arg("list")
        .output()
        .map(|o| succeeded("the packaged fulfill list", o))
        .unwrap();
}
