# xtask step: trace-stop
# Stops the deploy's trace session (logman -ets) after the last driver unloaded, decodes trace.etl
# with tracerpt (XML: the TraceLogging metadata in each event names its fields), and writes the
# deployed providers' events as JSON (section `trace`): the time as a UTC FILETIME, read from the
# XML's ISO 8601 SystemTime without the culture's help; the provider; the level; the Message field.
# Removes the trace files.
# By hand: . .\prologue.ps1; .\trace-stop.ps1 -Dir 'C:\ProgramData\windows-callback-drivers\deploy' -Session 'xtask-deploy' -Providers @('{ce5fa4ea-ab00-5402-8b76-9f76ac858fb5}')
param(
    # The folder on the VM holding trace.etl.
    [string]$Dir,
    # The trace session's name.
    [string]$Session,
    # The provider GUIDs, in braces: only their events are reported.
    [string[]]$Providers
)
function ConvertTo-XtaskFileTime([string]$t) {
    if ($t -notmatch '^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$') { return $null }
    $d = New-Object DateTime -ArgumentList @([int]$Matches[1], [int]$Matches[2], [int]$Matches[3], [int]$Matches[4], [int]$Matches[5], [int]$Matches[6], [DateTimeKind]::Utc)
    $d = $d.AddTicks([long](([string]$Matches[7]) + '0000000').Substring(0, 7))
    $z = [string]$Matches[8]
    if ($z.Length -eq 6) { $m = [int]$z.Substring(1, 2) * 60 + [int]$z.Substring(4, 2); if ($z[0] -eq '+') { $m = -$m }; $d = $d.AddMinutes($m) }
    $d.ToFileTimeUtc()
}
Run 'logman-stop' 'logman.exe' @('stop', $Session, '-ets')
$etl = Join-Path $Dir 'trace.etl'
$xml = Join-Path $Dir 'trace.xml'
$wanted = @($Providers | ForEach-Object { $_.Trim('{', '}').ToLowerInvariant() })
$events = @()
if (Test-Path -LiteralPath $etl) {
    Run 'tracerpt' 'tracerpt.exe' @($etl, '-o', $xml, '-of', 'XML', '-y', '-summary', (Join-Path $Dir 'trace-summary.txt'))
    if (Test-Path -LiteralPath $xml) {
        $doc = New-Object Xml.XmlDocument
        $doc.Load($xml)
        foreach ($e in @($doc.DocumentElement.ChildNodes | Where-Object { $_.LocalName -eq 'Event' })) {
            $p = $e.System.Provider
            if ($wanted -notcontains ([string]$p.Guid).Trim('{', '}').ToLowerInvariant()) { continue }
            $m = @($e.EventData.Data | Where-Object { $_.Name -eq 'Message' })
            $events += [pscustomobject]@{ Time = ConvertTo-XtaskFileTime ([string]$e.System.TimeCreated.SystemTime); SystemTime = [string]$e.System.TimeCreated.SystemTime; Provider = [string]$p.Name; Level = [int]$e.System.Level; Message = [string]$(if ($m.Count -gt 0) { $m[0].InnerText } else { $e.EventData.InnerText }) }
        }
    }
} else {
    Note 'no trace.etl: the session wrote nothing'
}
Section 'trace'
Say (ConvertTo-Json -Compress -InputObject @($events))
foreach ($f in @($etl, $xml, (Join-Path $Dir 'trace-providers.txt'), (Join-Path $Dir 'trace-summary.txt'))) { Remove-Item -LiteralPath $f -Force -ErrorAction SilentlyContinue }
