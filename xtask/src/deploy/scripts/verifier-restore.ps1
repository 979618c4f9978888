# xtask step: verifier-restore
# Puts back the Driver Verifier settings the `verifier` step saved (verifier-previous.json):
# volatile mode removes our drivers from the volatile list (`verifier /volatile /removedriver`;
# they are unloaded by now, and a loaded driver stays verified until the next boot) and puts the
# volatile flags back; persistent mode writes the previous settings again (`verifier /flags F
# /driver NAME...`, `/all`, or `verifier /reset` when there were none), effective at the next
# boot. Then the registry's values are compared with the saved ones (section `verifier-restored`,
# JSON) and the saved file removed; a difference fails the step, naming the settings to restore.
# https://learn.microsoft.com/windows-hardware/drivers/devtest/verifier-command-line
# By hand: . .\prologue.ps1; .\verifier-restore.ps1 -Dir 'C:\ProgramData\windows-callback-drivers\deploy' -Images @('cm-filter.sys')
param(
    # The folder on the VM holding verifier-previous.json.
    [string]$Dir,
    # The drivers' image names.
    [string[]]$Images
)
$verifier = Join-Path $env:SystemRoot 'System32\verifier.exe'
$mm = 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Memory Management'
$saved = Join-Path $Dir 'verifier-previous.json'
if (-not (Test-Path -LiteralPath $saved)) { Section 'verifier-restored'; Say 'unchanged'; exit 0 }
$prev = Get-Content -Raw -LiteralPath $saved | ConvertFrom-Json
$level = [int64]$prev.Level
if ($prev.Mode -eq 'volatile') {
    Run 'verifier-removedriver' $verifier (@('/volatile', '/removedriver') + $Images)
    Run 'verifier-flags' $verifier @('/volatile', '/flags', ('0x{0:X}' -f $level))
} elseif ($null -eq $prev.Level) {
    Run 'verifier-reset' $verifier @('/reset')
} else {
    $which = if ([string]$prev.Drivers -eq '*') { @('/all') } else { @('/driver') + @(([string]$prev.Drivers).Split(' ') | Where-Object { $_ }) }
    Run 'verifier-set' $verifier (@('/flags', ('0x{0:X}' -f $level)) + $which)
}
$now = Get-ItemProperty -LiteralPath $mm
$same = ([int64]$now.VerifyDriverLevel -eq $level) -and ([string]$now.VerifyDrivers -eq [string]$prev.Drivers)
Section 'verifier-restored'; Say (ConvertTo-Json -Compress -InputObject ([pscustomobject]@{ Level = $now.VerifyDriverLevel; Drivers = $now.VerifyDrivers; Previous = $prev; Same = $same }))
if (-not $same) { Note ('the Verifier settings are not the ones saved (level {0}, drivers [{1}]): restore them by hand with verifier /flags and /driver, or verifier /reset, then restart' -f $prev.Level, $prev.Drivers); exit 4 }
Remove-Item -LiteralPath $saved
if ($prev.Mode -eq 'persistent') { Note 'the previous Verifier settings are written back; they take effect at the next restart' }
