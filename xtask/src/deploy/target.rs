//! `--target`: where `deploy` puts the drivers (`emu`, `ssh://user@host[:port]`, `hyperv:VMNAME`).

use std::fmt;
use std::str::FromStr;

use crate::base::error::{Error, Result, bail};

/// Where `deploy` puts the drivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The emulated kernel (speakeasy and the harness), on this machine.
    Emu,
    /// A Windows VM reached over SSH.
    Ssh {
        /// The account, if given.
        user: Option<String>,
        /// Host name or address.
        host: String,
        /// Port, if not 22.
        port: Option<u16>,
    },
    /// A Hyper-V VM reached over PowerShell Direct (Windows hosts).
    HyperV {
        /// The VM's name.
        vm: String,
    },
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        const FORMS: &str = "emu, ssh://user@host[:port] or hyperv:VMNAME";
        if s == "emu" {
            return Ok(Target::Emu);
        }
        if let Some(rest) = s.strip_prefix("ssh://") {
            let rest = rest.trim_end_matches('/');
            let (user, host_port) = match rest.rsplit_once('@') {
                Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
                Some(_) => bail!("--target {s}: empty user name; use {FORMS}"),
                None => (None, rest),
            };
            let (host, port) = match host_port.rsplit_once(':') {
                _ if host_port.starts_with('[') => match host_port[1..].split_once(']') {
                    Some((h, "")) => (h, None),
                    Some((h, p)) => match p.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()) {
                        Some(port) if port != 0 => (h, Some(port)),
                        _ => bail!("--target {s}: `{p}` is not `:port`"),
                    },
                    None => bail!("--target {s}: no `]` after the IPv6 address"),
                },
                Some((h, p)) => {
                    let port = p.parse::<u16>().ok().filter(|&p| p != 0);
                    let Some(port) = port else {
                        bail!("--target {s}: `{p}` is not a port number")
                    };
                    (h, Some(port))
                }
                None => (host_port, None),
            };
            if host.is_empty() {
                bail!("--target {s}: no host; use {FORMS}");
            }
            return Ok(Target::Ssh {
                user,
                host: host.to_owned(),
                port,
            });
        }
        if let Some(vm) = s.strip_prefix("hyperv:") {
            if vm.is_empty() {
                bail!("--target {s}: no VM name; use {FORMS}");
            }
            return Ok(Target::HyperV { vm: vm.to_owned() });
        }
        bail!("unknown deploy target `{s}`: use {FORMS}")
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Emu => f.write_str("emu"),
            Target::Ssh { user, host, port } => {
                f.write_str("ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    f.write_str(host)?;
                }
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
            Target::HyperV { vm } => write!(f, "hyperv:{vm}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_back() {
        for s in [
            "emu",
            "ssh://me@vm",
            "ssh://me@10.0.0.5:2222",
            "ssh://vm",
            "hyperv:Win11 Test",
        ] {
            assert_eq!(s.parse::<Target>().unwrap().to_string(), s);
        }
        assert_eq!(
            "ssh://admin@host:22".parse::<Target>().unwrap(),
            Target::Ssh {
                user: Some("admin".into()),
                host: "host".into(),
                port: Some(22)
            }
        );
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Target>().unwrap_err().to_string();
        assert!(err("ssh://me@vm:http").contains("`http` is not a port number"));
        assert!(err("ssh://me@").contains("no host"));
        assert!(err("hyperv:").contains("no VM name"));
        assert!(err("vm").starts_with("unknown deploy target `vm`"));
    }

    #[test]
    fn ipv6_targets_take_brackets() {
        let t: Target = "ssh://admin@[fe80::1]:2222".parse().unwrap();
        assert_eq!(
            t,
            Target::Ssh {
                user: Some("admin".into()),
                host: "fe80::1".into(),
                port: Some(2222)
            }
        );
        assert_eq!(t.to_string(), "ssh://admin@[fe80::1]:2222");
        assert!("ssh://[::1".parse::<Target>().is_err());
        assert!("ssh://[::1]x".parse::<Target>().is_err());
    }
}
