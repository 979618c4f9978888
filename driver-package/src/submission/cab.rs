//! The cabinet file of the submission, written and read here: one cabinet, one folder, stored
//! (uncompressed), no reserved areas, not part of a cabinet set.
//!
//! The structures are those of Microsoft's "[MS-CAB]: Cabinet File Format" (Open
//! Specifications; https://learn.microsoft.com/openspecs/windows_protocols/ms-cab/): CFHEADER
//! (2.1), CFFOLDER (2.2), CFFILE (2.3) and CFDATA (2.4), little-endian, packed. A CFDATA block
//! holds at most 32,768 bytes of the folder's data, files following each other across blocks.
//! Its checksum is the one cabextract verifies (libmspack, `cabd_checksum` in mspack/cabd.c):
//! the exclusive or of the block's data taken as little-endian 32-bit words, the last 1 to 3
//! bytes taken most significant first, then of the block's `cbData` and `cbUncomp` fields.
//!
//! Why not the `cab` crate: it was used here until we wrote only stored folders. It brings
//! MSZIP and LZX (flate2, miniz_oxide, lzxd) and the `time` crate, thirteen crates in all and
//! about 4.5 s of CPU in every fresh clone's first `cargo xtask`, for the hundred lines below.
//! It stays the independent check: the tests compare our bytes with its writer's and read ours
//! back with its reader, and the suite's package stage reads every CAB with cabextract.

use std::time::SystemTime;

use crate::error::{Context, Error, Result, bail};

/// The most data one CFDATA block holds (MS-CAB 2.4: `cbUncomp` at most 0x8000).
const BLOCK: usize = 0x8000;
/// CFHEADER's size without its optional fields, and CFFOLDER's.
const HEADER: usize = 36;
const FOLDER: usize = 8;
/// `_A_ARCH` (MS-CAB 2.3, `attribs`): the file has been modified since it was backed up, as
/// MakeCab and the `cab` crate set it.
const ATTR_ARCH: u16 = 0x20;
/// CFHEADER `flags` (MS-CAB 2.1): a previous cabinet, a next cabinet, reserved areas present.
const FLAGS_UNSUPPORTED: u16 = 0x0001 | 0x0002 | 0x0004;

/// The CAB of `files` (`(name, bytes)`, in this order), every file dated `time`.
///
/// # Return value
///
/// The cabinet's bytes; an error when a count or a size is over what the format holds.
pub fn write(files: &[(String, &[u8])], time: SystemTime) -> Result<Vec<u8>> {
    let (date, clock) = dos_date_time(time)?;
    let data_len: usize = files.iter().map(|(_, b)| b.len()).sum();
    let blocks = data_len.div_ceil(BLOCK);
    let first_file = HEADER + FOLDER;
    let first_data = first_file + files.iter().map(|(n, _)| 16 + n.len() + 1).sum::<usize>();
    let total = first_data + 8 * blocks + data_len;
    let (Ok(n_files), Ok(n_blocks), Ok(total32)) = (
        u16::try_from(files.len()),
        u16::try_from(blocks),
        u32::try_from(total),
    ) else {
        bail!("the submission CAB would be too large ({total} bytes, {blocks} data blocks)");
    };
    if total32 > 0x7FFF_FFFF {
        bail!("the submission CAB would be too large ({total} bytes; a cabinet holds 2 GiB)");
    }
    let u32_of = |n: usize| u32::try_from(n).expect("under the cabinet's size, checked above");

    let mut out = Vec::with_capacity(total);
    // CFHEADER: signature, reserved1, cbCabinet, reserved2, coffFiles, reserved3, version 1.3,
    // cFolders, cFiles, flags, setID, iCabinet.
    out.extend_from_slice(b"MSCF");
    for field in [0, total32, 0, u32_of(first_file), 0] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&[3, 1]);
    for field in [1, n_files, 0, 0, 0] {
        out.extend_from_slice(&u16::to_le_bytes(field));
    }
    // CFFOLDER: coffCabStart, cCFData, typeCompress 0 (tcompTYPE_NONE).
    out.extend_from_slice(&u32_of(first_data).to_le_bytes());
    out.extend_from_slice(&n_blocks.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    // CFFILE each: cbFile, uoffFolderStart, iFolder, date, time, attribs, szName.
    let mut offset = 0;
    for (name, bytes) in files {
        out.extend_from_slice(&u32_of(bytes.len()).to_le_bytes());
        out.extend_from_slice(&u32_of(offset).to_le_bytes());
        for field in [0, date, clock, ATTR_ARCH] {
            out.extend_from_slice(&u16::to_le_bytes(field));
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        offset += bytes.len();
    }
    // CFDATA blocks over the files' bytes, one after the other.
    let stream: Vec<u8> = files.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    for block in stream.chunks(BLOCK) {
        let len = u16::try_from(block.len()).expect("a block holds at most 0x8000 bytes");
        let sizes = [len.to_le_bytes(), len.to_le_bytes()].concat();
        out.extend_from_slice(&checksum(&sizes, checksum(block, 0)).to_le_bytes());
        out.extend_from_slice(&sizes);
        out.extend_from_slice(block);
    }
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

/// The files of the stored cabinet `bytes`, `(name, size)` in the cabinet's order, after every
/// structure was checked against the cabinet's size and every data block against its checksum.
///
/// # Return value
///
/// The files; an error naming what is wrong for a cabinet that is truncated, damaged,
/// compressed, reserved or part of a set (none of which `write` makes).
pub fn read(bytes: &[u8]) -> Result<Vec<(String, u64)>> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != b"MSCF" {
        bail!("not a cabinet (no MSCF signature)");
    }
    r.u32()?;
    let size = r.u32()? as usize;
    r.u32()?;
    let first_file = r.u32()? as usize;
    r.u32()?;
    let version = r.take(2)?;
    let (folders, files, flags) = (r.u16()?, r.u16()?, r.u16()?);
    if size != bytes.len() {
        bail!(
            "the cabinet says it is {size} bytes long, the file is {}",
            bytes.len()
        );
    }
    if version != [3, 1] || flags & FLAGS_UNSUPPORTED != 0 {
        bail!(
            "a cabinet of version {}.{} with flags {flags:#x}: only a single 1.3 cabinet without reserved areas is read",
            version[1],
            version[0]
        );
    }
    r.take(4)?; // setID, iCabinet
    let mut folder_len = Vec::new();
    for _ in 0..folders {
        let (start, blocks, compression) = (r.u32()? as usize, r.u16()?, r.u16()?);
        if compression != 0 {
            bail!(
                "a compressed folder (typeCompress {compression:#x}): only stored folders are read"
            );
        }
        let mut d = Reader { bytes, at: start };
        let mut len = 0u64;
        for n in 0..blocks {
            let sum = d.u32()?;
            let sizes = d.take(4)?;
            let (packed, unpacked) = (
                u16::from_le_bytes([sizes[0], sizes[1]]),
                u16::from_le_bytes([sizes[2], sizes[3]]),
            );
            let data = d.take(usize::from(packed))?;
            if packed != unpacked || usize::from(packed) > BLOCK {
                bail!("data block {n} is {packed} bytes holding {unpacked}: not a stored block");
            }
            // MS-CAB 2.4: a checksum of 0 means none was computed.
            if sum != 0 && sum != checksum(sizes, checksum(data, 0)) {
                bail!("data block {n} does not match its checksum: the cabinet is damaged");
            }
            len += u64::from(packed);
        }
        folder_len.push(len);
    }
    r.at = first_file;
    let mut listed = Vec::new();
    for _ in 0..files {
        let (size, offset, folder) = (r.u32()?, r.u32()?, r.u16()?);
        r.take(6)?; // date, time, attribs
        let end = r.bytes[r.at..]
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| Error::new("a file name runs past the end of the cabinet"))?;
        let name = String::from_utf8(r.take(end)?.to_vec()).context("a file name is not UTF-8")?;
        r.take(1)?;
        let within = folder_len.get(usize::from(folder));
        if within.is_none_or(|&len| u64::from(offset) + u64::from(size) > len) {
            bail!(
                "{name}: its bytes are not in the cabinet's data (folder {folder}, {size} bytes at {offset})"
            );
        }
        listed.push((name, u64::from(size)));
    }
    Ok(listed)
}

/// A cursor over the cabinet's bytes; reading past the end is an error.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            bail!(
                "the cabinet is truncated (a structure at byte {} runs past its end)",
                self.at
            );
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The CFDATA checksum of `data`, continuing from `seed` (libmspack's `cabd_checksum`).
fn checksum(data: &[u8], seed: u32) -> u32 {
    let mut words = data.chunks_exact(4);
    let mut sum = seed;
    for w in &mut words {
        sum ^= u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    }
    sum ^ words
        .remainder()
        .iter()
        .fold(0, |tail, &b| tail << 8 | u32::from(b))
}

/// `time` as CFFILE's MS-DOS date and time (UTC: the format has no zone), rounded up to an even
/// second (the format counts two seconds) as MakeCab and the `cab` crate do; 1980 to 2107.
fn dos_date_time(time: SystemTime) -> Result<(u16, u16)> {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("the build time is before 1970")?
        .as_secs();
    let secs = secs + secs % 2;
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    if !(1980..=2107).contains(&year) {
        bail!("the build time's year {year} is outside what a cabinet holds (1980 to 2107)");
    }
    let narrow = |v: u64| u16::try_from(v).expect("a date or time field");
    let date = narrow(((year - 1980) << 9) | (month << 5) | day);
    let clock = narrow(((of_day / 3600) << 11) | ((of_day / 60 % 60) << 5) | ((of_day % 60) / 2));
    Ok((date, clock))
}

/// Year, month (1-12) and day (1-31) of the `days`-th day after 1970-01-01 in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`, "chrono-Compatible Low-Level Date
/// Algorithms", for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read};
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Files crossing block boundaries, an empty one, and every length modulo 4.
    fn files() -> Vec<(String, Vec<u8>)> {
        let mut out = vec![
            (
                "a\\a.sys".to_owned(),
                (0..70_001u32).map(|i| (i * 7 % 251) as u8).collect(),
            ),
            ("a\\a.inf".to_owned(), b"[Version]\r\n".to_vec()),
            ("a\\empty.pdb".to_owned(), Vec::new()),
        ];
        for n in 1..=4u8 {
            let len = 32_767 + usize::from(n);
            out.push((format!("b\\{n}.cat"), vec![0x30 + n; len]));
        }
        out
    }

    fn borrowed(files: &[(String, Vec<u8>)]) -> Vec<(String, &[u8])> {
        files
            .iter()
            .map(|(n, b)| (n.clone(), b.as_slice()))
            .collect()
    }

    /// The `cab` crate's writer, given the same files, makes the same bytes.
    #[test]
    fn the_bytes_are_those_of_the_cab_crate() {
        let files = files();
        for secs in [1_764_000_000, 1_764_000_001, 315_532_800, 4_354_819_198] {
            let ours = write(&borrowed(&files), at(secs)).unwrap();
            let mut builder = cab::CabinetBuilder::new();
            let folder = builder.add_folder(cab::CompressionType::None);
            let utc =
                time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap()).unwrap();
            for (name, _) in &files {
                folder
                    .add_file(name.clone())
                    .set_datetime(time::PrimitiveDateTime::new(utc.date(), utc.time()));
            }
            let mut w = builder.build(Cursor::new(Vec::new())).unwrap();
            let mut next = files.iter();
            while let Some(mut f) = w.next_file().unwrap() {
                std::io::Write::write_all(&mut f, &next.next().unwrap().1).unwrap();
            }
            assert_eq!(ours, w.finish().unwrap().into_inner(), "dated {secs}");
        }
    }

    /// The `cab` crate's reader reads every file back, byte for byte, and so does ours.
    #[test]
    fn both_readers_read_every_file_back() {
        let files = files();
        let bytes = write(&borrowed(&files), at(1_764_000_000)).unwrap();
        let mut cabinet = cab::Cabinet::new(Cursor::new(&bytes)).unwrap();
        for (name, want) in &files {
            let mut got = Vec::new();
            cabinet
                .read_file(name)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            assert_eq!(&got, want, "{name}");
        }
        let listed = read(&bytes).unwrap();
        let want: Vec<(String, u64)> = files
            .iter()
            .map(|(n, b)| (n.clone(), b.len() as u64))
            .collect();
        assert_eq!(listed, want);
    }

    #[test]
    fn a_damaged_truncated_or_compressed_cabinet_is_refused() {
        let files = files();
        let bytes = write(&borrowed(&files), at(1_764_000_000)).unwrap();
        let refused = |b: &[u8], what: &str| {
            let e = read(b).unwrap_err().to_string();
            assert!(e.contains(what), "{what}: {e}");
        };
        refused(&bytes[..bytes.len() - 1], "says it is");
        refused(b"MSCF but not a cabinet", "truncated");
        refused(b"PK\x03\x04", "no MSCF signature");
        // One byte of the first data block changed: its checksum no longer matches.
        let first_data = u32::from_le_bytes(bytes[36..40].try_into().unwrap()) as usize;
        let mut damaged = bytes.clone();
        damaged[first_data + 8 + 100] ^= 1;
        refused(&damaged, "does not match its checksum");
        // The folder marked MSZIP.
        let mut compressed = bytes.clone();
        compressed[42] = 1;
        refused(&compressed, "compressed folder");
        // A file claiming more bytes than the folder holds.
        let mut long = bytes;
        long[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
        refused(&long, "not in the cabinet's data");
    }

    #[test]
    fn checksums_match_known_values() {
        // The `cab` crate's test vector (its checksum.rs), and the tail taken most
        // significant byte first.
        assert_eq!(checksum(b"\x0e\0\x0e\0Hello, world!\n", 0), 0x7f2e_1a4c);
        assert_eq!(checksum(b"", 0), 0);
        assert_eq!(checksum(b"\x01\x02\x03", 0), 0x0001_0203);
        assert_eq!(checksum(b"\x01\x02\x03\x04\x05", 0), 0x0403_0204);
    }

    #[test]
    fn dates_are_ms_dos_dates_in_utc() {
        // 2025-11-24 16:00:00: date (45 << 9) | (11 << 5) | 24, time 16 << 11; 16:00:01 is
        // rounded up to 16:00:02, one two-second unit.
        assert_eq!(dos_date_time(at(1_764_000_000)).unwrap(), (0x5B78, 0x8000));
        assert_eq!(dos_date_time(at(1_764_000_001)).unwrap(), (0x5B78, 0x8001));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert!(
            dos_date_time(at(0)).is_err(),
            "1970 is before the format's 1980"
        );
    }
}
