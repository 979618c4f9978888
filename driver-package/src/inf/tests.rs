//! The INF reader, stamper and checker, on the primitive `.inx` in `testdata/`.

use super::check::percent_tokens;
use super::*;

const GOOD: &str = include_str!("../../testdata/primitive.inx");

fn expect(stamped: bool) -> Expect<'static> {
    Expect {
        name: "ex-callback",
        arch: Arch::X64,
        stamped,
    }
}

/// The problems of `GOOD` with `from` replaced by `to` (which must occur).
fn problems_after(from: &str, to: &str) -> Vec<Problem> {
    assert!(GOOD.contains(from), "{from}");
    check(&GOOD.replacen(from, to, 1), &expect(false))
}

fn line_of(text: &str, needle: &str) -> usize {
    1 + text.lines().position(|l| l.starts_with(needle)).unwrap()
}

#[test]
fn the_sample_inx_passes_and_so_does_its_stamped_inf() {
    assert_eq!(check(GOOD, &expect(false)), []);
    for arch in Arch::ALL {
        let inf = stamp(GOOD, arch, "05/01/2026,0.1.0.0");
        let e = Expect {
            name: "ex-callback",
            arch,
            stamped: true,
        };
        assert_eq!(check(&inf, &e), [], "{arch}");
        assert!(inf.contains(&format!("[DefaultInstall.NT{}]\r\n", arch_decoration(arch))));
        assert!(inf.contains("DriverVer   = 05/01/2026,0.1.0.0\r\n"));
        assert!(!inf.contains("NT$ARCH$]") && !inf.contains("01/01/2000"));
        let (parsed, _) = parse(&inf);
        assert_eq!(service_name(&parsed, arch).as_deref(), Some("ExCallback"));
    }
}

#[test]
fn stamping_appends_a_missing_driver_ver_to_version() {
    let inx = "[Version]\nSignature = \"$WINDOWS NT$\"\nClass = System\n\n[Strings]\n";
    let inf = stamp(inx, Arch::Arm64, "01/02/2026,1.2.3.0");
    assert_eq!(
        inf,
        "[Version]\r\nSignature = \"$WINDOWS NT$\"\r\nClass = System\r\nDriverVer   = 01/02/2026,1.2.3.0\r\n\r\n[Strings]\r\n"
    );
}

#[test]
fn driver_ver_from_the_cargo_version() {
    assert_eq!(
        driver_ver(2026, 5, 1, "0.1.0").unwrap(),
        "05/01/2026,0.1.0.0"
    );
    assert!(
        driver_ver(2026, 5, 1, "0.1.0-beta.1")
            .unwrap_err()
            .contains("Cargo.toml")
    );
    assert!(driver_ver(2026, 5, 1, "70000.0.0").is_err());
}

#[test]
fn each_mistake_is_reported_at_its_line() {
    let cases: &[(&str, &str, &str)] = &[
        ("DefaultDestDir = 13", "DefaultDestDir = 12", "DIRID 12"),
        (
            "[DefaultInstall.NT$ARCH$]",
            "[DefaultInstall]",
            "not architecture-decorated",
        ),
        (
            "ServiceBinary = %13%",
            "ServiceBinary = %12%",
            "not in the driver store",
        ),
        (
            "ServiceType   = 1",
            "ServiceType   = 2",
            "SERVICE_KERNEL_DRIVER",
        ),
        (
            "ClassGuid   = {4d36e97d",
            "ClassGuid   = {4d36e97",
            "not a GUID",
        ),
        (
            "CatalogFile = ex-callback.cat",
            "CatalogFile = other.cat",
            "other.cat",
        ),
        (
            "Provider    = %ProviderName%",
            "Provider    = %Nobody%",
            "%Nobody% is not defined",
        ),
        (
            "Signature   = \"$WINDOWS NT$\"",
            "Signature   = \"$CHICAGO$\"",
            "$CHICAGO$",
        ),
        (
            "DriverVer   = 01/01/2000,0.0.0.0",
            "DriverVer   = 2000-01-01",
            "not mm/dd/yyyy",
        ),
        (
            "CopyFiles = ExCallback.CopyFiles",
            "CopyFiles = Missing.CopyFiles",
            "[Missing.CopyFiles], which does not exist",
        ),
        ("ex-callback.sys = 1,,", "ex-callback.sys = 2,,", "disk `2`"),
        (
            "AddService = ExCallback,0,ExCallback.Service",
            "AddService = ExCallback,0,Nope",
            "[Nope]",
        ),
        (
            "ProviderName       = \"Windows",
            "ProviderName       = \"Windows",
            "",
        ),
    ];
    for (from, to, wanted) in cases {
        if wanted.is_empty() {
            continue;
        }
        let problems = problems_after(from, to);
        let line = line_of(GOOD, from.split('=').next().unwrap().trim_end());
        assert!(
            problems
                .iter()
                .any(|p| p.line == line && p.message.contains(wanted)),
            "{from} -> {to}: wanted `{wanted}` at line {line}, got {problems:?}"
        );
    }
}

#[test]
fn missing_fields_and_sections_are_named() {
    let problems = problems_after("PnpLockdown = 1\n", "");
    let version = line_of(GOOD, "[Version]");
    assert!(
        problems
            .iter()
            .any(|p| p.line == version && p.message.contains("no PnpLockdown")),
        "{problems:?}"
    );
    let problems = problems_after("\n[Strings]\n", "\n[Manufacturer]\n[Strings]\n");
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("[Manufacturer] makes this a device INF")),
        "{problems:?}"
    );
    let problems = check("[Version]\nSignature=\"$WINDOWS NT$\"\n", &expect(false));
    for needle in [
        "no Class:",
        "no Provider",
        "[DefaultInstall.NTamd64]",
        "[SourceDisksFiles]",
        "[DestinationDirs]",
    ] {
        assert!(
            problems.iter().any(|p| p.message.contains(needle)),
            "{needle}: {problems:?}"
        );
    }
    let problems = problems_after(
        "\n[Strings]\n",
        "\n[DefaultUninstall.NT$ARCH$]\nDelFiles = x\n[Strings]\n",
    );
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("LegacyUninstall=1")),
        "{problems:?}"
    );
    let problems = problems_after(
        "\n[Strings]\n",
        "\n[DefaultUninstall.NT$ARCH$]\nLegacyUninstall = 1\n[Strings]\n",
    );
    assert_eq!(problems, []);
}

#[test]
fn syntax_errors_have_lines() {
    let (_, problems) = parse("key = 1\n[Version\nSignature = \"x\n");
    assert_eq!(
        problems.iter().map(|p| p.line).collect::<Vec<_>>(),
        [1, 2, 3],
        "{problems:?}"
    );
}

#[test]
fn encodings() {
    let (text, enc) = decode(&encode("[Version]\r\n", Encoding::Utf16Le)).unwrap();
    assert_eq!((text.as_str(), enc), ("[Version]\r\n", Encoding::Utf16Le));
    assert_eq!(decode(b"[Version]\n").unwrap().1, Encoding::Ascii);
    let e = decode("[Version]\n; caf\u{e9}\n".as_bytes()).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("UTF-16LE"), "{e}");
    assert!(
        decode(b"\xEF\xBB\xBF[Version]")
            .unwrap_err()
            .message
            .contains("UTF-8 byte-order mark")
    );
    assert!(
        decode(b"\xFE\xFF\x00[")
            .unwrap_err()
            .message
            .contains("big-endian")
    );
}

#[test]
fn comments_and_quotes() {
    let (inf, problems) = parse("[S]\nk = \"a;b\", c ; comment\nbare\n");
    assert_eq!(problems, []);
    let s = inf.section("s").unwrap();
    assert_eq!(s.entries[0].fields, ["a;b", "c"]);
    assert_eq!(s.entries[1].key, None);
    assert_eq!(percent_tokens("%a% x %13%\\y %%"), ["a", "13", ""]);
}
