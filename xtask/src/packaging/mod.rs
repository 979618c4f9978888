//! Library: driver packaging: the test certificate, Authenticode, INF, catalog and package.

pub(crate) mod authenticode;
pub(crate) mod catalog;
pub(crate) mod cert;
pub(crate) mod inf;
pub(crate) mod package;
pub(crate) mod pkcs7;
pub(crate) mod sign;
