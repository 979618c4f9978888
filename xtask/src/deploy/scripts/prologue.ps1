# xtask prologue: the start of every step script the VM runs (deploy/ps.rs sends it first, then
# the step). Errors stop the script, no progress records (PowerShell writes them as CLIXML on stderr
# when stderr is not a console), UTF-8 output, and the functions the steps write their output
# with, in sections the host reads (deploy/parse.rs):
# - Say writes a line to stdout;
# - Section NAME [EXIT] starts a section of the output;
# - Note writes a remark for the report;
# - Native EXE ARGS runs a program, returning its output (stdout and stderr, in order) and leaving
#   its exit code in $script:rc;
# - Run NAME EXE ARGS runs a program as a section of its own.
# Arguments go to programs as Windows PowerShell 5.1 passes them (it quotes an argument with a
# space; one with a double quote would be mangled, which is why the plan refuses `"` in names and
# paths).
# By hand, in an elevated Windows PowerShell on the VM, dot-source it before a step:
#   . .\prologue.ps1; .\boot.ps1
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
try { [Console]::OutputEncoding = New-Object Text.UTF8Encoding $false } catch { }
function Say([string]$s) { [Console]::Out.WriteLine($s) }
function Section([string]$n, $rc) { if ($null -eq $rc) { Say "#xtask:section $n" } else { Say "#xtask:section $n exit=$rc" } }
function Note([string]$s) { Say "#xtask:note $s" }
function Native([string]$exe, [string[]]$a) { $ErrorActionPreference = 'Continue'; $o = & $exe @a 2>&1 | ForEach-Object { "$_" }; $script:rc = $LASTEXITCODE; ($o -join "`n") }
function Run([string]$n, [string]$exe, [string[]]$a) { $o = Native $exe $a; Section $n $script:rc; Say $o }
