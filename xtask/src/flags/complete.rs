//! Shell completions for bash, zsh and fish, written from the table: commands, options, their
//! values (architectures, stages, shells, the workspace's drivers), files and folders.
//!
//! `cargo xtask` is `cargo` with the word `xtask`: each script completes `cargo xtask ...` and hands
//! any other `cargo ...` line to the completion `cargo` had before (rustup's, if installed).

use std::fmt::Write as _;

use super::table::{COMMANDS, CommandSpec, Opt, Values};
pub(crate) use crate::commands::completions::Shell;
use crate::commands::test::STAGES;

/// The completion script for `shell`; `drivers` are the names `-p` completes.
pub(crate) fn script(shell: Shell, drivers: &[String]) -> String {
    match shell {
        Shell::Bash => bash(drivers),
        Shell::Zsh => zsh(drivers),
        Shell::Fish => fish(drivers),
    }
}

/// The words a value of kind `v` completes to, if it is a list of words.
fn words(v: Values, drivers: &[String]) -> Option<Vec<String>> {
    let owned = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect();
    match v {
        Values::Choices(w) => Some(owned(w)),
        Values::Drivers => Some(drivers.to_vec()),
        Values::Stages => Some(STAGES.iter().map(|(s, _)| (*s).to_owned()).collect()),
        Values::Commands => Some(COMMANDS.iter().map(|c| c.name.to_owned()).collect()),
        Values::None | Values::Text | Values::File | Values::Dir => None,
    }
}

/// Words joined for a single-quoted shell string. Package names, stages and choices are plain
/// words; anything else would be a bug in the table.
fn word_list(words: &[String]) -> String {
    for w in words {
        assert!(
            w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:/.".contains(c)),
            "completions: `{w}` is not a plain word"
        );
    }
    words.join(" ")
}

/// Every spelling of `c`'s options, `-h` and `--help` included.
fn spellings(c: &CommandSpec) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for o in c.options {
        all.push(o.long.to_owned());
        if let Some(s) = o.short {
            all.push(s.to_owned());
        }
    }
    all.push("--help".to_owned());
    all.push("-h".to_owned());
    all
}

/// The options whose value follows them as the next word (not those whose value may be left out:
/// after `--verifier` the next word is completed as usual).
fn valued(c: &CommandSpec) -> impl Iterator<Item = &Opt> {
    c.options
        .iter()
        .filter(|o| o.values != Values::None && o.default.is_none())
}

fn names(o: &Opt) -> String {
    match o.short {
        Some(s) => format!("{s}|{}", o.long),
        None => o.long.to_owned(),
    }
}

fn commands() -> String {
    COMMANDS
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(" ")
}

/// bash's and zsh's `case PREV in` block of command `c` (the same `case` syntax but for zsh's
/// opening parenthesis, `open`): for each option taking a value, the reply for that value; returns
/// the reply for a positional argument.
fn value_cases(
    s: &mut String,
    c: &CommandSpec,
    prev: &str,
    open: &str,
    reply: &dyn Fn(Values) -> String,
) -> String {
    let valued: Vec<&Opt> = valued(c).collect();
    if !valued.is_empty() {
        let _ = writeln!(s, "            case {prev} in");
        for o in valued {
            let _ = writeln!(
                s,
                "                {open}{}) {}; return ;;",
                names(o),
                reply(o.values)
            );
        }
        s.push_str("            esac\n");
    }
    c.positional
        .as_ref()
        .map_or(":".to_owned(), |p| reply(p.values))
}

fn bash(drivers: &[String]) -> String {
    let mut s = String::from(
        "# bash completion of `cargo xtask`, written by `cargo xtask completions bash`.\n\
         _cargo_xtask_fallback=$(complete -p cargo 2>/dev/null | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')\n\
         [ \"$_cargo_xtask_fallback\" = _cargo_xtask ] && _cargo_xtask_fallback=$_cargo_xtask_saved\n\
         _cargo_xtask_saved=$_cargo_xtask_fallback\n\
         _cargo_xtask() {\n\
         \x20   if [ \"${COMP_WORDS[1]}\" != xtask ]; then\n\
         \x20       if [ -n \"$_cargo_xtask_fallback\" ]; then \"$_cargo_xtask_fallback\" \"$@\"; fi\n\
         \x20       return\n\
         \x20   fi\n\
         \x20   local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n\
         \x20   COMPREPLY=()\n\
         \x20   if [ \"$COMP_CWORD\" -eq 2 ]; then\n",
    );
    let _ = writeln!(
        s,
        "        COMPREPLY=($(compgen -W '{}' -- \"$cur\"))\n        return\n    fi",
        commands()
    );
    let reply = |v: Values| -> String {
        match v {
            Values::File => "COMPREPLY=($(compgen -f -- \"$cur\"))".to_owned(),
            Values::Dir => "COMPREPLY=($(compgen -d -- \"$cur\"))".to_owned(),
            Values::None | Values::Text => ":".to_owned(),
            other => format!(
                "COMPREPLY=($(compgen -W '{}' -- \"$cur\"))",
                word_list(&words(other, drivers).unwrap_or_default())
            ),
        }
    };
    s.push_str("    case \"${COMP_WORDS[2]}\" in\n");
    for c in COMMANDS {
        let _ = writeln!(s, "        {})", c.name);
        let positional = value_cases(&mut s, c, "\"$prev\"", "", &reply);
        let _ = writeln!(
            s,
            "            case \"$cur\" in\n                -*) COMPREPLY=($(compgen -W '{}' -- \"$cur\")) ;;\n                *) {positional} ;;\n            esac\n            ;;",
            spellings(c).join(" ")
        );
    }
    s.push_str("    esac\n}\ncomplete -o bashdefault -F _cargo_xtask cargo\n");
    s
}

fn zsh(drivers: &[String]) -> String {
    let mut s = String::from(
        "#compdef cargo\n\
         # zsh completion of `cargo xtask`, written by `cargo xtask completions zsh`.\n\
         _cargo_xtask() {\n\
         \x20   if [[ ${words[2]} != xtask ]]; then\n\
         \x20       if (( $+functions[_cargo] )) || autoload -Uz +X _cargo 2>/dev/null; then\n\
         \x20           _cargo \"$@\"\n\
         \x20       else\n\
         \x20           _files\n\
         \x20       fi\n\
         \x20       return\n\
         \x20   fi\n\
         \x20   local cur=${words[CURRENT]} prev=${words[CURRENT-1]}\n",
    );
    let _ = writeln!(
        s,
        "    if (( CURRENT == 3 )); then\n        compadd -- {}\n        return\n    fi",
        commands()
    );
    let reply = |v: Values| -> String {
        match v {
            Values::File => "_files".to_owned(),
            Values::Dir => "_files -/".to_owned(),
            Values::None | Values::Text => ":".to_owned(),
            other => format!(
                "compadd -- {}",
                word_list(&words(other, drivers).unwrap_or_default())
            ),
        }
    };
    s.push_str("    case ${words[3]} in\n");
    for c in COMMANDS {
        let _ = writeln!(s, "        ({})", c.name);
        let positional = value_cases(&mut s, c, "$prev", "(", &reply);
        let _ = writeln!(
            s,
            "            if [[ $cur == -* ]]; then\n                compadd -- {}\n            else\n                {positional}\n            fi\n            ;;",
            spellings(c).join(" ")
        );
    }
    s.push_str(
        "    esac\n}\n\
         if [[ ${funcstack[1]} == _cargo_xtask ]]; then\n\
         \x20   _cargo_xtask \"$@\"\n\
         else\n\
         \x20   compdef _cargo_xtask cargo\n\
         fi\n",
    );
    s
}

/// A fish single-quoted string.
fn fish_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn fish(drivers: &[String]) -> String {
    let mut s = String::from(
        "# fish completion of `cargo xtask`, written by `cargo xtask completions fish`.\n\
         function __cargo_xtask_using\n\
         \x20   set -l words (commandline -opc)\n\
         \x20   test (count $words) -ge 2; and test $words[2] = xtask; or return 1\n\
         \x20   if test (count $argv) -eq 0\n\
         \x20       test (count $words) -eq 2\n\
         \x20   else\n\
         \x20       test (count $words) -ge 3; and test $words[3] = $argv[1]\n\
         \x20   end\n\
         end\n\
         complete -c cargo -n '__fish_seen_subcommand_from xtask' -f\n",
    );
    for c in COMMANDS {
        let _ = writeln!(
            s,
            "complete -c cargo -n __cargo_xtask_using -f -a {} -d {}",
            c.name,
            fish_quote(c.summary)
        );
    }
    for c in COMMANDS {
        let cond = fish_quote(&format!("__cargo_xtask_using {}", c.name));
        for o in c.options {
            let mut line = format!("complete -c cargo -n {cond} -l {}", &o.long[2..]);
            if let Some(short) = o.short {
                let _ = write!(line, " -s {}", &short[1..]);
            }
            match o.values {
                _ if o.default.is_some() => {}
                Values::None => {}
                Values::Text => line.push_str(" -x"),
                Values::File => line.push_str(" -r -F"),
                Values::Dir => line.push_str(" -x -a '(__fish_complete_directories)'"),
                other => {
                    let _ = write!(
                        line,
                        " -x -a {}",
                        fish_quote(&word_list(&words(other, drivers).unwrap_or_default()))
                    );
                }
            }
            let _ = writeln!(
                s,
                "{line} -d {}",
                fish_quote(o.help.lines().next().unwrap_or(""))
            );
        }
        let _ = writeln!(
            s,
            "complete -c cargo -n {cond} -s h -l help -d 'this command\\'s help'"
        );
        match c.positional.as_ref().map(|p| p.values) {
            Some(Values::File) => {
                let _ = writeln!(s, "complete -c cargo -n {cond} -F");
            }
            Some(v) => {
                if let Some(w) = words(v, drivers) {
                    let _ = writeln!(
                        s,
                        "complete -c cargo -n {cond} -a {}",
                        fish_quote(&word_list(&w))
                    );
                }
            }
            None => {}
        }
    }
    s
}
