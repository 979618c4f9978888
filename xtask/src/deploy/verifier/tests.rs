//! The Verifier parsers on what `verifier /query` prints, in English and on a system whose
//! header lines are in another language, and the refusals.

use super::*;

/// `verifier /query` on an English system (the layout of the counters' identifiers).
const EN: &str = "12/03/2026, 11:45:00\r
Level: 000209BB\r
RaiseIrqls: 0\r
AcquireSpinLocks: 12\r
SynchronizeExecutions: 0\r
AllocationsAttempted: 5\r
AllocationsSucceeded: 5\r
AllocationsSucceededSpecialPool: 5\r
AllocationsWithNoTag: 0\r
AllocationsFailed: 0\r
AllocationsFailedDeliberately: 0\r
Trims: 0\r
UnTrackedPool: 0\r
\r
Verified drivers:\r
\r
Name: cm-filter.sys, loads: 1, unloads: 0\r
CurrentPagedPoolAllocations: 0\r
CurrentNonPagedPoolAllocations: 2\r
PeakPagedPoolAllocations: 0\r
PeakNonPagedPoolAllocations: 2\r
PagedPoolUsageInBytes: 0\r
NonPagedPoolUsageInBytes: 160\r
PeakPagedPoolUsageInBytes: 0\r
PeakNonPagedPoolUsageInBytes: 160\r
\r
Name: ex-callback.sys, loads: 2, unloads: 1\r
CurrentPagedPoolAllocations: 0\r
CurrentNonPagedPoolAllocations: 0\r
";

#[test]
fn the_counters_of_one_driver_are_read() {
    let s = stats(EN, "CM-FILTER.SYS").unwrap();
    assert_eq!(
        (s.image.as_str(), s.loads, s.unloads),
        ("cm-filter.sys", 1, 0)
    );
    assert_eq!(s.counters.len(), 8);
    assert_eq!(s.get("NonPagedPoolUsageInBytes"), Some(160));
    assert_eq!(
        s.summary(),
        "loads 1, unloads 0, non-paged allocations now 2, non-paged bytes now 160, paged allocations now 0, paged bytes now 0"
    );
    // The next driver's block is its own.
    let e = stats(EN, "ex-callback.sys").unwrap();
    assert_eq!((e.loads, e.unloads, e.counters.len()), (2, 1, 2));
}

#[test]
fn localised_headers_do_not_matter_and_localised_counters_are_refused() {
    // Header and date in German: only the driver's block is read.
    let de = EN
        .replace("12/03/2026, 11:45:00", "03.12.2026, 11:45:00")
        .replace("Verified drivers:", "Überprüfte Treiber:");
    assert_eq!(
        stats(&de, "cm-filter.sys").unwrap(),
        stats(EN, "cm-filter.sys").unwrap()
    );
    // Counters under words this parser does not know: refused, not guessed.
    let block = "Name: cm-filter.sys, loads: 1, unloads: 0\nAktuelle Zuweisungen: 2\nSpitze: 2\n";
    let e = stats(block, "cm-filter.sys").unwrap_err().to_string();
    assert!(e.contains("without any of the counters"), "{e}");
    // A localised `Name:` line is not a driver line.
    let fr = EN.replace(
        "Name: cm-filter.sys, loads: 1, unloads: 0",
        "Nom : cm-filter.sys, chargements : 1",
    );
    assert!(stats(&fr, "cm-filter.sys").is_err());
}

#[test]
fn a_driver_missing_from_the_list_is_not_verified() {
    let e = stats(EN, "wfp-callout.sys").unwrap_err().to_string();
    assert!(e.contains("does not list wfp-callout.sys"), "{e}");
    assert!(stats("", "cm-filter.sys").is_err());
    assert!(
        stats(
            "Name: cm-filter.sys, loads: x, unloads: 0\nCurrentPagedPoolAllocations: 0",
            "cm-filter.sys"
        )
        .is_err()
    );
}

#[test]
fn flags_are_standard_or_hex() {
    assert_eq!(Flags::parse("standard").unwrap(), Flags(STANDARD));
    assert_eq!(Flags::parse("").unwrap(), Flags(STANDARD));
    assert_eq!(Flags::parse("0x20").unwrap(), Flags(0x20));
    assert_eq!(Flags::parse("209BB").unwrap().hex(), "0x209BB");
    assert!(Flags::parse("0").is_err());
    assert!(Flags::parse("standart").is_err());
    assert!(Flags::parse("0x1FFFFFFFF").is_err());
    // /standard includes DDI compliance checking, which no Windows turns on without a restart.
    assert_ne!(STANDARD & !VOLATILE_WIN10, 0);
    assert_eq!(0x20 & !VOLATILE_WIN11, 0);
}

#[test]
fn saved_and_restored_settings_are_read_or_refused() {
    let p = previous(r#"{"Level":null,"Drivers":null,"Mode":"volatile"}"#).unwrap();
    assert_eq!(
        (p.level, p.drivers.clone(), p.mode),
        (None, None, Mode::Volatile)
    );
    assert_eq!(p.text(), "Verifier was off");
    let p = previous(r#"{"Level":8,"Drivers":"ntfs.sys","Mode":"persistent"}"#).unwrap();
    assert_eq!(p.text(), "Verifier was on: flags 0x8, drivers [ntfs.sys]");
    assert!(previous(r#"{"Level":"acht","Drivers":null,"Mode":"volatile"}"#).is_err());
    assert!(previous(r#"{"Level":null,"Drivers":null,"Mode":"flüchtig"}"#).is_err());
    assert!(restored("unchanged").unwrap());
    assert!(restored(r#"{"Level":null,"Drivers":null,"Same":true}"#).unwrap());
    assert!(!restored(r#"{"Level":8,"Drivers":"x.sys","Same":false}"#).unwrap());
    assert!(restored("Wahr").is_err());
}

#[test]
fn verifier_bugchecks_are_violations() {
    assert_eq!(violation(0xC4), Some("DRIVER_VERIFIER_DETECTED_VIOLATION"));
    assert_eq!(violation(0xC9), Some("DRIVER_VERIFIER_IOMANAGER_VIOLATION"));
    assert_eq!(violation(0x50), None);
}
