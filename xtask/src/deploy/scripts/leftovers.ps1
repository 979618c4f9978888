# xtask step: leftovers
# Removes what an earlier deploy left: each of our services (only if its image is one of ours),
# each package folder, each of our INFs in the driver store, the helpers' folder. The services
# and the drivers are two flat lists walked by index (a list of pairs written @(@('a', 'b')) would
# not be one pair with one package, since @() enumerates the single array inside it;
# https://learn.microsoft.com/powershell/module/microsoft.powershell.core/about/about_operators).
# By hand: . .\prologue.ps1; .\leftovers.ps1 -Dir 'C:\ProgramData\windows-callback-drivers\deploy' -Images @('cm-filter.sys') -Services @('CmFilter') -Drivers @('cm-filter') -HelpersFolder 'xtask'
param(
    # The folder on the VM the packages are copied to.
    [string]$Dir,
    # Our images (NAME.sys): a service whose image is another is left alone.
    [string[]]$Images,
    # Our services, and the driver (package folder) of each, in the same order.
    [string[]]$Services,
    [string[]]$Drivers,
    # The helpers' folder under $Dir.
    [string]$HelpersFolder
)
for ($i = 0; $i -lt $Services.Count; $i++) {
    $svc = $Services[$i]; $name = $Drivers[$i]; $key = "HKLM:\SYSTEM\CurrentControlSet\Services\$svc"
    if (Test-Path -LiteralPath $key) {
        $ip = [string](Get-ItemProperty -LiteralPath $key).ImagePath
        if (-not ($Images | Where-Object { $ip.EndsWith("\$_", [StringComparison]::OrdinalIgnoreCase) })) { Note "a service $svc exists with image $ip, not one of ours: left alone"; exit 3 }
        Note "removing the service $svc left by an earlier deploy ($ip)"
        Native 'sc.exe' @('stop', $svc) | Out-Null
        $o = Native 'sc.exe' @('delete', $svc)
        $deadline = (Get-Date).AddSeconds(30); while ((Test-Path -LiteralPath $key) -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 500 }
        if (Test-Path -LiteralPath $key) { Note "$svc is marked for deletion but its driver is still loaded ($o): restart the VM or revert it to a snapshot"; exit 4 }
    }
    $p = Join-Path $Dir $name
    if (Test-Path -LiteralPath $p) { Remove-Item -LiteralPath $p -Recurse -Force; Note "removed $p, left by an earlier deploy" }
    try { $store = @(Get-WindowsDriver -Online) } catch { $store = @(); Note "the driver store could not be listed ($_): an INF of $name left there by an --install inf deploy stays" }
    $store | Where-Object { (Split-Path -Leaf $_.OriginalFileName) -eq "$name.inf" } | ForEach-Object { $o = Native 'pnputil.exe' @('/delete-driver', $_.Driver, '/uninstall', '/force'); Note "removed $($_.Driver) ($name.inf) from the driver store (pnputil exit code $script:rc)" }
}
$p = Join-Path $Dir $HelpersFolder
if (Test-Path -LiteralPath $p) { Remove-Item -LiteralPath $p -Recurse -Force }
exit 0
