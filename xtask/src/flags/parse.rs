//! The parser, driven by the table: `--long VALUE`, `--long=VALUE`, `-s VALUE`, `-s=VALUE`, flags,
//! options whose value may be left out (their `default`) and positional arguments, in any order.
//! What it cannot place is an error naming the argument.

use std::collections::BTreeMap;

use super::table::{CommandSpec, Values};
use crate::base::error::{Result, bail};

/// One command's arguments, sorted by option.
#[derive(Debug)]
pub(crate) struct Matches {
    spec: &'static CommandSpec,
    /// Each option given, by its `--long` name: its values (a flag: one empty string per use).
    given: BTreeMap<&'static str, Vec<String>>,
    /// The positional arguments, in order.
    pub positional: Vec<String>,
}

/// Whether `-h` or `--help` is among `args` (it wins over anything else on the line).
pub(crate) fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
}

/// Sorts `args` by the options `spec` declares.
pub(crate) fn parse(spec: &'static CommandSpec, args: Vec<String>) -> Result<Matches> {
    let mut m = Matches {
        spec,
        given: BTreeMap::new(),
        positional: Vec::new(),
    };
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        if !arg.starts_with('-') || arg == "-" {
            if spec.positional.is_none() {
                bail!("unexpected argument `{arg}` (see --help)");
            }
            m.positional.push(arg);
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg.as_str(), None),
        };
        let Some(opt) = spec.option(name) else {
            bail!("unknown option `{arg}` (see --help)");
        };
        let value = if opt.values == Values::None {
            if inline.is_some() {
                bail!("{name} takes no value, not `{arg}`");
            }
            String::new()
        } else {
            match inline {
                Some("") => bail!("{arg} needs a value"),
                Some(v) => v.to_owned(),
                None => match (args.peek(), opt.default) {
                    (Some(v), None) if !v.starts_with('-') => args.next().unwrap_or_default(),
                    (Some(v), Some(_)) if !v.starts_with('-') && spec.positional.is_none() => {
                        args.next().unwrap_or_default()
                    }
                    (_, Some(default)) => default.to_owned(),
                    _ => bail!("{arg} needs a value"),
                },
            }
        };
        let values = m.given.entry(opt.long).or_default();
        values.push(value);
        if values.len() > 1 && !opt.repeat && opt.values != Values::None {
            bail!("{} given more than once", opt.long);
        }
    }
    Ok(m)
}

impl Matches {
    fn declared(&self, long: &str) {
        assert!(
            self.spec.options.iter().any(|o| o.long == long),
            "flags: `{long}` is not an option of `{}` in the table",
            self.spec.name
        );
    }

    /// Whether the flag `long` was given.
    pub(crate) fn flag(&self, long: &str) -> bool {
        self.declared(long);
        self.given.contains_key(long)
    }

    /// Every value of the option `long`, in order.
    pub(crate) fn values(&self, long: &str) -> Vec<String> {
        self.declared(long);
        self.given.get(long).cloned().unwrap_or_default()
    }

    /// The value of the option `long` (given at most once: the parser checked).
    pub(crate) fn value(&self, long: &str) -> Option<String> {
        self.values(long).pop()
    }
}
