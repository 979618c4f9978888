//! The foundation every other layer stands on: errors, files, paths, processes, the workspace and
//! the pinned toolchain. Knows nothing of the CLI, the commands or the other libraries.

pub(crate) mod error;
pub(crate) mod files;
pub(crate) mod host_tests;
pub(crate) mod layout;
pub(crate) mod lockfile;
pub(crate) mod process;
pub(crate) mod toolchain;
pub(crate) mod tools;
pub(crate) mod workspace;
