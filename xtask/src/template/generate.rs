//! A new driver crate copied from one of the samples, with every identity made fresh.
//!
//! The copy keeps the sample's lessons, comments and teardown; what two drivers loaded together
//! must not share (see [`identity`](super::identity)) is replaced, consistently in every file of
//! the crate (sources, `.inx`, `scenario.toml`, `deploy.toml`, README, `Cargo.toml`), as whole
//! tokens (a name inside a longer identifier, such as `ExCallbackRegistration`, is left alone):
//!
//! | identity | new value |
//! |---|---|
//! | crate, image, INF, log prefix (`[name]`, from `CARGO_PKG_NAME`) | `NAME` |
//! | service name (and the INF's section names) | `NAME` in PascalCase (`my-filter` → `MyFilter`) |
//! | pool tags | two letters of the service name + two random letters or digits, unused in the workspace |
//! | callback object (ex-callback), demo key (cm-filter) | `<Service>Sample` |
//! | WFP sublayer and callout keys (wfp-callout) | random version-4 GUIDs |
//! | Cm altitude (cm-filter) | `--altitude`, else `N.5` (default) and `N+1` (the scenario's override) for the lowest `N` in [`ALTITUDE_RANGE`] with neither in use |
//!
//! Fixed-size UTF-16 constants (`const X: [u16; N] = ascii_to_utf16("…")`) get their new `N`.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};

use rand_core::RngCore;

use super::identity::{self, Identity, Kind, Source, braced_guid, is_altitude};
use crate::base::error::{Context, Result, bail};

/// The altitudes `new` chooses from when none is given: test altitudes in the FSFilter Activity
/// Monitor range (360000-389999) next to cm-filter's own 385201.5. Altitudes for a product are
/// allocated by Microsoft ("Load order groups and altitudes for minifilter drivers").
pub const ALTITUDE_RANGE: std::ops::RangeInclusive<u32> = 385_210..=385_298;

/// Longest driver name accepted: the service name, INF sections and image name derive from it.
pub const MAX_NAME: usize = 32;

/// The sample a new driver is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Template {
    /// `ex-callback` (WDM): callback objects.
    ExCallback,
    /// `cm-filter` (WDM): registry filtering.
    CmFilter,
    /// `pnp-notify` (WDM): PnP notifications.
    PnpNotify,
    /// `wfp-callout` (KMDF, with its WDM variant `NAME-wdm`).
    WfpCallout,
    /// `wfp-callout-wdm`: the WDM build of wfp-callout alone.
    WfpCalloutWdm,
}

/// Every template, by the name `--from` takes.
pub const TEMPLATES: [(&str, Template); 5] = [
    ("ex-callback", Template::ExCallback),
    ("cm-filter", Template::CmFilter),
    ("pnp-notify", Template::PnpNotify),
    ("wfp-callout", Template::WfpCallout),
    ("wfp-callout-wdm", Template::WfpCalloutWdm),
];

impl Template {
    /// The template named `name` (`--from`).
    pub fn parse(name: &str) -> Result<Self> {
        match TEMPLATES.iter().find(|(n, _)| *n == name) {
            Some((_, t)) => Ok(*t),
            None => bail!(
                "unknown template `{name}`: use --from {}",
                TEMPLATES.map(|(n, _)| n).join("|")
            ),
        }
    }

    /// Its name, as `--from` takes it.
    pub fn name(self) -> &'static str {
        TEMPLATES
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("", |(n, _)| n)
    }

    /// The sample crate's folder (in the workspace root).
    pub fn crate_dir(self) -> &'static str {
        match self {
            Template::WfpCalloutWdm => "wfp-callout",
            t => t.name(),
        }
    }
}

/// What was chosen for a new driver.
#[derive(Clone, Debug, Default)]
pub struct Choices {
    /// The crate and driver name.
    pub name: String,
    /// The service name.
    pub service: String,
    /// The WDM variant's name and service, for a wfp-callout copy.
    pub variant: Option<(String, String)>,
    /// Every replaced identity: (what, old value, new value).
    pub replaced: Vec<(String, String, String)>,
    /// The altitude, for a cm-filter copy.
    pub altitude: Option<String>,
}

/// A new driver, held in memory until written: its choices and its files (path from the
/// workspace root: `NAME/…` and its mutations `xtask/mutations/NAME-….toml`, content).
#[derive(Debug)]
pub struct Generated {
    /// What was chosen.
    pub choices: Choices,
    /// Every file of the crate.
    pub files: Vec<(PathBuf, Vec<u8>)>,
}

/// `my-filter` → `MyFilter`.
pub fn pascal(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Checks a new driver's name: a crate name that is also a valid service, image and INF name.
pub fn check_name(name: &str) -> Result<()> {
    const RESERVED: [&str; 8] = [
        "common", "xtask", "target", "docs", "std", "core", "alloc", "test",
    ];
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split('-').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !valid {
        bail!(
            "`{name}` is not a valid driver name: lower-case letters, digits and single hyphens, \
             starting with a letter (e.g. `my-filter`); it names the crate, the image \
             (`NAME.sys`) and, in PascalCase, the service"
        );
    }
    if name.len() > MAX_NAME {
        bail!(
            "`{name}` is {} characters long: at most {MAX_NAME} (it names the service and the INF's sections)",
            name.len()
        );
    }
    if RESERVED.contains(&name) {
        bail!(
            "`{name}` is reserved (a folder or crate of the workspace, or of Rust): choose another name"
        );
    }
    Ok(())
}

/// Replaces `old` by `new` in `text` wherever `old` is a whole token: not preceded or followed
/// by a letter, digit or `_` (what [`apply`] does for each pair, shown on one).
#[cfg(test)]
pub fn replace_token(text: &str, old: &str, new: &str) -> String {
    let pair: Pair = (String::new(), old.to_owned(), new.to_owned());
    apply(text, &[&pair])
}

/// `const X: [u16; N] = ascii_to_utf16("…");` with `N` set to the string's length.
fn fix_utf16_lengths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let fixed = (|| {
            let open = line.find(": [u16; ")? + ": [u16; ".len();
            let close = open + line[open..].find(']')?;
            let lit = line.find("ascii_to_utf16(\"")? + "ascii_to_utf16(\"".len();
            let end = lit + line[lit..].find("\")")?;
            let units = line[lit..end].replace("\\\\", "\\").len();
            Some(format!("{}{units}{}", &line[..open], &line[close..]))
        })();
        out.push_str(fixed.as_deref().unwrap_or(line));
    }
    out
}

/// A pool tag: two letters of `service` and two random letters or digits, not in `used`.
fn fresh_tag(service: &str, used: &BTreeSet<String>, rng: &mut dyn RngCore) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut head: String = service
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(2)
        .collect();
    while head.len() < 2 {
        head.push('X');
    }
    loop {
        let mut tag = head.clone();
        for _ in 0..2 {
            tag.push(char::from(ALNUM[(rng.next_u32() as usize) % ALNUM.len()]));
        }
        if !used.contains(&tag) {
            return tag;
        }
    }
}

/// A random version-4 GUID, as 32 lower-case hex digits.
fn fresh_guid(rng: &mut dyn RngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// The identities of the workspace's drivers, by kind and compared value.
pub fn used_identities(sources: &[Source]) -> Result<BTreeSet<(Kind, String)>> {
    let mut used = BTreeSet::new();
    for s in sources {
        for id in identity::collect(s)? {
            used.insert(id.key());
        }
    }
    Ok(used)
}

/// The sample's files that belong in a copy: sources, manifests, scenario, probe, README, INF
/// templates (for `wfp-callout-wdm`, its own `.inx` only).
fn template_files(dir: &Path, template: Template) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        for e in fs::read_dir(&here).with_context(|| format!("listing {}", here.display()))? {
            let e = e.with_context(|| format!("listing {}", here.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = rel.join(&name);
            if e.path().is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
                continue;
            }
            let keep = template != Template::WfpCalloutWdm || name != "wfp-callout.inx";
            if keep && !name.starts_with('.') {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// One replacement: what it is (empty for another spelling of the previous one), the sample's
/// value, the new one.
type Pair = (String, String, String);

/// Makes the new driver `name` from `template` (the sample crate under `root`), with identities
/// unused by any of `sources` (the workspace's drivers), in memory.
pub fn generate(
    root: &Path,
    sources: &[Source],
    template: Template,
    name: &str,
    altitude: Option<&str>,
    rng: &mut dyn RngCore,
) -> Result<Generated> {
    check_name(name)?;
    let used = used_identities(sources)?;
    let mut choices = names(template, name, &used)?;
    if altitude.is_some() && template != Template::CmFilter {
        bail!("--altitude is for a registry filter: only `--from cm-filter` registers at one");
    }
    let src_dir = root.join(template.crate_dir());
    if !src_dir.join("Cargo.toml").is_file() {
        bail!(
            "the sample {} is not in this workspace ({}): a standalone workspace made by \
             `cargo xtask new --path` holds no sample; run `cargo xtask new` in the workspace of \
             the samples, then copy the new driver's folder and its xtask/mutations files here",
            template.crate_dir(),
            root.display()
        );
    }
    let sample = Source {
        name: template.crate_dir().to_owned(),
        dir: src_dir.clone(),
        inx: template_files(&src_dir, template)?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "inx"))
            .map(|p| src_dir.join(p))
            .collect(),
    };
    let own = identity::collect(&sample)?;
    let mut pairs = name_pairs(template, &choices);
    identity_pairs(&own, &used, &choices.service, rng, &mut pairs);
    if template == Template::CmFilter {
        choices.altitude = Some(cm_filter_pairs(
            &own,
            &used,
            altitude,
            &choices.service,
            &mut pairs,
        )?);
    }
    let mut order: Vec<&Pair> = pairs.iter().collect();
    order.sort_by_key(|(_, old, _)| std::cmp::Reverse(old.len()));
    let mut files = Vec::new();
    for rel in template_files(&src_dir, template)? {
        let bytes = fs::read(src_dir.join(&rel))
            .with_context(|| format!("reading {}", src_dir.join(&rel).display()))?;
        let new_rel = apply(&rel.to_string_lossy(), &order);
        let Ok(text) = String::from_utf8(bytes.clone()) else {
            files.push((Path::new(name).join(new_rel), bytes));
            continue;
        };
        let text = if rel == Path::new("README.md") {
            super::readme::for_copy(&text, template)?
        } else {
            text
        };
        let mut text = fix_utf16_lengths(&apply(&text, &order));
        if new_rel == "Cargo.toml" {
            text = manifest(&text, template, name)?;
        }
        if new_rel == "README.md" {
            text = readme(&text, template, &choices, &pairs);
        }
        files.push((Path::new(name).join(new_rel), text.into_bytes()));
    }
    files.extend(mutations(root, template, name, &order)?);
    choices.replaced = pairs
        .into_iter()
        .filter(|(w, _, _)| !w.is_empty())
        .collect();
    Ok(Generated { choices, files })
}

/// `text` with every pair's old value replaced where it is a whole token ([`replace_token`]'s rule),
/// the longest first, in one pass: a new value is never read again, so `my-wfp-callout` made from
/// wfp-callout does not become `my-my-wfp-callout-wdm` in its variant's name.
fn apply(text: &str, order: &[&Pair]) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'text: while let Some(c) = text[i..].chars().next() {
        if !word(text[..i].chars().next_back()) {
            for (_, old, new) in order {
                let rest = &text[i..];
                if !old.is_empty()
                    && rest.starts_with(old.as_str())
                    && !word(rest[old.len()..].chars().next())
                {
                    out.push_str(new);
                    i += old.len();
                    continue 'text;
                }
            }
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// The new names (crate, service, variant), refused if a workspace driver's service has them.
fn names(template: Template, name: &str, used: &BTreeSet<(Kind, String)>) -> Result<Choices> {
    let service = pascal(name);
    let variant = (template == Template::WfpCallout)
        .then(|| (format!("{name}-wdm"), format!("{service}Wdm")));
    if variant.as_ref().is_some_and(|(v, _)| v.len() > MAX_NAME) {
        bail!(
            "`{name}` is too long for wfp-callout, whose WDM variant is `{name}-wdm`: at most {} characters",
            MAX_NAME - 4
        );
    }
    let mut services = vec![service.clone()];
    services.extend(variant.iter().map(|(_, s)| s.clone()));
    for s in &services {
        if used.contains(&(Kind::Service, s.to_ascii_lowercase())) {
            bail!(
                "the service name `{s}` (from `{name}`) is taken by a workspace driver: choose another name"
            );
        }
    }
    Ok(Choices {
        name: name.to_owned(),
        service,
        variant,
        ..Choices::default()
    })
}

/// The crate, variant and service names, longest first so `wfp-callout-wdm` goes before
/// `wfp-callout`.
fn name_pairs(template: Template, c: &Choices) -> Vec<Pair> {
    let mut pairs: Vec<Pair> = Vec::new();
    let old = template.crate_dir();
    let old_service = pascal(old);
    match (&c.variant, template) {
        (Some((v, vs)), _) => {
            pairs.push(("variant".into(), format!("{old}-wdm"), v.clone()));
            pairs.push((
                "variant service".into(),
                format!("{old_service}Wdm"),
                vs.clone(),
            ));
        }
        (None, Template::WfpCalloutWdm) => {
            pairs.push(("crate".into(), format!("{old}-wdm"), c.name.clone()));
            pairs.push((
                "service".into(),
                format!("{old_service}Wdm"),
                c.service.clone(),
            ));
        }
        _ => {}
    }
    pairs.push(("crate".into(), old.to_owned(), c.name.clone()));
    pairs.push(("service".into(), old_service, c.service.clone()));
    pairs
}

/// The sample's distinct values of one kind, in the order they are written.
fn unique(ids: &[Identity], kind: Kind) -> Vec<String> {
    let mut seen = Vec::new();
    for id in ids.iter().filter(|i| i.kind == kind) {
        if !seen.contains(&id.value) {
            seen.push(id.value.clone());
        }
    }
    seen
}

/// Fresh pool tags, callback objects and WFP GUIDs for the sample's `own` identities.
fn identity_pairs(
    own: &[Identity],
    used: &BTreeSet<(Kind, String)>,
    service: &str,
    rng: &mut dyn RngCore,
    pairs: &mut Vec<Pair>,
) {
    let mut taken_tags: BTreeSet<String> = used
        .iter()
        .filter(|(k, _)| *k == Kind::PoolTag)
        .map(|(_, v)| v.clone())
        .collect();
    for tag in unique(own, Kind::PoolTag) {
        let new = fresh_tag(service, &taken_tags, rng);
        taken_tags.insert(new.clone());
        pairs.push(("pool tag".into(), tag, new));
    }
    for object in unique(own, Kind::CallbackObject) {
        let leaf = object.rsplit('\\').next().unwrap_or_default().to_owned();
        pairs.push(("callback object".into(), leaf, format!("{service}Sample")));
    }
    let underscored = |h: &str| {
        format!(
            "0x{}_{}_{}_{}_{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    };
    let hyphen = |h: &str| braced_guid(h).trim_matches(['{', '}']).to_owned();
    for guid in unique(own, Kind::WfpGuid) {
        let new = fresh_guid(rng);
        let old: String = guid.chars().filter(char::is_ascii_hexdigit).collect();
        pairs.push(("WFP GUID".into(), braced_guid(&old), braced_guid(&new)));
        pairs.push((String::new(), underscored(&old), underscored(&new)));
        // Upper case too, as some tools print them.
        let (old_h, new_h) = (hyphen(&old), hyphen(&new));
        pairs.push((
            String::new(),
            old_h.to_ascii_uppercase(),
            new_h.to_ascii_uppercase(),
        ));
        pairs.push((String::new(), old_h, new_h));
    }
}

/// cm-filter's demo key and altitudes; returns the new default altitude.
fn cm_filter_pairs(
    own: &[Identity],
    used: &BTreeSet<(Kind, String)>,
    altitude: Option<&str>,
    service: &str,
    pairs: &mut Vec<Pair>,
) -> Result<String> {
    let key = format!("{service}Sample");
    pairs.push(("demo key".into(), "CmFilterSample".into(), key.clone()));
    pairs.push((
        "demo key (upper case)".into(),
        "CMFILTERSAMPLE".into(),
        key.to_ascii_uppercase(),
    ));
    let in_use = |a: &str| used.contains(&(Kind::Altitude, a.to_owned()));
    let (default, scenario) = match altitude {
        Some(a) if !is_altitude(a) => {
            bail!("--altitude {a}: an altitude is digits with at most one dot (e.g. 385250.5)")
        }
        Some(a) if in_use(a) => bail!(
            "--altitude {a} is used by a workspace driver: choose another, or leave --altitude out"
        ),
        Some(a) => (a.to_owned(), a.to_owned()),
        None => {
            let Some(n) = ALTITUDE_RANGE
                .clone()
                .find(|n| !in_use(&format!("{n}.5")) && !in_use(&(n + 1).to_string()))
            else {
                bail!(
                    "every altitude in {}..={} is used: give one with --altitude",
                    ALTITUDE_RANGE.start(),
                    ALTITUDE_RANGE.end()
                );
            };
            (format!("{n}.5"), (n + 1).to_string())
        }
    };
    // The sample's default is fractional; its scenario's override is whole.
    for old in unique(own, Kind::Altitude) {
        let (what, new) = if old.contains('.') {
            ("altitude", &default)
        } else {
            ("altitude (scenario)", &scenario)
        };
        pairs.push((what.into(), old, new.clone()));
    }
    Ok(default)
}

/// The sample's mutations (`xtask/mutations/<sample>-*.toml`), for the copy: the mutation check
/// proves its lessons too.
fn mutations(
    root: &Path,
    template: Template,
    name: &str,
    order: &[&Pair],
) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let dir = root.join("xtask/mutations");
    let prefix = format!("{}-", template.crate_dir());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(std::result::Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    n.starts_with(&prefix) && Path::new(n).extension().is_some_and(|e| e == "toml")
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = Vec::new();
    for file in names {
        let path = dir.join(&file);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let new_name = format!("{name}-{}", &file[prefix.len()..]);
        out.push((
            Path::new("xtask/mutations").join(new_name),
            apply(&text, order).into_bytes(),
        ));
    }
    Ok(out)
}

/// The copied `Cargo.toml`: its description, and for `wfp-callout-wdm` the WDM build as the only
/// one (`default = ["wdm"]`, no variant).
fn manifest(text: &str, template: Template, name: &str) -> Result<String> {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("description = ") {
            let _ = writeln!(
                out,
                "description = \"{name}: a driver made from the {} sample by `cargo xtask new`\"",
                template.name()
            );
        } else if template == Template::WfpCalloutWdm && line.starts_with("variants = ") {
            // The WDM build is the crate's only one.
        } else if template == Template::WfpCalloutWdm && line.starts_with("model = ") {
            out.push_str("model = \"wdm\"\n");
        } else if template == Template::WfpCalloutWdm && line.trim() == "wdm = []" {
            out.push_str("wdm = []\n# Made from wfp-callout-wdm: the WDM build is this crate's only one.\ndefault = [\"wdm\"]\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if template == Template::WfpCalloutWdm && !out.contains("default = [\"wdm\"]") {
        bail!("wfp-callout/Cargo.toml has no `wdm = []` feature line to make the default");
    }
    Ok(out)
}

/// The copied README with a first section: where the driver came from, what was chosen and what
/// to change first.
fn readme(
    text: &str,
    template: Template,
    choices: &Choices,
    pairs: &[(String, String, String)],
) -> String {
    let name = &choices.name;
    let mut s = format!(
        "# {name}\n\nMade from the `{}` sample by `cargo xtask new {name} --from {}`. Every name \
         Windows keeps one of was made fresh:\n\n| what | sample | {name} |\n|---|---|---|\n",
        template.name(),
        template.name()
    );
    for (what, old, new) in pairs.iter().filter(|(w, _, _)| !w.is_empty()) {
        let _ = writeln!(s, "| {what} | `{old}` | `{new}` |");
    }
    let _ = write!(
        s,
        "\n**Change first**: the `description` in `Cargo.toml` and the `[Strings]` of `{name}.inx` \
         (what Windows shows), then the callbacks' work in `src/` — keep the teardown order the \
         sample teaches (below). `scenario.toml` drives `cargo xtask emulate {name}` and \
         `deploy.toml` the VM probe: update their expected lines as the driver changes. \
         `cargo xtask lint` refuses a copy that shares a name with another driver.\n\n\
         The sample's README follows, with the new names.\n\n"
    );
    // The sample's title becomes a section.
    let mut lines = text.lines();
    if let Some(first) = lines.next() {
        s.push('#');
        s.push_str(first);
        s.push('\n');
    }
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// The root `Cargo.toml` with `name` added to the workspace members (before `xtask`).
pub fn add_member(manifest: &str, name: &str) -> Result<String> {
    let mut out = String::new();
    let mut done = false;
    for line in manifest.lines() {
        if !done && line.starts_with("members = [") {
            let entry = format!("\"{name}\", ");
            let fixed = match line.find("\"xtask\"") {
                Some(at) => format!("{}{entry}{}", &line[..at], &line[at..]),
                None => line.replacen(']', &format!(", \"{name}\"]"), 1),
            };
            out.push_str(&fixed);
            done = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !done {
        bail!("the workspace Cargo.toml has no `members = [...]` line to add `{name}` to");
    }
    Ok(out)
}

#[cfg(test)]
#[path = "generate_tests.rs"]
mod tests;
