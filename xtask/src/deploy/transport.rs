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

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ps;

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

/// Runs `argv` here, with `stdin`, killing it after `timeout`.
pub fn run_local(
    argv: &[String],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, TransportError> {
    let start = Instant::now();
    let Some((program, rest)) = argv.split_first() else {
        return Err(TransportError {
            kind: Lost::Spawn,
            message: "an empty command".to_owned(),
            partial: Output::default(),
        });
    };
    let mut child = Command::new(program)
        .args(rest)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TransportError {
            kind: Lost::Spawn,
            message: format!("cannot start `{program}`: {e}"),
            partial: Output::default(),
        })?;
    // Readers keep what arrived in shared buffers, so that a command killed at its time limit
    // still shows its partial output, even if a process it started keeps the pipes open.
    let reader = |mut r: Box<dyn Read + Send>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let handle = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("reader buffer")
                    .extend_from_slice(&chunk[..n]);
            }
        });
        (buf, handle)
    };
    let (out, out_thread) = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let (err, err_thread) = reader(Box::new(child.stderr.take().expect("piped stderr")));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                timed_out = true;
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let drained = Instant::now();
    while !(out_thread.is_finished() && err_thread.is_finished())
        && drained.elapsed() < Duration::from_secs(2)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = |b: &Arc<Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&b.lock().expect("reader buffer")).into_owned()
    };
    let output = Output {
        code: status.and_then(|s| s.code()),
        stdout: text(&out),
        stderr: ps::plain_stderr(&text(&err)),
        duration: start.elapsed(),
    };
    if timed_out {
        return Err(TransportError {
            kind: Lost::Timeout,
            message: format!("no answer within {}s", timeout.as_secs()),
            partial: output,
        });
    }
    Ok(output)
}

/// A Windows VM's OpenSSH server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ssh {
    /// The account (else ssh's default: the config's, or the local user name).
    pub user: Option<String>,
    /// Host name or address.
    pub host: String,
    /// The port (else 22 or the config's).
    pub port: Option<u16>,
    /// More client options, each given as `-o OPTION` (`--ssh-option`), before the destination.
    pub options: Vec<String>,
    /// Client arguments placed before everything else (tests: `-F /dev/null`).
    pub raw_args: Vec<String>,
    /// Where `C:\` is in sftp paths: `/C:` for Windows' sftp server. Tests against a Linux
    /// server map the drive into a scratch folder instead.
    pub sftp_root: Option<String>,
}

/// Seconds ssh waits for the TCP connection.
const CONNECT_TIMEOUT: u32 = 15;

impl Ssh {
    /// A target `ssh://user@host:port`.
    pub fn new(user: Option<String>, host: String, port: Option<u16>) -> Self {
        Self {
            user,
            host,
            port,
            options: Vec::new(),
            raw_args: Vec::new(),
            sftp_root: None,
        }
    }

    fn common(&self) -> Vec<String> {
        let mut a: Vec<String> = self.raw_args.clone();
        for o in [
            "BatchMode=yes".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
            format!("ConnectTimeout={CONNECT_TIMEOUT}"),
            "ServerAliveInterval=5".to_owned(),
            "ServerAliveCountMax=3".to_owned(),
        ]
        .into_iter()
        .chain(self.options.iter().cloned())
        {
            a.push("-o".to_owned());
            a.push(o);
        }
        a
    }

    fn destination(&self, bracket_ipv6: bool) -> String {
        let host = if bracket_ipv6 && self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match &self.user {
            Some(u) => format!("{u}@{host}"),
            None => host,
        }
    }

    /// `ssh ... -- DEST COMMAND`.
    pub fn ssh_argv(&self, command: &str) -> Vec<String> {
        let mut a = vec!["ssh".to_owned(), "-T".to_owned()];
        a.extend(self.common());
        if let Some(p) = self.port {
            a.extend(["-p".to_owned(), p.to_string()]);
        }
        a.extend(["--".to_owned(), self.destination(false), command.to_owned()]);
        a
    }

    /// `sftp -b - ... -- DEST` (the batch comes on stdin).
    pub fn sftp_argv(&self) -> Vec<String> {
        let mut a = vec!["sftp".to_owned(), "-b".to_owned(), "-".to_owned()];
        a.extend(self.common());
        if let Some(p) = self.port {
            a.extend(["-P".to_owned(), p.to_string()]);
        }
        a.extend(["--".to_owned(), self.destination(true)]);
        a
    }

    /// The path sftp uses for Windows path `win`: `C:\A B\c` is `/C:/A B/c` on Windows' server.
    pub fn sftp_path(&self, win: &str) -> String {
        let forward = win.replace('\\', "/");
        match (&self.sftp_root, forward.split_once(':')) {
            (Some(root), Some((drive, rest))) => {
                format!("{}/{drive}{rest}", root.trim_end_matches('/'))
            }
            (None, Some(_)) => format!("/{forward}"),
            (_, None) => forward,
        }
    }

    /// The sftp batch that copies `items`: `put -r "LOCAL" "REMOTE"` per folder. Inside double
    /// quotes sftp takes `\` as an escape, and `put` expands globs in the local path, so `\`, `"`
    /// and the glob characters are escaped.
    pub fn sftp_batch(&self, items: &[Upload]) -> String {
        let q = |s: &str| {
            let mut out = String::from("\"");
            for c in s.chars() {
                if matches!(c, '\\' | '"' | '*' | '?' | '[' | ']') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
            out
        };
        let mut batch = String::new();
        for u in items {
            let _ = writeln!(
                batch,
                "put -r {} {}",
                q(&u.local.to_string_lossy()),
                q(&self.sftp_path(&u.remote))
            );
        }
        batch
    }

    /// Runs `command` through the remote shell as it is (the loopback tests run POSIX commands
    /// this way); [`Transport::guest`] sends the encoded PowerShell command line.
    pub fn exec(&self, command: &str, timeout: Duration) -> Result<Output, TransportError> {
        let out = run_local(&self.ssh_argv(command), None, timeout)?;
        if out.code == Some(255) {
            return Err(self.classify(out));
        }
        Ok(out)
    }

    /// An ssh failure (exit code 255) as a [`TransportError`] with the fix.
    fn classify(&self, out: Output) -> TransportError {
        let e = out.stderr.as_str();
        let target = self.destination(false);
        let port = self.port.map_or(String::new(), |p| format!(" -p {p}"));
        let known = match self.port {
            Some(p) => format!("[{}]:{p}", self.host),
            None => self.host.clone(),
        };
        let (kind, message) = if e.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || e.contains("Host key for") && e.contains("has changed")
        {
            (
                Lost::HostKeyChanged,
                format!(
                    "the host key of {target} is not the one in known_hosts: xtask never \
                     accepts a changed key. If the VM was reinstalled (or reverted to before its \
                     key was made), check the new key on the VM's console \
                     (ssh-keygen -lf C:\\ProgramData\\ssh\\ssh_host_ed25519_key.pub), then \
                     `ssh-keygen -R '{known}'` and connect once with `ssh{port} {target}`"
                ),
            )
        } else if e.contains("Host key verification failed") || e.contains("host key is known") {
            (
                Lost::HostKeyUnknown,
                format!(
                    "the host key of {target} is not known yet (host-key checking stays on): \
                     connect once with `ssh{port} {target}`, check the fingerprint against the \
                     VM's and accept it"
                ),
            )
        } else if e.contains("Permission denied") || e.contains("Too many authentication failures")
        {
            (
                Lost::Auth,
                format!(
                    "{target} refused the key: for an administrator account the public key goes \
                     in C:\\ProgramData\\ssh\\administrators_authorized_keys on the VM (README, \
                     \"Deploy to a VM\"); xtask never uses a password"
                ),
            )
        } else if e.contains("Connection refused") {
            (
                Lost::Refused,
                format!(
                    "nothing answers on {}, port {}: connection refused (sshd not running, or \
                     the VM still booting)",
                    self.host,
                    self.port.unwrap_or(22)
                ),
            )
        } else {
            (
                Lost::Unreachable,
                format!("cannot reach {target} over ssh, or the connection was lost"),
            )
        };
        let detail = crate::base::process::tail(e.trim(), 4);
        TransportError {
            kind,
            message: if detail.is_empty() {
                message
            } else {
                format!("{message}\n  ssh said: {}", detail.replace('\n', "\n  "))
            },
            partial: out,
        }
    }

    /// Copies `items` with sftp; fails with sftp's messages.
    pub fn put(&self, items: &[Upload], timeout: Duration) -> Result<Output, TransportError> {
        let batch = self.sftp_batch(items);
        let out = run_local(&self.sftp_argv(), Some(batch.as_bytes()), timeout)?;
        if out.code != Some(0) {
            let e = &out.stderr;
            if e.contains("Connection refused")
                || e.contains("Host key verification failed")
                || e.contains("Permission denied (")
                || e.contains("Connection closed")
                || e.contains("Connection timed out")
                || e.contains("HAS CHANGED")
            {
                return Err(self.classify(out));
            }
        }
        Ok(out)
    }
}

impl Transport for Ssh {
    fn guest(&self, script: &str, timeout: Duration) -> Result<Output, TransportError> {
        self.exec(&ps::command_line(script), timeout)
    }

    fn upload(&self, items: &[Upload], timeout: Duration) -> Result<Output, TransportError> {
        self.put(items, timeout)
    }

    fn show_guest(&self, script: &str, full: bool) -> String {
        let mut argv = self.ssh_argv(&ps::command_line(script));
        if !full && let Some(last) = argv.last_mut() {
            *last = abbreviated(last);
        }
        shell_words(&argv)
    }

    fn show_upload(&self, items: &[Upload]) -> String {
        format!(
            "{} <<'EOF'\n{}EOF",
            shell_words(&self.sftp_argv()),
            self.sftp_batch(items)
        )
    }
}

/// `powershell ... -EncodedCommand <N characters>` for printing.
fn abbreviated(command_line: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Ssh {
        Ssh::new(Some("admin".into()), "testvm".into(), Some(2222))
    }

    #[test]
    fn ssh_keeps_host_key_checking_on_and_never_prompts() {
        let argv = target().ssh_argv("whoami");
        assert_eq!(
            shell_words(&argv),
            "ssh -T -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=15 \
             -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -p 2222 -- admin@testvm whoami"
        );
        let argv = target().sftp_argv();
        assert_eq!(
            shell_words(&argv),
            "sftp -b - -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=15 \
             -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -P 2222 -- admin@testvm"
        );
        let v6 = Ssh::new(None, "fe80::1".into(), None);
        assert_eq!(v6.sftp_argv().last().unwrap(), "[fe80::1]");
        assert_eq!(v6.ssh_argv("x")[v6.ssh_argv("x").len() - 2], "fe80::1");
    }

    #[test]
    fn sftp_paths_and_batches_quote_spaces() {
        let t = target();
        assert_eq!(
            t.sftp_path(r"C:\Test Drivers\cm-filter"),
            "/C:/Test Drivers/cm-filter"
        );
        let batch = t.sftp_batch(&[Upload {
            local: "/home/me/my \"drivers\"/[x]/cm-filter".into(),
            remote: r"C:\Test Drivers\cm-filter".into(),
        }]);
        assert_eq!(
            batch,
            "put -r \"/home/me/my \\\"drivers\\\"/\\[x\\]/cm-filter\" \"/C:/Test Drivers/cm-filter\"\n"
        );
        let mut mapped = t;
        mapped.sftp_root = Some("/tmp/vm/".into());
        assert_eq!(mapped.sftp_path(r"C:\A\b"), "/tmp/vm/C/A/b");
    }

    #[test]
    fn the_printed_guest_command_abbreviates_the_payload() {
        let shown = target().show_guest("Say 1", false);
        assert!(
            shown.ends_with(
                "admin@testvm 'powershell -NoProfile -NonInteractive -EncodedCommand <16 characters: the script above, UTF-16LE, base64>'"
            ),
            "{shown}"
        );
        let full = target().show_guest("Say 1", true);
        assert!(full.ends_with(&format!("-EncodedCommand {}'", ps::encode("Say 1"))));
    }

    #[test]
    fn shell_words_quote_what_a_shell_would_read() {
        let w = |a: &[&str]| shell_words(&a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(w(&["a", "b c", "it's", ""]), "a 'b c' 'it'\\''s' ''");
    }

    #[test]
    fn ssh_failures_are_classified_with_their_fix() {
        let t = target();
        let lost = |stderr: &str| {
            t.classify(Output {
                code: Some(255),
                stderr: stderr.into(),
                ..Output::default()
            })
        };
        let e = lost("ssh: connect to host testvm port 2222: Connection refused\r\n");
        assert_eq!(e.kind, Lost::Refused);
        assert!(e.vm_gone());
        let e = lost(
            "@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
             Host key verification failed.\n",
        );
        assert_eq!(e.kind, Lost::HostKeyChanged);
        assert!(
            e.message.contains("ssh-keygen -R '[testvm]:2222'"),
            "{}",
            e.message
        );
        assert!(!e.vm_gone());
        let e = lost(
            "No ED25519 host key is known for [testvm]:2222 and you have requested strict checking.\nHost key verification failed.\n",
        );
        assert_eq!(e.kind, Lost::HostKeyUnknown);
        let e = lost("admin@testvm: Permission denied (publickey,keyboard-interactive).\n");
        assert_eq!(e.kind, Lost::Auth);
        assert!(e.message.contains("administrators_authorized_keys"));
        let e = lost("Timeout, server testvm not responding.\n");
        assert_eq!(e.kind, Lost::Unreachable);
        assert!(e.vm_gone());
    }

    #[test]
    fn local_commands_time_out_and_keep_their_streams() {
        let sh = |s: &str| vec!["sh".to_owned(), "-c".to_owned(), s.to_owned()];
        let out = run_local(
            &sh("echo out; echo err >&2; exit 4"),
            None,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (Some(4), "out\n", "err\n")
        );
        let out = run_local(&sh("cat"), Some(b"in"), Duration::from_secs(10)).unwrap();
        assert_eq!(out.stdout, "in");
        let start = Instant::now();
        let e = run_local(
            &sh("echo started; sleep 30"),
            None,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert_eq!(e.kind, Lost::Timeout);
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(e.partial.stdout, "started\n");
        let e = run_local(
            &["/nonexistent/program".to_owned()],
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(e.kind, Lost::Spawn);
    }

    #[test]
    fn hyperv_wrappers_use_powershell_direct() {
        let h = HyperV {
            vm: "Win 11 Test".into(),
            credential: r"C:\Users\me\.config\windows-callback-drivers\hyperv-Win 11 Test.xml"
                .into(),
        };
        let w = h.guest_wrapper("Say 1");
        assert!(w.contains("New-PSSession -VMName 'Win 11 Test' -Credential $cred"));
        assert!(w.contains(&format!("-ArgumentList '{}'", ps::encode("Say 1"))));
        assert!(w.contains("Start-Process -FilePath powershell.exe"));
        let u = h.upload_wrapper(&[Upload {
            local: r"C:\src\target\packages\x64\debug\cm-filter".into(),
            remote: r"C:\ProgramData\windows-callback-drivers\deploy\cm-filter".into(),
        }]);
        assert!(u.contains("Copy-Item -ToSession $s -LiteralPath 'C:\\src\\target\\packages\\x64\\debug\\cm-filter' -Destination 'C:\\ProgramData\\windows-callback-drivers\\deploy\\cm-filter' -Recurse -Force"));
        let argv = HyperV::host_argv(&w);
        assert_eq!(argv[0], "powershell.exe");
        assert_eq!(ps::decode(&argv[4]).as_deref(), Some(w.as_str()));
        if !cfg!(windows) {
            let e = h.guest("Say 1", Duration::from_secs(1)).unwrap_err();
            assert_eq!(e.kind, Lost::Unsupported);
            assert!(e.message.contains("--dry-run"), "{}", e.message);
        }
    }
}
