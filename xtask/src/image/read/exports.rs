//! The export table, read with `object`'s `ExportTable`: every exported function, named ones
//! first in name-table order, then those exported by ordinal only.
//!
//! `object` reads the directory and its three tables within the data directory's extent; the
//! order, the ordinal arithmetic (`Base` + index, as a `u32`), the skipping of empty address
//! slots and the messages are ours.

use object::LittleEndian as LE;
use object::read::pe::ExportTable;

use super::{DIR_EXPORT, DataDirectory, FormatError, PeImage, name_of, to_usize};

/// Upper bound that keeps a corrupted table from producing absurd amounts of work.
const MAX_EXPORTS: usize = 65_536;

/// An exported function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The exported name, or `None` for an export by ordinal only.
    pub name: Option<String>,
    /// The ordinal (`Base` + index in the address table).
    pub ordinal: u32,
    /// RVA of the function (or of a forwarder string).
    pub rva: u32,
}

fn error(message: String) -> FormatError {
    FormatError::new("export directory", message)
}

impl PeImage<'_> {
    /// The export table: every exported function, named ones first in name-table order, then
    /// those exported by ordinal only (empty if there is no export directory).
    ///
    /// # Errors
    /// A [`FormatError`] (subject `export directory`) if the directory, its tables or a name are
    /// not in the file, or a name refers to a function that does not exist.
    pub fn exports(&self) -> Result<Vec<Export>, FormatError> {
        let Some(directory) = self
            .data_directory(DIR_EXPORT)
            .filter(|dir| dir.virtual_address != 0)
        else {
            return Ok(Vec::new());
        };
        let table = match self
            .directories
            .export_table(self.bytes, &self.section_table)
        {
            Ok(Some(table)) => table,
            Ok(None) => return Ok(Vec::new()),
            Err(cause) => return Err(self.export_table_error(directory, &cause)),
        };
        let base = table.directory().base.get(LE);
        let addresses: Vec<u32> = table
            .addresses()
            .iter()
            .map(|address| address.get(LE))
            .collect();
        let mut named = vec![false; addresses.len()];
        let mut exports = Vec::new();
        for (index, (name_rva, function)) in table.name_iter().enumerate() {
            let function = usize::from(function.0);
            let name = name_at(&table, name_rva).ok_or_else(|| {
                error(format!(
                    "export name #{index} (RVA 0x{name_rva:X}) is not in the file: corrupt image"
                ))
            })?;
            let Some(&rva) = addresses.get(function) else {
                return Err(error(format!(
                    "export {name} refers to function #{function} but the address table has {} entries: corrupt image",
                    addresses.len()
                )));
            };
            named[function] = true;
            exports.push(Export {
                name: Some(name),
                ordinal: ordinal_of(base, function),
                rva,
            });
        }
        for (function, &rva) in addresses.iter().enumerate() {
            if rva != 0 && !named[function] {
                exports.push(Export {
                    name: None,
                    ordinal: ordinal_of(base, function),
                    rva,
                });
            }
        }
        Ok(exports)
    }

    /// Why `object` could not read the export table declared by `directory`.
    fn export_table_error(
        &self,
        directory: DataDirectory,
        cause: &object::read::Error,
    ) -> FormatError {
        let rva = directory.virtual_address;
        let Ok(Some(header)) = self
            .directories
            .export_directory(self.bytes, &self.section_table)
        else {
            return error(format!(
                "the export directory at RVA 0x{rva:X} is not in the file: corrupt image"
            ));
        };
        let function_count = to_usize(header.number_of_functions.get(LE));
        let name_count = to_usize(header.number_of_names.get(LE));
        if function_count > MAX_EXPORTS || name_count > MAX_EXPORTS {
            return error(format!(
                "{function_count} functions / {name_count} names exceed {MAX_EXPORTS}: corrupt image"
            ));
        }
        error(format!(
            "the export tables ({function_count} functions, {name_count} names, ordinal base {}) are not within the \
             directory at RVA 0x{rva:X} (0x{:X} bytes) ({cause}): corrupt image",
            header.base.get(LE),
            directory.size
        ))
    }
}

/// The export name at `name_rva`, if it is within the export directory.
fn name_at(table: &ExportTable<'_>, name_rva: u32) -> Option<String> {
    table.name_from_pointer(name_rva).ok().and_then(name_of)
}

/// The ordinal of address-table entry `index` (wrapping, as the loader's arithmetic does).
fn ordinal_of(base: u32, index: usize) -> u32 {
    base.wrapping_add(u32::try_from(index).unwrap_or(u32::MAX))
}
