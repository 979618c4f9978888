//! How steps reach the VM: the system's OpenSSH client (`ssh`, `sftp`), or PowerShell Direct from
//! a Windows Hyper-V host. Both run the same guest command line,
//! `powershell -NoProfile -NonInteractive -EncodedCommand <script>` (`ps.rs`), and both copy
//! folders; only the way there differs.
//!
//! **ssh** uses the user's own client, so keys, agents, `~/.ssh/config` and jump hosts work. It
//! always passes `BatchMode=yes` (never a password prompt, never a password anywhere) and
//! `StrictHostKeyChecking=yes` (an unknown or changed host key stops the deploy with the fix, it
//! is never accepted). `ServerAliveInterval` makes a VM that dies mid-command (a bugcheck) a lost
//! connection within seconds rather than a hang. Folders go over `sftp -b -` with a batch on
//! stdin: no remote shell is involved, so a path with spaces is only quoted for sftp itself.
//!
//! **hyperv** runs `powershell.exe` on the host, which opens a PowerShell Direct session
//! (`New-PSSession -VMName`) with a credential saved by `Export-Clixml` (protected by DPAPI for
//! the host user: no password on any command line), runs the guest command line inside the VM
//! with `Start-Process` (to keep its exit code and its two streams apart) and copies folders with
//! `Copy-Item -ToSession`. It needs a Windows host; elsewhere it is a clear error, while its plan
//! can still be printed (`--dry-run`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::ps;
use crate::base::process;

mod hyperv;
mod ssh;
#[cfg(test)]
mod tests;

pub use hyperv::{HyperV, unsupported};
pub use ssh::Ssh;

/// What a command printed and how it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its stdout (UTF-8, lossy).
    pub stdout: String,
    /// Its stderr (UTF-8, lossy; PowerShell's CLIXML decoded).
    pub stderr: String,
    /// How long it took.
    pub duration: Duration,
}

/// Why a command did not give an answer from the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost {
    /// It ran past its time limit and was killed.
    Timeout,
    /// Nothing listens on the port.
    Refused,
    /// The VM could not be reached, or the connection was lost.
    Unreachable,
    /// The VM's host key is not the one known for it.
    HostKeyChanged,
    /// The VM's host key is not known yet.
    HostKeyUnknown,
    /// The VM refused our key (or credential).
    Auth,
    /// The transport cannot run on this host.
    Unsupported,
    /// The client program could not be started.
    Spawn,
}

/// A command that did not give an answer from the VM, and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    /// What happened.
    pub kind: Lost,
    /// The message, with the fix where there is one.
    pub message: String,
    /// What the command printed before it was lost.
    pub partial: Output,
}

impl TransportError {
    /// Whether this looks like a VM that stopped answering (after a driver was started, a
    /// probable bugcheck), rather than a setup mistake.
    pub fn vm_gone(&self) -> bool {
        matches!(self.kind, Lost::Timeout | Lost::Unreachable | Lost::Refused)
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A folder to copy to the VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// The folder here.
    pub local: PathBuf,
    /// Where it goes, as a Windows path (it must not exist yet).
    pub remote: String,
}

/// The way to a VM.
pub trait Transport: Sync {
    /// Runs a PowerShell script in the guest.
    fn guest(&self, script: &str, timeout: Duration) -> Result<Output, TransportError>;
    /// Copies folders to the guest.
    fn upload(&self, items: &[Upload], timeout: Duration) -> Result<Output, TransportError>;
    /// Copies one file from the guest to `local` (through a temporary name beside it, renamed
    /// once complete), for `--fetch-dump`.
    fn download(
        &self,
        remote: &str,
        local: &std::path::Path,
        timeout: Duration,
    ) -> Result<Output, TransportError> {
        let _ = (remote, local, timeout);
        Err(TransportError {
            kind: Lost::Unsupported,
            message: "this transport cannot copy files from the VM".to_owned(),
            partial: Output::default(),
        })
    }
    /// Runs a program on this machine (snapshot commands).
    fn host(&self, argv: &[String], timeout: Duration) -> Result<Output, TransportError> {
        run_local(argv, None, timeout)
    }
    /// The command line [`Transport::guest`] runs, as printed by `--dry-run` (the encoded
    /// script abbreviated unless `full`).
    fn show_guest(&self, script: &str, full: bool) -> String;
    /// What [`Transport::upload`] runs, as printed by `--dry-run`.
    fn show_upload(&self, items: &[Upload]) -> String;
}

/// Runs `argv` here, with `stdin`, killing it after `timeout` (the one runner,
/// `base::process::run`): its output, or the error of a program that could not start or ran out
/// of time (with what it printed until then).
pub fn run_local(
    argv: &[String],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, TransportError> {
    let Some((program, rest)) = argv.split_first() else {
        return Err(TransportError {
            kind: Lost::Spawn,
            message: "an empty command".to_owned(),
            partial: Output::default(),
        });
    };
    let run = process::run(
        Command::new(program).args(rest),
        process::Options {
            stdin,
            timeout: Some(timeout),
            ..process::Options::default()
        },
    )
    .map_err(|e| TransportError {
        kind: Lost::Spawn,
        message: format!("cannot start `{program}`: {e}"),
        partial: Output::default(),
    })?;
    let output = Output {
        code: run.status.and_then(|s| s.code()),
        stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
        stderr: ps::plain_stderr(&String::from_utf8_lossy(&run.stderr)),
        duration: run.duration,
    };
    if run.timed_out {
        return Err(TransportError {
            kind: Lost::Timeout,
            message: format!("no answer within {}s", timeout.as_secs()),
            partial: output,
        });
    }
    Ok(output)
}

/// Downloads into `local` through `copy`, which writes `local.part` (the folder made first):
/// renamed to `local` once the copy succeeded, removed otherwise.
pub(crate) fn download_via(
    local: &std::path::Path,
    copy: impl FnOnce(&std::path::Path) -> Result<Output, TransportError>,
) -> Result<Output, TransportError> {
    let fail = |message: String| TransportError {
        kind: Lost::Spawn,
        message,
        partial: Output::default(),
    };
    if let Some(dir) = local.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("cannot make {}: {e}", dir.display())))?;
    }
    let mut part = local.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let out = copy(&part);
    match &out {
        Ok(o) if o.code == Some(0) && part.is_file() => {
            std::fs::rename(&part, local).map_err(|e| {
                fail(format!(
                    "cannot rename {} to {}: {e}",
                    part.display(),
                    local.display()
                ))
            })?;
        }
        Ok(o) if o.code == Some(0) => {
            return Err(fail(format!(
                "the copy to {} ended with exit code 0 but wrote no file",
                part.display()
            )));
        }
        _ => {
            let _ = std::fs::remove_file(&part);
        }
    }
    out
}

/// `powershell ... -EncodedCommand <N characters>` for printing.
pub(crate) fn abbreviated(command_line: &str) -> String {
    match command_line.rsplit_once(' ') {
        Some((head, b64)) if head.ends_with("-EncodedCommand") => {
            format!(
                "{head} <{} characters: the script above, UTF-16LE, base64>",
                b64.len()
            )
        }
        _ => command_line.to_owned(),
    }
}

/// Words as a POSIX shell line (single quotes where needed).
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=./:@,+%".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
