# xtask step: enable-testsigning
# Turns test signing on and restarts the VM. With BitLocker protecting the system volume (device
# encryption with a vTPM), a changed boot configuration would start the VM in BitLocker recovery:
# the key protectors are suspended for one restart first (DisableKeyProtectors with
# DisableCount 1,
# https://learn.microsoft.com/windows/win32/secprov/disablekeyprotectors-win32-encryptablevolume),
# and the step fails, naming the fix, if that is refused. bcdedit and shutdown are judged by their
# exit codes only.
# By hand: . .\prologue.ps1; .\enable-testsigning.ps1
param()
$v = $null
try { $v = Get-CimInstance -Namespace 'root\cimv2\Security\MicrosoftVolumeEncryption' -ClassName Win32_EncryptableVolume -Filter "DriveLetter = '$env:SystemDrive'" } catch { }
if ($null -ne $v -and $v.ProtectionStatus -ne 0) {
    $r = Invoke-CimMethod -InputObject $v -MethodName DisableKeyProtectors -Arguments @{ DisableCount = [uint32]1 }
    Section 'bitlocker-suspend' $r.ReturnValue
    if ($r.ReturnValue -ne 0) { Note ('BitLocker protects the system volume and could not be suspended (0x{0:X8}): suspend it for one restart (Suspend-BitLocker -MountPoint $env:SystemDrive -RebootCount 1) or turn test signing on by hand, then deploy again' -f $r.ReturnValue); exit 2 }
    Note 'BitLocker suspended for one restart, so that the changed boot configuration does not start recovery'
}
Run 'bcdedit' 'bcdedit.exe' @('/set', '{current}', 'testsigning', 'on')
if ($script:rc -ne 0) { exit 1 }
Run 'shutdown' 'shutdown.exe' @('/r', '/t', '5', '/c', 'xtask deploy: test signing on')
exit $script:rc
