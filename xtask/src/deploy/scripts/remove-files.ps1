# xtask step: remove-files
# Removes the copied folders and the deploy's start time.
# By hand: . .\prologue.ps1; .\remove-files.ps1 -Dir 'C:\ProgramData\windows-callback-drivers\deploy' -Folders @('cm-filter', 'xtask')
param(
    # The folder on the VM the packages were copied to.
    [string]$Dir,
    # The folders under it.
    [string[]]$Folders
)
foreach ($name in $Folders) { $p = Join-Path $Dir $name; if (Test-Path -LiteralPath $p) { Remove-Item -LiteralPath $p -Recurse -Force } }
Remove-Item -LiteralPath (Join-Path $Dir 'deploy-start.txt') -Force -ErrorAction SilentlyContinue
