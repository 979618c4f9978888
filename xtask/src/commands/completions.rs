//! `cargo xtask completions bash|zsh|fish`: the completion script, with this workspace's driver
//! and fixture names for `-p`. The script is written from the command line's table, which lives
//! in the layer above (`crate::flags`): `flags` hands its writer in through [`Options::script`],
//! so that this module does not import the command line.

use std::io::Write as _;

use crate::base::error::{Context, Result};
use crate::base::workspace::Workspace;

/// A shell `completions` writes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shell {
    /// GNU bash (`complete -F`).
    Bash,
    /// zsh (`compdef`, `compadd`).
    Zsh,
    /// fish (`complete -c cargo`).
    Fish,
}

impl Shell {
    /// Parses `bash`, `zsh` or `fish`.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "bash" => Some(Self::Bash),
            "zsh" => Some(Self::Zsh),
            "fish" => Some(Self::Fish),
            _ => None,
        }
    }
}

/// Writes the completion script of a shell, given the driver names `-p` completes to.
pub(crate) type ScriptWriter = fn(Shell, &[String]) -> String;

/// `cargo xtask completions`'s options.
#[derive(Debug)]
pub(crate) struct Options {
    /// The shell to write for.
    pub shell: Shell,
    /// The writer, from the command line's table.
    pub script: ScriptWriter,
}

impl PartialEq for Options {
    fn eq(&self, other: &Self) -> bool {
        self.shell == other.shell && std::ptr::fn_addr_eq(self.script, other.script)
    }
}

impl Eq for Options {}

/// The `completions` command: the script on stdout.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let names: Vec<String> = ws.drivers.iter().map(|d| d.name.clone()).collect();
    std::io::stdout()
        .lock()
        .write_all((opts.script)(opts.shell, &names).as_bytes())
        .context("writing the completion script to stdout")
}
