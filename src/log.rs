//! skd-log: send the stderr of the rest of the chain to syslog through a
//! logger child, or to a file, then exec the next program.
//!
//! Syslog: we connect to /dev/log, make a pipe and fork. The child (the
//! logger) keeps the pipe's read end and the socket and nothing else,
//! drops privileges with `-U`, and sends each line it reads to syslog until
//! every writer has closed the pipe. The parent, which keeps its pid (a
//! pidfile written earlier stays right), puts the write end on fd 2 and
//! execs the next program.
//!
//! File: the file is opened and put on fd 2; no process is needed.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use lexopt::Arg::{Short, Value};

use crate::chain;
use crate::error::{self, Error};
use crate::setuid::{self, Creds, Root};
use crate::syslog::{self, Connection, Lines};
use crate::{args, sys};

pub const PROG: &str = "skd-log";
pub const SYNOPSIS: &str = "skd-log [-U] tag[:facility.priority] | '>file' | '>>file' prog...";

/// Where stderr goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    Syslog {
        tag: Vec<u8>,
        facility: u8,
        priority: u8,
    },
    File {
        path: OsString,
        append: bool,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// `-U`: the logger drops to `$UID`/`$GID`/`$GIDLIST` (no effect for a
    /// file, which needs no process).
    pub drop_privileges: bool,
    pub spec: Spec,
    pub argv: Vec<OsString>,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut drop_privileges = false;
    let syntax = |e| args::syntax(e, SYNOPSIS);
    while let Some(arg) = parser.next().map_err(syntax)? {
        match arg {
            Short('U') => drop_privileges = true,
            Value(first) => {
                let mut argv = args::program(first, &mut parser);
                let spec = parse_spec(&argv.remove(0))?;
                if argv.is_empty() {
                    return Err(args::missing_program(SYNOPSIS));
                }
                return Ok(Options {
                    drop_privileges,
                    spec,
                    argv,
                });
            }
            other => return Err(syntax(other.unexpected())),
        }
    }
    Err(Error::usage(format!(
        "no log destination given; usage: {SYNOPSIS}"
    )))
}

/// `>FILE`, `>>FILE` (blanks allowed after the `>`s) or
/// `TAG[:FACILITY.PRIORITY]`.
pub fn parse_spec(spec: &OsStr) -> Result<Spec, Error> {
    let bytes = spec.as_bytes();
    if let Some(rest) = bytes.strip_prefix(b">") {
        let (rest, append) = match rest.strip_prefix(b">") {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let path = rest.trim_ascii_start();
        if path.is_empty() {
            return Err(Error::usage("no file name after '>'"));
        }
        return Ok(Spec::File {
            path: OsStr::from_bytes(path).to_owned(),
            append,
        });
    }
    let (tag, level) = match bytes.iter().position(|&b| b == b':') {
        Some(at) => (&bytes[..at], Some(&bytes[at + 1..])),
        None => (bytes, None),
    };
    if tag.is_empty() {
        return Err(Error::usage(format!(
            "no syslog tag given; usage: {SYNOPSIS}"
        )));
    }
    let (facility, priority) = match level {
        None => (3, 5), // daemon.notice
        Some(level) => parse_level(&String::from_utf8_lossy(level))?,
    };
    Ok(Spec::Syslog {
        tag: tag.to_vec(),
        facility,
        priority,
    })
}

fn parse_level(level: &str) -> Result<(u8, u8), Error> {
    let (facility, priority) = level.split_once('.').ok_or_else(|| {
        Error::usage(format!(
            "invalid syslog level \"{level}\" (must be facility.priority)"
        ))
    })?;
    let facility = syslog::lookup(syslog::FACILITIES, facility).ok_or_else(|| {
        Error::usage(format!(
            "unknown syslog facility \"{facility}\" (valid: {})",
            syslog::names(syslog::FACILITIES)
        ))
    })?;
    let priority = syslog::lookup(syslog::PRIORITIES, priority).ok_or_else(|| {
        Error::usage(format!(
            "unknown syslog priority \"{priority}\" (valid: {})",
            syslog::names(syslog::PRIORITIES)
        ))
    })?;
    Ok((facility, priority))
}

pub fn main() -> ! {
    error::run(PROG, || {
        let env = chain::start();
        let opts = parse(std::env::args_os().skip(1))?;
        match &opts.spec {
            Spec::File { path, append } => to_file(path, *append)?,
            Spec::Syslog {
                tag,
                facility,
                priority,
            } => {
                let creds = match opts.drop_privileges {
                    true => Some(Creds::from_env(&env)?),
                    false => None,
                };
                let logger = Logger::new(tag.clone(), facility * 8 + priority, sys::getpid());
                start_logger(logger, creds)?;
            }
        }
        Err(chain::exec(&opts.argv, env))
    })
}

/// Opens the file (following symlinks, as a shell's `2>` would: log files
/// are often links into another directory) and makes it our stderr.
fn to_file(path: &OsStr, append: bool) -> Result<(), Error> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .mode(0o644)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Error::sys(format_args!("open {}", path.to_string_lossy()), &e))?;
    sys::move_to(OwnedFd::from(file), 2)
        .map_err(|e| Error::sys("redirect stderr to the log file", &e))
}

/// Connects to syslog, forks the logger and waits until it has set itself
/// up (dropped privileges), then makes the pipe to it our stderr.
fn start_logger(logger: Logger, creds: Option<Creds>) -> Result<(), Error> {
    let conn = Connection::open()
        .map_err(|e| Error::sys(format_args!("connect to {}", syslog::PATH), &e))?;
    let pipe = |what| move |e: io::Error| Error::sys(format_args!("create a {what} pipe"), &e);
    // Neither the socket nor the pipes can be 0, 1 or 2, which the logger
    // points at /dev/null: before main, the Rust runtime opens /dev/null
    // on any of them that our caller left closed.
    let (log_read, log_write) = sys::pipe().map_err(pipe("log"))?;
    let (status_read, status_write) = sys::pipe().map_err(pipe("status"))?;
    match sys::fork().map_err(|e| Error::sys("fork the logger", &e))? {
        sys::Forked::Child => {
            drop((log_write, status_read));
            run_logger(logger, conn, log_read, status_write, creds)
        }
        sys::Forked::Parent(pid) => {
            drop((log_read, status_write, conn));
            if let Some(err) = read_status(status_read) {
                let _ = sys::wait(pid);
                return Err(err);
            }
        }
    }
    sys::move_to(log_write, 2).map_err(|e| Error::sys("redirect stderr to the logger", &e))
}

/// The logger's report on its set-up: nothing (end of file) when all went
/// well, else an exit code byte and the message.
fn read_status(fd: OwnedFd) -> Option<Error> {
    let mut report = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n @ 1..) = sys::read(fd.as_fd(), &mut buf) {
        report.extend_from_slice(&buf[..n]);
    }
    let (&code, msg) = report.split_first()?;
    Some(Error::new(
        i32::from(code),
        String::from_utf8_lossy(msg).into_owned(),
    ))
}

/// The logger child: never returns.
fn run_logger(
    mut logger: Logger,
    conn: Connection,
    input: OwnedFd,
    status: OwnedFd,
    creds: Option<Creds>,
) -> ! {
    // Our copy of the readiness descriptor: closing it releases nobody
    // (the parent holds its own), and we must never report through it.
    chain::ready();
    logger.conn = Some(conn);
    if let Err(err) = logger_setup(&logger, &input, &status, creds) {
        let mut report = vec![err.code.clamp(1, 255) as u8];
        report.extend_from_slice(err.msg.as_bytes());
        let _ = sys::write_all(status.as_fd(), &report);
        sys::exit_now(err.code);
    }
    drop(status);
    logger.run(input.as_fd());
    sys::exit_now(0)
}

/// What the logger holds: the pipe, the socket, /dev/null on 0, 1 and 2
/// (not the caller's terminal or `$(...)` pipe), the root directory as its
/// working directory; and it runs as `creds` when given. It does not
/// chroot: it must be able to reconnect to /dev/log when syslog restarts,
/// and it opens nothing else.
fn logger_setup(
    logger: &Logger,
    input: &OwnedFd,
    status: &OwnedFd,
    creds: Option<Creds>,
) -> Result<(), Error> {
    // The logger outlives the service it logs for: a signal to the
    // process group (^C, a supervisor's SIGTERM) stops the writers, and
    // the logger sends what they wrote before it reads end of file.
    for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE] {
        sys::ignore_signal(sig).map_err(|e| Error::sys("ignore signals", &e))?;
    }
    sys::set_signal_mask(&sys::SigSet::empty()).map_err(|e| Error::sys("unblock signals", &e))?;
    let null = sys::open_dev_null().map_err(|e| Error::sys("open /dev/null", &e))?;
    for fd in 0..=2 {
        sys::dup_onto(null.as_fd(), fd)
            .map_err(|e| Error::sys("redirect the logger's stdio to /dev/null", &e))?;
    }
    drop(null);
    let mut keep = vec![input.as_raw_fd(), status.as_raw_fd()];
    keep.extend(logger.conn.as_ref().and_then(Connection::raw_fd));
    sys::close_fds_except(&keep);
    std::env::set_current_dir("/").map_err(|e| Error::sys("chdir to /", &e))?;
    // Read the time zone while /etc/localtime is surely readable.
    sys::tzset();
    if let Some(creds) = creds {
        setuid::apply(&creds, Root::Ignore)?;
    }
    Ok(())
}

/// How long a line waits for syslog to come back before it is dropped.
const RETRY_FOR: Duration = Duration::from_secs(5);

/// The log loop: reads lines, sends messages.
struct Logger {
    conn: Option<Connection>,
    tag: Vec<u8>,
    pri: u8,
    /// The pid shown in each message: the service's (the process we exec
    /// into, the one a pidfile records), not the logger's own.
    pid: i32,
    /// Messages dropped since syslog was last reachable.
    lost: u64,
}

impl Logger {
    fn new(tag: Vec<u8>, pri: u8, pid: i32) -> Logger {
        Logger {
            conn: None,
            tag,
            pri,
            pid,
            lost: 0,
        }
    }

    fn run(&mut self, input: std::os::fd::BorrowedFd) {
        let mut lines = Lines::new(syslog::MAX_TEXT);
        let mut buf = vec![0u8; 65536];
        loop {
            // An error cannot happen on a pipe we own; it would count as
            // the end.
            let n = sys::read(input, &mut buf).unwrap_or_default();
            lines.push(&buf[..n]);
            while let Some(text) = lines.next_message(n == 0) {
                self.deliver(text);
            }
            if n == 0 {
                return;
            }
        }
    }

    fn message(&self, pri: u8, text: &[u8]) -> Vec<u8> {
        syslog::format(pri, &syslog::now(), &self.tag, self.pid, text)
    }

    /// Sends one message. While syslog is unreachable (restarting) it is
    /// retried for `RETRY_FOR`; if that runs out it is dropped and counted,
    /// later messages get one attempt each (no waiting, so the service is
    /// never held up for long), and the count is logged once syslog is back.
    fn deliver(&mut self, text: &[u8]) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if self.lost > 0 {
            let lines = if self.lost == 1 { "line" } else { "lines" };
            let notice = format!(
                "{PROG}: warning: {} {lines} lost while syslog was unreachable",
                self.lost
            );
            let pri = self.pri & !7 | syslog::LOG_WARNING;
            match conn.send(&self.message(pri, notice.as_bytes()), false) {
                Ok(()) => self.lost = 0,
                Err(_) => {
                    self.lost += 1;
                    self.conn = Some(conn);
                    return;
                }
            }
        }
        let msg = self.message(self.pri, text);
        let deadline = Instant::now() + RETRY_FOR;
        let mut pause = Duration::from_millis(10);
        while conn.send(&msg, true).is_err() {
            let now = Instant::now();
            if now >= deadline {
                self.lost += 1;
                break;
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        self.conn = Some(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Options, Error> {
        parse(args.iter().map(OsString::from))
    }

    fn syslog_spec(tag: &str, facility: u8, priority: u8) -> Spec {
        Spec::Syslog {
            tag: tag.as_bytes().to_vec(),
            facility,
            priority,
        }
    }

    fn file(path: &str, append: bool) -> Spec {
        Spec::File {
            path: path.into(),
            append,
        }
    }

    #[test]
    fn specs() {
        let spec = |s: &str| parse_spec(OsStr::new(s)).unwrap();
        assert_eq!(spec("web"), syslog_spec("web", 3, 5));
        assert_eq!(spec("web:local3.err"), syslog_spec("web", 19, 3));
        assert_eq!(spec("web:MAIL.Warn"), syslog_spec("web", 2, 4));
        assert_eq!(spec(">/var/log/x"), file("/var/log/x", false));
        assert_eq!(spec(">>/var/log/x"), file("/var/log/x", true));
        assert_eq!(spec("> /var/log/x"), file("/var/log/x", false));
        assert_eq!(spec(">> \t x y"), file("x y", true));
    }

    #[test]
    fn options_and_program() {
        let o = parse_str(&["-U", "web", "sh", "-c", "x"]).unwrap();
        assert!(o.drop_privileges);
        assert_eq!(o.spec, syslog_spec("web", 3, 5));
        assert_eq!(o.argv, ["sh", "-c", "x"]);
        let o = parse_str(&["--", ">x", "-U"]).unwrap();
        assert!(!o.drop_privileges);
        assert_eq!(o.argv, ["-U"]);
    }

    #[test]
    fn usage_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "no log destination given"),
            (&["-U"], "no log destination given"),
            (&["web"], "no program to run"),
            (&["-x", "web", "cat"], "invalid option '-x'"),
            (&[":daemon.info", "cat"], "no syslog tag given"),
            (&["", "cat"], "no syslog tag given"),
            (&[">", "cat"], "no file name after '>'"),
            (&[">>  ", "cat"], "no file name after '>'"),
            (&["web:daemon", "cat"], "invalid syslog level \"daemon\""),
            (
                &["web:demon.info", "cat"],
                "unknown syslog facility \"demon\" (valid: kern user mail daemon auth syslog lpr news uucp cron authpriv ftp local0 local1 local2 local3 local4 local5 local6 local7)",
            ),
            (
                &["web:daemon.loud", "cat"],
                "unknown syslog priority \"loud\" (valid: emerg alert crit err warning notice info debug panic error warn)",
            ),
        ];
        for (args, text) in cases {
            let err = parse_str(args).unwrap_err();
            assert_eq!(err.code, 100, "{args:?}");
            assert!(err.msg.starts_with(text), "{args:?}: {}", err.msg);
        }
    }
}
