//! The runner's part for `--verifier`, `--kdnet` and a bugcheck: judging their steps (keeping
//! what they learned in the facts) and, once a VM that crashed is back, the bugcheck's code and
//! the dump (`--fetch-dump`).

use std::fmt::Write as _;

use super::{Judged, Runner, code_text};
use crate::deploy::crash;
use crate::deploy::kdnet;
use crate::deploy::parse::Sections;
use crate::deploy::plan::Check;
use crate::deploy::report::{Crash, KdnetRun, VerifierRun};
use crate::deploy::transport::Output;
use crate::deploy::verifier::{self, Mode};

impl Runner<'_> {
    /// Judges the steps of `--verifier` and `--kdnet`; `None` for any other check.
    pub(super) fn judge_debugging(
        &mut self,
        check: &Check,
        s: &Sections,
        out: &Output,
    ) -> Option<Judged> {
        Some(match check {
            Check::Verifier(images) => self.judge_verifier(images, s, out),
            Check::VerifierStats(image) => {
                let Some(q) = s.get("verifier-query") else {
                    return Some(Judged::fail(format!(
                        "verifier /query did not run (exit code {})",
                        code_text(out.code)
                    )));
                };
                match verifier::stats(&q.body, image) {
                    Ok(st) => {
                        let mut j = Judged::pass(st.summary());
                        j.verifier = Some(st);
                        j
                    }
                    Err(e) => Judged::fail(e.to_string()),
                }
            }
            Check::VerifierRestored => {
                let r = s
                    .get("verifier-restored")
                    .map(|b| verifier::restored(&b.body));
                let same = matches!(r, Some(Ok(true))) && out.code == Some(0);
                if let Some(v) = self.facts.verifier.as_mut() {
                    v.restored = Some(same);
                }
                match r {
                    Some(Ok(true)) if out.code == Some(0) => {
                        Judged::pass(format!("the previous settings are back{}", notes(s)))
                    }
                    Some(Ok(_)) => Judged::fail(format!(
                        "Driver Verifier's settings could not be restored{}",
                        notes(s)
                    )),
                    Some(Err(e)) => Judged::fail(e.to_string()),
                    None => Judged::fail(format!(
                        "the restore stopped before checking the settings (exit code {}){}",
                        code_text(out.code),
                        notes(s)
                    )),
                }
            }
            Check::Kdnet(k) => {
                if out.code != Some(0) {
                    return Some(Judged::fail(format!(
                        "kernel debugging not set up (exit code {}){}",
                        code_text(out.code),
                        notes(s)
                    )));
                }
                let wmi = s.get("kdnet-key").map(|x| x.body.as_str());
                let bcd = s.get("dbgsettings").map(|x| x.body.as_str());
                match kdnet::key(wmi, bcd) {
                    Ok(key) => {
                        let windbg = kdnet::windbg(k.port, &key);
                        let j = Judged::pass(format!("key {key}; attach with: {windbg}"));
                        self.facts.kdnet = Some(KdnetRun {
                            host: k.host.clone(),
                            port: k.port,
                            key,
                            windbg,
                        });
                        j
                    }
                    Err(e) => Judged::fail(e),
                }
            }
            _ => return None,
        })
    }

    fn judge_verifier(&mut self, images: &[String], s: &Sections, out: &Output) -> Judged {
        let Some(flags) = self.plan.options.verifier else {
            return Judged::fail("a verifier step without --verifier");
        };
        let mut run = VerifierRun {
            flags,
            mode: None,
            previous: String::new(),
            restored: None,
        };
        let previous = s
            .get("verifier-previous")
            .map(|p| verifier::previous(&p.body));
        let mode = s.get("verifier-mode").map(|m| Mode::parse(&m.body));
        let result = match (previous, mode) {
            (Some(Ok(p)), Some(Ok(m))) => {
                run.previous = p.text();
                run.mode = Some(m);
                if out.code != Some(0) {
                    Err(format!(
                        "verifier failed (exit code {}){}",
                        code_text(out.code),
                        notes(s)
                    ))
                } else if m == Mode::Persistent {
                    check_persistent(s, flags, images).map(|()| {
                        self.facts.verifier_persistent = true;
                        format!(
                            "{}; flags {} need the persistent settings: set, restarting",
                            p.text(),
                            flags.hex()
                        )
                    })
                } else {
                    Ok(format!(
                        "{}; on at once (volatile), flags {}",
                        p.text(),
                        flags.hex()
                    ))
                }
            }
            (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e.to_string()),
            _ => Err(format!(
                "Driver Verifier not turned on (exit code {}){}",
                code_text(out.code),
                notes(s)
            )),
        };
        self.facts.verifier = Some(run);
        match result {
            Ok(d) => Judged::pass(d),
            Err(e) => Judged::fail(e),
        }
    }

    /// After a bugcheck, once the VM is back: the code from the events and, with
    /// `--fetch-dump`, the dump copied here.
    pub(super) fn crash(&self, driver: &str, sections: &Sections, detail: &mut String) -> Crash {
        let mut found = Crash {
            driver: driver.to_owned(),
            ..Crash::default()
        };
        match crash::bugcheck(sections.get("bugcheck").map_or("", |b| b.body.as_str())) {
            Ok(Some(b)) => {
                let _ = write!(detail, "\n  bugcheck {} (from {})", b.text(), b.source);
                found.bugcheck = Some(b);
            }
            Ok(None) => {
                found.bugcheck_error = Some(
                    "no Kernel-Power 41 or WER-SystemErrorReporting 1001 event gives a bugcheck code"
                        .to_owned(),
                );
            }
            Err(e) => found.bugcheck_error = Some(e.to_string()),
        }
        let opts = &self.plan.options;
        if !opts.fetch_dump {
            return found;
        }
        let dumps = match crash::dump_files(sections.get("dumps").map_or("", |d| d.body.as_str())) {
            Ok(list) => list,
            Err(e) => {
                found.dump_error = Some(e.to_string());
                return found;
            }
        };
        match crash::choose(&dumps, opts.dump_limit) {
            Err(e) => found.dump_error = Some(e),
            Ok(dump) => {
                let local = opts.dump_dir.join(crash::local_name(&dump.path));
                // A dump copies at no less than a few MB/s: a minute per 300 MB, and the step's
                // limit at least.
                let limit = opts.timeout + std::time::Duration::from_secs(dump.bytes / 5_000_000);
                match self.t.download(&dump.path, &local, limit) {
                    Ok(out) if out.code == Some(0) => {
                        let _ = write!(detail, "\n  dump copied to {}", local.display());
                        found.dump = Some((dump.path.clone(), local, dump.bytes));
                    }
                    Ok(out) => {
                        found.dump_error = Some(format!(
                            "copying {} failed (exit code {}): {}",
                            dump.path,
                            code_text(out.code),
                            crate::base::process::tail(out.stderr.trim(), 3)
                        ));
                    }
                    Err(e) => found.dump_error = Some(format!("copying {} failed: {e}", dump.path)),
                }
            }
        }
        found
    }
}

/// The persistent settings as the registry holds them after `verifier /flags F /driver ...`.
fn check_persistent(s: &Sections, flags: verifier::Flags, images: &[String]) -> Result<(), String> {
    let body = s
        .get("verifier-settings")
        .map(|b| b.body.clone())
        .ok_or("the persistent settings were not read back")?;
    let v: serde_json::Value =
        serde_json::from_str(body.trim()).map_err(|e| format!("verifier-settings: {e}: {body}"))?;
    let listed: Vec<&str> = v["Drivers"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    if let Some(missing) = images
        .iter()
        .find(|i| !listed.iter().any(|l| l.eq_ignore_ascii_case(i)))
    {
        return Err(format!(
            "verifier /driver did not take: {missing} is not in VerifyDrivers ({})",
            listed.join(" ")
        ));
    }
    match v["Level"].as_u64() {
        Some(l) if l == u64::from(flags.0) => Ok(()),
        other => Err(format!(
            "verifier /flags {} did not take: VerifyDriverLevel is {} ({})",
            flags.hex(),
            other.map_or("absent".to_owned(), |l| format!("0x{l:X}")),
            s.get("verifier-set")
                .map(|x| x.body.trim().replace('\n', " "))
                .unwrap_or_default()
        )),
    }
}

fn notes(s: &Sections) -> String {
    if s.notes.is_empty() {
        String::new()
    } else {
        format!(": {}", s.notes.join("; "))
    }
}
