# xtask step: install-sc
# Creates the kernel service with sc.exe (judged by its exit code only) and writes the INF's
# service registry values (AddReg HKR lines), then says the service's state.
# By hand, after the prologue and the helpers (. .\prologue.ps1; . .\xtask-helpers.ps1):
#   .\install-sc.ps1 -Service 'CmFilter' -BinPath 'C:\ProgramData\windows-callback-drivers\deploy\cm-filter\cm-filter.sys' -DisplayName 'cm-filter sample driver' -Values @(@{ Key = 'HKLM:\SYSTEM\CurrentControlSet\Services\CmFilter\Parameters'; Name = 'Altitude'; Kind = 'String'; Data = '385201.5' })
param(
    # The service name (the INF's AddService).
    [string]$Service,
    # The image on the VM.
    [string]$BinPath,
    # The INF's DisplayName.
    [string]$DisplayName,
    # Registry values: Key (a registry path), Name, Kind (New-ItemProperty's -PropertyType), Data.
    [hashtable[]]$Values
)
Run 'sc-create' 'sc.exe' @('create', $Service, 'type=', 'kernel', 'start=', 'demand', 'error=', 'normal', 'binPath=', $BinPath, 'DisplayName=', $DisplayName)
if ($script:rc -ne 0) { exit 1 }
foreach ($v in $Values) {
    if (-not (Test-Path -LiteralPath $v.Key)) { New-Item -Path $v.Key | Out-Null }
    New-ItemProperty -Force -LiteralPath $v.Key -Name $v.Name -PropertyType $v.Kind -Value $v.Data | Out-Null
}
Write-Service 'service' $Service
