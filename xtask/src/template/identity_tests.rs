//! Tests of the identity check: the real workspace passes, each real driver's names are found,
//! and synthetic copies with one duplicated name of each kind are caught.

use super::*;
use crate::base::workspace::Workspace;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fresh folder for one test: its own even when two tests running at once copy the same driver
/// (`name`), which once made them remove each other's files.
fn scratch(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("xtask-identity-{name}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Copies a driver folder's sources, `.inx` files and scenario into `dest`, applying `edits`
/// (plain text replacements) to every file, and renaming files by the same edits.
fn copy_driver(from: &str, dest: &Path, edits: &[(&str, &str)]) -> Source {
    let src = root().join(from);
    let apply = |s: &str| {
        let mut s = s.to_owned();
        for (a, b) in edits {
            s = s.replace(a, b);
        }
        s
    };
    let mut inx = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
            let keep = ext == "rs" || ext == "inx" || rel == "scenario.toml";
            if !keep {
                continue;
            }
            let to = dest.join(apply(&rel));
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::write(&to, apply(&fs::read_to_string(&p).unwrap())).unwrap();
            if ext == "inx" {
                inx.push(to);
            }
        }
    }
    inx.sort();
    Source {
        name: dest.file_name().unwrap().to_string_lossy().into_owned(),
        dir: dest.to_path_buf(),
        inx,
    }
}

fn values(ids: &[Identity], kind: Kind) -> Vec<String> {
    let mut v: Vec<String> = ids
        .iter()
        .filter(|i| i.kind == kind)
        .map(|i| i.value.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn the_workspace_has_no_shared_identity() {
    let ws = Workspace::load().unwrap();
    let sources = sources(&ws.drivers);
    let n = check(&ws.root, &sources).unwrap();
    // Every driver and fixture holds at least a service or a pool tag.
    assert!(
        n >= sources.len(),
        "{n} identities for {} drivers",
        sources.len()
    );
}

#[test]
fn each_kind_is_read_where_the_drivers_write_it() {
    if !crate::template::samples_present() {
        return;
    }
    let scratch = scratch("read");
    let ex = collect(&copy_driver("ex-callback", &scratch.join("ex"), &[])).unwrap();
    assert_eq!(values(&ex, Kind::Service), ["ExCallback"]);
    assert_eq!(values(&ex, Kind::PoolTag), ["ExCb"]);
    assert_eq!(
        values(&ex, Kind::CallbackObject),
        ["\\Callback\\ExCallbackSample"],
        "system objects the driver only opens are not its own"
    );
    let cm = collect(&copy_driver("cm-filter", &scratch.join("cm"), &[])).unwrap();
    assert_eq!(values(&cm, Kind::Altitude), ["385201.5", "385202"]);
    let files: Vec<String> = cm
        .iter()
        .filter(|i| i.kind == Kind::Altitude)
        .map(|i| i.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["lib.rs", "cm-filter.inx", "scenario.toml"]);
    let wfp = collect(&copy_driver("wfp-callout", &scratch.join("wfp"), &[])).unwrap();
    assert_eq!(values(&wfp, Kind::Service), ["WfpCallout", "WfpCalloutWdm"]);
    assert_eq!(values(&wfp, Kind::PoolTag), ["WfpC", "WfpF"]);
    assert_eq!(
        values(&wfp, Kind::WfpGuid),
        [
            "{4d432d1b-8b02-4ad1-9a98-e9d92ae97db7}",
            "{b6c2ff98-6f6f-4d87-be65-48990caa5f25}",
            "{ff742269-efb6-41fe-8c97-e6eacbae502a}"
        ]
    );
    fs::remove_dir_all(&scratch).unwrap();
}

/// A copy of `from` with `edits` beside the original must fail the check, naming `expected` and
/// nothing else.
fn assert_caught(from: &str, edits: &[(&str, &str)], expected: &[&str]) {
    let scratch = scratch(&from.replace('-', ""));
    let original = copy_driver(from, &scratch.join(from), &[]);
    let copy = copy_driver(from, &scratch.join("copy"), edits);
    let err = check(&scratch, &[original, copy]).unwrap_err().to_string();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(line.contains(want), "{want:?} not in {line:?}\n{err}");
        assert!(line.contains(from) && line.contains("copy ("), "{err}");
    }
    fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_copy_with_a_duplicated_pool_tag_is_caught() {
    if !crate::template::samples_present() {
        return;
    }
    // Service and callback object renamed, the tag kept.
    assert_caught(
        "ex-callback",
        &[("ExCallback", "MyCopy"), ("ex-callback", "my-copy")],
        &["pool tag `ExCb`"],
    );
}

#[test]
fn a_copy_with_duplicated_wfp_guids_is_caught() {
    if !crate::template::samples_present() {
        return;
    }
    assert_caught(
        "wfp-callout",
        &[
            ("WfpCallout", "MyWfp"),
            ("wfp-callout", "my-wfp"),
            ("b\"WfpC\"", "b\"MyWc\""),
            ("b\"WfpF\"", "b\"MyWf\""),
        ],
        &[
            "WFP GUID `{4d432d1b-8b02-4ad1-9a98-e9d92ae97db7}`",
            "WFP GUID `{b6c2ff98-6f6f-4d87-be65-48990caa5f25}`",
            "WFP GUID `{ff742269-efb6-41fe-8c97-e6eacbae502a}`",
        ],
    );
}

#[test]
fn a_copy_with_a_duplicated_altitude_is_caught() {
    if !crate::template::samples_present() {
        return;
    }
    assert_caught(
        "cm-filter",
        &[
            ("CmFilter", "MyCm"),
            ("cm-filter", "my-cm"),
            ("b\"CmFl\"", "b\"MyCm\""),
            ("385202", "385290"),
        ],
        &["altitude `385201.5`"],
    );
}

#[test]
fn a_copy_with_the_same_service_or_callback_object_is_caught_whatever_the_case() {
    if !crate::template::samples_present() {
        return;
    }
    assert_caught(
        "ex-callback",
        &[
            ("AddService = ExCallback,", "AddService = EXCALLBACK,"),
            ("b\"ExCb\"", "b\"MyCb\""),
            (
                "\\\\Callback\\\\ExCallbackSample",
                "\\\\Callback\\\\excallbacksample",
            ),
        ],
        &["service name `ExCallback`", "callback object"],
    );
}

#[test]
fn a_copy_with_a_duplicated_device_name_is_caught() {
    let scratch = scratch("device");
    let mut sources = Vec::new();
    for (i, name) in ["a", "b"].iter().enumerate() {
        let dir = scratch.join(name);
        fs::create_dir_all(dir.join("src")).unwrap();
        let link = if i == 0 {
            "\\\\??\\\\Sample"
        } else {
            "\\\\??\\\\sample"
        };
        fs::write(
            dir.join("src/lib.rs"),
            format!(
                "// unicode!(\"\\\\Device\\\\Commented\")\n\
                 const DEVICE: StaticUnicode = unicode!(\"\\\\Device\\\\Sample{i}\");\n\
                 const LINK: StaticUnicode = unicode!(\"{link}\");\n\
                 const TAG: u32 = pool_tag(b\"Tg{i}x\");\n"
            ),
        )
        .unwrap();
        sources.push(Source {
            name: (*name).to_owned(),
            dir,
            inx: Vec::new(),
        });
    }
    let ids = collect(&sources[0]).unwrap();
    assert_eq!(
        values(&ids, Kind::DeviceName),
        ["\\??\\Sample", "\\Device\\Sample0"],
        "commented names are not read"
    );
    let err = check(&scratch, &sources).unwrap_err().to_string();
    assert!(err.contains("1 collision"), "{err}");
    assert!(
        err.contains(
            "device name `\\??\\Sample` is used by a (a/src/lib.rs:3) and b (b/src/lib.rs:3)"
        ),
        "{err}"
    );
    fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn altitudes_and_guids_are_recognised() {
    assert!(is_altitude("385201.5") && is_altitude("385202"));
    for bad in ["", ".5", "385201.", "38a", "1.2.3", "-1"] {
        assert!(!is_altitude(bad), "{bad:?}");
    }
    assert_eq!(
        braced_guid("4D432D1B8B024AD19A98E9D92AE97DB7"),
        "{4d432d1b-8b02-4ad1-9a98-e9d92ae97db7}"
    );
}
