# xtask step: stop
# Stops the service (the driver's unload), waits up to 30 seconds for Stopped, says its state.
# By hand, after the prologue and the helpers (. .\prologue.ps1; . .\xtask-helpers.ps1):
#   .\stop.ps1 -Service 'CmFilter'
param(
    # The service name.
    [string]$Service
)
Run 'sc-stop' 'sc.exe' @('stop', $Service)
[void](Wait-Service -Name $Service -State 'Stopped' -Seconds 30)
Write-Service 'service' $Service
