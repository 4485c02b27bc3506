//! Socket address specifications as users write them: `PORT`, `:PORT`,
//! `HOST:PORT`, `[IPV6]:PORT` for the internet, a path for unix sockets.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;

use crate::error::Error;
use crate::sys;

/// An internet address to bind: a host (none: every local address) and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InetSpec {
    pub host: Option<String>,
    pub port: u16,
}

impl InetSpec {
    /// Parses `PORT`, `:PORT`, `HOST:PORT` or `[IPV6]:PORT`. Without
    /// brackets the last colon separates the port, so `::1:80` also works.
    pub fn parse(spec: &OsStr) -> Result<InetSpec, Error> {
        let bad = |why: &str| {
            Error::usage(format!(
                "invalid address \"{}\": {why}",
                spec.to_string_lossy()
            ))
        };
        let text = spec.to_str().ok_or_else(|| bad("not valid UTF-8"))?;
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("unbalanced ["))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| bad("expected :PORT after ]"))?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address between [ and ]"));
            }
            (Some(host), port)
        } else {
            match text.rsplit_once(':') {
                Some(("", port)) => (None, port),
                Some((host, port)) => (Some(host), port),
                None => (None, text),
            }
        };
        if host.is_some_and(|h| h.contains(['[', ']'])) {
            return Err(bad("unbalanced [ or ]"));
        }
        Ok(InetSpec {
            host: host.map(str::to_owned),
            port: parse_port(port)
                .ok_or_else(|| bad("the port must be a number from 0 to 65535"))?,
        })
    }

    /// The addresses to try, in order; the first that binds wins. With no
    /// host: the IPv6 wildcard (dual-stack, so IPv4 clients are served
    /// too), then the IPv4 wildcard for hosts without IPv6.
    pub fn candidates(&self) -> Result<Vec<SocketAddr>, Error> {
        let Some(host) = &self.host else {
            return Ok(vec![
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), self.port),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), self.port),
            ]);
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        match (host.as_str(), self.port).to_socket_addrs() {
            Ok(addrs) => Ok(addrs.collect()),
            Err(e) => {
                let why = e.to_string();
                let why = why
                    .strip_prefix("failed to lookup address information: ")
                    .unwrap_or(&why);
                Err(Error::new(
                    crate::error::SYSTEM,
                    format!("unable to resolve {host}: {why}"),
                ))
            }
        }
    }
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `127.0.0.1 port 80`, `::1 port 80`: how messages name an address.
pub struct Display<'a>(pub &'a SocketAddr);

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} port {}", self.0.ip(), self.0.port())
    }
}

/// Checks a unix socket path: not empty and short enough for `sun_path`.
pub fn unix_path(path: &OsString) -> Result<(), Error> {
    let len = path.as_bytes().len();
    if len == 0 {
        return Err(Error::usage("empty unix socket path"));
    }
    if len > sys::UNIX_PATH_MAX {
        return Err(Error::usage(format!(
            "unix socket path too long: {len} bytes (at most {})",
            sys::UNIX_PATH_MAX
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Result<InetSpec, Error> {
        InetSpec::parse(OsStr::new(s))
    }

    fn ok(host: Option<&str>, port: u16) -> Result<InetSpec, Error> {
        Ok(InetSpec {
            host: host.map(str::to_owned),
            port,
        })
    }

    #[test]
    fn address_forms() {
        assert_eq!(spec("80"), ok(None, 80));
        assert_eq!(spec(":80"), ok(None, 80));
        assert_eq!(spec("0"), ok(None, 0));
        assert_eq!(spec("127.0.0.1:8000"), ok(Some("127.0.0.1"), 8000));
        assert_eq!(spec("[::1]:65535"), ok(Some("::1"), 65535));
        assert_eq!(spec("::1:53"), ok(Some("::1"), 53));
        assert_eq!(spec("localhost:7"), ok(Some("localhost"), 7));
    }

    #[test]
    fn bad_addresses_are_usage_errors() {
        for bad in [
            "",
            ":",
            "65536",
            "99999",
            "-1",
            "+80",
            "http",
            "host:",
            "[::1]",
            "[::1:80",
            "[::1]80",
            "[nothost]:80",
            "a]:80",
            "1234567",
        ] {
            let err = spec(bad).unwrap_err();
            assert_eq!(err.code, 100, "{bad:?} gave {err:?}");
            assert!(err.msg.starts_with("invalid address"), "{}", err.msg);
        }
    }

    #[test]
    fn no_host_means_dual_stack_then_ipv4() {
        let c = spec("9").unwrap().candidates().unwrap();
        assert_eq!(c, ["[::]:9".parse().unwrap(), "0.0.0.0:9".parse().unwrap()]);
    }

    #[test]
    fn unix_paths_are_checked_against_sun_path() {
        assert!(unix_path(&OsString::from("/tmp/x")).is_ok());
        assert!(unix_path(&OsString::from("")).is_err());
        let long = OsString::from("x".repeat(sys::UNIX_PATH_MAX + 1));
        let err = unix_path(&long).unwrap_err();
        assert!(err.msg.contains("at most 107"), "{}", err.msg);
        assert!(unix_path(&OsString::from("x".repeat(sys::UNIX_PATH_MAX))).is_ok());
    }
}
