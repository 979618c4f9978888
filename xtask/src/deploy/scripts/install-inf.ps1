# xtask step: install-inf
# Installs the primitive driver package with pnputil (its DefaultInstall section), then says the
# service's state. Exit codes 259 (ERROR_NO_MORE_ITEMS) and 3010 (reboot required) are successes.
# By hand, after the prologue and the helpers (. .\prologue.ps1; . .\xtask-helpers.ps1):
#   .\install-inf.ps1 -Service 'CmFilter' -Inf 'C:\ProgramData\windows-callback-drivers\deploy\cm-filter\cm-filter.inf' -Section 'DefaultInstall.NTamd64'
param(
    # The service name (the INF's AddService).
    [string]$Service,
    # The INF on the VM.
    [string]$Inf,
    # The INF section pnputil runs, named when no service comes of it.
    [string]$Section
)
Run 'pnputil' 'pnputil.exe' @('/add-driver', $Inf, '/install')
if (@(0, 259, 3010) -notcontains $script:rc) { exit 1 }
if (-not (Test-Path -LiteralPath "HKLM:\SYSTEM\CurrentControlSet\Services\$Service")) { Note "pnputil created no service: it does not run the $Section section of a primitive driver on this Windows; deploy with --install sc" }
Write-Service 'service' $Service
