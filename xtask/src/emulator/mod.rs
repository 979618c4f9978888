//! Library: the emulated kernel: its Python venv, the harness run on each image, its report.

pub(crate) mod batch;
pub(crate) mod diagram;
pub(crate) mod emulate;
pub(crate) mod mermaid;
pub(crate) mod readme;
pub(crate) mod report;
pub(crate) mod venv;
