//! One module per `cargo xtask` command.

pub(crate) mod bench;
pub(crate) mod build;
pub(crate) mod clean;
pub(crate) mod lint;
pub(crate) mod new;
pub(crate) mod test;
