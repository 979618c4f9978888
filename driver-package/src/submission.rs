//! The submission CAB of Microsoft's attestation signing: one cabinet per architecture with a
//! folder per driver holding its `.sys`, `.inf`, `.cat` and `.pdb`.
//!
//! What goes in, from the Hardware Dev Center's "Attestation sign Windows drivers" page
//! (https://learn.microsoft.com/windows-hardware/drivers/dashboard/code-signing-attestation):
//! the driver (`.sys`), its INF, the symbol file (`.pdb`, "required for Microsoft's automated
//! crash analysis tools") and the catalog (`.cat`, "required and used for company verification
//! only": Microsoft regenerates it); every driver folder of one CAB must support the same set of
//! architectures, which one CAB per architecture does. The page builds the CAB with MakeCab and a
//! directive file whose `DestinationDir` puts each driver's files in its own folder; here the
//! [`cab`] module writes the same layout, names `DRIVER\FILE` (a backslash, as MakeCab stores
//! them), one CAB folder, stored (uncompressed: see `write`), every file dated
//! [`crate::package::build_time`] so the same packages give the same bytes.
//!
//! The CAB is then signed by its submitter with their EV code-signing certificate (signtool on
//! Windows, or osslsigncode) and uploaded: this crate never holds that certificate.

use std::time::SystemTime;

use serde::Serialize;

use crate::error::{Context, Result, bail};

mod cab;

/// The extensions a driver folder may hold, in the order they are written.
pub const EXTENSIONS: [&str; 4] = ["sys", "inf", "cat", "pdb"];

/// One driver's files for the CAB.
#[derive(Clone, Debug)]
pub struct DriverFiles {
    /// The driver's name: its folder in the CAB and its files' stem.
    pub name: String,
    /// `(file name, bytes)`, e.g. `("ex-callback.sys", ...)`.
    pub files: Vec<(String, Vec<u8>)>,
}

/// One file in a CAB, as [`list`] reads it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// `DRIVER\FILE`.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The CAB of `drivers`, every file dated `time`. Refuses a driver without its `.sys`, `.inf` or
/// `.cat` (the page requires them), a file of another kind, and a name that is not a plain file
/// name.
pub fn write(drivers: &[DriverFiles], time: SystemTime) -> Result<Vec<u8>> {
    if drivers.is_empty() {
        bail!("no drivers for the submission CAB");
    }
    // Stored, not compressed. The `cab` crate's MSZIP writer produced a block cabextract could
    // not decompress ("decompression error") for one of our debug `.pdb` files (found by the
    // package stage's independent check); an uncompressed cabinet is a valid CAB ([MS-CAB]
    // 2.2, typeCompress 0), every data block still carries its checksum, and the submission's
    // size does not matter.
    let mut entries = Vec::new();
    for d in drivers {
        check_name(&d.name)?;
        for ext in ["sys", "inf", "cat"] {
            let want = format!("{}.{ext}", d.name);
            if !d.files.iter().any(|(f, _)| *f == want) {
                bail!(
                    "{}: the submission needs {want} (the attestation-signing page requires the \
                     driver, its INF and its catalog): package the driver first",
                    d.name
                );
            }
        }
        for (file, bytes) in &d.files {
            check_name(file)?;
            let ext = file.rsplit_once('.').map_or("", |(_, e)| e);
            if !EXTENSIONS.contains(&ext) {
                bail!(
                    "{}: {file} is not one of the files the submission takes (.sys, .inf, .cat, .pdb)",
                    d.name
                );
            }
            entries.push((format!("{}\\{file}", d.name), bytes.as_slice()));
        }
    }
    cab::write(&entries, time)
}

/// The files of the CAB `bytes`, each checked whole (every data block against its checksum):
/// a CAB that does not read whole is refused.
pub fn list(bytes: &[u8]) -> Result<Vec<Listed>> {
    Ok(cab::read(bytes)
        .context("the file is not a readable CAB")?
        .into_iter()
        .map(|(name, size)| Listed { name, size })
        .collect())
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.contains(['\\', '/', ':'])
        || name.starts_with('.')
        || !name.is_ascii()
    {
        bail!("`{name}` is not a plain ASCII file name for the submission CAB");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn driver(name: &str, pdb: bool) -> DriverFiles {
        let mut files = vec![
            (format!("{name}.sys"), vec![0x4D; 5000]),
            (format!("{name}.inf"), b"[Version]\r\n".to_vec()),
            (format!("{name}.cat"), vec![0x30; 300]),
        ];
        if pdb {
            files.push((format!("{name}.pdb"), vec![7; 12_000]));
        }
        DriverFiles {
            name: name.to_owned(),
            files,
        }
    }

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_hours(490_000) // 2025-11-24
    }

    #[test]
    fn a_folder_per_driver_reads_back_and_the_bytes_are_reproducible() {
        let drivers = [driver("ex-callback", true), driver("cm-filter", false)];
        let cab = write(&drivers, at()).unwrap();
        let names: Vec<String> = list(&cab).unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(
            names,
            [
                "ex-callback\\ex-callback.sys",
                "ex-callback\\ex-callback.inf",
                "ex-callback\\ex-callback.cat",
                "ex-callback\\ex-callback.pdb",
                "cm-filter\\cm-filter.sys",
                "cm-filter\\cm-filter.inf",
                "cm-filter\\cm-filter.cat",
            ]
        );
        assert_eq!(list(&cab).unwrap()[3].size, 12_000);
        assert_eq!(write(&drivers, at()).unwrap(), cab);
    }

    #[test]
    fn a_missing_required_file_or_a_stray_one_is_refused() {
        let mut d = driver("a", false);
        d.files.retain(|(f, _)| f != "a.cat");
        let e = write(&[d], at()).unwrap_err().to_string();
        assert!(e.contains("needs a.cat"), "{e}");
        let mut d = driver("a", false);
        d.files.push(("a.cer".into(), vec![1]));
        let e = write(&[d], at()).unwrap_err().to_string();
        assert!(e.contains("a.cer is not one of the files"), "{e}");
        let e = write(&[driver("x\\y", false)], at())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a plain ASCII file name"), "{e}");
        assert!(write(&[], at()).is_err());
    }

    #[test]
    fn a_broken_cab_is_refused_by_the_reader() {
        let cab = write(&[driver("a", true)], at()).unwrap();
        assert!(list(&cab[..cab.len() / 2]).is_err(), "a truncated CAB");
        assert!(list(b"MSCF but not a cabinet").is_err());
    }
}
