# xtask step: probe
# The driver runs for $Settle seconds; then its state, the loaded modules and the checks of its
# deploy.toml that run while it is loaded (sections check-1, check-2, ...; Invoke-XtaskChecks of
# the helpers).
# By hand, after the prologue and the helpers (. .\prologue.ps1; . .\xtask-helpers.ps1):
#   .\probe.ps1 -Service 'CmFilter' -Settle 5 -Checks @(@{ Kind = 'registry'; Op = 'set-value'; Hive = 'LocalMachine'; Path = 'SOFTWARE\CmFilterSample'; Value = 'Blocked'; Data = 'no' })
param(
    # The service name.
    [string]$Service,
    # Seconds to let the driver run.
    [int]$Settle,
    # The checks, one table each (Invoke-XtaskCheck's parameters).
    [hashtable[]]$Checks
)
Write-Service 'service' $Service
Start-Sleep -Seconds $Settle
Write-Service 'service-settled' $Service
Write-Modules
Invoke-XtaskChecks $Checks
