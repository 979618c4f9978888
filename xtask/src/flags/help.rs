//! `--help` and the README's synopsis, written from the table.

use std::fmt::Write as _;

use super::table::{COMMANDS, CommandSpec, Opt};

/// `cargo xtask --help`: every command with its summary.
pub(crate) fn overview() -> String {
    let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut s = String::from(
        "cargo xtask: build, check and run the driver samples\n\nUSAGE: cargo xtask <COMMAND> [OPTIONS]\n\nCOMMANDS:\n",
    );
    for c in COMMANDS {
        let _ = writeln!(s, "    {:width$}  {}", c.name, c.summary);
    }
    s.push_str("\n`cargo xtask <COMMAND> --help` tells more.\n");
    s
}

/// How an option is spelled in the OPTIONS list: `-p, --package NAME`.
fn spelling(o: &Opt) -> String {
    let mut s = match o.short {
        Some(short) => format!("{short}, {}", o.long),
        None => o.long.to_owned(),
    };
    match (o.placeholder, o.default) {
        (Some(p), Some(_)) => {
            s.push_str(" [");
            s.push_str(p);
            s.push(']');
        }
        (Some(p), None) => {
            s.push(' ');
            s.push_str(p);
        }
        (None, _) => {}
    }
    s
}

/// `cargo xtask NAME --help`.
pub(crate) fn command(c: &CommandSpec) -> String {
    let mut s = format!("cargo xtask {}: {}\n\n", c.name, c.title);
    for (i, u) in c.usage.iter().enumerate() {
        let lead = if i == 0 { "USAGE: " } else { "       " };
        let _ = writeln!(s, "{lead}cargo xtask {u}");
    }
    if !c.about.is_empty() {
        let _ = write!(s, "\n{}\n", c.about);
    }
    let mut rows: Vec<(String, &str)> = c.options.iter().map(|o| (spelling(o), o.help)).collect();
    rows.push(("-h, --help".to_owned(), "this text"));
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 2;
    s.push_str("\nOPTIONS:\n");
    for (left, help) in rows {
        let mut lines = help.lines();
        let _ = writeln!(s, "    {left:width$}{}", lines.next().unwrap_or(""));
        for more in lines {
            let _ = writeln!(s, "    {:width$}{}", "", more.trim_start());
        }
    }
    s
}

/// The synopsis of every command, one line per usage form: the README's `## Commands` block must
/// be exactly this (a test checks it).
#[cfg(test)]
pub(crate) fn synopsis() -> Vec<String> {
    COMMANDS
        .iter()
        .flat_map(|c| c.usage.iter().map(|u| format!("cargo xtask {u}")))
        .collect()
}
