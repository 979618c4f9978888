//! Library: kernel images, read (PE/COFF, on the `object` crate) and checked against the rules a
//! driver image must follow (our own, as is the checksum).
//!
//! - [`read`]: [`read::PeImage`], the headers, sections, data directories, imports and exports
//!   of a PE32+ image, every malformation a [`read::FormatError`] that names the structure and
//!   the cause (`read/headers.rs` explains what `object` rejected).
//! - [`lint`]: the kernel-image rules (`lint/*.rs`, one file per group of rules).
//!
//! The PE checksum the loader checks for a driver is `driver_package::pe::pe_checksum` (ours,
//! computed where signing must rewrite it; `object` only reads the stored value).

pub(crate) mod lint;
pub(crate) mod read;
#[cfg(test)]
pub(crate) mod testimage;
