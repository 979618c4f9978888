# xtask step: preflight
# Administrator, architecture, Windows version, test signing, Secure Boot, the debug print
# filter, BitLocker, and the remote folder (made, with the deploy's start time in it).
# By hand: . .\prologue.ps1; .\preflight.ps1 -Dir 'C:\ProgramData\windows-callback-drivers\deploy'
param(
    # The folder on the VM the packages are copied to.
    [string]$Dir
)
Section 'admin'; Say ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
Section 'arch'; Say $env:PROCESSOR_ARCHITECTURE
Section 'os'; Say ([Environment]::OSVersion.Version.ToString())
# Test signing in this boot, locale-free: the kernel's start options.
Section 'start-options'; Say ((Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Control').SystemStartOptions)
Section 'secure-boot'; try { Say (Confirm-SecureBootUEFI) } catch { Say 'unsupported' }
Section 'debug-print-filter'; try { Say ((Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Debug Print Filter').DEFAULT) } catch { Say '' }
# Section `bcd-testsigning`: the `testsigning` element of the `{current}` boot entry, read from
# the BCD WMI provider, which no display language changes (bcdedit's output is localised):
# BcdStore.OpenStore('') opens the system store, {fa926493-6f1c-4193-a414-58f0b2456d1e} is the
# well-known identifier of `{current}`, and 0x16000049 is
# BcdLibraryBoolean_AllowPrereleaseSignatures (BcdLibraryElementTypes,
# https://learn.microsoft.com/previous-versions/windows/desktop/bcd/bcdlibraryelementtypes;
# GetElement, https://learn.microsoft.com/previous-versions/windows/desktop/bcd/getelement-bcdobject).
# `True`, `False`, `absent` (off, its default) or `error ...`.
Section 'bcd-testsigning'; try { $st = ([wmiclass]'root\wmi:BcdStore').OpenStore('').Store; $o = $st.OpenObject('{fa926493-6f1c-4193-a414-58f0b2456d1e}').Object; $e = $o.GetElement(0x16000049); if ($e.ReturnValue) { Say ([string]$e.Element.Boolean) } else { Say 'absent' } } catch { Say "error $_" }
# Section `bitlocker`: the system volume's BitLocker protection (Win32_EncryptableVolume's
# ProtectionStatus: 0 off, 1 on, 2 unknown;
# https://learn.microsoft.com/windows/win32/secprov/getprotectionstatus-win32-encryptablevolume),
# `none` without an encryptable volume, `unknown ...` when the class cannot be read.
Section 'bitlocker'; try { $v = Get-CimInstance -Namespace 'root\cimv2\Security\MicrosoftVolumeEncryption' -ClassName Win32_EncryptableVolume -Filter "DriveLetter = '$env:SystemDrive'"; if ($null -eq $v) { Say 'none' } else { Say ([string]$v.ProtectionStatus) } } catch { Say "unknown $_" }
Section 'remote-dir'; try { New-Item -ItemType Directory -Force -Path $Dir | Out-Null; [IO.File]::WriteAllText((Join-Path $Dir 'deploy-start.txt'), [DateTime]::UtcNow.ToString('o')); Say 'ok' } catch { Say "error $_" }
