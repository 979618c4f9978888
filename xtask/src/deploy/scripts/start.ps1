# xtask step: start
# Starts the service (sc.exe, judged by its exit code), then says its state and the loaded
# modules.
# By hand, after the prologue and the helpers (. .\prologue.ps1; . .\xtask-helpers.ps1):
#   .\start.ps1 -Service 'CmFilter'
param(
    # The service name.
    [string]$Service
)
Run 'sc-start' 'sc.exe' @('start', $Service)
Write-Service 'service' $Service
Write-Modules
