//! Tests of the standalone workspace's contents.

use super::*;
use crate::template::generate::{Choices, Generated};

#[test]
fn only_the_shared_crates_and_root_files_travel() {
    for rel in [
        "common/src/lib.rs",
        "driver-package/testdata/primitive.inx",
        "xtask/src/main.rs",
        "xtask/fixtures/faulty-wfp/src/lib.rs",
        "docs/notes/wfp.md",
        ".cargo/config.toml",
        ".ci/run",
        "rust-toolchain.toml",
        "Cargo.lock",
    ] {
        assert!(travels(rel), "{rel} travels");
    }
    for rel in [
        "ex-callback/src/lib.rs",
        "wfp-callout/wfp-callout-wdm.inx",
        "xtask/mutations/ex-callback-free-context-first.toml",
        "commonplace/x.rs",
        "Cargo.toml",
        "README.md",
        "target/x",
    ] {
        assert!(!travels(rel), "{rel} stays behind");
    }
}

#[test]
fn the_manifest_keeps_the_shared_members_and_the_new_driver() {
    let m = "[workspace]\nmembers = [\"common\", \"driver-package\", \"cm-filter\", \"ex-callback\", \"xtask\", \"xtask/fixtures/faulty-pnp\"]\ndefault-members = [\"common\"]\n";
    assert_eq!(
        manifest(m, "my-drv").unwrap(),
        "[workspace]\nmembers = [\"common\", \"driver-package\", \"my-drv\", \"xtask\", \"xtask/fixtures/faulty-pnp\"]\ndefault-members = [\"common\"]\n"
    );
    let e = manifest("[workspace]\n", "my-drv").unwrap_err().to_string();
    assert!(e.contains("no `members = [...]` line"), "{e}");
}

#[test]
fn the_readme_has_the_two_commands_and_the_command_block() {
    let g = Generated {
        choices: Choices {
            name: "my-drv".into(),
            ..Choices::default()
        },
        files: Vec::new(),
    };
    let workspace = "# t\n\n## Prerequisites\n- Rust\n\n## Commands\n```\ncargo xtask build\n```\n- more\n\n## Deploy to a VM\nx\n";
    let r = readme(workspace, &g, "ex-callback").unwrap();
    assert!(r.contains("cargo xtask deploy\ncargo xtask test\n"), "{r}");
    assert!(
        r.contains("## Commands\n```\ncargo xtask build\n```\n"),
        "{r}"
    );
    assert!(r.contains("## Prerequisites\n- Rust\n"), "{r}");
    assert!(r.contains("[`my-drv`](my-drv/README.md)"), "{r}");
    assert!(!r.contains("- more"), "{r}");
    let e = readme("# t\n## Prerequisites\nx\n", &g, "ex-callback")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`## Commands`"), "{e}");
}

#[test]
fn the_workspace_readme_has_what_the_standalone_one_copies() {
    let root = crate::base::workspace::project_root();
    let text = fs::read_to_string(root.join("README.md")).unwrap();
    let g = Generated {
        choices: Choices {
            name: "my-drv".into(),
            ..Choices::default()
        },
        files: Vec::new(),
    };
    let r = readme(&text, &g, "ex-callback").unwrap();
    assert!(r.contains("cargo xtask new NAME --from"), "{r}");
}
