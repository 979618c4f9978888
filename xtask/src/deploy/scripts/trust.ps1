# xtask step: trust
# Adds the test certificate to LocalMachine Root and TrustedPublisher where it is not yet, then
# says for each store whether it is there (read from Cert:, not from certutil's localised text).
# By hand: . .\prologue.ps1; .\trust.ps1 -Cer 'C:\ProgramData\windows-callback-drivers\deploy\cm-filter\callback-drivers-test.cer' -Thumbprint '34AD27DCCAAC93ADCE84B84DB07823E8F1570848'
param(
    # The certificate file on the VM.
    [string]$Cer,
    # Its SHA-1 thumbprint.
    [string]$Thumbprint
)
foreach ($store in @('Root', 'TrustedPublisher')) {
    if (Test-Path -LiteralPath "Cert:\LocalMachine\$store\$Thumbprint") { Note "already in $store" } else {
        $o = Native 'certutil.exe' @('-f', '-addstore', $store, $Cer)
        if ($script:rc -ne 0) { Section "addstore $store" $script:rc; Say $o; exit 1 }
        Note "added to $store"
    }
    Section "store $store"; if (Test-Path -LiteralPath "Cert:\LocalMachine\$store\$Thumbprint") { Say 'present' } else { Say 'absent' }
}
