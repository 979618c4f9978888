//! The emulate stage's diagram checks, fed by the reports that stage has just written (nothing is
//! emulated twice): each driver README's embedded diagrams are what the current driver produces
//! (emulator/readme.rs), and Mermaid's own parser accepts every one of them and rejects a broken
//! one (emulator/mermaid.rs; skipped, and counted as skipped, without Node, npm or tar).

use crate::base::workspace::{Driver, Workspace};
use crate::commands::test::Tally;
use crate::emulator::emulate::DriverRun;
use crate::emulator::{mermaid, readme};

/// The README checks of the drivers that ran (debug, with the fault sweep), then Mermaid's parser
/// over every diagram of those READMEs.
pub(super) fn check(ws: &Workspace, drivers: &[&Driver], runs: &[DriverRun], t: &mut Tally) {
    let mut parsed = Vec::new();
    let mut seen = Vec::new();
    for (driver, run) in drivers.iter().zip(runs) {
        if driver.fixture {
            continue;
        }
        let path = driver.dir.join("README.md");
        let shown = path.strip_prefix(&ws.root).unwrap_or(&path).to_path_buf();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                t.record(false, format!("{}: cannot read it: {e}", shown.display()));
                continue;
            }
        };
        let Some(report) = run.outcome.report() else {
            t.record(
                false,
                format!(
                    "{}: the diagrams of {}: no report to compare with",
                    shown.display(),
                    driver.name
                ),
            );
            continue;
        };
        for (what, result) in readme::check(&shown, &text, &driver.name, report) {
            t.result(what, result);
        }
        if !seen.contains(&path) {
            match readme::diagrams(&shown, &text) {
                Ok(d) => parsed.extend(d),
                Err(e) => t.record(false, format!("{}: {e}", shown.display())),
            }
            seen.push(path);
        }
    }
    if parsed.is_empty() {
        return;
    }
    let parser = match mermaid::prepare(ws) {
        Ok(Ok(p)) => p,
        Ok(Err(why)) => {
            let what = format!(
                "Mermaid's parser on the README diagrams ({}): {why}",
                parsed.len()
            );
            println!("  SKIPPED: {what}");
            t.skipped.push(what);
            return;
        }
        Err(e) => return t.record(false, format!("Mermaid's parser: {e}")),
    };
    t.result(
        "Mermaid's parser rejects a broken diagram (its negative test)",
        parser.rejects_a_broken_diagram(),
    );
    match parser.parse(&parsed) {
        Ok(verdicts) => {
            for (name, error) in verdicts {
                let what = format!("Mermaid parses {name}");
                match error {
                    None => t.result(what, Ok(())),
                    Some(e) => t.record(false, format!("{what}: {e}")),
                }
            }
        }
        Err(e) => t.record(false, format!("Mermaid's parser: {e}")),
    }
}
