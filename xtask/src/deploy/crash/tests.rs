//! The bugcheck and dump readers on the event data Windows writes, and the refusals.

use super::*;

const KP41: &str = r#"[{"Time":"2026-05-01T08:06:10.0000000Z","Id":41,"Provider":"Microsoft-Windows-Kernel-Power","Data":{"BugcheckCode":"196","BugcheckParameter1":"0x62","BugcheckParameter2":"0xffffa50f1a2b3c40","BugcheckParameter3":"0xffffa50f1a2b3d00","BugcheckParameter4":"0x1","SleepInProgress":"0","PowerButtonTimestamp":"0"}},{"Time":"2026-05-01T08:06:30.0000000Z","Id":1001,"Provider":"Microsoft-Windows-WER-SystemErrorReporting","Data":{"param1":"0x000000c4 (0x0000000000000062, 0xffffa50f1a2b3c40, 0xffffa50f1a2b3d00, 0x0000000000000001)","param2":"C:\\Windows\\MEMORY.DMP","param3":"6a7b"}}]"#;

#[test]
fn kernel_power_41_gives_the_code_and_parameters() {
    let b = bugcheck(KP41).unwrap().unwrap();
    assert_eq!(b.code, 0xC4);
    assert_eq!(
        b.parameters,
        [0x62, 0xffff_a50f_1a2b_3c40, 0xffff_a50f_1a2b_3d00, 1]
    );
    assert_eq!(b.source, "Kernel-Power 41");
    assert_eq!(
        b.text(),
        "0x000000C4 (0x62, 0xFFFFA50F1A2B3C40, 0xFFFFA50F1A2B3D00, 0x1) DRIVER_VERIFIER_DETECTED_VIOLATION: a Driver Verifier violation"
    );
}

#[test]
fn wer_1001_fills_in_when_41_has_no_code() {
    let j = KP41.replace(r#""BugcheckCode":"196""#, r#""BugcheckCode":"0""#);
    let b = bugcheck(&j).unwrap().unwrap();
    assert_eq!(
        (b.code, b.source.as_str()),
        (0xC4, "WER-SystemErrorReporting 1001")
    );
    assert_eq!(b.parameters[0], 0x62);
    // One event alone is an object, not a list (ConvertTo-Json of one element).
    let one = r#"{"Time":"t","Id":1001,"Provider":"Microsoft-Windows-WER-SystemErrorReporting","Data":{"param1":"0x00000050 (0xffff800000000000, 0x0000000000000002, 0xfffff80012345678, 0x0000000000000002)"}}"#;
    assert_eq!(bugcheck(one).unwrap().unwrap().code, 0x50);
    assert_eq!(bugcheck("").unwrap(), None);
    assert_eq!(bugcheck("[]").unwrap(), None);
}

#[test]
fn text_where_numbers_belong_is_refused() {
    // A localised message in param1, a word for a code: refused, not guessed.
    let bad = KP41
        .replace(r#""BugcheckCode":"196""#, r#""BugcheckCode":"0""#)
        .replace("0x000000c4 (", "Fehlerprüfung 0x000000c4 (");
    assert!(bugcheck(&bad).is_err());
    assert!(bugcheck(&KP41.replace(r#""196""#, r#""hundert""#)).is_err());
    assert!(bugcheck(&KP41.replace(r#""0x62""#, r#""62h""#)).is_err());
    assert!(bugcheck("not json").is_err());
}

#[test]
fn the_newest_minidump_is_chosen_and_a_large_memory_dmp_refused() {
    let files = dump_files(
        "C:\\Windows\\MEMORY.DMP (2147483648 bytes)\r\nC:\\Windows\\Minidump\\050126-1.dmp (1048576 bytes)\n",
    )
    .unwrap();
    assert_eq!(files.len(), 2);
    assert!(!files[0].minidump && files[1].minidump);
    assert_eq!(
        choose(&files, 1 << 30).unwrap().path,
        "C:\\Windows\\Minidump\\050126-1.dmp"
    );
    let full = &files[..1];
    let e = choose(full, 1 << 30).unwrap_err();
    assert!(e.contains("more than --dump-limit 1073741824"), "{e}");
    assert_eq!(choose(full, 4 << 30).unwrap().bytes, 2_147_483_648);
    assert!(choose(&[], 1 << 30).unwrap_err().contains("no dump"));
    // Anything but our own line is refused.
    assert!(dump_files("C:\\Windows\\MEMORY.DMP (2 Go)").is_err());
    assert!(dump_files("C:\\Windows\\MEMORY.DMP").is_err());
    assert_eq!(dump_files("").unwrap(), []);
    assert_eq!(
        local_name("C:\\Windows\\Minidump\\050126-1.dmp"),
        "050126-1.dmp"
    );
    assert_eq!(local_name("C:\\Windows\\MEMORY.DMP"), "MEMORY.DMP");
    assert_eq!(local_name("..\\.."), "dump..");
}
