//! The ssh transport: the system's OpenSSH client (`ssh`, `sftp`).
//!
//! Connection reuse: where the client supports it, every command and copy of a deploy goes over
//! one connection (`ControlMaster=auto` with a control socket of our own, `ControlPersist` so
//! that it outlives each command; closed with `ssh -O exit` at the end). Windows' OpenSSH client
//! has no connection multiplexing (its Unix-domain control sockets are not ported), so on a
//! Windows host every command connects anew.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::{Lost, Output, Transport, TransportError, Upload, abbreviated, run_local, shell_words};
use crate::deploy::ps;

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
    /// The folder of the control socket when connections are reused ([`Ssh::reuse_connections`]);
    /// `None`: every command connects anew.
    pub control_dir: Option<PathBuf>,
}

/// Seconds the shared connection stays open after its last command (it is closed explicitly at
/// the end; this bounds a master left behind by a killed xtask).
const CONTROL_PERSIST: u32 = 60;

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
            control_dir: None,
        }
    }

    /// Whether this host's OpenSSH client can share one connection between commands.
    pub fn reuse_supported() -> bool {
        !cfg!(windows)
    }

    /// Reuses one connection for every command and copy, with its control socket in `dir` (made,
    /// private to the user). A Unix-domain socket path is limited to about 100 bytes: keep `dir`
    /// short (the socket's name, `%C`, is 40 characters). Does nothing where the client cannot
    /// ([`Ssh::reuse_supported`]); returns whether reuse is on.
    ///
    /// # Errors
    /// The folder cannot be made.
    pub fn reuse_connections(&mut self, dir: PathBuf) -> std::io::Result<bool> {
        if !Self::reuse_supported() {
            return Ok(false);
        }
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        self.control_dir = Some(dir);
        Ok(true)
    }

    /// The control socket's path pattern (`%C`: a hash of the host, port, user and more).
    fn control_path(&self) -> Option<String> {
        self.control_dir
            .as_ref()
            .map(|d| format!("ControlPath={}/%C", d.display()))
    }

    /// Closes the shared connection, if there is one (`ssh -O exit`), and removes its folder.
    pub fn close(&self) {
        let (Some(path), Some(dir)) = (self.control_path(), &self.control_dir) else {
            return;
        };
        let mut argv = vec!["ssh".to_owned()];
        argv.extend(self.raw_args.iter().cloned());
        argv.extend(["-o".to_owned(), path, "-O".to_owned(), "exit".to_owned()]);
        if let Some(p) = self.port {
            argv.extend(["-p".to_owned(), p.to_string()]);
        }
        argv.extend(["--".to_owned(), self.destination(false)]);
        let _ = run_local(&argv, None, Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(dir);
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
        // After the user's options: ssh takes the first value of an option, so an
        // `--ssh-option ControlMaster=no` wins.
        .chain(self.control_path().into_iter().flat_map(|path| {
            [
                "ControlMaster=auto".to_owned(),
                path,
                format!("ControlPersist={CONTROL_PERSIST}"),
            ]
        })) {
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

    /// The sftp batch that copies `items`: `put -r "LOCAL" "REMOTE"` per folder, each path
    /// quoted by [`sftp_quote`].
    pub fn sftp_batch(&self, items: &[Upload]) -> String {
        let mut batch = String::new();
        for u in items {
            let _ = writeln!(
                batch,
                "put -r {} {}",
                sftp_quote(&u.local.to_string_lossy()),
                sftp_quote(&self.sftp_path(&u.remote))
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
    pub(super) fn classify(&self, out: Output) -> TransportError {
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

    /// The sftp batch that copies the file `remote` to `local`: `get "REMOTE" "LOCAL"`, each
    /// path quoted by [`sftp_quote`].
    pub fn sftp_get_batch(&self, remote: &str, local: &std::path::Path) -> String {
        format!(
            "get {} {}\n",
            sftp_quote(&self.sftp_path(remote)),
            sftp_quote(&local.to_string_lossy())
        )
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

    fn download(
        &self,
        remote: &str,
        local: &std::path::Path,
        timeout: Duration,
    ) -> Result<Output, TransportError> {
        super::download_via(local, |part| {
            let batch = self.sftp_get_batch(remote, part);
            let out = run_local(&self.sftp_argv(), Some(batch.as_bytes()), timeout)?;
            if out.code == Some(255) && out.stderr.contains("Connection") {
                return Err(self.classify(out));
            }
            Ok(out)
        })
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

/// `s` in double quotes for an sftp batch: inside them sftp takes `\` as an escape, and `put`
/// and `get` expand globs in their paths, so `\`, `"` and the glob characters are escaped.
fn sftp_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '*' | '?' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
