# xtask step: trace-stop
# Stops the deploy's trace session (logman -ets) after the last driver unloaded, decodes trace.etl
# with tracerpt (XML: the TraceLogging metadata in each event names its fields), and writes the
# deployed providers' events as JSON (section `trace`): the time as a UTC FILETIME, read from the
# XML's ISO 8601 SystemTime without the culture's help; the provider; the level; the Message field.
# Removes the trace files.
# Only the events of the providers trace-start enabled (its trace-providers.txt) are reported.
# By hand: . .\prologue.ps1; .\trace-stop.ps1 -Dir 'C:\ProgramData\windows-callback-drivers\deploy' -Session 'xtask-deploy'
param(
    # The folder on the VM holding trace.etl and trace-providers.txt.
    [string]$Dir,
    # The trace session's name.
    [string]$Session
)
# The XML's SystemTime (ISO 8601, Z or an offset) as a UTC FILETIME, by pattern, not by culture.
function Get-FileTime([string]$t) {
    if ($t -notmatch '^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|([+-])(\d\d):(\d\d))?$') { return $null }
    $d = New-Object DateTime -ArgumentList @([int]$Matches[1], [int]$Matches[2], [int]$Matches[3], [int]$Matches[4], [int]$Matches[5], [int]$Matches[6], [DateTimeKind]::Utc)
    $d = $d.AddTicks([long](([string]$Matches[7]) + '0000000').Substring(0, 7))
    if ($Matches[9]) { $d = $d.AddMinutes(-[int]($Matches[9] + '1') * ([int]$Matches[10] * 60 + [int]$Matches[11])) }
    $d.ToFileTimeUtc()
}
Run 'logman-stop' 'logman.exe' @('stop', $Session, '-ets')
$etl = Join-Path $Dir 'trace.etl'
$xml = Join-Path $Dir 'trace.xml'
$sum = Join-Path $Dir 'trace-summary.txt'
$pf = Join-Path $Dir 'trace-providers.txt'
$want = @(Get-Content -LiteralPath $pf -ErrorAction SilentlyContinue | ForEach-Object { ($_ -split ' ')[0] -replace '[{}]' })
$events = @()
if (Test-Path -LiteralPath $etl) {
    Run 'tracerpt' 'tracerpt.exe' @($etl, '-o', $xml, '-of', 'XML', '-y', '-summary', $sum)
    if (Test-Path -LiteralPath $xml) {
        $doc = New-Object Xml.XmlDocument
        $doc.Load($xml)
        foreach ($e in @($doc.DocumentElement.ChildNodes | Where-Object { $_.LocalName -eq 'Event' })) {
            $s = $e.System
            if ($want -notcontains (([string]$s.Provider.Guid) -replace '[{}]')) { continue }
            $m = @($e.EventData.Data | Where-Object { $_.Name -eq 'Message' })
            $t = [string]$s.TimeCreated.SystemTime
            $events += [pscustomobject]@{ Time = Get-FileTime $t; SystemTime = $t; Provider = [string]$s.Provider.Name; Level = [int]$s.Level; Message = [string]$(if ($m.Count) { $m[0].InnerText } else { $e.EventData.InnerText }) }
        }
    }
} else {
    Note 'no trace.etl: the session wrote nothing'
}
Section 'trace'
Say (ConvertTo-Json -Compress -InputObject @($events))
foreach ($f in @($etl, $xml, $sum, $pf)) { Remove-Item -LiteralPath $f -Force -ErrorAction SilentlyContinue }
