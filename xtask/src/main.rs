//! `cargo xtask`: the suite's host tool. Plain Rust, one module per stage, each stage a function
//! from artifacts on disk to artifacts on disk (see `--help`).
//!
//! | module        | what it is                                                          |
//! |---------------|---------------------------------------------------------------------|
//! | `cli`         | the command line and its help texts (written once)                  |
//! | `toolchain`   | the pinned toolchain's targets and components, installed if missing |
//! | `clean`       | `cargo xtask clean`                                                 |
//! | `workspace`   | the drivers, read from `cargo metadata`                             |
//! | `layout`      | architectures, profiles and every path under `target/`              |
//! | `build`       | cargo for the Windows targets, the lint gate, the placed images     |
//! | `pe`, `lint`  | the PE reader and the rules a kernel image must follow              |
//! | `lint_images` | `cargo xtask lint`                                                  |
//! | `cert`        | the test-signing certificate (`cargo xtask cert`)                   |
//! | `pkcs7`       | PKCS#7 SignedData and the Authenticode ASN.1 structures             |
//! | `authenticode`| the PE image hash and the embedded signature                        |
//! | `sign`        | `cargo xtask sign`                                                  |
//! | `inf`         | `.inx` to `.inf` (stampinf) and the INF checker                     |
//! | `catalog`     | driver catalogs (`.cat`): written, signed and read back             |
//! | `package`     | `cargo xtask package`                                               |
//! | `verify`      | the independent checks of signatures and packages (`test`)          |
//! | `venv`        | the emulator's Python venv, installed from a hash-checked lock      |
//! | `emulate`     | the harness (`xtask/emu/harness.py`) run on each image              |
//! | `report`      | the harness's report, read and shown                                |
//! | `deploy`      | the emulator or a Windows VM: the plan, transports, report          |
//! | `suite`       | `cargo xtask test`                                                  |
//! | `gate`        | fmt, clippy and ruff with warnings denied, and their negatives      |
//! | `fixtures`    | the negative emulation fixtures `test` runs                         |
//! | `scratch`     | workspace copies cut down to a few members (gate, mutations)        |
//! | `mutations`   | the mutation check: each README lesson broken in a copy, and caught |
//! | `bench`       | `cargo xtask bench`                                                 |

mod base;
mod cli;
mod commands;
mod deploy;
mod emulator;
mod image;

use std::process::ExitCode;

use base::workspace::Workspace;
use cli::Command;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> base::error::Result<()> {
    let command = cli::parse(std::env::args().skip(1))?;
    if let Command::Help(text) = command {
        print!("{text}");
        return Ok(());
    }
    // The certificate needs no workspace.
    if let Command::Cert(args) = &command {
        return commands::cert::run(args);
    }
    let ws = Workspace::load()?;
    match command {
        Command::Help(_) => Ok(()),
        Command::Build(args) => commands::build::run(&ws, &args),
        Command::Lint(args) => commands::lint::run(&ws, &args),
        Command::Emulate(args) => emulator::emulate::run(&ws, &args),
        Command::Cert(args) => commands::cert::run(&args),
        Command::Sign(args) => commands::sign::run(&ws, &args),
        Command::Package(args) => commands::package::run(&ws, &args),
        Command::Deploy(args) => deploy::run(&ws, &args),
        Command::Test(args) => commands::test::run(&ws, &args.stages, &args.packages),
        Command::Clean(args) => commands::clean::run(&ws.layout, args.all),
        Command::Bench(args) => commands::bench::run(&ws, &args),
    }
}
