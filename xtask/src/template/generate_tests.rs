//! Tests of `new`'s copy: names, token replacement, every template's fresh identities, refusals.

use super::*;
use crate::base::workspace::Workspace;

fn workspace() -> (PathBuf, Vec<Source>) {
    let ws = Workspace::load().unwrap();
    (ws.root.clone(), identity::sources(&ws.drivers))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtask-new-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Writes the crate part of `g` under `dir` and returns it as an identity source.
fn written(g: &Generated, dir: &Path) -> Source {
    let mut inx = Vec::new();
    for (rel, bytes) in &g.files {
        let to = dir.join(rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::write(&to, bytes).unwrap();
        if to.extension().is_some_and(|e| e == "inx") {
            inx.push(to);
        }
    }
    Source {
        name: g.choices.name.clone(),
        dir: dir.join(&g.choices.name),
        inx,
    }
}

#[test]
fn names_are_checked() {
    assert_eq!(pascal("my-filter2"), "MyFilter2");
    check_name("my-filter2").unwrap();
    for bad in [
        "", "My", "1abc", "a--b", "a-", "-a", "a_b", "a.b", "über", "a b",
    ] {
        let e = check_name(bad).unwrap_err().to_string();
        assert!(e.contains("not a valid driver name"), "{bad:?}: {e}");
    }
    let long = "a".repeat(MAX_NAME + 1);
    assert!(
        check_name(&long)
            .unwrap_err()
            .to_string()
            .contains("at most 32")
    );
    assert!(
        check_name("common")
            .unwrap_err()
            .to_string()
            .contains("reserved")
    );
    let e = Template::parse("kmdf-thing").unwrap_err().to_string();
    assert!(
        e.contains("unknown template `kmdf-thing`") && e.contains("wfp-callout-wdm"),
        "{e}"
    );
}

#[test]
fn tokens_are_replaced_whole_only() {
    let t = "ExCallback ExCallbackRegistration [ex-callback] ex-callback-x.toml _ExCallback";
    assert_eq!(
        replace_token(t, "ExCallback", "Mine"),
        "Mine ExCallbackRegistration [ex-callback] ex-callback-x.toml _ExCallback"
    );
    assert_eq!(
        replace_token(t, "ex-callback", "mine"),
        "ExCallback ExCallbackRegistration [mine] mine-x.toml _ExCallback"
    );
    assert_eq!(
        fix_utf16_lengths("const K: [u16; 41] = ascii_to_utf16(\"\\\\REGISTRY\\\\AB\");\n"),
        "const K: [u16; 12] = ascii_to_utf16(\"\\\\REGISTRY\\\\AB\");\n"
    );
    assert_eq!(
        add_member(
            "[workspace]\nmembers = [\"common\", \"a\", \"xtask\", \"f\"]\n",
            "b"
        )
        .unwrap(),
        "[workspace]\nmembers = [\"common\", \"a\", \"b\", \"xtask\", \"f\"]\n"
    );
}

/// For every template: the copy holds none of the sample's identities, the workspace plus the
/// copy passes the identity check, and a second copy from the same template shares nothing with
/// the first.
#[test]
fn every_template_gets_fresh_identities() {
    if !crate::template::samples_present() {
        return;
    }
    let (root, sources) = workspace();
    let dir = scratch("templates");
    for (from, template) in TEMPLATES {
        let g1 = generate(
            &root,
            &sources,
            template,
            "test-only-first",
            None,
            &mut rand_core::OsRng,
        )
        .unwrap();
        let s1 = written(&g1, &dir.join(format!("{from}-1")));
        let mut all = sources.clone();
        all.push(s1.clone());
        identity::check(&root, &all).unwrap_or_else(|e| panic!("{from}: {e}"));
        let g2 = generate(
            &root,
            &all,
            template,
            "test-only-second",
            None,
            &mut rand_core::OsRng,
        )
        .unwrap();
        let s2 = written(&g2, &dir.join(format!("{from}-2")));
        all.push(s2);
        identity::check(&root, &all).unwrap_or_else(|e| panic!("{from}, second copy: {e}"));
        // The copy is consistent: its crate, INF and scenario name the new driver only.
        let sample = template.crate_dir();
        for (rel, bytes) in &g1.files {
            let text = String::from_utf8_lossy(bytes);
            let rel_s = rel.to_string_lossy();
            if rel_s.ends_with(".md") {
                continue; // the README names its sample on purpose
            }
            assert!(
                !text.contains(&format!("\"{sample}\"")) && !rel_s.contains(sample),
                "{from}: {rel_s} still names {sample}"
            );
        }
        let ids = identity::collect(&s1).unwrap();
        assert!(
            ids.iter()
                .any(|i| i.kind == Kind::Service && i.value == "TestOnlyFirst"),
            "{from}: {ids:?}"
        );
        let mutations = g1
            .files
            .iter()
            .filter(|(p, _)| p.starts_with("xtask/mutations"))
            .count();
        assert!(mutations >= 1, "{from}: its lessons' mutations are copied");
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_wdm_template_builds_wdm_only_and_cm_filter_gets_an_unused_altitude() {
    if !crate::template::samples_present() {
        return;
    }
    let (root, sources) = workspace();
    let g = generate(
        &root,
        &sources,
        Template::WfpCalloutWdm,
        "test-only-wdm",
        None,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let manifest = g
        .files
        .iter()
        .find(|(p, _)| p == Path::new("test-only-wdm/Cargo.toml"))
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .unwrap();
    assert!(manifest.contains("default = [\"wdm\"]") && !manifest.contains("variants"));
    assert!(
        g.files
            .iter()
            .any(|(p, _)| p == Path::new("test-only-wdm/test-only-wdm.inx"))
    );
    assert_eq!(
        g.files
            .iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "inx"))
            .count(),
        1
    );
    let g = generate(
        &root,
        &sources,
        Template::CmFilter,
        "test-only-reg-a",
        None,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let a = g.choices.altitude.clone().unwrap();
    assert!(is_altitude(&a) && a != "385201.5", "{a}");
    let e = generate(
        &root,
        &sources,
        Template::CmFilter,
        "test-only-reg-b",
        Some("385201.5"),
        &mut rand_core::OsRng,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("385201.5 is used"), "{e}");
    let e = generate(
        &root,
        &sources,
        Template::CmFilter,
        "test-only-reg-b",
        Some("12x"),
        &mut rand_core::OsRng,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("digits with at most one dot"), "{e}");
    let e = generate(
        &root,
        &sources,
        Template::PnpNotify,
        "test-only-pnp",
        Some("385250"),
        &mut rand_core::OsRng,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("only `--from cm-filter`"), "{e}");
    // A name whose service name another driver has (case aside) is taken.
    let e = generate(
        &root,
        &sources,
        Template::PnpNotify,
        "ex-callback",
        None,
        &mut rand_core::OsRng,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`ExCallback`") && e.contains("taken"), "{e}");
}

/// Every template's copy: its README says nothing false for it (`readme::false_for`), and no name
/// is replaced twice, even for a name that holds the sample's (`my-wfp-callout`).
#[test]
fn every_copy_readme_is_true_for_the_copy_and_names_are_replaced_once() {
    if !crate::template::samples_present() {
        return;
    }
    let (root, sources) = workspace();
    for (from, template) in TEMPLATES {
        let name = format!("my-{from}");
        let g = generate(
            &root,
            &sources,
            template,
            &name,
            None,
            &mut rand_core::OsRng,
        )
        .unwrap_or_else(|e| panic!("{from}: {e}"));
        for (path, bytes) in &g.files {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains(&format!("my-{name}")) && !text.contains("MyMy"),
                "{from}: a name replaced twice in {}",
                path.display()
            );
        }
        let readme = g
            .files
            .iter()
            .find(|(p, _)| *p == Path::new(&name).join("README.md"))
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .unwrap();
        for false_text in crate::template::readme::false_for(template) {
            assert!(
                !readme.contains(false_text),
                "{from}: the copy's README says {false_text:?}"
            );
        }
        assert!(readme.contains("`cargo xtask new` copied the folder") || from == "cm-filter");
    }
    // A sample README reworded without its edit is an error, not a false sentence.
    let e = crate::template::readme::for_copy("# x\n", Template::WfpCalloutWdm)
        .unwrap_err()
        .to_string();
    assert!(e.contains("update xtask/src/template/readme.rs"), "{e}");
}

/// Without the sample (a standalone workspace), `new` says where to run it.
#[test]
fn a_workspace_without_the_sample_is_told_where_to_run_new() {
    let dir = scratch("no-sample");
    let e = generate(
        &dir,
        &[],
        Template::CmFilter,
        "fine-name",
        None,
        &mut rand_core::OsRng,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("the sample cm-filter is not in this workspace")
            && e.contains("run `cargo xtask new` in the workspace of the samples"),
        "{e}"
    );
    fs::remove_dir_all(&dir).unwrap();
}
