//! `cargo xtask`: the suite's host tool. Plain Rust, one module per stage, each stage a function
//! from artifacts on disk to artifacts on disk (see `--help`).
//!
//! | module        | what it is                                                          |
//! |---------------|---------------------------------------------------------------------|
//! | `cli`         | the command line and its help texts                                 |
//! | `workspace`   | the drivers, read from `cargo metadata`                             |
//! | `layout`      | architectures, profiles and every path under `target/`              |
//! | `build`       | cargo for the Windows targets, the lint gate, the placed images     |
//! | `pe`, `lint`  | the PE reader and the rules a kernel image must follow              |
//! | `lint_images` | `cargo xtask lint`                                                  |
//! | `venv`        | the emulator's Python venv with speakeasy pinned                    |
//! | `emulate`     | the harness (`xtask/emu/harness.py`) run on each image              |
//! | `report`      | the harness's report, read and shown                                |
//! | `deploy`      | targets and the plan of steps                                       |
//! | `suite`       | `cargo xtask test`                                                  |
//! | `fixtures`    | the negative emulation fixtures `test` runs                         |
//! | `bench`       | `cargo xtask bench`                                                 |

mod bench;
mod build;
mod cli;
mod deploy;
mod emulate;
mod error;
mod files;
mod fixtures;
mod layout;
mod lint;
mod lint_images;
mod pe;
mod process;
mod report;
mod suite;
mod venv;
mod workspace;

use std::process::ExitCode;

use cli::Command;
use workspace::Workspace;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> error::Result<()> {
    let command = cli::parse(std::env::args().skip(1))?;
    if let Command::Help(text) = command {
        print!("{text}");
        return Ok(());
    }
    let ws = Workspace::load()?;
    match command {
        Command::Help(_) => Ok(()),
        Command::Build(args) => build::run(&ws, &args),
        Command::Lint(args) => lint_images::run(&ws, &args),
        Command::Emulate(args) => emulate::run(&ws, &args),
        Command::Deploy(args) => deploy::run(&ws, &args),
        Command::Test => suite::run(&ws),
        Command::Bench(args) => bench::run(&ws, &args),
    }
}
