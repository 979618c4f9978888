# xtask step: trace-start
# Starts the deploy's trace session before the first driver loads: logman, with -ets (a session
# only, no Data Collector Set is saved), every deployed driver's TraceLogging provider enabled at
# every level and keyword, events written to trace.etl in the remote folder. A session an earlier
# deploy left running is stopped first. Fails with logman's output if the session cannot start.
# By hand: . .\prologue.ps1; .\trace-start.ps1 -Dir 'C:\ProgramData\windows-callback-drivers\deploy' -Session 'xtask-deploy' -Providers @('{ce5fa4ea-ab00-5402-8b76-9f76ac858fb5}')
param(
    # The folder on the VM the packages were copied to (trace.etl and the provider list go there).
    [string]$Dir,
    # The trace session's name.
    [string]$Session,
    # The provider GUIDs, in braces.
    [string[]]$Providers
)
$null = Native 'logman.exe' @('stop', $Session, '-ets')
$etl = Join-Path $Dir 'trace.etl'
Remove-Item -LiteralPath $etl -Force -ErrorAction SilentlyContinue
$pf = Join-Path $Dir 'trace-providers.txt'
[IO.File]::WriteAllLines($pf, [string[]]@($Providers | ForEach-Object { "$_ 0xFFFFFFFFFFFFFFFF 0xFF" }))
Run 'logman-start' 'logman.exe' @('start', $Session, '-ets', '-pf', $pf, '-o', $etl)
if ($script:rc -ne 0) { exit 1 }
