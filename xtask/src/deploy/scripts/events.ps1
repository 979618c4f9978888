# xtask step: events
# The Service Control Manager events about the service since the deploy began (section `events`),
# and the Code Integrity events that name its image (section `code-integrity`), as JSON.
# By hand: . .\prologue.ps1; .\events.ps1 -Dir 'C:\ProgramData\windows-callback-drivers\deploy' -Names @('CmFilter', 'cm-filter sample driver') -Image 'cm-filter.sys'
param(
    # The folder on the VM holding deploy-start.txt (the preflight's time).
    [string]$Dir,
    # The service name and display name, as the events give them.
    [string[]]$Names,
    # The image's file name.
    [string]$Image
)
$since = [DateTime]::Parse([IO.File]::ReadAllText((Join-Path $Dir 'deploy-start.txt')), $null, [Globalization.DateTimeStyles]::RoundtripKind)
$ev = @(Get-WinEvent -FilterHashtable @{ LogName = 'System'; ProviderName = 'Service Control Manager'; StartTime = $since } -ErrorAction SilentlyContinue | Where-Object { $m = $_.Message; $v = @($_.Properties | ForEach-Object { [string]$_.Value }); @($Names | Where-Object { ($v -contains $_) -or ($m -like "*$_*") }).Count -gt 0 })
Section 'events'
Say (ConvertTo-Json -Compress -InputObject @($ev | ForEach-Object { [pscustomobject]@{ Time = $_.TimeCreated.ToUniversalTime().ToString('o'); Id = $_.Id; Level = [int]$_.Level; Provider = $_.ProviderName; Message = $_.Message } }))
$like = "*$Image*"
$ci = @(Get-WinEvent -FilterHashtable @{ LogName = 'Microsoft-Windows-CodeIntegrity/Operational'; StartTime = $since; Level = 1, 2, 3 } -MaxEvents 50 -ErrorAction SilentlyContinue | Where-Object { $m = [string]$_.Message; $v = @($_.Properties | ForEach-Object { [string]$_.Value }); ($m -like $like) -or @($v | Where-Object { $_ -like $like }).Count -gt 0 })
Section 'code-integrity'
Say (ConvertTo-Json -Compress -InputObject @($ci | ForEach-Object { [pscustomobject]@{ Time = $_.TimeCreated.ToUniversalTime().ToString('o'); Id = $_.Id; Level = [int]$_.Level; Provider = $_.ProviderName; Message = $_.Message } }))
