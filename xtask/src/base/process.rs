//! Running child processes ([`run`], the one runner: capture, stdin, time limit, progress lines),
//! and running work side by side.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::base::error::{Context, Result};

/// What happens to a child's stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdout {
    /// Kept apart from stderr ([`Captured::stdout`]).
    Capture,
    /// Copied to our stderr as it is, so that a `--json` stdout carries nothing else.
    ToStderr,
    /// Treated as stderr: shown through the progress callback and kept with it (for tools like
    /// pip that report on stdout).
    Merge,
}

/// How [`run`] runs a child.
pub struct Options<'a> {
    /// Its stdout.
    pub stdout: Stdout,
    /// What it reads on stdin (else nothing: stdin is null).
    pub stdin: Option<&'a [u8]>,
    /// Killed after this long.
    pub timeout: Option<Duration>,
    /// Each line of its stderr (and of its stdout with [`Stdout::Merge`]) as it arrives.
    pub progress: Option<&'a mut dyn FnMut(&str)>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            stdout: Stdout::Capture,
            stdin: None,
            timeout: None,
            progress: None,
        }
    }
}

/// What a child printed and how it ended.
#[derive(Debug)]
pub struct Captured {
    /// Its exit status; `None` if it could not be waited for.
    pub status: Option<ExitStatus>,
    /// Its stdout ([`Stdout::Capture`]).
    pub stdout: Vec<u8>,
    /// Its stderr (and its stdout with [`Stdout::Merge`]), in order.
    pub stderr: Vec<u8>,
    /// It was killed at its time limit (what it printed until then is kept).
    pub timed_out: bool,
    /// How long it ran.
    pub duration: Duration,
}

/// How long the output of an exited child is waited for: a process it started may keep the pipes
/// open.
const DRAIN: Duration = Duration::from_secs(2);

/// The one way xtask runs a child process: its output captured (stdout apart or not), stdin given
/// or null, killed at a time limit, stderr lines shown as they arrive.
///
/// # Errors
/// The child could not be started (the message names the program).
pub fn run(cmd: &mut Command, opts: Options<'_>) -> Result<Captured> {
    use std::sync::mpsc::{RecvTimeoutError, channel};
    let start = Instant::now();
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(if opts.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{program}`"))?;
    // Each reader sends its stream's lines (with their line ends) as they come.
    let (tx, rx) = channel::<(bool, Vec<u8>)>();
    let reader = |r: Box<dyn Read + Send>, is_err: bool| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            loop {
                let mut line = Vec::new();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send((is_err, line)).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    };
    reader(Box::new(child.stdout.take().expect("piped stdout")), false);
    reader(Box::new(child.stderr.take().expect("piped stderr")), true);
    drop(tx);
    if let (Some(input), Some(mut pipe)) = (opts.stdin, child.stdin.take()) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let mut progress = opts.progress;
    let mut out = Captured {
        status: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
        timed_out: false,
        duration: Duration::ZERO,
    };
    let mut exited: Option<Instant> = None;
    let mut open = true;
    loop {
        let next = if open {
            rx.recv_timeout(Duration::from_millis(20))
        } else {
            std::thread::sleep(Duration::from_millis(20));
            Err(RecvTimeoutError::Timeout)
        };
        match next {
            Ok((is_err, line)) => {
                let shown = is_err || opts.stdout == Stdout::Merge;
                if shown {
                    if let Some(show) = progress.as_mut() {
                        let text = String::from_utf8_lossy(&line);
                        show(text.trim_end_matches(['\n', '\r']));
                    }
                    out.stderr.extend_from_slice(&line);
                } else if opts.stdout == Stdout::ToStderr {
                    let _ = std::io::stderr().write_all(&line);
                } else {
                    out.stdout.extend_from_slice(&line);
                }
                continue;
            }
            // Both streams ended: only the exit is waited for now.
            Err(RecvTimeoutError::Disconnected) => open = false,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Some(t) = exited {
            if !open || t.elapsed() >= DRAIN {
                break;
            }
            continue;
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                out.status = Some(status);
                exited = Some(Instant::now());
            }
            Ok(None) if opts.timeout.is_some_and(|t| start.elapsed() >= t) => {
                let _ = child.kill();
                out.timed_out = true;
                out.status = child.wait().ok();
                exited = Some(Instant::now());
            }
            Ok(None) => {}
            Err(_) => exited = Some(Instant::now()),
        }
    }
    out.duration = start.elapsed();
    Ok(out)
}

/// Runs `cmd` with its stderr both shown (each line through `show`) and returned; its stdout is
/// copied to our stderr.
pub fn run_teeing_stderr(
    cmd: &mut Command,
    show: impl FnMut(&str),
) -> Result<(ExitStatus, String)> {
    run_teeing(cmd, Stdout::ToStderr, show)
}

/// Runs `cmd`; each line of its stderr (and of its stdout with [`Stdout::Merge`]) is shown
/// through `show` and returned.
pub fn run_teeing(
    cmd: &mut Command,
    stdout: Stdout,
    mut show: impl FnMut(&str),
) -> Result<(ExitStatus, String)> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = run(
        cmd,
        Options {
            stdout,
            progress: Some(&mut show),
            ..Options::default()
        },
    )?;
    let status = out
        .status
        .ok_or_else(|| crate::base::error::Error::new(format!("waiting for `{program}` failed")))?;
    Ok((status, String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// How many independent runs (drivers, emulations) to make at once: `$XTASK_JOBS`, or the number
/// of CPUs the system gives this process.
pub fn jobs() -> usize {
    std::env::var("XTASK_JOBS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// CPU seconds (user + system) used so far, as getrusage(2) counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSeconds {
    /// This process (xtask itself, all its threads).
    pub own: f64,
    /// The children it has waited for, and theirs (cargo, rustc, the emulator, osslsigncode...).
    pub children: f64,
}

impl CpuSeconds {
    /// What was used between `earlier` and `self`.
    #[must_use]
    pub fn since(self, earlier: CpuSeconds) -> CpuSeconds {
        CpuSeconds {
            own: (self.own - earlier.own).max(0.0),
            children: (self.children - earlier.children).max(0.0),
        }
    }
}

/// The CPU time used so far by this process and by its waited-for children; `None` where the
/// system does not say (not Unix, or getrusage failed).
#[must_use]
pub fn cpu_seconds() -> Option<CpuSeconds> {
    #[cfg(unix)]
    {
        fn of(who: libc::c_int) -> Option<f64> {
            // SAFETY: `rusage` is plain old data (integers and `timeval`s), for which all-zero
            // bytes are a valid value.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: `who` is RUSAGE_SELF or RUSAGE_CHILDREN, and `usage` is a valid, writable
            // `rusage` that outlives the call (getrusage(2) writes only into it).
            let rc = unsafe { libc::getrusage(who, &raw mut usage) };
            if rc != 0 {
                return None;
            }
            #[allow(clippy::cast_precision_loss)] // seconds of CPU: far below 2^52
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            Some(secs(usage.ru_utime) + secs(usage.ru_stime))
        }
        Some(CpuSeconds {
            own: of(libc::RUSAGE_SELF)?,
            children: of(libc::RUSAGE_CHILDREN)?,
        })
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `1.2s`, `35.0s`, `2m05s`.
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that burns CPU shows in `children`, and `since` subtracts.
    #[cfg(unix)]
    #[test]
    fn cpu_seconds_count_waited_children() {
        let before = cpu_seconds().expect("getrusage works on Unix");
        let status = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .expect("sh runs");
        assert!(status.success());
        let used = cpu_seconds()
            .expect("getrusage works on Unix")
            .since(before);
        assert!(used.children > 0.0, "{used:?}");
        assert!(used.own >= 0.0);
        let none = before.since(before);
        assert_eq!(none, CpuSeconds::default());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn elapsed_is_short() {
        assert_eq!(elapsed(Duration::from_millis(1234)), "1.2s");
        assert_eq!(elapsed(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn tee_keeps_stderr_and_the_status() {
        let mut seen = Vec::new();
        let (status, kept) = run_teeing_stderr(
            Command::new("sh").args(["-c", "echo out; echo one >&2; echo two >&2; exit 3"]),
            |l| {
                seen.push(l.to_owned());
            },
        )
        .unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(kept, "one\ntwo\n");
        assert_eq!(seen, ["one", "two"]);
    }

    #[test]
    fn the_runner_captures_feeds_stdin_and_keeps_the_streams_apart() {
        let mut lines = Vec::new();
        let out = run(
            Command::new("sh").args(["-c", "cat; echo err >&2; exit 5"]),
            Options {
                stdin: Some(b"in\n"),
                progress: Some(&mut |l: &str| lines.push(l.to_owned())),
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(out.status.and_then(|s| s.code()), Some(5));
        assert_eq!(
            (out.stdout.as_slice(), out.stderr.as_slice()),
            (&b"in\n"[..], &b"err\n"[..])
        );
        assert!(!out.timed_out);
        assert_eq!(lines, ["err"]);
    }

    #[test]
    fn the_time_limit_holds_whatever_the_child_does_with_its_pipes() {
        // It closes its pipes and sleeps: killed at the limit all the same.
        let start = Instant::now();
        let out = run(
            Command::new("sh").args(["-c", "echo early; exec >&- 2>&-; sleep 30"]),
            Options {
                timeout: Some(Duration::from_millis(300)),
                ..Options::default()
            },
        )
        .unwrap();
        assert!(out.timed_out);
        assert_eq!(out.stdout, b"early\n");
        assert!(start.elapsed() < Duration::from_secs(10));
        // A process it started keeps the pipes open after it exits: not waited for past DRAIN.
        let start = Instant::now();
        let out = run(
            Command::new("sh").args(["-c", "sleep 30 & echo done"]),
            Options::default(),
        )
        .unwrap();
        assert_eq!(out.status.and_then(|s| s.code()), Some(0));
        assert_eq!(out.stdout, b"done\n");
        assert!(start.elapsed() < DRAIN + Duration::from_secs(3));
    }

    #[test]
    fn merge_shows_and_keeps_stdout_too() {
        let (status, kept) = run_teeing(
            Command::new("sh").args(["-c", "echo out; sleep 0.1; echo err >&2"]),
            Stdout::Merge,
            |_| {},
        )
        .unwrap();
        assert!(status.success());
        assert_eq!(kept, "out\nerr\n");
    }
}
