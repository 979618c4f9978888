//! The deploy library: drivers onto a Windows test VM (`ssh://user@host[:port]`, `hyperv:VMNAME`).
//! It knows nothing of the command line (`commands/deploy.rs` is the command).
//!
//! - `target.rs`: the `--target` forms.
//! - `plan.rs` (+ `plan/`): one plan of steps, as data, the same for every transport: the
//!   package's facts (`plan/package.rs`), the steps' PowerShell (`plan/scripts.rs`, the `.ps1`
//!   files of `scripts/`), the `--dry-run` rendering (`plan/render.rs`).
//! - `ps.rs`: how a script travels (`powershell -EncodedCommand`), quoting.
//! - `probe.rs`: each driver's `deploy.toml`, the checks run while loaded and after unload.
//! - `transport.rs` (+ `transport/`): how a step reaches the VM (ssh and sftp, Hyper-V's
//!   PowerShell Direct).
//! - `exec.rs` runs a plan, `judge.rs` judges each step from the output sections `parse.rs`
//!   reads, `report.rs` is the report (text and JSON).
//! - `syntax.rs`: the tree-sitter syntax check of every script the plans can produce.
//! - `verifier.rs` (Driver Verifier's flags, counters and settings), `crash.rs` (the bugcheck
//!   from the System log, the dump to fetch), `kdnet.rs` (network kernel debugging): the facts
//!   of `--verifier`, `--fetch-dump` and `--kdnet`, whose steps are `plan/debugging.rs`.
//!
//! Several targets deploy in parallel, one report each ([`execute_all`]).

pub mod crash;
pub mod exec;
pub mod judge;
pub mod kdnet;
pub mod parse;
pub mod plan;
pub mod probe;
pub mod ps;
pub mod report;
pub mod script;
pub mod syntax;
pub mod target;
pub mod trace;
pub mod transport;
pub mod verifier;

#[cfg(test)]
pub mod fake;
#[cfg(test)]
mod loopback;

pub use plan::{Install, REMOTE_DIR};
pub use target::Target;

/// Runs each plan on its transport, all at once (one thread per target); `progress` gets the
/// target and a line. One report per target, in the order given.
pub fn execute_all(
    pairs: &[(&plan::Plan, &dyn transport::Transport)],
    progress: &(dyn Fn(&str, &str) + Sync),
    pace: exec::Pace,
) -> Vec<report::TargetReport> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|(p, t)| {
                scope.spawn(move || {
                    let line = |l: &str| progress(&p.target, l);
                    exec::execute(p, *t, &line, pace)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a deploy thread panicked"))
            .collect()
    })
}
