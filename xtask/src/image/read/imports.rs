//! The import table, read with `object`'s `ImportTable`: every imported module with its functions,
//! by name or by ordinal.
//!
//! What stays ours: a descriptor ends the table when its lookup table, name and address table are
//! all zero (the loader's test, which ignores the time stamp and forwarder chain), a lookup entry
//! ends its list only when all 64 bits are zero, and a name RVA with bit 31 set is reported
//! rather than masked. Upper bounds keep a corrupted table from producing absurd amounts of work.

use std::fmt;

use object::LittleEndian as LE;
use object::pe::ImageNtHeaders64;
use object::read::pe::{ImageThunkData, ImportTable};

use super::{DIR_IMPORT, FormatError, PeImage, name_of};

/// Upper bounds that keep a corrupted table from producing absurd amounts of work.
const MAX_IMPORTED_MODULES: usize = 4096;
const MAX_IMPORTS_PER_MODULE: usize = 65_536;

/// A function imported from a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportedFunction {
    /// Imported by name (with the loader's lookup hint).
    ByName {
        /// Index hint into the exporter's name table.
        hint: u16,
        /// The function name.
        name: String,
    },
    /// Imported by ordinal.
    ByOrdinal(u16),
}

impl fmt::Display for ImportedFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ByName { name, .. } => f.write_str(name),
            Self::ByOrdinal(ordinal) => write!(f, "#{ordinal}"),
        }
    }
}

/// A module the image imports from, with its functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedModule {
    /// The module name as written in the image (e.g. `ntoskrnl.exe`).
    pub name: String,
    /// The imported functions, in table order.
    pub functions: Vec<ImportedFunction>,
}

fn error(message: String) -> FormatError {
    FormatError::new("import directory", message)
}

impl PeImage<'_> {
    /// The import table: every imported module with its functions (empty if there is none).
    ///
    /// # Errors
    /// A [`FormatError`] (subject `import directory`) if a descriptor, thunk or name is not in
    /// the file.
    pub fn imports(&self) -> Result<Vec<ImportedModule>, FormatError> {
        let Some(directory) = self
            .data_directory(DIR_IMPORT)
            .filter(|dir| dir.virtual_address != 0)
        else {
            return Ok(Vec::new());
        };
        let missing = |index: usize| {
            error(format!(
                "import descriptor #{index} (table at RVA 0x{:X}) is not in the file: corrupt image",
                directory.virtual_address
            ))
        };
        let table = match self
            .directories
            .import_table(self.bytes, &self.section_table)
        {
            Ok(Some(table)) => table,
            Ok(None) => return Ok(Vec::new()),
            Err(_) => return Err(missing(0)),
        };
        let mut descriptors = table.descriptors().map_err(|_| missing(0))?;
        let mut modules = Vec::new();
        for index in 0.. {
            if index >= MAX_IMPORTED_MODULES {
                return Err(error(format!(
                    "more than {MAX_IMPORTED_MODULES} import descriptors (no terminating entry): corrupt image"
                )));
            }
            let descriptor = match descriptors.next() {
                Ok(Some(descriptor)) => descriptor,
                Ok(None) => break,
                Err(_) => return Err(missing(index)),
            };
            let lookup_table = descriptor.original_first_thunk.get(LE);
            let name_rva = descriptor.name.get(LE);
            let address_table = descriptor.first_thunk.get(LE);
            if lookup_table == 0 && name_rva == 0 && address_table == 0 {
                break;
            }
            let name = table.name(name_rva).ok().and_then(name_of).ok_or_else(|| {
                error(format!("the module name of import descriptor #{index} (RVA 0x{name_rva:X}) is not in the file: corrupt image"))
            })?;
            let thunks = if lookup_table != 0 {
                lookup_table
            } else {
                address_table
            };
            let functions = imported_functions(&table, &name, thunks)?;
            modules.push(ImportedModule { name, functions });
        }
        Ok(modules)
    }
}

/// The functions of the lookup table at `thunks` (imported from `module`).
fn imported_functions(
    table: &ImportTable<'_>,
    module: &str,
    thunks: u32,
) -> Result<Vec<ImportedFunction>, FormatError> {
    let missing = |index: usize| {
        error(format!(
            "import lookup entry #{index} of {module} (table at RVA 0x{thunks:X}) is not in the file: corrupt image"
        ))
    };
    let list = table.thunks(thunks).map_err(|_| missing(0))?;
    let mut functions = Vec::new();
    for index in 0.. {
        if index >= MAX_IMPORTS_PER_MODULE {
            return Err(error(format!(
                "more than {MAX_IMPORTS_PER_MODULE} imports from {module} (no terminating entry): corrupt image"
            )));
        }
        let thunk = list
            .get::<ImageNtHeaders64>(index)
            .map_err(|_| missing(index))?;
        let raw = thunk.raw();
        if raw == 0 {
            break;
        }
        if thunk.is_ordinal() {
            functions.push(ImportedFunction::ByOrdinal(thunk.ordinal()));
            continue;
        }
        let hint_name = u32::try_from(raw).ok().filter(|rva| rva & 0x8000_0000 == 0).ok_or_else(|| {
            error(format!("import lookup entry #{index} of {module} is 0x{raw:X}, not a hint/name RVA: corrupt image"))
        })?;
        let (hint, name) = table
            .hint_name(hint_name)
            .ok()
            .and_then(|(hint, name)| Some((hint, name_of(name)?)))
            .ok_or_else(|| {
                error(format!(
                    "the name of import #{index} from {module} (RVA 0x{hint_name:X}) is not in the file: corrupt image"
                ))
            })?;
        functions.push(ImportedFunction::ByName { hint, name });
    }
    Ok(functions)
}
