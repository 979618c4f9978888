//! Network kernel debugging (`deploy --kdnet HOST:PORT`): the host and port, the key read back
//! from the VM, and the WinDbg command line that attaches ("Set up KDNET network kernel
//! debugging manually",
//! https://learn.microsoft.com/windows-hardware/drivers/debugger/setting-up-a-network-debugging-connection:
//! `windbg -k net:port=PORT,key=KEY` on the host).

use crate::base::error::{Result, bail};

/// `--kdnet HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kdnet {
    /// The debugger host's IPv4 address, as the VM reaches it.
    pub host: String,
    /// The UDP port the debugger listens on.
    pub port: u16,
}

impl Kdnet {
    /// `192.168.1.10:50000`. bcdedit's `hostip:` takes an IPv4 address; the documentation
    /// recommends ports 49152-65535 (and the port must be above 49151 for kdnet).
    pub fn parse(s: &str) -> Result<Self> {
        let Some((host, port)) = s.rsplit_once(':') else {
            bail!(
                "--kdnet takes HOST:PORT (the debugger host's IPv4 address as the VM reaches it, and a port from 49152 to 65535), not `{s}`"
            );
        };
        if host.parse::<std::net::Ipv4Addr>().is_err() {
            bail!(
                "--kdnet: `{host}` is not an IPv4 address (bcdedit /dbgsettings net hostip: takes one; give the address of this host as the VM reaches it)"
            );
        }
        let port: u16 = match port.parse() {
            Ok(p) if p >= 49152 => p,
            _ => bail!(
                "--kdnet: the port `{port}` is not from 49152 to 65535, the range KDNET takes"
            ),
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// A key as bcdedit writes it: four dot-separated parts of lower-case letters and digits.
pub fn is_key(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// The key: section `kdnet-key` (the BCD WMI provider) when it holds one, else the `Key=` line
/// bcdedit printed (section `dbgsettings`); neither is an error.
pub fn key(wmi: Option<&str>, bcdedit: Option<&str>) -> std::result::Result<String, String> {
    if let Some(k) = wmi.map(str::trim).filter(|k| is_key(k)) {
        return Ok(k.to_owned());
    }
    if let Some(k) = bcdedit.and_then(|b| {
        b.lines()
            .filter_map(|l| l.trim().strip_prefix("Key="))
            .map(str::trim)
            .find(|k| is_key(k))
    }) {
        return Ok(k.to_owned());
    }
    Err(format!(
        "the debugging key could not be read back (BCD WMI provider said `{}`, and bcdedit printed no Key= line): run `bcdedit /dbgsettings` on the VM",
        wmi.unwrap_or("nothing").trim()
    ))
}

/// The command that attaches WinDbg on the host.
pub fn windbg(port: u16, key: &str) -> String {
    format!("windbg -k net:port={port},key={key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_checked() {
        let k = Kdnet::parse("192.168.1.10:50000").unwrap();
        assert_eq!((k.host.as_str(), k.port), ("192.168.1.10", 50000));
        assert!(Kdnet::parse("192.168.1.10").is_err());
        assert!(Kdnet::parse("debughost:50000").is_err());
        assert!(Kdnet::parse("192.168.1.10:22").is_err());
        assert!(Kdnet::parse("192.168.1.10:70000").is_err());
    }

    #[test]
    fn the_key_comes_from_wmi_or_bcdedit_and_nothing_else() {
        let k = "2steg4fzbj2sz.23418vzkd4ko3.1g34ou07z4pev.1sp3yo9yz874p";
        assert_eq!(key(Some(k), None).unwrap(), k);
        assert_eq!(key(Some("absent"), Some(&format!("Key={k}\n"))).unwrap(), k);
        // A localised line or an error is not a key.
        assert!(key(Some("error Zugriff verweigert"), Some("Schlüssel=abc")).is_err());
        assert!(key(Some("A.B.C.D"), None).is_err());
        assert!(key(None, Some("Key=a.b.c")).is_err());
        assert_eq!(
            windbg(50000, "a.b.c.d"),
            "windbg -k net:port=50000,key=a.b.c.d"
        );
    }
}
