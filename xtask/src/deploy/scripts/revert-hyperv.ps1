# xtask step: revert-hyperv
# On the Windows Hyper-V host (not in the VM): reverts the VM to a checkpoint and starts it if the
# checkpoint was taken with the VM off.
# By hand, in an elevated PowerShell on the host: .\revert-hyperv.ps1 -VM 'Win11 Test' -Snapshot 'clean'
param(
    # The VM's name.
    [string]$VM,
    # The checkpoint's name.
    [string]$Snapshot
)
$ErrorActionPreference = 'Stop'
Restore-VMSnapshot -VMName $VM -Name $Snapshot -Confirm:$false
if ((Get-VM -Name $VM).State -ne 'Running') { Start-VM -Name $VM }
