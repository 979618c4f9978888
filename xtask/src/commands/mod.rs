//! One module per `cargo xtask` command.

pub(crate) mod bench;
pub(crate) mod build;
pub(crate) mod cert;
pub(crate) mod clean;
pub(crate) mod lint;
pub(crate) mod package;
pub(crate) mod sign;
pub(crate) mod test;
