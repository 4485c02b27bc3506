//! skd-background: run the rest of the chain in a new session in the
//! background, and return once it is ready, or with its failure.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use crate::chain::{self, Env};
use crate::error::{self, Error};
use crate::{args, pidfile, sys};

pub const PROG: &str = "skd-background";
pub const SYNOPSIS: &str = "skd-background prog...";

/// The kernel's flag for a task that has begun to exit (`PF_EXITING` in
/// include/linux/sched.h, shown in field 9 of /proc/PID/stat).
const PF_EXITING: u64 = 0x4;

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub argv: Vec<OsString>,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, Error> {
    Ok(Options {
        argv: args::program_only(args, SYNOPSIS)?,
    })
}

pub fn main() -> ! {
    error::run(PROG, || {
        let env = chain::start();
        let opts = parse(std::env::args_os().skip(1))?;
        let (pipe, write_end) =
            sys::pipe().map_err(|e| Error::sys("create the readiness pipe", &e))?;
        // Above the standard descriptors even if our caller closed some of
        // them: the number travels in SKD_READY_FD, which must be > 2.
        let ready = sys::dup_at_least(write_end.as_fd(), 3)
            .map_err(|e| Error::sys("duplicate the readiness pipe", &e))?;
        drop(write_end);
        match sys::fork().map_err(|e| Error::sys("fork", &e))? {
            sys::Forked::Child => {
                drop(pipe);
                Err(background(&opts.argv, env, ready))
            }
            sys::Forked::Parent(child) => {
                // Only the chain may hold the write end: end-of-file must
                // mean that every tool in it let go.
                drop(ready);
                finish(wait_ready(pipe, child)?)
            }
        }
    })
}

/// The child: a new session without the caller's terminal, then the chain.
/// Returns only on failure (which reaches the parent through the pipe).
fn background(argv: &[OsString], env: Env, ready: OwnedFd) -> Error {
    // First, so that every failure below is reported to the parent.
    chain::set_ready_fd(ready);
    if let Err(e) = sys::setsid() {
        return Error::sys("create a new session", &e);
    }
    if let Err(err) = leave_terminal() {
        return err;
    }
    // A pidfile written earlier in the chain names our parent, which is
    // about to exit: this process is the daemon.
    if let Err(err) = pidfile::rewrite_held(sys::getpid()) {
        return err;
    }
    chain::exec(argv, env)
}

/// Points stdin and stdout at /dev/null where they are terminals (the
/// session we left behind may hang up or read them). Anything else (a
/// pipe, a file, a socket) was chosen by the caller and is left alone.
fn leave_terminal() -> Result<(), Error> {
    let terminals: Vec<(RawFd, &str)> = [(0, "stdin"), (1, "stdout")]
        .into_iter()
        .filter(|&(fd, _)| sys::isatty(fd))
        .collect();
    if terminals.is_empty() {
        return Ok(());
    }
    let null = sys::open_dev_null().map_err(|e| Error::sys("open /dev/null", &e))?;
    for (fd, name) in terminals {
        sys::dup_onto(null.as_fd(), fd)
            .map_err(|e| Error::sys(format_args!("redirect {name} to /dev/null"), &e))?;
    }
    Ok(())
}

/// What the parent learnt from the readiness pipe.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The chain is ready and still running (or ended well).
    Ready,
    /// A tool reported its failure (and its message) with this status.
    Reported(i32),
    /// The chain ended without reporting.
    Ended(sys::Exit),
}

/// Waits until the chain is ready or has failed.
fn wait_ready(pipe: OwnedFd, child: i32) -> Result<Outcome, Error> {
    let mut byte = [0u8; 1];
    let n = sys::read(pipe.as_fd(), &mut byte)
        .map_err(|e| Error::sys("read the readiness pipe", &e))?;
    if n == 1 {
        // The protocol sends 1 to 255; a 0 would be a broken tool.
        let code = if byte[0] == 0 {
            error::SYSTEM
        } else {
            i32::from(byte[0])
        };
        return Ok(Outcome::Reported(code));
    }
    // End of file: every holder let go. That is readiness, unless the
    // chain's process died (killed by a signal, say) and its death closed
    // the pipe.
    Ok(match ended(child) {
        Some(sys::Exit::Code(0)) | None => Outcome::Ready,
        Some(exit) => Outcome::Ended(exit),
    })
}

/// How the child ended, if it has ended or is ending now.
///
/// A dying process closes its descriptors before it becomes a zombie, so
/// end-of-file can come a moment before `waitpid` sees the death. The
/// kernel marks the task as exiting before it closes anything, so a child
/// not yet reaped but marked is waited for; one not marked was alive when
/// the pipe closed, which is readiness.
fn ended(child: i32) -> Option<sys::Exit> {
    if let Ok(Some((_, exit))) = sys::try_wait(child) {
        return Some(exit);
    }
    if exiting(child) {
        return sys::wait(child).ok();
    }
    None
}

/// Whether process `pid` has begun to exit, from /proc/PID/stat; false
/// when that cannot be read.
fn exiting(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_flags(&stat))
        .is_some_and(|flags| flags & PF_EXITING != 0)
}

/// The flags word (field 9) of a /proc/PID/stat line. The command name in
/// field 2 may hold blanks and parentheses, so fields are counted from its
/// closing parenthesis: state, ppid, pgrp, session, tty_nr, tpgid, flags.
fn stat_flags(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(6)?.parse().ok()
}

/// Exits with the outcome's status; a failure also answers a waiting outer
/// `skd-background`, if we were started by one.
fn finish(outcome: Outcome) -> Result<std::convert::Infallible, Error> {
    match outcome {
        Outcome::Ready => std::process::exit(0),
        Outcome::Reported(code) => {
            // The failing tool has printed its message already.
            chain::report_failure(code);
            std::process::exit(code)
        }
        Outcome::Ended(sys::Exit::Code(code)) => Err(Error::new(
            code,
            format!("the background process exited with status {code}"),
        )),
        Outcome::Ended(sys::Exit::Signal(sig)) => Err(Error::new(
            error::SYSTEM,
            format!("the background process was killed by signal {sig}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Options, Error> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn everything_is_the_program() {
        let o = parse_str(&["skd-bind", "-t", "0", "skd-accept", "cat"]).unwrap();
        assert_eq!(o.argv, ["skd-bind", "-t", "0", "skd-accept", "cat"]);
        let o = parse_str(&["--", "-prog", "-x"]).unwrap();
        assert_eq!(o.argv, ["-prog", "-x"]);
    }

    #[test]
    fn usage_errors() {
        for bad in [&[][..], &["-x", "prog"], &["--"], &["--long", "prog"]] {
            assert_eq!(parse_str(bad).unwrap_err().code, 100, "{bad:?}");
        }
    }

    #[test]
    fn flags_are_read_after_the_command_name() {
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194564 113 0 0 0";
        assert_eq!(stat_flags(line), Some(4194564));
        assert_eq!(stat_flags("42 (sleep) Z 1 42 42 0 -1 4"), Some(4));
        assert_eq!(stat_flags("42 (sleep) Z 1"), None);
        assert_eq!(stat_flags("garbage"), None);
    }

    #[test]
    fn a_running_process_is_not_exiting() {
        assert!(!exiting(sys::getpid()));
        assert!(!exiting(-1));
    }
}
