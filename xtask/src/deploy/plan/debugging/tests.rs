//! The plan with `--verifier`, `--fetch-dump` and `--kdnet`: their steps for every driver, in
//! `--dry-run`, where they run and what runs after a failure; without the options, no trace.

use super::super::tests::{cm_filter, ex_callback};
use super::super::*;
use crate::deploy::kdnet::Kdnet;
use crate::deploy::transport::Ssh;
use crate::deploy::verifier::{Flags, STANDARD};

fn debugging() -> Options {
    Options {
        verifier: Some(Flags(STANDARD)),
        fetch_dump: true,
        kdnet: Some(Kdnet::parse("192.168.1.10:50000").unwrap()),
        remote_dir: r"C:\Test Drivers\it's deploy".into(),
        ..Options::default()
    }
}

fn ids(steps: &[Step]) -> Vec<&'static str> {
    steps.iter().map(|s| s.id).collect()
}

#[test]
fn the_dry_run_names_the_verifier_and_dump_steps_of_every_driver() {
    let packages = [cm_filter(), ex_callback()];
    let plan = build("ssh://admin@testvm", &Via::Ssh, &packages, &debugging()).unwrap();
    let setup = ids(&plan.setup);
    assert_eq!(
        setup,
        [
            "preflight",
            "kdnet",
            "wait-kdnet",
            "leftovers",
            "copy",
            "check-copy",
            "trust",
            "verifier",
            "wait-verifier",
            "trace-start"
        ]
    );
    for d in &plan.drivers {
        let s = ids(&d.steps);
        let probe = s.iter().position(|i| *i == "probe").unwrap();
        assert_eq!(s[probe + 1], "verifier-stats", "{s:?}");
        assert_eq!(s.last(), Some(&"post-mortem"), "{s:?}");
        let pm = d.steps.last().unwrap();
        assert_eq!(pm.when, When::AfterBugcheck);
        assert!(
            pm.title.contains("copy the newest minidump"),
            "{}",
            pm.title
        );
        assert_eq!(
            d.steps[probe + 1].check,
            Check::VerifierStats(format!("{}.sys", d.driver))
        );
    }
    let restore = &plan.teardown[1];
    assert_eq!(restore.id, "verifier-restore");
    assert_eq!(restore.cleanup, Cleanup::After("verifier"));
    assert_eq!(plan.setup[8].when, When::VerifierPersistent);

    let text = render(
        &plan,
        &Ssh::new(Some("admin".into()), "testvm".into(), None),
    );
    for d in ["cm-filter", "ex-callback"] {
        let part = text.split(&format!("\ndriver {d} ")).nth(1).unwrap();
        let part = part.split("\ndriver ").next().unwrap();
        assert!(part.contains("[verifier-stats]"), "{part}");
        assert!(part.contains("[post-mortem]"), "{part}");
        assert!(
            part.contains("only if the VM stopped answering during this driver's steps"),
            "{part}"
        );
    }
    assert!(text.contains("[verifier-restore]") && text.contains("[kdnet]"));
    // The verifier step passes the flags and both volatile masks as numbers, the images as a
    // list.
    let Run::Guest(v) = &plan.setup[7].run else {
        panic!("verifier is a guest step")
    };
    assert!(
        v.contains("Flags = 133563; Images = @('cm-filter.sys', 'ex-callback.sys'); Win10 = 28607; Win11 = 1700"),
        "{v}"
    );
}

#[test]
fn without_the_options_the_plan_has_none_of_their_steps() {
    let packages = [cm_filter(), ex_callback()];
    let plan = build(
        "ssh://admin@testvm",
        &Via::Ssh,
        &packages,
        &Options::default(),
    )
    .unwrap();
    for s in plan.steps() {
        assert!(
            !matches!(
                s.id,
                "kdnet"
                    | "wait-kdnet"
                    | "verifier"
                    | "wait-verifier"
                    | "verifier-stats"
                    | "verifier-restore"
                    | "post-mortem"
            ),
            "{}",
            s.id
        );
    }
    // --verifier alone: no dump step; --fetch-dump alone: no Verifier step.
    let v = build(
        "t",
        &Via::Ssh,
        &packages,
        &Options {
            verifier: Some(Flags(0x20)),
            ..Options::default()
        },
    )
    .unwrap();
    assert!(v.steps().any(|s| s.id == "verifier-stats"));
    assert!(!v.steps().any(|s| s.id == "post-mortem"));
    let f = build(
        "t",
        &Via::Ssh,
        &packages,
        &Options {
            fetch_dump: true,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(f.steps().any(|s| s.id == "post-mortem"));
    assert!(!f.steps().any(|s| s.id.starts_with("verifier")));
}
