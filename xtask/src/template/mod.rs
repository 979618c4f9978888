//! Driver templates: the workspace identity check (`identity`) and `cargo xtask new`'s copy of a
//! driver with fresh identities. A library: it never reads the command line.

pub(crate) mod generate;
pub(crate) mod identity;
pub(crate) mod standalone;
pub(crate) mod write;
