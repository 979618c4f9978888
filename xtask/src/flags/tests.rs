//! The parser, the help and the README synopsis, and the completions, all from the one table.

use super::table::{COMMANDS, Values};
use super::*;

fn parse_str(s: &str) -> Result<Command> {
    parse(s.split_whitespace().map(str::to_owned))
}

fn help_of(name: &str) -> String {
    help::command(table::command(name).unwrap())
}

#[test]
fn build_defaults_to_every_driver_debug_x64() {
    assert_eq!(
        parse_str("build").unwrap(),
        Command::Build(build::Options {
            packages: vec![],
            arches: vec![Arch::X64],
            profile: Profile::Debug,
        })
    );
}

#[test]
fn build_takes_packages_in_every_spelling() {
    let Command::Build(b) =
        parse_str("build -p a --package b --package=c --release --arch all").unwrap()
    else {
        panic!()
    };
    assert_eq!(b.packages, ["a", "b", "c"]);
    assert_eq!(b.arches, Arch::ALL);
    assert_eq!(b.profile, Profile::Release);
    let Command::Build(b) = parse_str("build -r -p=x").unwrap() else {
        panic!()
    };
    assert_eq!(
        (b.profile, b.packages),
        (Profile::Release, vec!["x".to_owned()])
    );
}

#[test]
fn mistakes_are_named() {
    let err = |s: &str| parse_str(s).unwrap_err().to_string();
    assert_eq!(err("build -p"), "-p needs a value");
    assert_eq!(err("build -p --release"), "-p needs a value");
    assert_eq!(err("build --package="), "--package= needs a value");
    assert_eq!(
        err("build --arch x64 --arch arm64"),
        "--arch given more than once"
    );
    assert_eq!(err("build --fast"), "unknown option `--fast` (see --help)");
    assert_eq!(
        err("build ex-callback"),
        "unexpected argument `ex-callback` (see --help)"
    );
    assert_eq!(
        err("build --release=yes"),
        "--release takes no value, not `--release=yes`"
    );
    assert!(err("buidl").starts_with("unknown command `buidl`"));
    assert!(err("emulate --fault").contains("`--fault`"));
    assert!(err("lint -p a x.sys").contains("not both"));
    assert!(err("lint --arch all x.sys").contains("one machine"));
    assert!(err("help nope").starts_with("unknown command `nope`"));
    assert!(err("help build lint").contains("`lint`"));
}

#[test]
fn emulate_takes_names_positionally_or_with_p() {
    let Command::Emulate(e) = parse_str("emulate a --faults -p b --json").unwrap() else {
        panic!()
    };
    assert_eq!(e.drivers, ["b", "a"]);
    assert!(e.faults && e.json);
    assert_eq!(e.profile, Profile::Debug);
}

#[test]
fn lint_files_and_arch() {
    let Command::Lint(l) = parse_str("lint --arch arm64 --json a.sys b.dll").unwrap() else {
        panic!()
    };
    assert_eq!(l.files, [std::path::PathBuf::from("a.sys"), "b.dll".into()]);
    assert_eq!(l.arches, [Arch::Arm64]);
    assert!(l.json);
}

#[test]
fn help_everywhere() {
    assert_eq!(parse_str("").unwrap(), Command::Help(help::overview()));
    assert_eq!(
        parse_str("--help").unwrap(),
        Command::Help(help::overview())
    );
    assert_eq!(parse_str("help").unwrap(), Command::Help(help::overview()));
    assert_eq!(
        parse_str("help emulate").unwrap(),
        Command::Help(help_of("emulate"))
    );
    assert_eq!(
        parse_str("bench -h").unwrap(),
        Command::Help(help_of("bench"))
    );
    // --help wins over otherwise bad arguments.
    assert_eq!(
        parse_str("build --bogus --help").unwrap(),
        Command::Help(help_of("build"))
    );
    // Every command is in the list, and each help starts with its own name and lists every
    // option of the table.
    let listed = help::overview();
    for c in COMMANDS {
        let text = help_of(c.name);
        assert!(listed.contains(&format!("    {}", c.name)), "{}", c.name);
        assert!(
            text.starts_with(&format!("cargo xtask {}:", c.name)),
            "{}",
            c.name
        );
        assert!(text.contains(&format!("USAGE: cargo xtask {}", c.name)));
        for o in c.options {
            assert!(text.contains(o.long), "{} --help lacks {}", c.name, o.long);
        }
        assert!(text.contains("-h, --help"));
    }
    // Continuation lines of an option's help line up under its first line.
    let deploy = help_of("deploy");
    let first = deploy
        .lines()
        .find(|l| l.contains("--install sc|inf"))
        .unwrap();
    let col = first.find("create the service").unwrap();
    let next = deploy.lines().skip_while(|l| *l != first).nth(1).unwrap();
    assert_eq!(next.len() - next.trim_start().len(), col, "{next}");
}

/// Each usage form names only options of the table, and, unless it stands for a group of them
/// (`[VM OPTIONS]`), every option: help, synopsis and parser cannot drift apart.
#[test]
fn usage_and_options_agree() {
    for c in COMMANDS {
        let in_usage: Vec<&str> = c
            .usage
            .iter()
            .flat_map(|u| u.split(|ch: char| " []|.".contains(ch)))
            .filter(|w| w.starts_with('-'))
            .collect();
        for w in &in_usage {
            assert!(
                c.option(w).is_some(),
                "{}: usage names {w}, not an option",
                c.name
            );
        }
        let grouped = c.usage.iter().any(|u| u.contains("OPTIONS]"));
        for o in c.options {
            let named =
                in_usage.contains(&o.long) || o.short.is_some_and(|s| in_usage.contains(&s));
            assert!(
                named || grouped || (c.name == "emulate" && o.long == "--package"),
                "{}: {} is missing from its usage",
                c.name,
                o.long
            );
        }
        assert_eq!(
            c.positional.is_some(),
            c.usage.iter().any(|u| has_positional(c, u)),
            "{}: positional arguments and usage disagree",
            c.name
        );
    }
}

/// Whether a usage form names a positional argument: a word that is neither an option, nor the
/// value after one, nor the `[VM OPTIONS]` group.
fn has_positional(c: &'static table::CommandSpec, usage: &str) -> bool {
    let mut words = usage
        .split(' ')
        .skip(1)
        .map(|w| w.trim_matches(|ch| "[].".contains(ch)))
        .filter(|w| !w.is_empty() && *w != "|");
    while let Some(w) = words.next() {
        if w.starts_with('-') {
            if c.option(w).is_some_and(|o| o.values != Values::None) {
                words.next();
            }
        } else if w != "VM" && w != "OPTIONS" {
            return true;
        }
    }
    false
}

#[test]
fn test_and_clean_arguments() {
    assert_eq!(
        parse_str("test").unwrap(),
        Command::Test(test::Options::default())
    );
    let Command::Test(t) = parse_str("test --stage gate --stage=build -p cm-filter").unwrap()
    else {
        panic!()
    };
    assert_eq!(t.stages, ["gate", "build"]);
    assert_eq!(t.packages, ["cm-filter"]);
    assert_eq!(
        parse_str("clean --all").unwrap(),
        Command::Clean(clean::Options { all: true })
    );
    assert!(parse_str("clean x").is_err());
}

/// The README's command list is the synopsis of the table, line for line.
#[test]
fn readme_synopsis_is_the_help() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split("## Commands\n```\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("README.md has a ```-block right under `## Commands`");
    let readme_lines: Vec<&str> = block.lines().collect();
    let expected = help::synopsis();
    assert_eq!(
        readme_lines,
        expected,
        "README.md's `## Commands` block must be, line for line:\n{}",
        expected.join("\n")
    );
}

#[test]
fn signing_commands() {
    let Command::Cert(c) = parse_str("cert").unwrap() else {
        panic!()
    };
    assert!(!c.new && !c.json && c.cert_dir.is_none());
    let Command::Cert(c) = parse_str("cert --new --cert-dir /k --json").unwrap() else {
        panic!()
    };
    assert!(c.new && c.json);
    assert_eq!(c.cert_dir, Some("/k".into()));
    assert!(parse_str("cert --show --new").is_err());
    let Command::Sign(s) = parse_str("sign --release a.sys").unwrap() else {
        panic!()
    };
    assert_eq!(
        (s.profile, s.files),
        (Profile::Release, vec!["a.sys".into()])
    );
    assert!(parse_str("sign -p a b.sys").is_err());
    let Command::Package(p) = parse_str("package --arch all -p ex-callback --json").unwrap() else {
        panic!()
    };
    assert_eq!(
        (p.arches, p.packages, p.json),
        (Arch::ALL.to_vec(), vec!["ex-callback".to_owned()], true)
    );
    assert!(parse_str("package x").is_err());
    assert_eq!(
        parse_str("help package").unwrap(),
        Command::Help(help_of("package"))
    );
}

#[test]
fn deploy_targets() {
    let Command::Deploy(d) = parse_str("deploy").unwrap() else {
        panic!()
    };
    assert_eq!(d.targets, [Target::Emu]);
    assert!(!d.dry_run && !d.keep && d.install == Install::Sc && d.timeout_s == 120);
    let Command::Deploy(d) = parse_str("deploy --target=emu -p x").unwrap() else {
        panic!()
    };
    assert_eq!(
        (d.targets, d.packages),
        (vec![Target::Emu], vec!["x".to_owned()])
    );
    let Command::Deploy(d) = parse_str(
        "deploy --target ssh://me@vm:2222 --target hyperv:Win11 --dry-run --json --keep \
         --install inf --snapshot clean --arch arm64 --ssh-option Port=22 --timeout 30",
    )
    .unwrap() else {
        panic!()
    };
    assert!(matches!(d.targets[0], Target::Ssh { .. }));
    assert!(matches!(d.targets[1], Target::HyperV { .. }));
    assert!(d.dry_run && d.json && d.keep && d.install == Install::Inf);
    assert_eq!(
        (d.snapshot.as_deref(), d.arch, d.ssh_options, d.timeout_s),
        (Some("clean"), Arch::Arm64, vec!["Port=22".to_owned()], 30)
    );
    let err = |s: &str| parse_str(s).unwrap_err().to_string();
    assert!(err("deploy --install msi").contains("sc or inf"));
    assert!(err("deploy --arch all --target ssh://a@b").contains("x64 or arm64"));
    assert!(err("deploy --arch arm64").contains("x64 images only"));
    assert!(err("deploy --target ssh://a@b --timeout soon").contains("number of seconds"));
    assert!(err("deploy --target ftp://x").contains("ftp://x"));
}

#[test]
fn completions_arguments() {
    let Command::Completions(c) = parse_str("completions zsh").unwrap() else {
        panic!()
    };
    assert_eq!(c.shell, Shell::Zsh);
    assert!((c.script)(Shell::Fish, &[]).starts_with("# fish completion"));
    let err = |s: &str| parse_str(s).unwrap_err().to_string();
    assert!(err("completions").contains("bash, zsh or fish"));
    assert!(err("completions tcsh").contains("`tcsh`"));
    assert!(err("completions bash zsh").contains("`zsh`"));
}

fn drivers() -> Vec<String> {
    vec!["cm-filter".to_owned(), "ex-callback".to_owned()]
}

/// Runs `script` then `body` in bash, and returns stdout.
fn bash(script: &str, body: &str) -> String {
    let dir = std::env::temp_dir().join(format!("xtask-completions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.bash", body.len()));
    std::fs::write(&file, script).unwrap();
    let out = std::process::Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(format!("{body}\n"))
        .arg("bash")
        .arg(&file)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The bash script parses (`bash -n`), and completing a few lines gives what the table says.
#[test]
fn bash_completion_completes() {
    let script = completion_script(Shell::Bash, &drivers());
    let file = std::env::temp_dir().join(format!("xtask-bash-n-{}.bash", std::process::id()));
    std::fs::write(&file, &script).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash runs");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let complete = |line: &str| {
        let mut words: Vec<&str> = line.split(' ').collect();
        if line.ends_with(' ') {
            words.pop();
            words.push("");
        }
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let body = format!(
            "_fake() {{ COMPREPLY=(fallback); }}\ncomplete -F _fake cargo\nsource \"$1\"\n\
             COMP_WORDS=({})\nCOMP_CWORD={}\n_cargo_xtask\necho \"${{COMPREPLY[*]}}\"",
            quoted.join(" "),
            words.len() - 1
        );
        bash(&script, &body).trim().to_owned()
    };
    assert_eq!(complete("cargo xtask bu"), "build");
    assert_eq!(complete("cargo xtask c"), "cert clean completions");
    assert_eq!(complete("cargo xtask build --a"), "--arch");
    assert_eq!(complete("cargo xtask build --arch a"), "arm64 all");
    assert_eq!(complete("cargo xtask deploy --arch "), "x64 arm64");
    assert_eq!(complete("cargo xtask build -p e"), "ex-callback");
    assert_eq!(complete("cargo xtask emulate c"), "cm-filter");
    assert_eq!(complete("cargo xtask test --stage g"), "gate");
    assert_eq!(complete("cargo xtask completions f"), "fish");
    assert_eq!(complete("cargo xtask help em"), "emulate");
    assert_eq!(complete("cargo xtask clean --"), "--all --help");
    // A value that is free text completes to nothing, not to options.
    assert_eq!(complete("cargo xtask deploy --snapshot "), "");
    // Another cargo command goes to the completion that was there before.
    assert_eq!(complete("cargo buil"), "fallback");
}

/// Every command and every option of the table is in each script; zsh and fish check the syntax
/// where they are installed (bash is checked above).
#[test]
fn every_shell_knows_every_option() {
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let script = completion_script(shell, &drivers());
        for c in COMMANDS {
            assert!(script.contains(c.name), "{shell:?} lacks {}", c.name);
            for o in c.options {
                let spelled = if shell == Shell::Fish {
                    format!("-l {}", &o.long[2..])
                } else {
                    o.long.to_owned()
                };
                assert!(
                    script.contains(&spelled),
                    "{shell:?} lacks {} {}",
                    c.name,
                    o.long
                );
                if let Values::Choices(words) = o.values {
                    assert!(script.contains(&words.join(" ")), "{shell:?}: {}", o.long);
                }
            }
        }
        assert!(
            script.contains("cm-filter ex-callback"),
            "{shell:?} lacks the drivers"
        );
        let program = match shell {
            Shell::Bash => continue,
            Shell::Zsh => "zsh",
            Shell::Fish => "fish",
        };
        let file = std::env::temp_dir().join(format!("xtask-{program}-{}", std::process::id()));
        std::fs::write(&file, &script).unwrap();
        match std::process::Command::new(program)
            .arg("-n")
            .arg(&file)
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "{program} -n: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("{program} not installed ({e}): its syntax check skipped"),
        }
    }
}

/// fish, where installed, completes from the script (`complete -C` asks it as the shell would).
#[test]
fn fish_completion_completes_where_fish_is_installed() {
    let script = completion_script(Shell::Fish, &drivers());
    let file = std::env::temp_dir().join(format!("xtask-fish-c-{}.fish", std::process::id()));
    std::fs::write(&file, &script).unwrap();
    let complete = |line: &str| -> Option<Vec<String>> {
        let out = std::process::Command::new("fish")
            .arg("--no-config")
            .arg("-c")
            .arg(format!("source {}; complete -C '{line}'", file.display()))
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.split('\t').next().unwrap_or("").to_owned())
                .collect(),
        )
    };
    let Some(commands) = complete("cargo xtask bu") else {
        eprintln!("fish not installed: its completion check skipped");
        return;
    };
    assert_eq!(commands, ["build"]);
    assert_eq!(complete("cargo xtask build --ar").unwrap(), ["--arch"]);
    assert_eq!(
        complete("cargo xtask deploy --arch ").unwrap(),
        ["arm64", "x64"]
    );
    assert_eq!(complete("cargo xtask test --stage ga").unwrap(), ["gate"]);
    assert_eq!(complete("cargo xtask emulate e").unwrap(), ["ex-callback"]);
}

/// zsh, where installed, runs the completion function with `compadd` and `_files` stood in for
/// (they work only inside zsh's completion widgets): the candidates are what the table says.
#[test]
fn zsh_completion_offers_where_zsh_is_installed() {
    let script = completion_script(Shell::Zsh, &drivers());
    let file = std::env::temp_dir().join(format!("xtask-zsh-c-{}.zsh", std::process::id()));
    std::fs::write(&file, &script).unwrap();
    let offers = |words: &str| -> Option<String> {
        let n = words.split(' ').count();
        let body = format!(
            "compadd() {{ [[ $1 == -- ]] && shift; print -r -- \"$*\"; }}\n\
             _files() {{ print -r -- \"_files $*\"; }}\n\
             compdef() {{ : }}\n\
             source {}\n\
             words=({})\nCURRENT={n}\n_cargo_xtask",
            file.display(),
            words
                .split(' ')
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = std::process::Command::new("zsh")
            .args(["-f", "-c", &body])
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let Some(commands) = offers("cargo xtask ") else {
        eprintln!("zsh not installed: its completion check skipped");
        return;
    };
    assert_eq!(
        commands,
        COMMANDS
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(
        offers("cargo xtask build --arch ").unwrap(),
        "x64 arm64 all"
    );
    assert_eq!(
        offers("cargo xtask emulate ").unwrap(),
        "cm-filter ex-callback"
    );
    assert_eq!(offers("cargo xtask sign --cert-dir ").unwrap(), "_files -/");
    assert_eq!(offers("cargo xtask lint ").unwrap(), "_files");
    assert_eq!(offers("cargo xtask clean -").unwrap(), "--all --help -h");
    // Another cargo command: cargo's own completion, here none, so files.
    assert_eq!(offers("cargo buil").unwrap(), "_files");
}

#[test]
fn deploy_verifier_dump_and_kdnet_options() {
    let err = |s: &str| parse_str(s).unwrap_err().to_string();
    let Command::Deploy(d) = parse_str(
        "deploy --target ssh://a@b --verifier standard --fetch-dump --dump-limit 512M --kdnet 10.0.0.2:50000",
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        d.verifier,
        Some(crate::deploy::verifier::Flags(
            crate::deploy::verifier::STANDARD
        ))
    );
    assert!(d.fetch_dump);
    assert_eq!(d.dump_limit, 512 << 20);
    assert_eq!(d.kdnet.as_ref().map(|k| k.port), Some(50000));
    let Command::Deploy(d) = parse_str("deploy --target ssh://a@b --verifier 0x20").unwrap() else {
        panic!()
    };
    assert_eq!(d.verifier, Some(crate::deploy::verifier::Flags(0x20)));
    assert_eq!(d.dump_limit, crate::deploy::plan::DUMP_LIMIT);
    assert!(
        err("deploy --target ssh://a@b --verifier all").contains("`standard` or the flags in hex")
    );
    assert!(err("deploy --target ssh://a@b --dump-limit 2T").contains("--dump-limit takes a size"));
    assert!(err("deploy --target ssh://a@b --dump-limit 0").contains("--dump-limit takes a size"));
    assert!(err("deploy --target ssh://a@b --kdnet host:50000").contains("not an IPv4 address"));
    assert!(err("deploy --target ssh://a@b --kdnet 10.0.0.2:22").contains("49152 to 65535"));
    assert!(err("deploy --verifier standard").contains("--verifier is for VM targets"));
    assert!(err("deploy --fetch-dump").contains("--fetch-dump is for VM targets"));
    // `--verifier` alone is `standard`, last on the line or before another option; `=` works too.
    let standard = Some(crate::deploy::verifier::Flags(
        crate::deploy::verifier::STANDARD,
    ));
    for line in [
        "deploy --target ssh://a@b --verifier",
        "deploy --verifier --target ssh://a@b",
        "deploy --target ssh://a@b --verifier=standard",
    ] {
        let Command::Deploy(d) = parse_str(line).unwrap() else {
            panic!()
        };
        assert_eq!(d.verifier, standard, "{line}");
    }
    let Command::Deploy(d) = parse_str("deploy --target ssh://a@b --verifier=0x9").unwrap() else {
        panic!()
    };
    assert_eq!(d.verifier, Some(crate::deploy::verifier::Flags(0x9)));
    assert!(err("deploy --target ssh://a@b --verifier=").contains("--verifier= needs a value"));
    assert!(help_of("deploy").contains("--verifier [FLAGS]"));
}

#[test]
fn your_own_certificate_is_a_pfx_or_a_key_and_certificate_pair() {
    use crate::commands::sign::OwnCert;
    let Command::Sign(signed) = parse_str("sign --pfx me.pfx a.sys").unwrap() else {
        panic!()
    };
    assert_eq!(signed.own, Some(OwnCert::Pfx("me.pfx".into())));
    let Command::Package(packaged) =
        parse_str("package --key k.pem --cert c.pem --submission").unwrap()
    else {
        panic!()
    };
    assert_eq!(
        packaged.own,
        Some(OwnCert::Pem {
            key: "k.pem".into(),
            cert: "c.pem".into()
        })
    );
    assert!(packaged.submission);
    let Command::Deploy(deployed) = parse_str("deploy --pfx me.pfx --dry-run").unwrap() else {
        panic!()
    };
    assert_eq!(deployed.own, Some(OwnCert::Pfx("me.pfx".into())));
    let Command::Cert(certs) = parse_str("cert --export-pfx out.pfx").unwrap() else {
        panic!()
    };
    assert_eq!(certs.export_pfx, Some("out.pfx".into()));
    for (line, says) in [
        ("sign --pfx a.pfx --key k.pem --cert c.pem", "not both"),
        ("package --key k.pem", "--key needs --cert"),
        ("package --cert c.pem", "--cert needs --key"),
        (
            "sign --pfx a.pfx --cert-dir /k",
            "--cert-dir is the test certificate's folder",
        ),
        // Never a password on the command line.
        ("sign --pfx a.pfx --password x", "--password"),
    ] {
        let e = parse_str(line).err().unwrap().to_string();
        assert!(e.contains(says), "{line}: {e}");
    }
}
