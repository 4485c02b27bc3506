//! skd-bind: bind (and for streams listen on) a socket, put it on fd 0 (or,
//! with -a, hand it on the systemd way on fd 3) and exec the next program.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;

use lexopt::Arg::{Short, Value};

use crate::addr::{self, InetSpec};
use crate::error::{self, Error};
use crate::{activation, args, chain, sys};

pub const PROG: &str = "skd-bind";
pub const SYNOPSIS: &str =
    "skd-bind [-s|-d] [-a] [-b backlog] -i|-t|-u [host:]port | -l|-x path prog...";

/// The listen backlog when -b is not given; the kernel caps it at
/// net.core.somaxconn.
pub const DEFAULT_BACKLOG: i32 = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Inet(InetSpec),
    Unix(OsString),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub datagram: bool,
    pub backlog: i32,
    /// Hand the socket on the systemd way (fd 3, LISTEN_FDS, LISTEN_PID).
    pub activation: bool,
    pub target: Target,
    pub argv: Vec<OsString>,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut datagram = false;
    let mut backlog = DEFAULT_BACKLOG;
    let mut activation = false;
    let mut target = None;
    let syntax = |e| args::syntax(e, SYNOPSIS);
    let mut set_target = |t: Target| match target.replace(t) {
        None => Ok(()),
        Some(_) => Err(Error::usage("only one socket address may be given")),
    };
    while let Some(arg) = parser.next().map_err(syntax)? {
        match arg {
            Short('s') => datagram = false,
            Short('d') => datagram = true,
            Short('a') => activation = true,
            Short(c @ ('i' | 't' | 'u')) => {
                let value = parser.value().map_err(syntax)?;
                match c {
                    't' => datagram = false,
                    'u' => datagram = true,
                    _ => {}
                }
                set_target(Target::Inet(InetSpec::parse(&value)?))?;
            }
            Short('l' | 'x') => {
                let path = parser.value().map_err(syntax)?;
                addr::unix_path(&path)?;
                set_target(Target::Unix(path))?;
            }
            Short('b') => {
                let value = parser.value().map_err(syntax)?;
                backlog = args::number('b', &value, 1, i32::MAX as u64)? as i32;
            }
            Value(first) => {
                let target = target.ok_or_else(|| {
                    Error::usage(format!("no socket address given; usage: {SYNOPSIS}"))
                })?;
                return Ok(Options {
                    datagram,
                    backlog,
                    activation,
                    target,
                    argv: args::program(first, &mut parser),
                });
            }
            other => return Err(syntax(other.unexpected())),
        }
    }
    Err(args::missing_program(SYNOPSIS))
}

pub fn main() -> ! {
    error::run(PROG, || {
        let mut env = chain::start();
        let opts = parse(std::env::args_os().skip(1))?;
        let socket = bind(&opts)?;
        let handed = if opts.activation {
            // Our readiness or pidfile descriptor may sit on fd 3.
            chain::vacate(activation::FIRST_FD)
                .map_err(|e| Error::sys("move a descriptor off fd 3", &e))
                .and_then(|()| activation::hand_off(socket, &mut env))
        } else {
            sys::move_to(socket, 0).map_err(|e| Error::sys("move the socket to fd 0", &e))
        };
        let err = match handed {
            Ok(()) => chain::exec(&opts.argv, env),
            Err(e) => e,
        };
        remove_socket_file(&opts.target);
        Err(err)
    })
}

/// After a failure between bind and exec: removes the socket file we just
/// made, so that a start that failed leaves nothing behind. Only a socket
/// is removed. (Once the next program runs, the file is its business; a
/// stale one is replaced by the next start.)
fn remove_socket_file(target: &Target) {
    if let Target::Unix(path) = target
        && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
    {
        let _ = std::fs::remove_file(path);
    }
}

/// Creates, binds and (for streams) listens on the socket; reports the
/// chosen port on stdout when port 0 was asked for.
pub fn bind(opts: &Options) -> Result<OwnedFd, Error> {
    let socktype = if opts.datagram {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    let (socket, what) = match &opts.target {
        Target::Inet(spec) => bind_inet(spec, socktype)?,
        Target::Unix(path) => (
            bind_unix(path, socktype)?,
            path.to_string_lossy().into_owned(),
        ),
    };
    if !opts.datagram {
        sys::listen(socket.as_fd(), opts.backlog)
            .map_err(|e| Error::sys(format_args!("listen on {what}"), &e))?;
    }
    if let Target::Inet(InetSpec { port: 0, .. }) = opts.target {
        report_port(&socket)?;
    }
    Ok(socket)
}

fn bind_inet(spec: &InetSpec, socktype: i32) -> Result<(OwnedFd, String), Error> {
    let mut last = None;
    for addr in spec.candidates()? {
        let what = addr::Display(&addr).to_string();
        match bind_one(&addr, socktype, spec.host.is_none()) {
            Ok(fd) => return Ok((fd, what)),
            Err(e) => last = Some(Error::sys(format_args!("bind to {what}"), &e)),
        }
    }
    let host = spec.host.as_deref().unwrap_or("");
    Err(last.unwrap_or_else(|| Error::new(error::SYSTEM, format!("no address found for {host}"))))
}

fn bind_one(addr: &SocketAddr, socktype: i32, wildcard: bool) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let fd = sys::socket(family, socktype)?;
    // Streams only: on datagram sockets SO_REUSEADDR would let two servers
    // share a port silently.
    if socktype == libc::SOCK_STREAM {
        sys::setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    if wildcard && family == libc::AF_INET6 {
        sys::setsockopt_int(fd.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0)?;
    }
    sys::bind(fd.as_fd(), &sys::RawAddr::from_inet(addr))?;
    Ok(fd)
}

/// Binds a unix socket at `path`, replacing a socket file left there by an
/// earlier server. Any other kind of file is left alone.
fn bind_unix(path: &OsString, socktype: i32) -> Result<OwnedFd, Error> {
    let shown = path.to_string_lossy();
    let fail = |e: &io::Error| Error::sys(format_args!("bind to {shown}"), e);
    let addr = sys::RawAddr::from_unix_path(path.as_encoded_bytes()).map_err(|e| fail(&e))?;
    let fd = sys::socket(libc::AF_UNIX, socktype).map_err(|e| fail(&e))?;
    match sys::bind(fd.as_fd(), &addr) {
        Ok(()) => return Ok(fd),
        Err(e) if e.raw_os_error() != Some(libc::EADDRINUSE) => return Err(fail(&e)),
        Err(_) => {}
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A socket file can belong to a server that is running: taking
            // it over would leave that server unreachable. Only a socket
            // nobody listens on any more is stale.
            if !stale(&addr, socktype) {
                return Err(fail(&io::Error::from_raw_os_error(libc::EADDRINUSE)));
            }
            std::fs::remove_file(path)
                .map_err(|e| Error::sys(format_args!("remove the old socket {shown}"), &e))?;
        }
        _ => {
            return Err(Error::new(
                error::SYSTEM,
                format!("unable to bind to {shown}: a file that is not a socket is in the way"),
            ));
        }
    }
    sys::bind(fd.as_fd(), &addr).map_err(|e| fail(&e))?;
    Ok(fd)
}

/// Whether the socket file at `addr` is left over from a server that has
/// gone: connecting is refused. A server of either type that answers, or
/// whose backlog is full, is alive; so is one we cannot tell about.
fn stale(addr: &sys::RawAddr, socktype: i32) -> bool {
    let Ok(probe) = sys::socket(libc::AF_UNIX, socktype | libc::SOCK_NONBLOCK) else {
        return false;
    };
    matches!(
        sys::connect(probe.as_fd(), addr).map_err(|e| e.raw_os_error()),
        Err(Some(libc::ECONNREFUSED | libc::ENOENT))
    )
}

/// Writes the port the kernel chose, once the socket is ready, with a
/// single write(2) so that a reader on a pipe sees it at once.
fn report_port(socket: &OwnedFd) -> Result<(), Error> {
    let local = sys::getsockname(socket.as_fd())
        .map_err(|e| Error::sys("read the socket's address", &e))?;
    let port = local.to_inet().map_or(0, |a| a.port());
    // A caller that closed stdout did not want the port; that is not fatal.
    let _ = sys::write_all(sys::borrow_raw(1), format!("{port}\n").as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Options, Error> {
        parse(args.iter().map(OsString::from))
    }

    fn inet(host: Option<&str>, port: u16) -> Target {
        Target::Inet(InetSpec {
            host: host.map(str::to_owned),
            port,
        })
    }

    #[test]
    fn classic_letters() {
        let o = parse_str(&["-t", "127.0.0.1:80", "cat"]).unwrap();
        assert_eq!(
            (o.datagram, o.target, o.argv),
            (false, inet(Some("127.0.0.1"), 80), vec!["cat".into()])
        );
        let o = parse_str(&["-u", "53", "prog"]).unwrap();
        assert!(o.datagram);
        let o = parse_str(&["-d", "-i", "53", "prog"]).unwrap();
        assert!(o.datagram);
        let o = parse_str(&["-u", "53", "-s", "prog"]).unwrap();
        assert!(!o.datagram, "the last of -s/-d wins");
        let o = parse_str(&["-x", "/tmp/s", "-b", "5", "prog"]).unwrap();
        assert_eq!((o.target, o.backlog), (Target::Unix("/tmp/s".into()), 5));
        let o = parse_str(&["-l/tmp/s", "prog"]).unwrap();
        assert_eq!((o.backlog, o.activation), (DEFAULT_BACKLOG, false));
        let o = parse_str(&["-a", "-t", "80", "prog"]).unwrap();
        assert!(o.activation);
        let o = parse_str(&["-at", "80", "prog"]).unwrap();
        assert!(o.activation);
    }

    #[test]
    fn options_end_at_the_first_operand() {
        let o = parse_str(&["-t", "80", "sh", "-c", "-b", "x"]).unwrap();
        assert_eq!(o.argv, ["sh", "-c", "-b", "x"]);
        let o = parse_str(&["-t", "80", "--", "-weird-prog"]).unwrap();
        assert_eq!(o.argv, ["-weird-prog"]);
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["-t", "80"][..],
            &["cat"],
            &["-q", "-t", "80", "cat"],
            &["-t"],
            &["-t", "80", "-l", "/x", "cat"],
            &["-b", "0", "-t", "80", "cat"],
            &["-b", "x", "-t", "80", "cat"],
            &["-t", "65536", "cat"],
            &["-l", "", "cat"],
            &["--long", "cat"],
        ] {
            let err = parse_str(bad).unwrap_err();
            assert_eq!(err.code, 100, "{bad:?}");
        }
    }
}
