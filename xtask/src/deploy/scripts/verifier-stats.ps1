# xtask step: verifier-stats
# Driver Verifier's counters while the driver is loaded: the output of `verifier /query`
# (section `verifier-query`), which lists each verified driver that is loaded as
# `Name: IMAGE, loads: N, unloads: N` followed by its counters as `Counter: number` lines
# ("Monitoring Individual Counters",
# https://learn.microsoft.com/windows-hardware/drivers/devtest/monitoring-individual-counters).
# The host reads only those names and numbers; a driver missing from the list is not verified.
# By hand: . .\prologue.ps1; .\verifier-stats.ps1
param()
Run 'verifier-query' (Join-Path $env:SystemRoot 'System32\verifier.exe') @('/query')
