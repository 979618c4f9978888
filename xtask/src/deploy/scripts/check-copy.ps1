# xtask step: check-copy
# The SHA-256 of every file of each copied folder (section `files FOLDER`, one `HASH NAME` line
# per file); the host compares them with the package manifests.
# By hand: . .\prologue.ps1; .\check-copy.ps1 -Dir 'C:\ProgramData\windows-callback-drivers\deploy' -Folders @('cm-filter', 'xtask')
param(
    # The folder on the VM the packages were copied to.
    [string]$Dir,
    # The folders under it.
    [string[]]$Folders
)
foreach ($name in $Folders) {
    Section "files $name"
    Get-ChildItem -LiteralPath (Join-Path $Dir $name) -File | ForEach-Object { Say ('{0} {1}' -f (Get-FileHash -Algorithm SHA256 -LiteralPath $_.FullName).Hash, $_.Name) }
}
