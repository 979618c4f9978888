//! Library: the emulated kernel: its Python venv, the harness run on each image, its report.

pub(crate) mod batch;
pub(crate) mod emulate;
pub(crate) mod report;
pub(crate) mod venv;
