# xtask step: post-mortem
# Run once a VM that stopped answering is back: waits up to 90 seconds for the bugcheck event
# (WER 1001, written once the dump is saved) when Kernel-Power 41 or EventLog 6008 say the VM
# restarted unexpectedly; then the crash dumps written since the deploy began (section `dumps`)
# and those events (section `events`, JSON). Section `bugcheck`: the event data of those events
# by name (JSON), which no display language changes: Kernel-Power 41's BugcheckCode (decimal) and
# BugcheckParameter1-4 ("Advanced troubleshooting for Event ID 41",
# https://learn.microsoft.com/troubleshoot/windows-client/performance/event-id-41-restart), and
# WER-SystemErrorReporting 1001's param1 (`0x000000c4 (0x..., 0x..., 0x..., 0x...)`) and param2
# (the dump's path). The dumps are listed newest first (--fetch-dump copies the newest minidump).
# By hand: . .\prologue.ps1; .\post-mortem.ps1 -Dir 'C:\ProgramData\windows-callback-drivers\deploy'
param(
    # The folder on the VM holding deploy-start.txt (the preflight's time).
    [string]$Dir
)
$since = [DateTime]::Parse([IO.File]::ReadAllText((Join-Path $Dir 'deploy-start.txt')), $null, [Globalization.DateTimeStyles]::RoundtripKind)
$deadline = (Get-Date).AddSeconds(90)
do {
    $ev = @(Get-WinEvent -FilterHashtable @{ LogName = 'System'; StartTime = $since; ProviderName = 'Microsoft-Windows-WER-SystemErrorReporting', 'Microsoft-Windows-Kernel-Power', 'EventLog' } -ErrorAction SilentlyContinue | Where-Object { ($_.ProviderName -eq 'Microsoft-Windows-WER-SystemErrorReporting' -and $_.Id -eq 1001) -or ($_.ProviderName -eq 'Microsoft-Windows-Kernel-Power' -and $_.Id -eq 41) -or ($_.ProviderName -eq 'EventLog' -and $_.Id -eq 6008) })
    $crashed = @($ev | Where-Object { $_.Id -ne 1001 }).Count -gt 0
    $saved = @($ev | Where-Object { $_.Id -eq 1001 }).Count -gt 0
    if ($saved -or -not $crashed) { break }
    Start-Sleep -Seconds 5
} while ((Get-Date) -lt $deadline)
if ($crashed -and -not $saved) { Note 'the VM restarted unexpectedly but no bugcheck event 1001 (dump saved) appeared within 90s: the dump may still be being written, or none is configured' }
Section 'dumps'
$files = @(Join-Path $env:SystemRoot 'MEMORY.DMP') + @(Get-ChildItem -LiteralPath (Join-Path $env:SystemRoot 'Minidump') -Filter '*.dmp' -ErrorAction SilentlyContinue | ForEach-Object { $_.FullName })
$files | ? { Test-Path -LiteralPath $_ } | % { Get-Item -LiteralPath $_ } | ? { $_.LastWriteTimeUtc -ge $since } | sort LastWriteTimeUtc -Descending | % { Say ('{0} ({1} bytes)' -f $_.FullName, $_.Length) }
Section 'events'
Say (ConvertTo-Json -Compress -InputObject @($ev | ForEach-Object { [pscustomobject]@{ Time = $_.TimeCreated.ToUniversalTime().ToString('o'); Id = $_.Id; Level = [int]$_.Level; Provider = $_.ProviderName; Message = $_.Message } }))
Section 'bugcheck'
Say (ConvertTo-Json -Compress -Depth 4 -InputObject @($ev | ? { $_.Id -ne 6008 } | % { $d = @{}; $i = 0; foreach ($x in ([xml]$_.ToXml()).Event.EventData.Data) { $i++; $n = if ($x.Name) { $x.Name } else { "param$i" }; $d[$n] = if ($x -is [string]) { $x } else { $x.'#text' } }; @{ Id = $_.Id; Provider = $_.ProviderName; Data = $d } }))
