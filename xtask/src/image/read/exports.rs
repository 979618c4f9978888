//! The export table, read with `object`'s `ExportTable`: every exported function, named ones
//! first in name-table order, then those exported by ordinal only.
//!
//! `object` reads the directory and its three tables within the data directory's extent; the
//! order, the ordinal arithmetic (`Base` + index, as a `u32`), the skipping of empty address
//! slots and the messages are ours.

use object::LittleEndian as LE;
use object::read::pe::ExportTable;

use super::{DIR_EXPORT, FormatError, PeImage, name_of, to_usize};

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
        // The tables are read up to the end of the section holding the directory, not only within
        // the directory's declared size (the loader does not use that size to find them).
        let data = self
            .section_table
            .pe_data_at(self.bytes, directory.virtual_address)
            .ok_or_else(|| {
                error(format!(
                    "the export directory at RVA 0x{:X} is not in the file: corrupt image",
                    directory.virtual_address
                ))
            })?;
        let table = ExportTable::parse(data, directory.virtual_address)
            .map_err(|cause| self.export_table_error(directory.virtual_address, data, &cause))?;
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

    /// Why `object` could not read the export table whose directory, at `rva`, starts `data`
    /// (which runs to the end of its section): the first table not in the file.
    fn export_table_error(
        &self,
        rva: u32,
        data: &[u8],
        cause: &object::read::Error,
    ) -> FormatError {
        let Ok(header) = ExportTable::parse_directory(data) else {
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
        let tables = [
            (
                header.address_of_functions.get(LE),
                function_count,
                4,
                "address",
            ),
            (
                header.address_of_names.get(LE),
                name_count,
                4,
                "name pointer",
            ),
            (
                header.address_of_name_ordinals.get(LE),
                name_count,
                2,
                "ordinal",
            ),
        ];
        for (table_rva, count, width, what) in tables {
            if count == 0 {
                continue;
            }
            let in_file = self
                .section_table
                .pe_file_range_at(table_rva)
                .is_some_and(|(_, available)| count * width <= to_usize(available));
            if !in_file {
                return error(format!(
                    "the export {what} table (RVA 0x{table_rva:X}, {count} entries) is not in the file: corrupt image"
                ));
            }
            let after_directory = table_rva
                .checked_sub(rva)
                .is_some_and(|offset| to_usize(offset) + count * width <= data.len());
            if !after_directory {
                return error(format!(
                    "the export {what} table (RVA 0x{table_rva:X}, {count} entries) is not between the export directory \
                     (RVA 0x{rva:X}) and the end of its section: corrupt image"
                ));
            }
        }
        error(format!(
            "the export directory at RVA 0x{rva:X} (ordinal base {}) is unusable ({cause}): corrupt image",
            header.base.get(LE)
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
