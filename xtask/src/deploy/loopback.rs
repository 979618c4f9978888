//! The ssh transport against a real OpenSSH server: each test starts `sshd -D -f <config> -e` on
//! 127.0.0.1 and a free high port, with a throw-away host key, user key and authorized_keys in a
//! scratch folder (nothing of the system's sshd or of `~/.ssh` is read or touched: the client
//! runs with `-F /dev/null` and the scratch known_hosts and key; the account's shell start-up
//! files are not run), and stops it at the end.
//!
//! The server is Linux, so the transport is tested with POSIX commands: exit codes, stdout and
//! stderr, a time limit, connection refused, a changed or unknown host key, a refused key, sftp
//! copies of folders with spaces. Then a whole plan runs through it against a stand-in
//! `powershell` on the server's PATH: a shell script that checks its arguments, decodes the
//! `-EncodedCommand` script with base64 and iconv (independent of our encoder) and answers what
//! the test recorded for that exact script (`fake.rs`), hashing the files the real sftp copied.
//!
//! These tests are `#[ignore]`d in a plain `cargo test`; `cargo xtask test` runs them (the
//! `deploy` stage) when OpenSSH's server is installed, and says so loudly when it is not
//! (`.ci/run` installs it).

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::exec::{self, Pace};
use super::fake::FakeVm;
use super::plan::{self, Options, Package, Run, Via};
use super::report::{self, Status, Unload};
use super::transport::{Lost, Ssh, Transport, Upload};

/// The programs the tests need.
pub const PROGRAMS: [&str; 4] = ["sshd", "ssh", "sftp", "ssh-keygen"];

/// Where `program` is: PATH, then /usr/sbin and /usr/bin (sshd lives in sbin).
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A throw-away OpenSSH server on 127.0.0.1.
pub struct Sshd {
    /// Its scratch folder.
    pub dir: PathBuf,
    child: Child,
    /// Its port.
    pub port: u16,
    /// The account the tests log in as (the current user).
    pub user: String,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn run(program: &str, args: &[&str]) {
    let out = Command::new(find(program).unwrap_or_else(|| program.into()))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn keygen(path: &Path) {
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "xtask-test",
            "-f",
            &path.to_string_lossy(),
        ],
    );
}

impl Sshd {
    /// Starts a server; panics with the reason if it cannot (the suite checks for OpenSSH first).
    pub fn start() -> Self {
        for p in PROGRAMS {
            assert!(
                find(p).is_some(),
                "`{p}` is not installed: these tests need OpenSSH's server and client \
                 (Debian: apt-get install openssh-server openssh-client)"
            );
        }
        let dir = std::env::temp_dir().join(format!(
            "xtask-sshd-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        keygen(&dir.join("host_key"));
        keygen(&dir.join("user_key"));
        std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
        std::fs::write(dir.join("bin/powershell"), FAKE_POWERSHELL).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.join("bin/powershell"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        // sshd running as root wants its privilege-separation folder (the Debian service makes it
        // at boot; an empty folder of the system's runtime directory).
        if user == "root" && !Path::new("/run/sshd").exists() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        // The server runs each command with the account's shell (`$SHELL -c`). Bash reads
        // ~/.bashrc when it finds itself started by sshd at shell level 1 (SSH_SOURCE_BASHRC, as
        // Debian builds it; bash's shell.c, run_startup_files), and an account's .bashrc can be
        // costly (pyenv's init runs a dozen programs: two thirds of these tests' CPU on a machine
        // with it) and can change PATH. A Windows VM's OpenSSH runs its default shell without
        // either. `SHLVL=1` in the session makes bash's level 2, so it reads no start-up file.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile none\n\
                     AuthorizedKeysFile {d}/authorized_keys\nPubkeyAuthentication yes\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                     StrictModes no\nPermitRootLogin prohibit-password\nAllowUsers {user}\n\
                     Subsystem sftp internal-sftp\nSetEnv PATH={d}/bin:/usr/bin:/bin SHLVL=1\n\
                     MaxStartups 50\nLogLevel VERBOSE\n",
                    d = dir.display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
            let mut child = Command::new(find("sshd").unwrap())
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        dir,
                        child,
                        port,
                        user,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            last_error = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
        }
        panic!("sshd did not start:\n{last_error}");
    }

    /// The host key line for known_hosts.
    fn known_host(&self, key: &Path) -> String {
        let pub_key = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let mut words = pub_key.split_whitespace();
        format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            words.next().unwrap(),
            words.next().unwrap()
        )
    }

    /// A client that knows this server's host key and holds the user key.
    pub fn client(&self) -> Ssh {
        let known = self.dir.join("known_hosts");
        std::fs::write(&known, self.known_host(&self.dir.join("host_key"))).unwrap();
        self.client_with(&known, &self.dir.join("user_key"))
    }

    fn client_with(&self, known_hosts: &Path, key: &Path) -> Ssh {
        let mut s = Ssh::new(Some(self.user.clone()), "127.0.0.1".into(), Some(self.port));
        s.raw_args = vec!["-F".into(), "/dev/null".into()];
        s.options = vec![
            format!("UserKnownHostsFile={}", known_hosts.display()),
            "GlobalKnownHostsFile=/dev/null".into(),
            format!("IdentityFile={}", key.display()),
            "IdentitiesOnly=yes".into(),
            "IdentityAgent=none".into(),
        ];
        s.sftp_root = Some(self.dir.join("vm").to_string_lossy().into_owned());
        s
    }

    /// What the server logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The stand-in for powershell.exe on the loopback "VM". It refuses any other arguments than
/// the four the transport sends, decodes the script with base64 and iconv, and answers from
/// `answers/<sha256 of the script>`: `.sh` (run), else `.out` and `.code`; a script with no
/// recorded answer fails with code 99.
const FAKE_POWERSHELL: &str = r#"#!/bin/sh
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "$#" -ne 4 ] || [ "$1" != -NoProfile ] || [ "$2" != -NonInteractive ] || [ "$3" != -EncodedCommand ]; then
  echo "fake powershell: unexpected arguments ($#): $*" >&2
  exit 64
fi
printf '%s' "$4" | base64 -d | iconv -f UTF-16LE -t UTF-8 > "$here/last.ps1" || exit 65
sum=$(sha256sum "$here/last.ps1" | cut -d' ' -f1)
echo "$sum $(head -n 1 "$here/last.ps1")" >> "$here/seen"
a="$here/answers/$sum"
if [ -f "$a.sh" ]; then sh "$a.sh"; exit $?; fi
if [ ! -f "$a.out" ]; then
  echo "fake powershell: no answer recorded for: $(head -n 1 "$here/last.ps1")" >&2
  exit 99
fi
cat "$a.out"
exit "$(cat "$a.code")"
"#;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
#[ignore = "runs a real OpenSSH server on 127.0.0.1: cargo xtask test runs it"]
fn loopback_commands_return_exit_codes_stdout_and_stderr() {
    let sshd = Sshd::start();
    let c = sshd.client();
    let out = c
        .exec("echo out; echo 'to stderr' >&2; exit 7", secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(out.code, Some(7));
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "to stderr\n");
    let out = c.exec("printf 'a b\\n'", secs(30)).unwrap();
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "a b\n"));
    // Commands run in the environment the server declares, not one the account's shell start-up
    // files made (`Sshd::start`: SHLVL).
    let out = c.exec("printf '%s' \"$PATH\"", secs(30)).unwrap();
    assert_eq!(
        out.stdout,
        format!("{}/bin:/usr/bin:/bin", sshd.dir.display())
    );
}

#[test]
#[ignore = "runs a real OpenSSH server on 127.0.0.1: cargo xtask test runs it"]
fn loopback_uploads_copy_folders_with_spaces() {
    let sshd = Sshd::start();
    let c = sshd.client();
    let local = sshd.dir.join("local packages/cm-filter");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("cm-filter.sys"), b"MZ\x00\x01binary\xff").unwrap();
    std::fs::write(local.join("a file with spaces.txt"), "text").unwrap();
    // The VM's C:\ is <scratch>/vm/C on this server (the sftp mapping of the tests).
    let remote_parent = sshd.dir.join("vm/C/Test Drivers/it's deploy");
    std::fs::create_dir_all(&remote_parent).unwrap();
    let items = [Upload {
        local: local.clone(),
        remote: r"C:\Test Drivers\it's deploy\cm-filter".into(),
    }];
    let out = c
        .upload(&items, secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(out.code, Some(0), "{out:?}");
    let copied = remote_parent.join("cm-filter");
    assert_eq!(
        std::fs::read(copied.join("cm-filter.sys")).unwrap(),
        b"MZ\x00\x01binary\xff"
    );
    assert_eq!(
        std::fs::read_to_string(copied.join("a file with spaces.txt")).unwrap(),
        "text"
    );
    // A destination whose folder does not exist: sftp's own message, a failed copy.
    let out = c
        .upload(
            &[Upload {
                local,
                remote: r"C:\missing\folder\cm-filter".into(),
            }],
            secs(30),
        )
        .unwrap();
    assert_ne!(out.code, Some(0));
    assert!(!out.stderr.is_empty());
}

#[test]
#[ignore = "runs a real OpenSSH server on 127.0.0.1: cargo xtask test runs it"]
fn loopback_one_connection_serves_every_command_and_copy() {
    let sshd = Sshd::start();
    let logins = || sshd.log().matches("Accepted publickey").count();
    // Without reuse, each command is a login of its own.
    let plain = sshd.client();
    for _ in 0..2 {
        assert_eq!(plain.exec("true", secs(30)).unwrap().code, Some(0));
    }
    assert_eq!(logins(), 2, "{}", sshd.log());
    let mut shared = sshd.client();
    let dir = sshd.dir.join("ctl");
    assert!(shared.reuse_connections(dir.clone()).unwrap());
    let start = Instant::now();
    for i in 0..3 {
        let out = shared
            .exec(&format!("echo {i}; exit {i}"), secs(30))
            .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (Some(i), format!("{i}\n").as_str())
        );
    }
    // The shared connection goes to the background: no command waits for it.
    assert!(start.elapsed() < secs(6), "{:?}", start.elapsed());
    let local = sshd.dir.join("pkg");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("f.txt"), "x").unwrap();
    std::fs::create_dir_all(sshd.dir.join("vm/C/d")).unwrap();
    let out = shared
        .upload(
            &[Upload {
                local,
                remote: r"C:\d\pkg".into(),
            }],
            secs(30),
        )
        .unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(sshd.dir.join("vm/C/d/pkg/f.txt").is_file());
    // Three commands and a copy: one more login.
    assert_eq!(logins(), 3, "{}", sshd.log());
    let socket = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(socket, 1, "one control socket");
    shared.close();
    assert!(!dir.exists());
    // Closed: the next command logs in again (and starts a new shared connection).
    assert!(shared.reuse_connections(dir.clone()).unwrap());
    assert_eq!(shared.exec("true", secs(30)).unwrap().code, Some(0));
    assert_eq!(logins(), 4, "{}", sshd.log());
    shared.close();
}

#[test]
#[ignore = "runs a real OpenSSH server on 127.0.0.1: cargo xtask test runs it"]
fn loopback_a_command_past_its_time_limit_is_killed() {
    let sshd = Sshd::start();
    let c = sshd.client();
    let start = Instant::now();
    // The limit counts the ssh login too: 5 s leaves a loaded machine time to log in and print
    // `begun` (2 s did not, beside other stages), and ending well before the command's 60 s
    // shows it was killed, not waited for.
    let e = c.exec("echo begun; sleep 60", secs(5)).unwrap_err();
    assert_eq!(e.kind, Lost::Timeout, "{e}");
    assert!(e.vm_gone());
    assert!(start.elapsed() < secs(30), "{:?}", start.elapsed());
    assert_eq!(e.partial.stdout, "begun\n");
    // The server still answers.
    assert_eq!(c.exec("true", secs(30)).unwrap().code, Some(0));
}

#[test]
#[ignore = "runs a real OpenSSH server on 127.0.0.1: cargo xtask test runs it"]
fn loopback_connection_refused_is_named() {
    let sshd = Sshd::start();
    let mut c = sshd.client();
    c.port = Some(free_port());
    let e = c.exec("true", secs(30)).unwrap_err();
    assert_eq!(e.kind, Lost::Refused, "{e}");
    assert!(e.message.contains("connection refused"), "{e}");
    let e = c
        .upload(
            &[Upload {
                local: sshd.dir.join("bin"),
                remote: r"C:\x".into(),
            }],
            secs(30),
        )
        .unwrap_err();
    assert_eq!(e.kind, Lost::Refused, "{e}");
}

#[test]
#[ignore = "runs a real OpenSSH server on 127.0.0.1: cargo xtask test runs it"]
fn loopback_host_keys_are_checked() {
    let sshd = Sshd::start();
    // A known_hosts entry with another key for [127.0.0.1]:port: a changed host key.
    keygen(&sshd.dir.join("other_host_key"));
    let wrong = sshd.dir.join("wrong_known_hosts");
    std::fs::write(&wrong, sshd.known_host(&sshd.dir.join("other_host_key"))).unwrap();
    let c = sshd.client_with(&wrong, &sshd.dir.join("user_key"));
    let e = c.exec("true", secs(30)).unwrap_err();
    assert_eq!(e.kind, Lost::HostKeyChanged, "{e}");
    assert!(
        e.message
            .contains(&format!("ssh-keygen -R '[127.0.0.1]:{}'", sshd.port)),
        "{e}"
    );
    assert!(!e.vm_gone());
    // No entry at all: unknown, never accepted.
    let empty = sshd.dir.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let c = sshd.client_with(&empty, &sshd.dir.join("user_key"));
    let e = c.exec("true", secs(30)).unwrap_err();
    assert_eq!(e.kind, Lost::HostKeyUnknown, "{e}");
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "",
        "nothing was added"
    );
    // sftp refuses the same way.
    let e = c
        .upload(
            &[Upload {
                local: sshd.dir.join("bin"),
                remote: r"C:\x".into(),
            }],
            secs(30),
        )
        .unwrap_err();
    assert_eq!(e.kind, Lost::HostKeyUnknown, "{e}");
}

#[test]
#[ignore = "runs a real OpenSSH server on 127.0.0.1: cargo xtask test runs it"]
fn loopback_a_key_the_server_does_not_know_is_refused() {
    let sshd = Sshd::start();
    keygen(&sshd.dir.join("stranger_key"));
    let known = sshd.dir.join("known_hosts");
    std::fs::write(&known, sshd.known_host(&sshd.dir.join("host_key"))).unwrap();
    let c = sshd.client_with(&known, &sshd.dir.join("stranger_key"));
    let e = c.exec("true", secs(30)).unwrap_err();
    assert_eq!(e.kind, Lost::Auth, "{e}");
    assert!(e.message.contains("administrators_authorized_keys"), "{e}");
}

#[test]
#[ignore = "runs a real OpenSSH server on 127.0.0.1: cargo xtask test runs it"]
fn loopback_the_encoded_command_survives_the_remote_shell() {
    let sshd = Sshd::start();
    let c = sshd.client();
    let script =
        "# xtask deploy: a test\nSay 'it''s \"quoted\" $env:X `n & | > < % ^ ; — ünï 😀'\n";
    let mut h = Sha256::new();
    h.update(script.as_bytes());
    let sum = driver_package::cert::hex(&h.finalize()).to_lowercase();
    let answers = sshd.dir.join("answers");
    std::fs::create_dir_all(&answers).unwrap();
    std::fs::write(
        answers.join(format!("{sum}.out")),
        "#xtask:section echo\nok\n",
    )
    .unwrap();
    std::fs::write(answers.join(format!("{sum}.code")), "3").unwrap();
    let out = c
        .guest(script, secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(
        std::fs::read_to_string(sshd.dir.join("last.ps1")).unwrap(),
        script,
        "the script decoded on the server by base64 and iconv"
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(3), "#xtask:section echo\nok\n")
    );
}

/// Records the fake VM's answer to every guest script of `plan` (in the order the plan runs
/// them) under `answers/`, the copy check as a hook that hashes what sftp really copied.
fn record_answers(sshd: &Sshd, plan: &plan::Plan, packages: &[Package]) {
    let answers = sshd.dir.join("answers");
    std::fs::create_dir_all(&answers).unwrap();
    let mut vm = FakeVm::new();
    let known: Vec<(String, String)> = packages
        .iter()
        .map(|p| (p.service.clone(), p.driver.clone()))
        .collect();
    let vm_dir = |win: &str| {
        sshd.dir
            .join("vm/C")
            .join(win.trim_start_matches("C:\\").replace('\\', "/"))
    };
    let remote = vm_dir(&plan.options.remote_dir);
    std::fs::create_dir_all(&remote).unwrap();
    for step in plan.steps() {
        let Run::Guest(script) = &step.run else {
            continue;
        };
        let mut h = Sha256::new();
        h.update(script.as_bytes());
        let sum = driver_package::cert::hex(&h.finalize()).to_lowercase();
        let base = answers.join(&sum);
        match step.id {
            "check-copy" => {
                let mut hook = String::new();
                let plan::Check::Copy(folders) = &step.check else {
                    panic!("check-copy checks the copy")
                };
                for (folder, _) in folders {
                    let d = remote.join(folder);
                    let _ = writeln!(
                        hook,
                        "echo '#xtask:section files {folder}'\ncd '{dir}' || exit 1\n\
                         for f in *; do printf '%s %s\\n' \"$(sha256sum \"$f\" | cut -d' ' -f1 | tr a-f A-F)\" \"$f\"; done",
                        dir = d.display()
                    );
                }
                std::fs::write(base.with_extension("sh"), hook).unwrap();
            }
            "remove-files" => {
                let dirs: Vec<String> = packages
                    .iter()
                    .map(|p| p.driver.as_str())
                    .chain([plan::HELPERS_FOLDER])
                    .map(|d| format!("'{}'", remote.join(d).display()))
                    .collect();
                std::fs::write(
                    base.with_extension("sh"),
                    format!("rm -rf {}\n", dirs.join(" ")),
                )
                .unwrap();
            }
            _ => {
                let (code, out) = vm.answer(script, &known);
                std::fs::write(base.with_extension("out"), out).unwrap();
                std::fs::write(base.with_extension("code"), code.to_string()).unwrap();
            }
        }
    }
}

/// A real package folder for `p` (files whose hashes the manifest lists).
fn package_folder(dir: &Path, mut p: Package) -> Package {
    let folder = dir.join("target/packages/x64/debug").join(&p.driver);
    std::fs::create_dir_all(&folder).unwrap();
    p.files.clear();
    for (name, bytes) in [
        (format!("{}.sys", p.driver), b"MZ signed image".to_vec()),
        (format!("{}.inf", p.driver), b"[Version]\r\n".to_vec()),
        (
            driver_package::cert::CERT_FILE.to_owned(),
            b"0\x82 der".to_vec(),
        ),
    ] {
        std::fs::write(folder.join(&name), &bytes).unwrap();
        p.files.push((
            name,
            driver_package::cert::hex(&Sha256::digest(&bytes)).to_ascii_uppercase(),
        ));
    }
    p.dir = folder;
    p
}

#[test]
#[ignore = "runs a real OpenSSH server on 127.0.0.1: cargo xtask test runs it"]
fn loopback_a_whole_plan_runs_on_two_vms_in_parallel() {
    let vms = [Sshd::start(), Sshd::start()];
    let mut plans = Vec::new();
    let mut transports = Vec::new();
    for sshd in &vms {
        let packages = [
            package_folder(&sshd.dir, plan::tests::cm_filter()),
            package_folder(&sshd.dir, plan::tests::ex_callback()),
        ];
        let helpers = sshd.dir.join("helpers").join(plan::HELPERS_FOLDER);
        plan::write_helpers(&helpers).unwrap();
        let options = Options {
            remote_dir: r"C:\Test Drivers\deploy".into(),
            helpers_dir: helpers,
            ..Options::default()
        };
        let name = format!("ssh://{}@127.0.0.1:{}", sshd.user, sshd.port);
        let p = plan::build(&name, &Via::Ssh, &packages, &options).unwrap();
        record_answers(sshd, &p, &packages);
        plans.push(p);
        // As `deploy` runs it: one shared connection per VM.
        let mut client = sshd.client();
        assert!(client.reuse_connections(sshd.dir.join("ctl")).unwrap());
        transports.push(client);
    }
    let pairs: Vec<(&plan::Plan, &dyn Transport)> = plans
        .iter()
        .zip(&transports)
        .map(|(p, t)| (p, t as &dyn Transport))
        .collect();
    let lines = std::sync::Mutex::new(Vec::new());
    let reports = super::execute_all(
        &pairs,
        &|target, line| {
            lines.lock().unwrap().push(format!("[{target}] {line}"));
        },
        Pace::default(),
    );
    for t in &transports {
        t.close();
    }
    assert_eq!(reports.len(), 2);
    for (r, sshd) in reports.iter().zip(&vms) {
        // Every command and copy of the plan over one login.
        assert_eq!(
            sshd.log().matches("Accepted publickey").count(),
            1,
            "{}",
            sshd.log()
        );
        let text = report::render(r);
        assert!(
            r.ok(),
            "{text}\nseen by the VM:\n{}\n{}",
            std::fs::read_to_string(sshd.dir.join("seen")).unwrap_or_default(),
            sshd.log()
        );
        assert!(r.setup.iter().all(|s| s.status == Status::Passed), "{text}");
        assert!(
            r.drivers.iter().all(|d| d.unload == Unload::Clean),
            "{text}"
        );
        assert!(
            text.contains("check-copy")
                && text.contains("7 file(s), each with the manifest's SHA-256"),
            "{text}"
        );
        // The driver's own lines (its ETW events, through the trace session) beside the step
        // that logged them.
        assert!(
            text.contains("log: [cm-filter] Info: DriverEntry"),
            "{text}"
        );
        let start = r.drivers[0].steps.iter().find(|s| s.id == "start").unwrap();
        assert_eq!(start.log.len(), 1, "{text}");
        // The copy was real, and the plan's last step removed it.
        assert!(!sshd.dir.join("vm/C/Test Drivers/deploy/cm-filter").exists());
        let seen = std::fs::read_to_string(sshd.dir.join("seen")).unwrap();
        assert_eq!(
            seen.lines().count(),
            plans[0]
                .steps()
                .filter(|s| matches!(s.run, Run::Guest(_)))
                .count()
        );
    }
    let lines = lines.into_inner().unwrap();
    for sshd in &vms {
        let prefix = format!(
            "[ssh://{}@127.0.0.1:{}] cm-filter: stop passed",
            sshd.user, sshd.port
        );
        assert!(lines.iter().any(|l| l.starts_with(&prefix)), "{lines:#?}");
    }
}

#[test]
#[ignore = "runs a real OpenSSH server on 127.0.0.1: cargo xtask test runs it"]
fn loopback_a_failing_step_reports_the_vm_output() {
    let sshd = Sshd::start();
    let packages = [package_folder(&sshd.dir, plan::tests::cm_filter())];
    let p = plan::build("ssh://loopback", &Via::Ssh, &packages, &Options::default()).unwrap();
    // Nothing recorded: the first step gets the stand-in's "no answer" on stderr, code 99.
    let r = exec::execute(&p, &sshd.client(), &|_| {}, Pace::default());
    let f = r.failure.as_ref().unwrap();
    assert_eq!((f.scope.as_str(), f.step.as_str()), ("setup", "preflight"));
    assert!(
        f.output
            .contains("fake powershell: no answer recorded for: # xtask deploy: preflight"),
        "{}",
        f.output
    );
    assert!(matches!(r.setup[1].status, Status::NotRun(_)));
}

mod debugging;
