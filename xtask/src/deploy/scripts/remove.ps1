# xtask step: remove
# Deletes the service, waits up to 30 seconds for it to go, and with -Inf removes our INF from the
# driver store (an --install inf deploy); then says the service's state (`missing`).
# By hand, after the prologue and the helpers (. .\prologue.ps1; . .\xtask-helpers.ps1):
#   .\remove.ps1 -Service 'CmFilter' -Inf 'cm-filter.inf'
param(
    # The service name.
    [string]$Service,
    # The INF's file name, for an --install inf deploy; empty otherwise.
    [string]$Inf
)
Run 'sc-delete' 'sc.exe' @('delete', $Service)
[void](Wait-Service -Name $Service -State 'missing' -Seconds 30)
if ($Inf) { Get-WindowsDriver -Online | Where-Object { (Split-Path -Leaf $_.OriginalFileName) -eq $Inf } | ForEach-Object { Run "pnputil-delete $($_.Driver)" 'pnputil.exe' @('/delete-driver', $_.Driver, '/uninstall', '/force') } }
Write-Service 'service' $Service
