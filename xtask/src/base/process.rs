//! Running child processes: echoing their stderr while keeping it for the diagnosis of a failure.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::base::error::{Context, Result};

/// Where a child's stdout goes in [`run_teeing_stderr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdout {
    /// Copied to our stderr as it is, so that a `--json` stdout carries nothing else.
    ToStderr,
    /// Treated as stderr: shown through `show` and kept (for tools like pip that report on stdout).
    Merge,
}

/// Runs `cmd` with its stderr both shown (each line through `show`) and returned.
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
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{program}`"))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().expect("piped stdout");
    let out_tx = tx.clone();
    let out_thread = std::thread::spawn(move || {
        let mut stderr = std::io::stderr();
        for line in BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
        {
            if stdout == Stdout::Merge {
                let _ = out_tx.send(line);
            } else {
                let _ = writeln!(stderr, "{line}");
            }
        }
    });
    let err = child.stderr.take().expect("piped stderr");
    let err_thread = std::thread::spawn(move || {
        for line in BufReader::new(err)
            .lines()
            .map_while(std::result::Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut kept = String::new();
    // Ends when both readers have dropped their senders, at the end of the child's output.
    for line in rx {
        show(&line);
        kept.push_str(&line);
        kept.push('\n');
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{program}`"))?;
    let _ = out_thread.join();
    let _ = err_thread.join();
    Ok((status, kept))
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
