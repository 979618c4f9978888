# xtask step: verifier
# Turns Driver Verifier on for the deployed drivers only, after saving the settings it had.
# The settings before are read from the values verifier.exe keeps in the registry (Memory
# Management's VerifyDriverLevel, a number, and VerifyDrivers, the image names), never from its
# localised text, and saved once to verifier-previous.json in the remote folder (an earlier deploy
# that could not restore them left theirs: kept). Section `verifier-previous`: those settings as
# JSON; section `verifier-mode`: `volatile` or `persistent`.
# Volatile settings (`verifier /volatile /flags F`, `verifier /volatile /adddriver NAME...`) take
# effect at once and last until the next boot, but only for the flags Windows allows to change
# that way: on Windows 11 (build 22000 and later) 0x4, 0x20, 0x80, 0x200, 0x400; on Windows 10
# also 0x1, 0x2, 0x8, 0x10, 0x100, 0x800, 0x2000, 0x4000 ("Using Volatile Settings",
# https://learn.microsoft.com/windows-hardware/drivers/devtest/using-volatile-settings). Other
# flags (`/standard` includes DDI compliance checking, 0x20000) need the persistent settings
# (`verifier /flags F /driver NAME...`) and a restart, which this step starts ("Driver Verifier
# command syntax", https://learn.microsoft.com/windows-hardware/drivers/devtest/verifier-command-line).
# The persistent settings are checked by reading the registry back, not by verifier's words,
# before the restart (none when they did not take).
# By hand: . .\prologue.ps1; .\verifier.ps1 -Dir 'C:\ProgramData\windows-callback-drivers\deploy' -Flags 0x209BB -Images @('cm-filter.sys') -Win10 0x6FBF -Win11 0x6A4
param(
    # The folder on the VM where the previous settings are saved.
    [string]$Dir,
    # The Verifier flags (a number).
    [int64]$Flags,
    # The drivers' image names.
    [string[]]$Images,
    # The flags Windows 10 allows to change without a restart (a mask).
    [int64]$Win10,
    # The flags Windows 11 allows to change without a restart (a mask).
    [int64]$Win11
)
$v = Join-Path $env:SystemRoot 'System32\verifier.exe'
if (-not (Test-Path -LiteralPath $v)) { Note "Driver Verifier is not on this VM ($v is missing): deploy without --verifier"; exit 3 }
$mm = 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Memory Management'
$saved = Join-Path $Dir 'verifier-previous.json'
$b = [int](Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion').CurrentBuildNumber
$mask = if ($b -ge 22000) { $Win11 } else { $Win10 }
$mode = if (($Flags -band $mask) -eq $Flags) { 'volatile' } else { 'persistent' }
if (Test-Path -LiteralPath $saved) {
    $p = Get-Content -Raw -LiteralPath $saved | ConvertFrom-Json
    Note 'the Verifier settings an earlier deploy saved and did not restore are the ones kept'
    if ($p.Mode -eq 'persistent') { $mode = 'persistent' }
} else { $p = Get-ItemProperty -LiteralPath $mm; $p = @{ Level = $p.VerifyDriverLevel; Drivers = $p.VerifyDrivers } }
$j = ConvertTo-Json -Compress -InputObject ([pscustomobject]@{ Level = $p.Level; Drivers = $p.Drivers; Mode = $mode })
[IO.File]::WriteAllText("$saved.tmp", $j)
Move-Item -Force -LiteralPath "$saved.tmp" -Destination $saved
Section 'verifier-previous'; Say $j
Section 'verifier-mode'; Say $mode
$hex = '0x{0:X}' -f $Flags
if ($mode -eq 'volatile') {
    Run 'verifier-flags' $v @('/volatile', '/flags', $hex)
    if ($script:rc -eq 0) { Run 'verifier-adddriver' $v (@('/volatile', '/adddriver') + $Images) }
    exit $script:rc
}
Run 'verifier-set' $v (@('/flags', $hex, '/driver') + $Images)
$n = Get-ItemProperty -LiteralPath $mm
Section 'verifier-settings'; Say (ConvertTo-Json -Compress -InputObject ([pscustomobject]@{ Level = $n.VerifyDriverLevel; Drivers = $n.VerifyDrivers }))
if ([int64]$n.VerifyDriverLevel -ne $Flags) { Note "verifier /flags $hex /driver did not take (VerifyDriverLevel is $($n.VerifyDriverLevel)): no restart"; exit 1 }
Run 'shutdown' 'shutdown.exe' @('/r', '/t', '5', '/c', 'xtask deploy: Driver Verifier')
exit $script:rc
