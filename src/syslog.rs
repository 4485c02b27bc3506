//! Talking to the local syslog daemon the way syslog(3) does: a unix
//! socket at /dev/log (datagram, else stream) and RFC 3164 messages
//! `<PRI>Mmm dd hh:mm:ss TAG[PID]: text`; plus the line splitter that
//! turns a byte stream into messages of bounded size.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sys;

/// Where the local syslog daemon listens.
pub const PATH: &str = "/dev/log";

/// The longest text of one message, in bytes. Longer lines are sent as
/// several messages (classic skd split at 1023 bytes; RFC 3164 asks for
/// datagrams of about this size).
pub const MAX_TEXT: usize = 1024;

/// Facility names and numbers, as in <syslog.h>.
pub const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Priority names and numbers, as in <syslog.h>; the last three are the
/// deprecated aliases that logger(1) and syslog.conf also accept.
pub const PRIORITIES: &[(&str, u8)] = &[
    ("emerg", 0),
    ("alert", 1),
    ("crit", 2),
    ("err", 3),
    ("warning", 4),
    ("notice", 5),
    ("info", 6),
    ("debug", 7),
    ("panic", 0),
    ("error", 3),
    ("warn", 4),
];

pub const LOG_WARNING: u8 = 4;

/// Looks a name up in one of the tables above (case does not matter).
pub fn lookup(table: &[(&str, u8)], name: &str) -> Option<u8> {
    table
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
}

/// The names of a table, separated by blanks, for a usage message.
pub fn names(table: &[(&str, u8)]) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" ")
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// One message: `<PRI>Mmm dd hh:mm:ss TAG[PID]: text` (the day padded
/// with a blank, as syslog(3) and RFC 3164 write it).
pub fn format(pri: u8, time: &sys::LocalTime, tag: &[u8], pid: i32, text: &[u8]) -> Vec<u8> {
    let month = MONTHS[usize::from(time.month) % 12];
    let head = format!(
        "<{pri}>{month} {:2} {:02}:{:02}:{:02} ",
        time.day, time.hour, time.minute, time.second
    );
    let mut msg = Vec::with_capacity(head.len() + tag.len() + text.len() + 16);
    msg.extend_from_slice(head.as_bytes());
    msg.extend_from_slice(tag);
    msg.extend_from_slice(format!("[{pid}]: ").as_bytes());
    msg.extend_from_slice(text);
    msg
}

/// The local time now, for a message. A clock before 1970 or a failed
/// conversion shows as the epoch rather than losing the line.
pub fn now() -> sys::LocalTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    sys::localtime(secs).unwrap_or(sys::LocalTime {
        month: 0,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
    })
}

/// Where to cut `text` so that the first piece has at most `max` bytes:
/// never inside a UTF-8 character when the text is UTF-8 there.
pub fn cut(text: &[u8], max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    let is_continuation = |b: u8| b & 0xc0 == 0x80;
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&at| at > 0 && !is_continuation(text[at]))
        .unwrap_or(max)
}

/// Turns bytes read from a pipe into messages: one per line (newline
/// removed, empty lines skipped), lines longer than `max` cut into
/// pieces of at most `max` bytes. Nothing is dropped.
pub struct Lines {
    buf: Vec<u8>,
    /// Where the bytes not yet returned start in `buf`.
    start: usize,
    max: usize,
}

impl Lines {
    pub fn new(max: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            start: 0,
            max: max.max(4),
        }
    }

    /// Adds bytes read.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(data);
    }

    /// The next message, if one is complete; with `eof`, an unfinished
    /// last line is complete too.
    pub fn next_message(&mut self, eof: bool) -> Option<&[u8]> {
        loop {
            let rest = &self.buf[self.start..];
            let newline = rest.iter().position(|&b| b == b'\n');
            let end = match newline {
                Some(i) => i,
                None if eof || rest.len() > self.max => rest.len(),
                None => return None,
            };
            if end == 0 {
                match newline {
                    // An empty line: nothing to say.
                    Some(_) => {
                        self.start += 1;
                        continue;
                    }
                    None => return None,
                }
            }
            let take = cut(&rest[..end], self.max);
            let from = self.start;
            self.start += take;
            if take == end && newline.is_some() {
                self.start += 1;
            }
            return Some(&self.buf[from..from + take]);
        }
    }
}

/// How long one blocking send may wait for room in the daemon's queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection to the syslog daemon, reopened when it breaks.
pub struct Connection {
    socket: Option<OwnedFd>,
    /// A stream socket needs a NUL after each message (as glibc sends).
    stream: bool,
}

impl Connection {
    /// Connects now: failing here is worth reporting.
    pub fn open() -> io::Result<Connection> {
        let mut conn = Connection {
            socket: None,
            stream: false,
        };
        conn.connect()?;
        Ok(conn)
    }

    /// The socket's descriptor, when connected.
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.socket.as_ref().map(|s| s.as_raw_fd())
    }

    fn connect(&mut self) -> io::Result<()> {
        let addr = sys::RawAddr::from_unix_path(PATH.as_bytes())?;
        let socket = sys::socket(libc::AF_UNIX, libc::SOCK_DGRAM)?;
        let (socket, stream) = match sys::connect(socket.as_fd(), &addr) {
            Ok(()) => (socket, false),
            // A syslog daemon listening on a stream socket (as glibc does).
            Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                let socket = sys::socket(libc::AF_UNIX, libc::SOCK_STREAM)?;
                sys::connect(socket.as_fd(), &addr)?;
                (socket, true)
            }
            Err(e) => return Err(e),
        };
        sys::set_send_timeout(socket.as_fd(), SEND_TIMEOUT)?;
        self.socket = Some(socket);
        self.stream = stream;
        Ok(())
    }

    /// Forgets a broken connection; the next send reconnects.
    pub fn disconnect(&mut self) {
        self.socket = None;
    }

    /// One attempt to deliver `msg`, reconnecting first when needed.
    /// `wait`: whether to wait (boundedly) for room in the daemon's queue.
    pub fn send(&mut self, msg: &[u8], wait: bool) -> io::Result<()> {
        if self.socket.is_none() {
            self.connect()?;
        }
        let result = self.send_connected(msg, wait);
        if result.is_err() {
            self.disconnect();
        }
        result
    }

    fn send_connected(&mut self, msg: &[u8], wait: bool) -> io::Result<()> {
        let Some(socket) = &self.socket else {
            return Err(io::Error::from_raw_os_error(libc::ENOTCONN));
        };
        let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
        if !self.stream {
            return sys::send(socket.as_fd(), msg, flags).map(drop);
        }
        let mut record = msg.to_vec();
        record.push(0);
        let mut rest = &record[..];
        while !rest.is_empty() {
            let n = sys::send(socket.as_fd(), rest, flags)?;
            rest = &rest[n..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(lines: &mut Lines, eof: bool) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(m) = lines.next_message(eof) {
            out.push(String::from_utf8_lossy(m).into_owned());
        }
        out
    }

    #[test]
    fn the_rfc_3164_line() {
        let t = sys::LocalTime {
            month: 0,
            day: 5,
            hour: 1,
            minute: 2,
            second: 3,
        };
        let msg = format(29, &t, b"web", 42, b"hello world");
        assert_eq!(msg, b"<29>Jan  5 01:02:03 web[42]: hello world");
        let t = sys::LocalTime {
            month: 11,
            day: 25,
            hour: 23,
            minute: 59,
            second: 58,
        };
        let msg = format(155, &t, b"x", 1, b"");
        assert_eq!(msg, b"<155>Dec 25 23:59:58 x[1]: ");
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(lookup(FACILITIES, "daemon"), Some(3));
        assert_eq!(lookup(FACILITIES, "LOCAL7"), Some(23));
        assert_eq!(lookup(FACILITIES, "local8"), None);
        assert_eq!(lookup(PRIORITIES, "notice"), Some(5));
        assert_eq!(lookup(PRIORITIES, "warn"), Some(4));
        assert_eq!(lookup(PRIORITIES, "error"), Some(3));
        assert_eq!(lookup(PRIORITIES, "panic"), Some(0));
        assert_eq!(lookup(PRIORITIES, "none"), None);
        assert!(names(FACILITIES).starts_with("kern user mail daemon"));
    }

    #[test]
    fn lines_are_split_on_newlines_and_empty_ones_skipped() {
        let mut l = Lines::new(100);
        l.push(b"one\ntwo\n\n\nthr");
        assert_eq!(all(&mut l, false), ["one", "two"]);
        l.push(b"ee\nfour");
        assert_eq!(all(&mut l, false), ["three"]);
        assert_eq!(all(&mut l, true), ["four"]);
        assert_eq!(all(&mut l, true), Vec::<String>::new());
    }

    #[test]
    fn long_lines_are_cut_without_loss() {
        let mut l = Lines::new(10);
        l.push(b"0123456789abcdefghij0123");
        // Only what certainly needs cutting goes before the newline comes.
        assert_eq!(all(&mut l, false), ["0123456789", "abcdefghij"]);
        l.push(b"\n0123456789\nxy");
        assert_eq!(all(&mut l, false), ["0123", "0123456789"]);
        assert_eq!(all(&mut l, true), ["xy"]);
    }

    #[test]
    fn cuts_fall_between_utf8_characters() {
        let text = "aaaaaaaaé".as_bytes(); // é is two bytes at 8..10
        assert_eq!(cut(text, 9), 8);
        assert_eq!(cut(text, 10), 10);
        let euro = "€€€€".as_bytes(); // three bytes each
        assert_eq!(cut(euro, 5), 3);
        assert_eq!(cut(euro, 6), 6);
        // Not UTF-8: cut at the limit.
        let bin = [0x80u8; 20];
        assert_eq!(cut(&bin, 10), 10);
        let mut l = Lines::new(4);
        l.push("€€€\n".as_bytes());
        assert_eq!(all(&mut l, false), ["€", "€", "€"]);
    }
}
