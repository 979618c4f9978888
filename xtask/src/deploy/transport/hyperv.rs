//! The hyperv transport: PowerShell Direct from the VM's Windows Hyper-V host.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Lost, Output, Transport, TransportError, Upload, run_local, shell_words};
use crate::deploy::ps;

/// A Hyper-V VM on this (Windows) host, through PowerShell Direct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HyperV {
    /// The VM's name.
    pub vm: String,
    /// The guest credential file (`Get-Credential | Export-Clixml FILE`), a path on this host.
    pub credential: String,
}

/// The exit code of the Hyper-V wrapper when it cannot reach the VM (as ssh's 255).
const HYPERV_LOST: i32 = 255;

impl HyperV {
    fn session(&self) -> String {
        format!(
            "$ErrorActionPreference = 'Stop'\n\
             try {{ [Console]::OutputEncoding = New-Object Text.UTF8Encoding $false }} catch {{ }}\n\
             try {{ $cred = Import-Clixml -LiteralPath {cred}; $s = New-PSSession -VMName {vm} -Credential $cred }}\n\
             catch {{ [Console]::Error.WriteLine(\"xtask-hyperv: cannot open a PowerShell Direct session: $_\"); exit {HYPERV_LOST} }}\n",
            cred = ps::quote(&self.credential),
            vm = ps::quote(&self.vm),
        )
    }

    /// The host script that runs `script` in the guest. The host writes UTF-8 (the guest's output,
    /// the certificate subject's em dash, localised messages pass unchanged); an error the guest
    /// reports without ending the script stays an error message (`-ErrorAction Continue`), and only
    /// a broken session (PSRemotingTransportException,
    /// https://learn.microsoft.com/dotnet/api/system.management.automation.remoting.psremotingtransportexception)
    /// or no result at all is reported as the VM being lost.
    pub fn guest_wrapper(&self, script: &str) -> String {
        format!(
            "{session}\
             $r = $null\n\
             try {{\n\
             $r = Invoke-Command -Session $s -ErrorAction Continue -ArgumentList {b64} -ScriptBlock {{\n\
             param($c)\n\
             $o = [IO.Path]::GetTempFileName(); $e = [IO.Path]::GetTempFileName()\n\
             $p = Start-Process -FilePath powershell.exe -ArgumentList @('-NoProfile', '-NonInteractive', '-EncodedCommand', $c) -NoNewWindow -Wait -PassThru -RedirectStandardOutput $o -RedirectStandardError $e\n\
             [pscustomobject]@{{ code = $p.ExitCode; out = [IO.File]::ReadAllText($o, [Text.Encoding]::UTF8); err = [IO.File]::ReadAllText($e) }}\n\
             Remove-Item -LiteralPath $o, $e -Force\n\
             }}\n\
             }} catch [System.Management.Automation.Remoting.PSRemotingTransportException] {{ [Console]::Error.WriteLine(\"xtask-hyperv: the session was lost: $_\"); exit {HYPERV_LOST} }}\n\
             catch {{ [Console]::Error.WriteLine(\"xtask-hyperv-step: $_\"); exit 1 }}\n\
             finally {{ Remove-PSSession $s -ErrorAction SilentlyContinue }}\n\
             if ($null -eq $r -or $null -eq $r.code) {{ [Console]::Error.WriteLine('xtask-hyperv: no result came back from the VM'); exit {HYPERV_LOST} }}\n\
             [Console]::Out.Write($r.out); [Console]::Error.Write($r.err); exit $r.code\n",
            session = self.session(),
            b64 = ps::quote(&ps::encode(script)),
        )
    }

    /// The host script that copies `items` into the guest.
    pub fn upload_wrapper(&self, items: &[Upload]) -> String {
        let mut copies = String::new();
        for u in items {
            let _ = writeln!(
                copies,
                "Copy-Item -ToSession $s -LiteralPath {} -Destination {} -Recurse -Force",
                ps::quote(&u.local.to_string_lossy()),
                ps::quote(&u.remote)
            );
        }
        format!(
            "{}try {{\n{copies}}} catch {{ [Console]::Error.WriteLine(\"xtask-hyperv: $_\"); exit 1 }}\n\
             finally {{ Remove-PSSession $s -ErrorAction SilentlyContinue }}\n",
            self.session()
        )
    }

    /// The host script that copies the guest's file `remote` to `local` here.
    pub fn download_wrapper(&self, remote: &str, local: &std::path::Path) -> String {
        format!(
            "{}try {{\nCopy-Item -FromSession $s -LiteralPath {} -Destination {} -Force\n}} catch {{ [Console]::Error.WriteLine(\"xtask-hyperv: $_\"); exit 1 }}\n\
             finally {{ Remove-PSSession $s -ErrorAction SilentlyContinue }}\n",
            self.session(),
            ps::quote(remote),
            ps::quote(&local.to_string_lossy())
        )
    }

    /// `powershell.exe -NoProfile -NonInteractive -EncodedCommand <host script>`.
    pub fn host_argv(host_script: &str) -> Vec<String> {
        let mut a = ps::argv(host_script).to_vec();
        "powershell.exe".clone_into(&mut a[0]);
        a
    }

    fn run(&self, host_script: &str, timeout: Duration) -> Result<Output, TransportError> {
        if !cfg!(windows) {
            return Err(unsupported(&self.vm));
        }
        let out = run_local(&Self::host_argv(host_script), None, timeout)?;
        if out.code == Some(HYPERV_LOST) && out.stderr.contains("xtask-hyperv:") {
            let kind = if out.stderr.contains("credential") || out.stderr.contains("password") {
                Lost::Auth
            } else {
                Lost::Unreachable
            };
            return Err(TransportError {
                kind,
                message: format!(
                    "cannot reach hyperv:{} over PowerShell Direct (running? a Hyper-V \
                     administrator? the credential in {} valid?): {}",
                    self.vm,
                    self.credential,
                    out.stderr.trim()
                ),
                partial: out,
            });
        }
        Ok(out)
    }
}

/// The error of a Hyper-V target on a host that is not Windows.
pub fn unsupported(vm: &str) -> TransportError {
    TransportError {
        kind: Lost::Unsupported,
        message: format!(
            "hyperv:{vm} runs PowerShell Direct on the Windows host of the VM; this host is {}: \
             use --target ssh://user@host (the VM's OpenSSH server), or --dry-run to print the plan",
            std::env::consts::OS
        ),
        partial: Output::default(),
    }
}

impl Transport for HyperV {
    fn guest(&self, script: &str, timeout: Duration) -> Result<Output, TransportError> {
        self.run(&self.guest_wrapper(script), timeout)
    }

    fn upload(&self, items: &[Upload], timeout: Duration) -> Result<Output, TransportError> {
        self.run(&self.upload_wrapper(items), timeout)
    }

    fn download(
        &self,
        remote: &str,
        local: &std::path::Path,
        timeout: Duration,
    ) -> Result<Output, TransportError> {
        super::download_via(local, |part| {
            self.run(&self.download_wrapper(remote, part), timeout)
        })
    }

    fn show_guest(&self, script: &str, full: bool) -> String {
        let wrapper = self.guest_wrapper(script);
        let argv = Self::host_argv(&wrapper);
        if full {
            return shell_words(&argv);
        }
        let inner = ps::encode(script);
        format!(
            "{} <{} characters: this host script, UTF-16LE, base64>\n  host script:\n    {}",
            argv[..4].join(" "),
            argv[4].len(),
            wrapper
                .replace(
                    &inner,
                    &format!("<the script above, {} characters>", inner.len())
                )
                .trim_end()
                .replace('\n', "\n    ")
        )
    }

    fn show_upload(&self, items: &[Upload]) -> String {
        let wrapper = self.upload_wrapper(items);
        format!(
            "powershell.exe -NoProfile -NonInteractive -EncodedCommand <this host script>\n  host script:\n    {}",
            wrapper.trim_end().replace('\n', "\n    ")
        )
    }
}
