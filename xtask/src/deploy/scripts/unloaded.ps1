# xtask step: unloaded
# The loaded modules (the image must be gone) and the checks of the driver's deploy.toml that run
# after it is unloaded (sections check-1, check-2, ...).
# By hand, after the prologue and the helpers (. .\prologue.ps1; . .\xtask-helpers.ps1):
#   .\unloaded.ps1 -Checks @(@{ Kind = 'registry'; Op = 'delete-key'; Hive = 'LocalMachine'; Path = 'SOFTWARE\CmFilterSample' })
param(
    # The checks, one table each (Invoke-XtaskCheck's parameters).
    [hashtable[]]$Checks
)
Write-Modules
Invoke-XtaskChecks $Checks
