//! Library: kernel images, read (PE/COFF) and checked against the rules a driver image must follow.

pub(crate) mod lint;
pub(crate) mod pe;
