# xtask step: kdnet
# Sets up network kernel debugging (KDNET) and restarts the VM: `bcdedit /dbgsettings net
# hostip:HOST port:PORT key:KEY` and `bcdedit /debug on` ("Set up KDNET network kernel debugging
# manually", https://learn.microsoft.com/windows-hardware/drivers/debugger/setting-up-a-network-debugging-connection;
# "BCDEdit /dbgsettings", https://learn.microsoft.com/windows-hardware/drivers/devtest/bcdedit--dbgsettings).
# A key already in the boot configuration is kept, so that a debugger set up for an earlier
# deploy still connects; without one, bcdedit makes one. The key is then read back from the BCD
# WMI provider, which no display language changes: the `{dbgsettings}` object
# ({4636856e-540f-4170-a130-a84776f4c654}), element 0x1200001D (BcdLibraryString_DebuggerNetKey,
# after BcdLibraryBoolean_DebuggerNetDhcp 0x1600001C in BcdLibraryElementTypes,
# https://learn.microsoft.com/previous-versions/windows/desktop/bcd/bcdlibraryelementtypes)
# (section `kdnet-key`, `error ...` when it cannot be read); bcdedit's own `Key=` line is in
# section `dbgsettings`. Secure Boot forbids /debug on: the step then fails naming the fix.
# With BitLocker protecting the system volume, the changed boot configuration would start the VM
# in BitLocker recovery: the key protectors are suspended for the one restart before anything changes, as
# enable-testsigning.ps1 does (DisableKeyProtectors with DisableCount 1,
# https://learn.microsoft.com/windows/win32/secprov/disablekeyprotectors-win32-encryptablevolume).
# By hand: . .\prologue.ps1; .\kdnet.ps1 -HostIp 192.168.1.10 -Port 50000
param(
    # The debugger host's address, as the VM reaches it.
    [string]$HostIp,
    # The UDP port the debugger listens on (49152-65535 recommended).
    [int]$Port
)
function Get-XtaskNetKey { try { $st = ([wmiclass]'root\wmi:BcdStore').OpenStore('').Store; $o = $st.OpenObject('{4636856e-540f-4170-a130-a84776f4c654}').Object; $e = $o.GetElement(0x1200001D); if ($e.ReturnValue) { [string]$e.Element.String } else { 'absent' } } catch { "error $_" } }
$secure = $false
try { $secure = [bool](Confirm-SecureBootUEFI) } catch { }
if ($secure) { Note 'Secure Boot is on, which forbids kernel debugging: turn it off in the VM''s firmware settings (Hyper-V: Set-VMFirmware VMNAME -EnableSecureBoot Off), then deploy again'; exit 2 }
$bl = $null
try { $bl = Get-CimInstance -Namespace 'root\cimv2\Security\MicrosoftVolumeEncryption' -ClassName Win32_EncryptableVolume -Filter "DriveLetter = '$env:SystemDrive'" } catch { }
if ($null -ne $bl -and $bl.ProtectionStatus -ne 0) {
    $r = Invoke-CimMethod -InputObject $bl -MethodName DisableKeyProtectors -Arguments @{ DisableCount = [uint32]1 }
    Section 'bitlocker-suspend' $r.ReturnValue
    if ($r.ReturnValue -ne 0) { Note ('BitLocker protects the system volume and could not be suspended (0x{0:X8}): suspend it for one restart (Suspend-BitLocker -MountPoint $env:SystemDrive -RebootCount 1) then deploy again' -f $r.ReturnValue); exit 2 }
    Note 'BitLocker suspended for one restart, so that the changed boot configuration does not start recovery'
}
$old = Get-XtaskNetKey
$a = @('/dbgsettings', 'net', "hostip:$HostIp", "port:$Port")
if ($old -match '^[0-9a-z]+(\.[0-9a-z]+){3}$') { $a += "key:$old" }
Run 'dbgsettings' 'bcdedit.exe' $a
if ($script:rc -ne 0) { exit 1 }
Run 'debug-on' 'bcdedit.exe' @('/debug', 'on')
if ($script:rc -ne 0) { exit 1 }
Section 'kdnet-key'; Say (Get-XtaskNetKey)
Run 'shutdown' 'shutdown.exe' @('/r', '/t', '5', '/c', 'xtask deploy: kernel debugging on')
exit $script:rc
