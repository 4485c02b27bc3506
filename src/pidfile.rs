//! skd-pidfile: lock a pidfile, write our pid in it (the pid survives the
//! execs that follow, so it is the daemon's) and exec the next program,
//! which inherits the lock.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

use lexopt::Arg::Value;

use crate::error::{self, Error};
use crate::{args, chain, sys};

pub const PROG: &str = "skd-pidfile";
pub const SYNOPSIS: &str = "skd-pidfile pidfile prog...";

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub path: OsString,
    pub argv: Vec<OsString>,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let syntax = |e| args::syntax(e, SYNOPSIS);
    let mut path = None;
    while let Some(arg) = parser.next().map_err(syntax)? {
        match arg {
            Value(value) => match path {
                None if value.is_empty() => {
                    return Err(Error::usage(format!(
                        "the pidfile name is empty; usage: {SYNOPSIS}"
                    )));
                }
                None => path = Some(value),
                Some(path) => {
                    return Ok(Options {
                        path,
                        argv: args::program(value, &mut parser),
                    });
                }
            },
            other => return Err(syntax(other.unexpected())),
        }
    }
    match path {
        None => Err(Error::usage(format!("no pidfile given; usage: {SYNOPSIS}"))),
        Some(_) => Err(args::missing_program(SYNOPSIS)),
    }
}

pub fn main() -> ! {
    error::run(PROG, || {
        let env = chain::start();
        let opts = parse(std::env::args_os().skip(1))?;
        let lock = write_pidfile(&opts.path, sys::getpid())?;
        chain::hold(lock);
        Err(chain::exec(&opts.argv, env))
    })
}

/// Opens and locks the pidfile at `path` and writes `pid` and a newline in
/// it; returns the locked descriptor (numbered above 2), which must stay
/// open as long as the daemon runs.
pub fn write_pidfile(path: &OsString, pid: i32) -> Result<OwnedFd, Error> {
    let shown = path.to_string_lossy();
    let file = open(path)?;
    let meta = file
        .metadata()
        .map_err(|e| Error::sys(format_args!("stat {shown}"), &e))?;
    if !meta.is_file() {
        return Err(refuse(&shown, "it is not a regular file"));
    }
    // A second name for the file is a planted hard link to some other
    // file, whose contents we would destroy.
    if meta.nlink() > 1 {
        return Err(refuse(
            &shown,
            &format!("it has {} hard links", meta.nlink()),
        ));
    }
    match sys::try_lock(file.as_fd()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            return Err(Error::new(
                error::SYSTEM,
                format!("unable to lock {shown}: {}", running(&file)),
            ));
        }
        Err(e) => return Err(Error::sys(format_args!("lock {shown}"), &e)),
    }
    // Only now that the file is ours.
    write_pid(&file, pid).map_err(|e| Error::sys(format_args!("write {shown}"), &e))?;
    let fd = OwnedFd::from(file);
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // A standard descriptor was free and open(2) took it, where a later
    // tool (skd-bind, on 0) would overwrite it. The Rust runtime reopens
    // closed standard descriptors on /dev/null before main, so this is a
    // safety net. The copy shares the lock, which belongs to the open
    // file, not to the number.
    sys::dup_at_least(fd.as_fd(), 3)
        .map_err(|e| Error::sys(format_args!("duplicate the descriptor of {shown}"), &e))
}

/// Empties the locked file, then writes the whole line in one pwrite(2).
fn write_pid(file: &File, pid: i32) -> io::Result<()> {
    file.set_len(0)?;
    file.write_all_at(format!("{pid}\n").as_bytes(), 0)
}

/// Writes `pid` in the pidfiles held by the chain: for `skd-background`'s
/// child, which becomes the daemon in place of the process that wrote
/// them.
pub fn rewrite_held(pid: i32) -> Result<(), Error> {
    for fd in chain::held_fds() {
        // A copy of the descriptor (close-on-exec, closed on return) shares
        // the open file, and so the lock held by the original.
        let file = sys::borrow_raw(fd)
            .try_clone_to_owned()
            .map(File::from)
            .and_then(|file| write_pid(&file, pid));
        file.map_err(|e| Error::sys("rewrite a pidfile written before skd-background", &e))?;
    }
    Ok(())
}

/// Opens (creating it, mode 0644 less the umask) the pidfile without
/// following a symbolic link at `path` and without truncating it.
fn open(path: &OsString) -> Result<File, Error> {
    let shown = path.to_string_lossy();
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o644)
        // O_NONBLOCK: a FIFO or device planted there must not make the
        // open itself hang; such files are refused just after.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            let symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
            if e.raw_os_error() == Some(libc::ELOOP) && symlink {
                refuse(&shown, "it is a symbolic link (not followed)")
            } else {
                Error::sys(format_args!("open {shown}"), &e)
            }
        })
}

fn refuse(shown: &str, why: &str) -> Error {
    Error::new(error::SYSTEM, format!("unable to use {shown}: {why}"))
}

/// Why the lock is taken: the pid of the running instance, when the file
/// holds one.
fn running(file: &File) -> String {
    match read_pid(file) {
        Ok(Some(pid)) => format!("already running, pid {pid}"),
        _ => "already running (locked by another process)".to_string(),
    }
}

fn read_pid(file: &File) -> io::Result<Option<u32>> {
    let mut buf = [0u8; 32];
    let n = file.read_at(&mut buf, 0)?;
    Ok(parse_pid(&buf[..n]))
}

/// The pid on the first line of a pidfile: decimal digits, then a newline
/// or the end.
fn parse_pid(content: &[u8]) -> Option<u32> {
    let line = content.split(|&b| b == b'\n').next()?;
    if line.is_empty() || !line.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(line)
        .ok()?
        .parse()
        .ok()
        .filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Options, Error> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn pidfile_then_program() {
        let o = parse_str(&["/run/x.pid", "skd-accept", "-c", "5", "cat"]).unwrap();
        assert_eq!(o.path, "/run/x.pid");
        assert_eq!(o.argv, ["skd-accept", "-c", "5", "cat"]);
        let o = parse_str(&["--", "-odd.pid", "prog"]).unwrap();
        assert_eq!((o.path, o.argv), ("-odd.pid".into(), vec!["prog".into()]));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &[][..],
            &["x.pid"],
            &["", "prog"],
            &["-x", "x.pid", "prog"],
            &["x.pid", "-x", "prog"],
        ] {
            assert_eq!(parse_str(bad).unwrap_err().code, 100, "{bad:?}");
        }
    }

    #[test]
    fn pids_are_read_from_the_first_line() {
        assert_eq!(parse_pid(b"123\n"), Some(123));
        assert_eq!(parse_pid(b"123"), Some(123));
        assert_eq!(parse_pid(b"123\ngarbage"), Some(123));
        assert_eq!(parse_pid(b""), None);
        assert_eq!(parse_pid(b"\n"), None);
        assert_eq!(parse_pid(b"0\n"), None);
        assert_eq!(parse_pid(b" 12\n"), None);
        assert_eq!(parse_pid(b"12x\n"), None);
        assert_eq!(parse_pid(b"99999999999999999999\n"), None);
    }
}
