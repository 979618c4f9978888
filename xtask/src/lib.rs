//! `cargo xtask`: the suite's host tool, in layers a reader can see in the folders:
//!
//! | layer        | modules                                   | what it is                                            |
//! |--------------|-------------------------------------------|-------------------------------------------------------|
//! | command line | `flags` (+ `flags/`)                      | the one table: parser, `--help`, README synopsis, completions |
//! | commands     | `commands::*` | one module per command: its `Options` and `run` |
//! | libraries    | `image`, `emulator`, `deploy`, `template` (and the `driver-package` crate) | kernel images and their lint; the emulated kernel; test signing and packages (crate); deploy to a VM; drivers copied from a sample and the workspace identity check |
//! | foundation   | `base`                                    | errors, files, paths, processes, the workspace, the toolchain |
//!
//! A layer imports only the layers below it; the libraries never import the command line or the
//! commands (`commands::test::tidy` checks it, with the edges still being removed allow-listed).
//! `cargo xtask --help` lists the commands.

mod base;
mod commands;
mod deploy;
mod emulator;
mod flags;
mod image;
mod template;

use std::process::ExitCode;

use base::workspace::Workspace;
use flags::Command;

/// `cargo xtask`'s entry point (src/main.rs calls it): parses the command line, runs the
/// command, prints an error and fails if it fails.
///
/// # Return value
///
/// Success, or failure after the error was printed on stderr.
#[must_use]
pub fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> base::error::Result<()> {
    let command = flags::parse(std::env::args().skip(1))?;
    match command {
        Command::Help(text) => {
            print!("{text}");
            Ok(())
        }
        // The certificate needs no workspace.
        Command::Cert(opts) => commands::cert::run(&opts),
        command => {
            let ws = Workspace::load()?;
            dispatch(&ws, command)
        }
    }
}

fn dispatch(ws: &Workspace, command: Command) -> base::error::Result<()> {
    match command {
        Command::Help(_) | Command::Cert(_) => unreachable!("handled without a workspace"),
        Command::Build(opts) => commands::build::run(ws, &opts),
        Command::Lint(opts) => commands::lint::run(ws, &opts),
        Command::Emulate(opts) => commands::emulate::run(ws, &opts),
        Command::Sign(opts) => commands::sign::run(ws, &opts),
        Command::Package(opts) => commands::package::run(ws, &opts),
        Command::Deploy(opts) => commands::deploy::run(ws, &opts),
        Command::Test(opts) => commands::test::run(ws, &opts),
        Command::Clean(opts) => commands::clean::run(ws, &opts),
        Command::Bench(opts) => commands::bench::run(ws, &opts),
        Command::Completions(opts) => commands::completions::run(ws, &opts),
        Command::New(opts) => commands::new::run(ws, &opts),
    }
}
