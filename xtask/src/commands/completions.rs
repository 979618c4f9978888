//! `cargo xtask completions bash|zsh|fish`: the completion script, written from the command
//! line's table (`crate::flags`), with this workspace's driver and fixture names for `-p`.

use std::io::Write as _;

use crate::base::error::{Context, Result};
use crate::base::workspace::Workspace;
use crate::flags::{Shell, completion_script};

/// `cargo xtask completions`'s options.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// The shell to write for.
    pub shell: Shell,
}

/// The `completions` command: the script on stdout.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let names: Vec<String> = ws.drivers.iter().map(|d| d.name.clone()).collect();
    std::io::stdout()
        .lock()
        .write_all(completion_script(opts.shell, &names).as_bytes())
        .context("writing the completion script to stdout")
}
