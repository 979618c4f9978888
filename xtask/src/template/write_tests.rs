//! Tests of writing a new driver: all or nothing.

use std::path::PathBuf;

use super::*;
use crate::base::workspace::Workspace;
use crate::template::generate::{Template, generate};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtask-write-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// `write` into a scratch workspace: refused with nothing written when the folder exists or the
/// identity check fails; otherwise the crate, its mutations and the member appear.
#[test]
fn write_is_all_or_nothing() {
    if !crate::template::samples_present() {
        return;
    }
    let w = Workspace::load().unwrap();
    let (root, sources) = (w.root.clone(), identity::sources(&w.drivers));
    let ws = scratch("write");
    fs::write(
        ws.join("Cargo.toml"),
        "[workspace]\nmembers = [\"common\", \"xtask\"]\n",
    )
    .unwrap();
    let g = generate(
        &root,
        &sources,
        Template::ExCallback,
        "test-only-cb",
        None,
        &mut rand_core::OsRng,
    )
    .unwrap();
    // Another driver in the scratch workspace already holds the same pool tag: refused.
    let tag = &g
        .choices
        .replaced
        .iter()
        .find(|(w, _, _)| w == "pool tag")
        .unwrap()
        .2;
    fs::create_dir_all(ws.join("other/src")).unwrap();
    fs::write(
        ws.join("other/src/lib.rs"),
        format!("const T: u32 = pool_tag(b\"{tag}\");\n"),
    )
    .unwrap();
    let other = Source {
        name: "other".into(),
        dir: ws.join("other"),
        inx: Vec::new(),
    };
    let e = write(&ws, &g, std::slice::from_ref(&other))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("pool tag `{tag}`")), "{e}");
    let left: Vec<String> = fs::read_dir(&ws)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left.iter().any(|n| n.contains("test-only-cb")),
        "nothing written: {left:?}"
    );
    assert!(!ws.join("xtask/mutations").exists());
    fs::remove_dir_all(ws.join("other")).unwrap();
    write(&ws, &g, &[]).unwrap();
    assert!(
        ws.join("test-only-cb/src/lib.rs").is_file()
            && ws.join("test-only-cb/test-only-cb.inx").is_file()
    );
    assert!(
        ws.join("xtask/mutations/test-only-cb-free-context-first.toml")
            .is_file()
    );
    assert!(
        fs::read_to_string(ws.join("Cargo.toml"))
            .unwrap()
            .contains("\"test-only-cb\", \"xtask\"")
    );
    let e = write(&ws, &g, &[]).unwrap_err().to_string();
    assert!(e.contains("exists"), "{e}");
    fs::remove_dir_all(&ws).unwrap();
}
