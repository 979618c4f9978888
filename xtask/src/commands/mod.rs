//! One module per `cargo xtask` command.

pub(crate) mod bench;
pub(crate) mod build;
#[cfg(test)]
mod cargo_make;
pub(crate) mod clean;
pub(crate) mod lint;
pub(crate) mod new;
pub(crate) mod test;
