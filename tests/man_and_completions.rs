//! `fulfill man` and `fulfill completions`: they need no config or database, the scripts
//! parse in their shells, the page renders with man(1) and has the sections a reader looks
//! for; and `--help` of the main commands shows examples.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::Home;

/// A tool on PATH, or `None` with a note on stderr, so a skipped check is never silent.
fn tool(name: &str, purpose: &str) -> Option<()> {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: {name} not found, {purpose} not checked");
    }
    found.then_some(())
}

/// Runs `fulfill ARGS` in a private home; its stdout, after asserting exit 0.
fn run(home: &Home, args: &[&str]) -> Vec<u8> {
    let output = home.fulfill().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "fulfill {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.stdout.is_empty(),
        "fulfill {args:?} printed nothing"
    );
    output.stdout
}

/// Pipes `input` into `program ARGS` and asserts it succeeds.
fn check_with(program: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn man_and_completions_work_without_a_config_or_with_a_broken_one() {
    let home = Home::new();
    let broken = home.path().join("broken.toml");
    std::fs::write(&broken, "garbage = [\n").unwrap();
    let broken = broken.to_str().unwrap();
    for args in [["man"].as_slice(), &["completions", "bash"]] {
        // No config file at all, and no database: neither is created.
        run(&home, args);
        let with_flag: Vec<&str> = ["--config", broken].iter().chain(args).copied().collect();
        run(&home, &with_flag);
        let output = home
            .fulfill()
            .env("FULFILL_CONFIG", broken)
            .env("FULFILL_DB", "/nonexistent/dir/fulfill.db")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?} with FULFILL_CONFIG broken"
        );
    }
    assert!(
        !home.default_db().exists(),
        "man and completions open no database"
    );
    // The broken config is still an error for a command that needs it.
    home.fulfill()
        .args(["--config", broken, "list"])
        .assert()
        .code(2);
}

#[test]
fn every_shell_gets_a_completion_script_naming_the_commands() {
    let home = Home::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = String::from_utf8(run(&home, &["completions", shell])).unwrap();
        for word in ["resend-and-import", "all-pending", "completions"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    home.fulfill()
        .args(["completions", "tcsh"])
        .assert()
        .code(2);
}

#[test]
fn the_bash_zsh_and_fish_scripts_parse() {
    let home = Home::new();
    let bash = run(&home, &["completions", "bash"]);
    check_with("bash", &["-n"], &bash);
    // zsh and fish are rarely installed on a build machine: checked where they are.
    if tool("zsh", "the zsh script").is_some() {
        check_with("zsh", &["-n"], &run(&home, &["completions", "zsh"]));
    }
    if tool("fish", "the fish script").is_some() {
        check_with(
            "fish",
            &["--no-execute"],
            &run(&home, &["completions", "fish"]),
        );
    }
}

#[test]
fn the_man_page_has_exit_status_files_and_every_command() {
    let home = Home::new();
    let page = String::from_utf8(run(&home, &["man"])).unwrap();
    assert!(
        page.contains("\n.TH fulfill 1 "),
        "no .TH title line:\n{page}"
    );
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        ".SH COMMANDS",
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
    ] {
        assert!(page.contains(section), "the page lacks {section}");
    }
    for command in [
        "import",
        "list",
        "show",
        "orders",
        "resend",
        "check",
        "poll",
        "resend-and-import",
        "deploy",
        "replace",
        "completions",
        "man",
    ] {
        assert!(
            page.contains(&format!(".SS {command}\n")),
            "the page lacks the command {command}"
        );
    }
    let exit_status = page.split(".SH \"EXIT STATUS\"").nth(1).unwrap();
    for code in [0, 1, 2, 3, 4, 75] {
        assert!(
            exit_status.contains(&format!("\\fB{code}\\fR")),
            "EXIT STATUS lacks {code}"
        );
    }
    let files = page.split(".SH FILES").nth(1).unwrap();
    for path in [
        "fulfill/config.toml",
        "fulfill/fulfill.db",
        ".lock",
        "live/",
    ] {
        assert!(files.contains(path), "FILES lacks {path}");
    }
}

#[test]
fn the_man_page_renders_with_man() {
    if tool("man", "the page's rendering").is_none() {
        assert!(
            !support::dovecot::in_ci(),
            "man is required under CI=true (scripts/test installs man-db)"
        );
        return;
    }
    let home = Home::new();
    let page = home.path().join("fulfill.1");
    std::fs::write(&page, run(&home, &["man"])).unwrap();
    let output = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .unwrap();
    assert!(output.status.success(), "man -l: {}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim().is_empty(), "man warns:\n{stderr}");
    let text = String::from_utf8_lossy(&output.stdout);
    for heading in ["NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS", "FILES"] {
        assert!(
            text.lines().any(|l| l == heading),
            "rendered page lacks {heading}:\n{text}"
        );
    }
}

#[test]
fn the_main_commands_help_shows_examples() {
    let home = Home::new();
    for command in ["resend-and-import", "import", "poll", "check"] {
        let help = String::from_utf8(run(&home, &[command, "--help"])).unwrap();
        let examples = help
            .split("Examples:")
            .nth(1)
            .unwrap_or_else(|| panic!("{command} --help has no examples:\n{help}"));
        assert!(
            examples.contains(&format!("fulfill {command}"))
                || examples.contains(&format!(" {command} ")),
            "{command}'s examples do not run it:\n{examples}"
        );
    }
}
