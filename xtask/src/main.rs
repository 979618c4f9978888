//! `cargo xtask`'s binary: all of the tool is its library (src/lib.rs).
//!
//! The tool is a library plus this call so that the first `cargo xtask` compiles faster: cargo
//! starts compiling a library as soon as its dependencies' metadata is ready (pipelining), while a
//! binary waits for every dependency to be fully compiled. Measured in ARCHITECTURE.md ("Build
//! profiles").

fn main() -> std::process::ExitCode {
    xtask::main()
}
