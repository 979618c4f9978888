//! The guest scripts of the plan's steps.

use std::fmt::Write as _;
use std::time::Duration;

use super::{
    Check, Cleanup, DriverSteps, HELPERS_FILE, HELPERS_FOLDER, Install, Options, Package, Run,
    Step, When,
};
use crate::deploy::probe;
use crate::deploy::ps::{self, quote};
use crate::packaging::inf;

/// Section `bcd-testsigning`: the `testsigning` element of the `{current}` boot entry, read from
/// the BCD WMI provider, which no display language changes (bcdedit's output is localised):
/// BcdStore.OpenStore('') opens the system store, `{fa926493-6f1c-4193-a414-58f0b2456d1e}` is
/// the well-known identifier of `{current}`, and 0x16000049 is
/// BcdLibraryBoolean_AllowPrereleaseSignatures (BcdLibraryElementTypes,
/// https://learn.microsoft.com/previous-versions/windows/desktop/bcd/bcdlibraryelementtypes;
/// GetElement, https://learn.microsoft.com/previous-versions/windows/desktop/bcd/getelement-bcdobject).
/// `True`, `False`, `absent` (off, its default) or `error ...`.
pub(super) const BCD: &str = "Section 'bcd-testsigning'; try { $st = ([wmiclass]'root\\wmi:BcdStore').OpenStore('').Store; $o = $st.OpenObject('{fa926493-6f1c-4193-a414-58f0b2456d1e}').Object; $e = $o.GetElement(0x16000049); if ($e.ReturnValue) { Say ([string]$e.Element.Boolean) } else { Say 'absent' } } catch { Say \"error $_\" }\n";

/// Section `bitlocker`: the system volume's BitLocker protection (Win32_EncryptableVolume's
/// ProtectionStatus: 0 off, 1 on, 2 unknown;
/// https://learn.microsoft.com/windows/win32/secprov/getprotectionstatus-win32-encryptablevolume),
/// `none` without an encryptable volume, `unknown ...` when the class cannot be read.
pub(super) const BITLOCKER: &str = "Section 'bitlocker'; try { $v = Get-CimInstance -Namespace 'root\\cimv2\\Security\\MicrosoftVolumeEncryption' -ClassName Win32_EncryptableVolume -Filter \"DriveLetter = '$env:SystemDrive'\"; if ($null -eq $v) { Say 'none' } else { Say ([string]$v.ProtectionStatus) } } catch { Say \"unknown $_\" }\n";

/// The test-signing step. With BitLocker protecting the system volume (device encryption with a
/// vTPM), a changed boot configuration would start the VM in BitLocker recovery: the key
/// protectors are suspended for one restart first (DisableKeyProtectors with DisableCount 1,
/// https://learn.microsoft.com/windows/win32/secprov/disablekeyprotectors-win32-encryptablevolume),
/// and the step fails, naming the fix, if that is refused. bcdedit and shutdown are judged by their
/// exit codes only.
pub(super) const ENABLE_TESTSIGNING: &str = "$v = $null\n\
try { $v = Get-CimInstance -Namespace 'root\\cimv2\\Security\\MicrosoftVolumeEncryption' -ClassName Win32_EncryptableVolume -Filter \"DriveLetter = '$env:SystemDrive'\" } catch { }\n\
if ($null -ne $v -and $v.ProtectionStatus -ne 0) {\n\
$r = Invoke-CimMethod -InputObject $v -MethodName DisableKeyProtectors -Arguments @{ DisableCount = [uint32]1 }\n\
Section 'bitlocker-suspend' $r.ReturnValue\n\
if ($r.ReturnValue -ne 0) { Note ('BitLocker protects the system volume and could not be suspended (0x{0:X8}): suspend it for one restart (Suspend-BitLocker -MountPoint $env:SystemDrive -RebootCount 1) or turn test signing on by hand, then deploy again' -f $r.ReturnValue); exit 2 }\n\
Note 'BitLocker suspended for one restart, so that the changed boot configuration does not start recovery'\n\
}\n\
Run 'bcdedit' 'bcdedit.exe' @('/set', '{current}', 'testsigning', 'on')\n\
if ($script:rc -ne 0) { exit 1 }\n\
Run 'shutdown' 'shutdown.exe' @('/r', '/t', '5', '/c', 'xtask deploy: test signing on')\n\
exit $script:rc\n";

pub(super) fn preflight_body(dir: &str) -> String {
    format!(
        "$dir = {dir}\n\
         Section 'admin'; Say ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)\n\
         Section 'arch'; Say $env:PROCESSOR_ARCHITECTURE\n\
         Section 'os'; Say ([Environment]::OSVersion.Version.ToString())\n\
         {BOOT}\
         Section 'start-options'; Say ((Get-ItemProperty -LiteralPath 'HKLM:\\SYSTEM\\CurrentControlSet\\Control').SystemStartOptions)\n\
         Section 'secure-boot'; try {{ Say (Confirm-SecureBootUEFI) }} catch {{ Say 'unsupported' }}\n\
         Section 'debug-print-filter'; try {{ Say ((Get-ItemProperty -LiteralPath 'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Debug Print Filter').DEFAULT) }} catch {{ Say '' }}\n\
         {BCD}{BITLOCKER}\
         Section 'remote-dir'; try {{ New-Item -ItemType Directory -Force -Path $dir | Out-Null; [IO.File]::WriteAllText((Join-Path $dir 'deploy-start.txt'), [DateTime]::UtcNow.ToString('o')); Say 'ok' }} catch {{ Say \"error $_\" }}\n",
        dir = quote(dir),
    )
}

/// The lines that print the last boot time (section `boot`, for the report) and the seconds since
/// that boot (section `uptime`): a new boot is recognised by its uptime, since Windows moves
/// LastBootUpTime when it corrects its clock (after a snapshot revert, often), while the time
/// since the boot, LocalDateTime minus LastBootUpTime of the same instance, stays
/// (https://learn.microsoft.com/windows/win32/cimwin32prov/win32-operatingsystem).
const BOOT: &str = "$os = Get-CimInstance -ClassName Win32_OperatingSystem\n\
Section 'boot'; Say ($os.LastBootUpTime.ToUniversalTime().ToString('o'))\n\
Section 'uptime'; Say ([int64]($os.LocalDateTime - $os.LastBootUpTime).TotalSeconds)\n";

/// The script [`Run::WaitForGuest`] polls with.
pub fn boot_script() -> String {
    ps::script("is the VM up?", BOOT)
}

/// The leftovers step. The services and the drivers are two flat lists walked by index: a list
/// of pairs written `@(@('a', 'b'))` would not be one pair with one package, since `@()` enumerates
/// the single array inside it (the array subexpression operator,
/// https://learn.microsoft.com/powershell/module/microsoft.powershell.core/about/about_operators).
pub(super) fn leftovers_body(dir: &str, packages: &[Package]) -> String {
    let services: Vec<&str> = packages.iter().map(|p| p.service.as_str()).collect();
    let drivers: Vec<&str> = packages.iter().map(|p| p.driver.as_str()).collect();
    format!(
        "$dir = {dir}\n\
         $images = {images}\n\
         $services = {services}\n\
         $drivers = {drivers}\n\
         for ($i = 0; $i -lt $services.Count; $i++) {{\n\
         $svc = $services[$i]; $name = $drivers[$i]; $key = \"HKLM:\\SYSTEM\\CurrentControlSet\\Services\\$svc\"\n\
         if (Test-Path -LiteralPath $key) {{\n\
         $ip = [string](Get-ItemProperty -LiteralPath $key).ImagePath\n\
         if (-not ($images | Where-Object {{ $ip.EndsWith(\"\\$_\", [StringComparison]::OrdinalIgnoreCase) }})) {{ Note \"a service $svc exists with image $ip, not one of ours: left alone\"; exit 3 }}\n\
         Note \"removing the service $svc left by an earlier deploy ($ip)\"\n\
         Native 'sc.exe' @('stop', $svc) | Out-Null\n\
         $o = Native 'sc.exe' @('delete', $svc)\n\
         $deadline = (Get-Date).AddSeconds(30); while ((Test-Path -LiteralPath $key) -and (Get-Date) -lt $deadline) {{ Start-Sleep -Milliseconds 500 }}\n\
         if (Test-Path -LiteralPath $key) {{ Note \"$svc is marked for deletion but its driver is still loaded ($o): restart the VM or revert it to a snapshot\"; exit 4 }}\n\
         }}\n\
         $p = Join-Path $dir $name\n\
         if (Test-Path -LiteralPath $p) {{ Remove-Item -LiteralPath $p -Recurse -Force; Note \"removed $p, left by an earlier deploy\" }}\n\
         try {{ $store = @(Get-WindowsDriver -Online) }} catch {{ $store = @(); Note \"the driver store could not be listed ($_): an INF of $name left there by an --install inf deploy stays\" }}\n\
         $store | Where-Object {{ (Split-Path -Leaf $_.OriginalFileName) -eq \"$name.inf\" }} | ForEach-Object {{ $o = Native 'pnputil.exe' @('/delete-driver', $_.Driver, '/uninstall', '/force'); Note \"removed $($_.Driver) ($name.inf) from the driver store (pnputil exit code $script:rc)\" }}\n\
         }}\n\
         $p = Join-Path $dir {helpers}\n\
         if (Test-Path -LiteralPath $p) {{ Remove-Item -LiteralPath $p -Recurse -Force }}\n\
         exit 0\n",
        helpers = quote(HELPERS_FOLDER),
        dir = quote(dir),
        services = ps::array(&services),
        drivers = ps::array(&drivers),
        images = ps::array(&packages.iter().map(Package::image).collect::<Vec<_>>()),
    )
}

pub(super) fn hashes_body(dir: &str, packages: &[Package]) -> String {
    let names: Vec<&str> = packages
        .iter()
        .map(|p| p.driver.as_str())
        .chain([HELPERS_FOLDER])
        .collect();
    format!(
        "$dir = {}\n\
         foreach ($name in {}) {{\n\
         Section \"files $name\"\n\
         Get-ChildItem -LiteralPath (Join-Path $dir $name) -File | ForEach-Object {{ Say ('{{0}} {{1}}' -f (Get-FileHash -Algorithm SHA256 -LiteralPath $_.FullName).Hash, $_.Name) }}\n\
         }}\n",
        quote(dir),
        ps::array(&names)
    )
}

pub(super) fn trust_body(cer: &str, thumbprint: &str) -> String {
    format!(
        "$cer = {}; $t = {}\n\
         foreach ($store in @('Root', 'TrustedPublisher')) {{\n\
         if (Test-Path -LiteralPath \"Cert:\\LocalMachine\\$store\\$t\") {{ Note \"already in $store\" }} else {{\n\
         $o = Native 'certutil.exe' @('-f', '-addstore', $store, $cer)\n\
         if ($script:rc -ne 0) {{ Section \"addstore $store\" $script:rc; Say $o; exit 1 }}\n\
         Note \"added to $store\"\n\
         }}\n\
         Section \"store $store\"; if (Test-Path -LiteralPath \"Cert:\\LocalMachine\\$store\\$t\") {{ Say 'present' }} else {{ Say 'absent' }}\n\
         }}\n",
        quote(cer),
        quote(thumbprint)
    )
}

pub(super) fn remove_files_body(dir: &str, packages: &[Package]) -> String {
    let names: Vec<&str> = packages
        .iter()
        .map(|p| p.driver.as_str())
        .chain([HELPERS_FOLDER])
        .collect();
    format!(
        "$dir = {}\n\
         foreach ($name in {}) {{ $p = Join-Path $dir $name; if (Test-Path -LiteralPath $p) {{ Remove-Item -LiteralPath $p -Recurse -Force }} }}\n\
         Remove-Item -LiteralPath (Join-Path $dir 'deploy-start.txt') -Force -ErrorAction SilentlyContinue\n",
        quote(dir),
        ps::array(&names)
    )
}

/// The line that loads the helpers ([`HELPERS`]) in a driver step: the file's text as a script
/// block, dot-sourced (execution policies apply to script files, not to script blocks).
fn load_helpers(dir: &str) -> String {
    format!(
        ". ([scriptblock]::Create([IO.File]::ReadAllText((Join-Path {} {}))))\n",
        quote(dir),
        quote(&format!("{HELPERS_FOLDER}\\{HELPERS_FILE}"))
    )
}

#[allow(clippy::too_many_lines)] // one driver's steps, in the order they run
pub(super) fn driver_steps(p: &Package, options: &Options) -> DriverSteps {
    let dir = options.remote_dir.as_str();
    let t = options.timeout;
    let svc = quote(&p.service);
    let pkg = format!("{dir}\\{}", p.driver);
    let query = format!("Write-Service 'service' {svc}\n");
    let helpers = load_helpers(dir);
    let install = match options.install {
        Install::Sc => {
            let sys = format!("{pkg}\\{}", p.image());
            let mut body = format!(
                "Run 'sc-create' 'sc.exe' {}\nif ($script:rc -ne 0) {{ exit 1 }}\n",
                ps::array(&[
                    "create",
                    &p.service,
                    "type=",
                    "kernel",
                    "start=",
                    "demand",
                    "error=",
                    "normal",
                    "binPath=",
                    &sys,
                    "DisplayName=",
                    &p.display_name,
                ])
            );
            for v in &p.service_values {
                let key = if v.subkey.is_empty() {
                    format!("HKLM:\\SYSTEM\\CurrentControlSet\\Services\\{}", p.service)
                } else {
                    format!(
                        "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\{}\\{}",
                        p.service, v.subkey
                    )
                };
                let _ = write!(
                    body,
                    "if (-not (Test-Path -LiteralPath {k})) {{ New-Item -Path {k} | Out-Null }}\n\
                     New-ItemProperty -Force -LiteralPath {k} -Name {n} -PropertyType {kind} -Value {d} | Out-Null\n",
                    k = quote(&key),
                    n = quote(&v.name),
                    kind = v.kind,
                    d = quote(&v.data),
                );
            }
            body.push_str(&query);
            (
                format!(
                    "install: sc.exe create {} type= kernel{}",
                    p.service,
                    if p.service_values.is_empty() {
                        ""
                    } else {
                        ", and the INF's service registry values"
                    }
                ),
                body,
            )
        }
        Install::Inf => {
            let inf_path = format!("{pkg}\\{}.inf", p.driver);
            let section = format!("DefaultInstall.NT{}", inf::arch_decoration(options.arch));
            (
                format!("install: pnputil /add-driver {}.inf /install", p.driver),
                format!(
                    "$inf = {inf}\n\
                     Run 'pnputil' 'pnputil.exe' @('/add-driver', $inf, '/install')\n\
                     if (@(0, 259, 3010) -notcontains $script:rc) {{ exit 1 }}\n\
                     if (-not (Test-Path -LiteralPath {key})) {{ Note 'pnputil created no service: it does not run the {section} section of a primitive driver on this Windows; deploy with --install sc' }}\n\
                     {query}",
                    inf = quote(&inf_path),
                    key = quote(&format!(
                        "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\{}",
                        p.service
                    )),
                ),
            )
        }
    };
    let remove_body = match options.install {
        Install::Sc => format!(
            "Run 'sc-delete' 'sc.exe' @('delete', {svc})\n[void](Wait-Service -Name {svc} -State 'missing' -Seconds 30)\n{query}"
        ),
        Install::Inf => format!(
            "Run 'sc-delete' 'sc.exe' @('delete', {svc})\n[void](Wait-Service -Name {svc} -State 'missing' -Seconds 30)\n\
             Get-WindowsDriver -Online | Where-Object {{ (Split-Path -Leaf $_.OriginalFileName) -eq {inf} }} | ForEach-Object {{ Run \"pnputil-delete $($_.Driver)\" 'pnputil.exe' @('/delete-driver', $_.Driver, '/uninstall', '/force') }}\n\
             {query}",
            inf = quote(&format!("{}.inf", p.driver))
        ),
    };
    let mut probe_body = format!(
        "{query}Start-Sleep -Seconds {settle}\nWrite-Service 'service-settled' {svc}\nWrite-Modules\n",
        settle = p.probe.settle
    );
    for (i, c) in p.probe.while_loaded.iter().enumerate() {
        probe_body.push_str(&probe::script(c, &format!("check-{}", i + 1)));
    }
    let mut unloaded_body = "Write-Modules\n".to_owned();
    for (i, c) in p.probe.after_unload.iter().enumerate() {
        unloaded_body.push_str(&probe::script(c, &format!("check-{}", i + 1)));
    }
    let names: Vec<&str> = vec![&p.service, &p.display_name];
    let events_body = format!(
        "$since = [DateTime]::Parse([IO.File]::ReadAllText({start}), $null, [Globalization.DateTimeStyles]::RoundtripKind)\n\
         $names = {names}\n\
         $ev = @(Get-WinEvent -FilterHashtable @{{ LogName = 'System'; ProviderName = 'Service Control Manager'; StartTime = $since }} -ErrorAction SilentlyContinue | Where-Object {{ $m = $_.Message; $v = @($_.Properties | ForEach-Object {{ [string]$_.Value }}); @($names | Where-Object {{ ($v -contains $_) -or ($m -like \"*$_*\") }}).Count -gt 0 }})\n\
         Section 'events'\n\
         Say (ConvertTo-Json -Compress -InputObject @($ev | ForEach-Object {{ [pscustomobject]@{{ Time = $_.TimeCreated.ToUniversalTime().ToString('o'); Id = $_.Id; Level = [int]$_.Level; Provider = $_.ProviderName; Message = $_.Message }} }}))\n\
         $ci = @(Get-WinEvent -FilterHashtable @{{ LogName = 'Microsoft-Windows-CodeIntegrity/Operational'; StartTime = $since; Level = 1, 2, 3 }} -MaxEvents 50 -ErrorAction SilentlyContinue | Where-Object {{ $m = [string]$_.Message; $v = @($_.Properties | ForEach-Object {{ [string]$_.Value }}); ($m -like {like}) -or @($v | Where-Object {{ $_ -like {like} }}).Count -gt 0 }})\n\
         Section 'code-integrity'\n\
         Say (ConvertTo-Json -Compress -InputObject @($ci | ForEach-Object {{ [pscustomobject]@{{ Time = $_.TimeCreated.ToUniversalTime().ToString('o'); Id = $_.Id; Level = [int]$_.Level; Provider = $_.ProviderName; Message = $_.Message }} }}))\n",
        start = quote(&format!("{dir}\\deploy-start.txt")),
        names = ps::array(&names),
        like = quote(&format!("*{}*", p.image())),
    );
    let step = |id, title: String, body: String, check, cleanup, timeout| Step {
        id,
        title: title.clone(),
        run: Run::Guest(ps::script(
            &format!("{} {title}", p.driver),
            &if id == "events" {
                body
            } else {
                format!("{helpers}{body}")
            },
        )),
        check,
        when: When::Always,
        cleanup,
        timeout,
    };
    let mut steps = vec![
        step(
            "install",
            install.0,
            install.1,
            Check::Installed,
            Cleanup::No,
            t,
        ),
        step(
            "start",
            format!("start: sc.exe start {}, running and loaded", p.service),
            format!("Run 'sc-start' 'sc.exe' @('start', {svc})\n{query}Write-Modules\n"),
            Check::Started(p.image()),
            Cleanup::No,
            t,
        ),
        step(
            "probe",
            format!(
                "probe: running for {}s{}",
                p.probe.settle,
                match p.probe.while_loaded.len() {
                    0 => String::new(),
                    n => format!(", {n} check(s) while loaded"),
                }
            ),
            probe_body,
            Check::Probe(p.image(), p.probe.while_loaded.clone()),
            Cleanup::No,
            t + Duration::from_secs(u64::from(p.probe.settle)),
        ),
        step(
            "stop",
            format!(
                "stop (unload): sc.exe stop {}, stopped with exit code 0",
                p.service
            ),
            format!(
                "Run 'sc-stop' 'sc.exe' @('stop', {svc})\n\
                 [void](Wait-Service -Name {svc} -State 'Stopped' -Seconds 30)\n\
                 {query}"
            ),
            Check::Stopped,
            Cleanup::After("start"),
            t,
        ),
        step(
            "unloaded",
            format!(
                "unloaded: {} gone from the loaded modules{}",
                p.image(),
                match p.probe.after_unload.len() {
                    0 => String::new(),
                    n => format!(", {n} check(s) after unload"),
                }
            ),
            unloaded_body,
            Check::Unloaded(p.image(), p.probe.after_unload.clone()),
            Cleanup::No,
            t,
        ),
    ];
    let mut remove = step(
        "remove",
        format!("remove the service {}", p.service),
        remove_body,
        Check::Removed,
        Cleanup::After("install"),
        t,
    );
    if options.keep {
        remove.when = When::Kept;
    }
    steps.push(remove);
    steps.push(step(
        "events",
        format!(
            "collect the Service Control Manager events of {} since the deploy began",
            p.service
        ),
        events_body,
        Check::Events,
        Cleanup::Always,
        t,
    ));
    DriverSteps {
        driver: p.driver.clone(),
        service: p.service.clone(),
        image: p.image(),
        steps,
    }
}

/// The script that lists crash dumps and bugcheck events since the deploy began (run once a VM
/// that stopped answering is back).
pub fn post_mortem_script(remote_dir: &str) -> String {
    ps::script(
        "post-mortem",
        &format!(
            "$since = [DateTime]::Parse([IO.File]::ReadAllText({start}), $null, [Globalization.DateTimeStyles]::RoundtripKind)\n\
             $deadline = (Get-Date).AddSeconds(90)\n\
             do {{\n\
             $ev = @(Get-WinEvent -FilterHashtable @{{ LogName = 'System'; StartTime = $since; ProviderName = 'Microsoft-Windows-WER-SystemErrorReporting', 'Microsoft-Windows-Kernel-Power', 'EventLog' }} -ErrorAction SilentlyContinue | Where-Object {{ ($_.ProviderName -eq 'Microsoft-Windows-WER-SystemErrorReporting' -and $_.Id -eq 1001) -or ($_.ProviderName -eq 'Microsoft-Windows-Kernel-Power' -and $_.Id -eq 41) -or ($_.ProviderName -eq 'EventLog' -and $_.Id -eq 6008) }})\n\
             $crashed = @($ev | Where-Object {{ $_.Id -ne 1001 }}).Count -gt 0\n\
             $saved = @($ev | Where-Object {{ $_.Id -eq 1001 }}).Count -gt 0\n\
             if ($saved -or -not $crashed) {{ break }}\n\
             Start-Sleep -Seconds 5\n\
             }} while ((Get-Date) -lt $deadline)\n\
             if ($crashed -and -not $saved) {{ Note 'the VM restarted unexpectedly but no bugcheck event 1001 (dump saved) appeared within 90s: the dump may still be being written, or none is configured' }}\n\
             Section 'dumps'\n\
             $files = @(Join-Path $env:SystemRoot 'MEMORY.DMP') + @(Get-ChildItem -LiteralPath (Join-Path $env:SystemRoot 'Minidump') -Filter '*.dmp' -ErrorAction SilentlyContinue | ForEach-Object {{ $_.FullName }})\n\
             foreach ($f in $files) {{ if (Test-Path -LiteralPath $f) {{ $i = Get-Item -LiteralPath $f; if ($i.LastWriteTimeUtc -ge $since) {{ Say ('{{0}} ({{1}} bytes)' -f $i.FullName, $i.Length) }} }} }}\n\
             Section 'events'\n\
             Say (ConvertTo-Json -Compress -InputObject @($ev | ForEach-Object {{ [pscustomobject]@{{ Time = $_.TimeCreated.ToUniversalTime().ToString('o'); Id = $_.Id; Level = [int]$_.Level; Provider = $_.ProviderName; Message = $_.Message }} }}))\n",
            start = quote(&format!("{remote_dir}\\deploy-start.txt")),
        ),
    )
}

/// Where a crashed VM's dump will be, for the report.
pub const DUMP_PLACES: &str = r"C:\Windows\MEMORY.DMP (kernel or complete memory dump, the default: automatic) or C:\Windows\Minidump\*.dmp (small memory dump), written when the VM restarts after the bugcheck";
