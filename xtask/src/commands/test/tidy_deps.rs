//! Tidy test: Cargo.lock keeps out what was kept out of the first `cargo xtask` on purpose.
//!
//! The first `cargo xtask` on a fresh clone compiles xtask and every crate it depends on; its time
//! is a budget (ARCHITECTURE.md, "Build profiles"). Two choices in Cargo.lock keep it there, and
//! a plain `cargo update` would silently undo either:
//! - `ppv-lite86` stays at 0.2.17: 0.2.18 and later depend on `zerocopy` (about 3 s of CPU to
//!   compile), which the chain rsa → num-bigint-dig (prime generation) → rand → rand_chacha →
//!   ppv-lite86 would add for code we never run fast enough to notice;
//! - `serde` stays at 1.0.228: later releases' derive depends on a newer `syn` major, a second
//!   `syn` beside the one `der`'s derive already compiles.
//!
//! Each rule names the fix, and the rules are tested on made-up lockfiles.

#![cfg(test)]

use std::collections::BTreeMap;
use std::path::Path;

/// Crates that must not be in the lockfile, each with why and how to keep it out.
const KEPT_OUT: &[(&str, &str)] = &[(
    "zerocopy",
    "ppv-lite86 0.2.18+ depends on it (3 s of the first `cargo xtask`); run \
     `cargo update -p ppv-lite86 --precise 0.2.17`",
)];

/// Crates of which the lockfile may hold only one version, each with how to get back to one.
const ONE_VERSION: &[(&str, &str)] = &[(
    "syn",
    "a second syn major doubles the proc-macro compile; keep serde at 1.0.228 \
     (`cargo update -p serde --precise 1.0.228`) or find which new crate asks for it with \
     `cargo tree -i syn`",
)];

/// `(name, version)` of every `[[package]]` in the lockfile `text`.
fn packages(text: &str) -> Vec<(String, String)> {
    let lock = crate::base::lockfile::Lockfile::parse(text).expect("a lockfile");
    lock.package
        .into_iter()
        .map(|p| (p.name, p.version))
        .collect()
}

/// Every rule the lockfile `text` breaks, each naming the crate and the fix.
fn violations(text: &str) -> Vec<String> {
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, version) in packages(text) {
        versions.entry(name).or_default().push(version);
    }
    let mut out = Vec::new();
    for (name, fix) in KEPT_OUT {
        if let Some(v) = versions.get(*name) {
            out.push(format!("Cargo.lock holds {name} {}: {fix}", v.join(", ")));
        }
    }
    for (name, fix) in ONE_VERSION {
        if let Some(v) = versions.get(*name)
            && v.len() > 1
        {
            out.push(format!(
                "Cargo.lock holds {name} {}: {fix}",
                v.join(" and ")
            ));
        }
    }
    out
}

#[test]
fn the_lockfile_keeps_out_what_the_first_compile_should_not_pay_for() {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("Cargo.lock");
    let text = std::fs::read_to_string(&lock).unwrap();
    assert!(
        packages(&text).iter().any(|(n, _)| n == "ppv-lite86"),
        "the reader found no packages in {}",
        lock.display()
    );
    assert_eq!(violations(&text), Vec::<String>::new());
}

#[test]
fn the_rules_catch_what_they_look_for() {
    let lock = |pkgs: &[(&str, &str)]| -> String {
        let mut text = String::new();
        for (n, v) in pkgs {
            for part in ["[[package]]\nname = \"", n, "\"\nversion = \"", v, "\"\n\n"] {
                text.push_str(part);
            }
        }
        text
    };
    let clean = lock(&[
        ("ppv-lite86", "0.2.17"),
        ("syn", "2.0.1"),
        ("serde", "1.0.228"),
    ]);
    assert_eq!(violations(&clean), Vec::<String>::new());

    let zc = lock(&[
        ("ppv-lite86", "0.2.21"),
        ("zerocopy", "0.8.63"),
        ("syn", "2.0.1"),
    ]);
    let v = violations(&zc);
    assert!(
        v.len() == 1 && v[0].contains("zerocopy 0.8.63") && v[0].contains("--precise 0.2.17"),
        "{v:?}"
    );

    let two = lock(&[("syn", "2.0.1"), ("syn", "3.0.0")]);
    let v = violations(&two);
    assert!(
        v.len() == 1 && v[0].contains("syn 2.0.1 and 3.0.0") && v[0].contains("1.0.228"),
        "{v:?}"
    );
}
