# xtask deploy: the helpers of the driver steps. The copy step ships this file with the packages
# (<remote dir>\xtask\xtask-helpers.ps1, its SHA-256 checked like theirs); each driver step
# dot-sources it after the prologue (prologue.ps1), whose Say, Section and Native it uses. By hand,
# in an elevated Windows PowerShell on the VM (every parameter explicit):
#   . .\prologue.ps1
#   . ([scriptblock]::Create([IO.File]::ReadAllText('C:\ProgramData\windows-callback-drivers\deploy\xtask\xtask-helpers.ps1')))
#   Write-Service -Section 'service' -Name 'CmFilter'
#   Write-Modules
# Dot-sourcing the text as a script block, not the file, keeps the steps independent of the
# execution policy, which applies to script files only (about_Execution_Policies,
# https://learn.microsoft.com/powershell/module/microsoft.powershell.core/about/about_execution_policies).

# A kernel service's state and exit codes, from Win32_SystemDriver: State holds the class's fixed
# values (Stopped, Start Pending, Stop Pending, Running, ...), not the display language's words,
# and ExitCode / ServiceSpecificExitCode are numbers
# (https://learn.microsoft.com/windows/win32/cimwin32prov/win32-systemdriver). $null when there is
# no such service.
function Get-XtaskDriver([string]$Name) {
    $n = $Name.Replace('\', '\\').Replace("'", "\'")
    Get-CimInstance -ClassName Win32_SystemDriver -Filter "Name = '$n'"
}

# Section $Section: `missing`, or the service's state as JSON.
function Write-Service([string]$Section, [string]$Name) {
    Section $Section
    $d = Get-XtaskDriver -Name $Name
    if ($null -eq $d) { Say 'missing'; return }
    Say (ConvertTo-Json -Compress -InputObject ([pscustomobject]@{ State = [string]$d.State; ExitCode = [uint32]$d.ExitCode; ServiceSpecificExitCode = [uint32]$d.ServiceSpecificExitCode }))
}

# Polls until the service is in $State (a Win32_SystemDriver State, or 'missing') or $Seconds
# pass; returns whether it got there.
function Wait-Service([string]$Name, [string]$State, [int]$Seconds) {
    $deadline = (Get-Date).AddSeconds($Seconds)
    do {
        $d = Get-XtaskDriver -Name $Name
        if (($null -eq $d -and $State -eq 'missing') -or ($null -ne $d -and $d.State -eq $State)) { return $true }
        Start-Sleep -Milliseconds 500
    } while ((Get-Date) -lt $deadline)
    return $false
}

# Sections `modules-check` and `modules`: the loaded kernel modules, as psapi's EnumDeviceDrivers
# and GetDeviceDriverBaseNameW give them (the kernel's loaded-module list, where "unloaded" is
# observable without a debugger). From Windows 11 24H2 and Server 2025 the kernel gives these
# addresses only to a caller whose token has SeDebugPrivilege enabled, zeroes otherwise; an
# elevated administrator holds the privilege, disabled, so it is enabled first
# (AdjustTokenPrivileges, https://learn.microsoft.com/windows/win32/api/securitybaseapi/nf-securitybaseapi-adjusttokenprivileges).
# `modules-check` says how many entries and distinct addresses there were and the privilege
# result (0, or 1300 ERROR_NOT_ALL_ASSIGNED): the host refuses a list whose addresses repeat.
function Write-Modules {
    if (-not ('XtaskPsapi' -as [type])) {
        Add-Type -TypeDefinition @'
using System; using System.Runtime.InteropServices; using System.Text;
public static class XtaskPsapi {
  [DllImport("psapi.dll", SetLastError = true)] public static extern bool EnumDeviceDrivers([Out] IntPtr[] a, uint cb, out uint needed);
  [DllImport("psapi.dll", CharSet = CharSet.Unicode)] public static extern uint GetDeviceDriverBaseNameW(IntPtr b, StringBuilder n, uint size);
  [StructLayout(LayoutKind.Sequential, Pack = 4)] public struct TokenPrivilege { public uint Count; public long Luid; public uint Attributes; }
  [DllImport("advapi32.dll", SetLastError = true)] static extern bool OpenProcessToken(IntPtr process, uint access, out IntPtr token);
  [DllImport("advapi32.dll", SetLastError = true, CharSet = CharSet.Unicode)] static extern bool LookupPrivilegeValueW(string system, string name, out long luid);
  [DllImport("advapi32.dll", SetLastError = true)] static extern bool AdjustTokenPrivileges(IntPtr token, bool disableAll, ref TokenPrivilege state, uint length, IntPtr previous, IntPtr returned);
  [DllImport("kernel32.dll")] static extern IntPtr GetCurrentProcess();
  [DllImport("kernel32.dll")] static extern bool CloseHandle(IntPtr handle);
  public static int EnableDebugPrivilege() {
    IntPtr token;
    if (!OpenProcessToken(GetCurrentProcess(), 0x28, out token)) return Marshal.GetLastWin32Error();
    try {
      long luid;
      if (!LookupPrivilegeValueW(null, "SeDebugPrivilege", out luid)) return Marshal.GetLastWin32Error();
      TokenPrivilege tp = new TokenPrivilege(); tp.Count = 1; tp.Luid = luid; tp.Attributes = 2;
      if (!AdjustTokenPrivileges(token, false, ref tp, 0, IntPtr.Zero, IntPtr.Zero)) return Marshal.GetLastWin32Error();
      return Marshal.GetLastWin32Error();
    } finally { CloseHandle(token); }
  }
}
'@
    }
    $privilege = [XtaskPsapi]::EnableDebugPrivilege()
    $needed = [uint32]0
    [void][XtaskPsapi]::EnumDeviceDrivers($null, 0, [ref]$needed)
    $a = New-Object IntPtr[] ([int]($needed / [IntPtr]::Size) + 64)
    if (-not [XtaskPsapi]::EnumDeviceDrivers($a, [uint32]($a.Length * [IntPtr]::Size), [ref]$needed)) { throw 'EnumDeviceDrivers failed' }
    $n = [int]($needed / [IntPtr]::Size)
    $bases = @(for ($i = 0; $i -lt $n; $i++) { $a[$i].ToInt64() })
    Section 'modules-check'
    Say ('entries={0} distinct={1} debug-privilege={2}' -f $n, @($bases | Sort-Object -Unique).Count, $privilege)
    Section 'modules'
    for ($i = 0; $i -lt $n; $i++) {
        $sb = New-Object Text.StringBuilder 260
        if ([XtaskPsapi]::GetDeviceDriverBaseNameW($a[$i], $sb, 260)) { Say $sb.ToString() }
    }
}

# Runs a registry operation and returns `allowed`, `denied` (UnauthorizedAccessException,
# SecurityException or a Win32 error 5) or `error 0xHRESULT message`.
function Try-Op([scriptblock]$Op) {
    try { & $Op | Out-Null; 'allowed' }
    catch {
        $e = $_.Exception
        while ($e.InnerException) { $e = $e.InnerException }
        if ($e -is [UnauthorizedAccessException] -or $e -is [Security.SecurityException] -or ($e.HResult -band 0xFFFF) -eq 5) { 'denied' }
        else { 'error 0x{0:X8} {1}' -f $e.HResult, $e.Message }
    }
}

# One check of a driver's deploy.toml (deploy/probe.rs), writing its answer as section $Section:
# - Kind 'registry': the registry operation $Op ('create-key', 'set-value', 'delete-value',
#   'delete-key') on $Path under $Hive ('LocalMachine' or 'CurrentUser'; $Value and $Data for
#   values), answered `allowed`, `denied` or `error ...` (Try-Op);
# - Kind 'wfp': `netsh wfp show filters`, cut down to the filters that name one of ours (display
#   name in $Names, callout or provider key in $Keys, upper-case GUIDs without braces) and printed
#   in the same document shape with their count (netsh writes every filter of the system,
#   megabytes on a busy machine); the section carries netsh's exit code;
# - Kind 'command': $Encoded (-EncodedCommand form) run as a powershell.exe process of its own, so
#   that its `exit N` is its exit code: inside `& { }` in this script, `exit` would end the whole
#   step, skipping every later check
#   (https://learn.microsoft.com/powershell/module/microsoft.powershell.core/about/about_language_keywords,
#   "exit"); the section carries that exit code and the command's output.
function Invoke-XtaskCheck {
    param([string]$Section, [string]$Kind, [string]$Op, [string]$Hive, [string]$Path, [string]$Value, [string]$Data, [string[]]$Names, [string[]]$Keys, [string]$Encoded)
    switch ($Kind) {
        'registry' {
            $reg = if ($Hive -eq 'CurrentUser') { [Microsoft.Win32.Registry]::CurrentUser } else { [Microsoft.Win32.Registry]::LocalMachine }
            $r = switch ($Op) {
                'create-key' { Try-Op { $reg.CreateSubKey($Path).Close() } }
                'set-value' { Try-Op { $k = $reg.CreateSubKey($Path); try { $k.SetValue($Value, $Data) } finally { $k.Close() } } }
                'delete-value' { Try-Op { $k = $reg.OpenSubKey($Path, $true); try { $k.DeleteValue($Value) } finally { $k.Close() } } }
                'delete-key' { Try-Op { $reg.DeleteSubKeyTree($Path) } }
                default { "error: unknown registry operation $Op" }
            }
            Section $Section
            Say $r
        }
        'wfp' {
            $f = Join-Path $env:SystemRoot 'Temp\xtask-wfp-filters.xml'
            $o = Native 'netsh.exe' @('wfp', 'show', 'filters', "file=$f")
            Section $Section $script:rc
            if ($script:rc -eq 0) {
                $x = New-Object Xml.XmlDocument; $x.Load($f); Remove-Item -LiteralPath $f
                $g = { param($n) if ($null -eq $n) { '' } else { $n.InnerText.Trim().Trim('{', '}').ToUpperInvariant() } }
                $m = @($x.SelectNodes('//filters/item') | Where-Object { $n = $_.SelectSingleNode('displayData/name'); ($null -ne $n -and $Names -contains $n.InnerText.Trim()) -or ($Keys -contains (& $g $_.SelectSingleNode('action/calloutKey'))) -or ($Keys -contains (& $g $_.SelectSingleNode('providerKey'))) })
                Say ('<wfpdiag><filters numItems="{0}">{1}</filters></wfpdiag>' -f $m.Count, (($m | ForEach-Object { $_.OuterXml }) -join ''))
            } else { Say $o }
        }
        'command' {
            $o = Native 'powershell.exe' @('-NoProfile', '-NonInteractive', '-EncodedCommand', $Encoded)
            Section $Section $script:rc
            Say $o
        }
        default {
            Section $Section
            Say "error: unknown check kind $Kind"
        }
    }
}

# The checks of a step, one table of Invoke-XtaskCheck's parameters each, as sections check-1,
# check-2, ...
function Invoke-XtaskChecks([hashtable[]]$Checks) {
    $n = 0
    foreach ($c in $Checks) {
        $n++
        Invoke-XtaskCheck -Section "check-$n" @c
    }
}

# The VM's clock when a driver step starts (dot-sourcing these helpers is the first thing each does),
# as a UTC FILETIME (a number, not a culture's date): the deploy report puts each line the driver
# logged (its ETW events, trace-stop.ps1) next to the step whose start precedes it.
Section 'clock'
Say ([DateTime]::UtcNow.ToFileTimeUtc())
