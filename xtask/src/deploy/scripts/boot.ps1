# xtask step: boot
# The last boot time (section `boot`, for the report) and the seconds since that boot (section
# `uptime`). A new boot is recognised by its uptime, since Windows moves LastBootUpTime when it
# corrects its clock (after a snapshot revert, often), while the time since the boot,
# LocalDateTime minus LastBootUpTime of the same instance, stays
# (https://learn.microsoft.com/windows/win32/cimwin32prov/win32-operatingsystem).
# The host polls with it while it waits for the VM, and the preflight runs it first.
# By hand: . .\prologue.ps1; .\boot.ps1
param()
$os = Get-CimInstance -ClassName Win32_OperatingSystem
Section 'boot'; Say ($os.LastBootUpTime.ToUniversalTime().ToString('o'))
Section 'uptime'; Say ([int64]($os.LocalDateTime - $os.LastBootUpTime).TotalSeconds)
