//! `cargo xtask new NAME --from TEMPLATE`: a new driver crate copied from a sample, with fresh
//! identities (`template::generate`), in this workspace or a standalone one (`--path`).

use std::path::PathBuf;

use crate::base::error::Result;
use crate::base::workspace::Workspace;
use crate::template::generate::{self, Template};
use crate::template::{identity, standalone, write};

/// `cargo xtask new`.
#[derive(Debug, PartialEq, Eq, Default)]
pub(crate) struct Options {
    /// The new driver's name (crate, image, log prefix; its service name in PascalCase).
    pub name: String,
    /// `--from`: the sample it is made from.
    pub from: String,
    /// `--path DIR`: a standalone workspace there instead of a member of this one.
    pub path: Option<PathBuf>,
    /// `--altitude N`: the registry filter's altitude (cm-filter only).
    pub altitude: Option<String>,
    /// `--dry-run`: print what would be chosen and written, write nothing.
    pub dry_run: bool,
}

/// The `new` command.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let template = Template::parse(&opts.from)?;
    generate::check_name(&opts.name)?;
    // wfp-callout's copy also makes a WDM variant, `NAME-wdm`.
    let mut names = vec![opts.name.clone()];
    if template == Template::WfpCallout {
        names.push(format!("{}-wdm", opts.name));
    }
    for name in &names {
        if let Some(taken) = ws
            .drivers
            .iter()
            .find(|d| d.name == *name || d.variant.as_ref().is_some_and(|v| v.package == *name))
        {
            crate::base::error::bail!(
                "`{name}` is taken: the workspace has a driver of that name ({}); choose another name",
                taken.dir.display()
            );
        }
    }
    let sources = identity::sources(&ws.drivers);
    let generated = generate::generate(
        &ws.root,
        &sources,
        template,
        &opts.name,
        opts.altitude.as_deref(),
        &mut rand_core::OsRng,
    )?;
    match &opts.path {
        None => write::check_free(&ws.root, &generated)?,
        Some(dir) if dir.exists() => crate::base::error::bail!(
            "{} exists: give --path a folder that does not exist yet (nothing was written)",
            dir.display()
        ),
        Some(_) => {}
    }
    print!("{}", describe(&generated, template));
    if opts.dry_run {
        println!("--dry-run: nothing written");
        return Ok(());
    }
    let name = &opts.name;
    match &opts.path {
        None => {
            write::write(&ws.root, &generated, &sources)?;
            println!(
                "wrote {name}/ and its mutations, added `{name}` to the workspace members\n\
                 next: cargo xtask emulate {name}   (then cargo xtask test -p {name})"
            );
        }
        Some(dir) => {
            standalone::write(&ws.root, dir, &generated, template.name(), &sources)?;
            println!(
                "wrote the standalone workspace {} ({name}, common, driver-package, xtask; \
                 git initialised, files added, not committed)\n\
                 next: cd {} && git commit -m {name} && cargo xtask deploy && cargo xtask test",
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// What `new` chose and will write.
fn describe(generated: &generate::Generated, template: Template) -> String {
    use std::fmt::Write;
    let c = &generated.choices;
    let mut s = format!(
        "new driver `{}` from {} (service `{}`)\n",
        c.name,
        template.name(),
        c.service
    );
    if let Some((v, vs)) = &c.variant {
        let _ = writeln!(s, "  its WDM variant: `{v}` (service `{vs}`)");
    }
    for (what, old, new) in &c.replaced {
        let _ = writeln!(s, "  {what:<22} {old}  ->  {new}");
    }
    let _ = writeln!(s, "  files:");
    for (path, bytes) in &generated.files {
        let _ = writeln!(s, "    {} ({} bytes)", path.display(), bytes.len());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bad input: name, `--from`, `--altitude`, `--path` (else a folder that does not exist),
    /// the error it gets.
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<std::path::PathBuf>,
        &'a str,
    );

    /// Every bad input of the issue is refused with a clear error and nothing written: the
    /// `--path` folder is not made (the other refusals come before anything is written, and a
    /// refusal that failed would write there, not into the workspace), the workspace's manifest
    /// and folders are unchanged.
    #[test]
    fn every_bad_input_is_refused_with_nothing_written() {
        if !crate::template::samples_present() {
            return;
        }
        let ws = Workspace::load().unwrap();
        let scratch = std::env::temp_dir().join(format!("xtask-new-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(scratch.join("exists")).unwrap();
        let listing = |dir: &std::path::Path| {
            let mut l: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            l.sort();
            l
        };
        let manifest = std::fs::read(ws.root.join("Cargo.toml")).unwrap();
        let (root_before, scratch_before) = (listing(&ws.root), listing(&scratch));
        let new = scratch.join("new");
        let cases: [Case<'_>; 9] = [
            (
                "My_Drv",
                "ex-callback",
                None,
                None,
                "not a valid driver name",
            ),
            (
                "9lives",
                "ex-callback",
                None,
                None,
                "not a valid driver name",
            ),
            (&"a".repeat(33), "ex-callback", None, None, "at most 32"),
            (
                "a-name-that-is-just-too-long-x",
                "wfp-callout",
                None,
                None,
                "whose WDM variant",
            ),
            ("cm-filter", "ex-callback", None, None, "is taken"),
            ("fine-name", "kmdf-thing", None, None, "unknown template"),
            (
                "fine-name",
                "ex-callback",
                None,
                Some(scratch.join("exists")),
                "exists",
            ),
            (
                "fine-name",
                "cm-filter",
                Some("385201.5"),
                None,
                "is used by a workspace driver",
            ),
            (
                "fine-name",
                "pnp-notify",
                Some("385250"),
                None,
                "only `--from cm-filter`",
            ),
        ];
        for (name, from, altitude, path, expected) in cases {
            let opts = Options {
                name: name.to_owned(),
                from: from.to_owned(),
                path: Some(path.unwrap_or_else(|| new.clone())),
                altitude: altitude.map(str::to_owned),
                dry_run: false,
            };
            let e = run(&ws, &opts).unwrap_err().to_string();
            assert!(e.contains(expected), "{name} --from {from}: {e}");
            assert!(!new.exists(), "{name} --from {from}: nothing written");
        }
        // In the workspace (no --path): a taken name is refused before anything is written.
        let opts = Options {
            name: "wfp-callout-wdm".to_owned(),
            from: "pnp-notify".to_owned(),
            ..Options::default()
        };
        let e = run(&ws, &opts).unwrap_err().to_string();
        assert!(e.contains("is taken"), "{e}");
        assert_eq!(std::fs::read(ws.root.join("Cargo.toml")).unwrap(), manifest);
        assert_eq!(listing(&ws.root), root_before);
        assert_eq!(listing(&scratch), scratch_before);
        assert!(listing(&scratch.join("exists")).is_empty());
        std::fs::remove_dir_all(&scratch).unwrap();
    }
}
