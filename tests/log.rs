//! skd-log: the stderr of a chain into a file, or through the logger child
//! into a real /dev/log socket (the test's own, seen as /dev/log inside a
//! private mount namespace).

mod common;

use std::collections::HashMap;
use std::fs::Permissions;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;

/// Run by `unshare -m`: in the new mount namespace, /dev becomes a tmpfs
/// holding only `null` (the real one, bind-mounted) and `log`, a symlink
/// to `$1/log.sock`, so the test can stop, replace and restart "syslog"
/// at will. Then the chain is exec'd (same pid).
const NAMESPACE: &str = r#"set -e
d=$1; shift
: > "$d/null"
mount --bind /dev/null "$d/null"
mount -t tmpfs -o mode=755 tmpfs /dev
: > /dev/null
mount --bind "$d/null" /dev/null
ln -s "$d/log.sock" /dev/log
exec "$@""#;

/// A stand-in syslog daemon: a datagram socket at `DIR/log.sock`.
struct Syslogd {
    dir: TempDir,
    sock: Option<UnixDatagram>,
}

impl Syslogd {
    fn start() -> Syslogd {
        let mut s = Syslogd::stopped();
        s.start_again();
        s
    }

    fn stopped() -> Syslogd {
        Syslogd {
            dir: TempDir::new(),
            sock: None,
        }
    }

    fn start_again(&mut self) {
        let path = self.dir.path("log.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // Reachable for a logger running as nobody.
        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        self.sock = Some(sock);
    }

    /// Closes the socket and removes it, as a syslog daemon that exits.
    fn stop(&mut self) {
        self.sock = None;
        let _ = std::fs::remove_file(self.dir.path("log.sock"));
    }

    fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// A file in the syslog directory, for the chain to wait on.
    fn file(&self, name: &str) -> String {
        self.dir.path(name).to_str().unwrap().to_owned()
    }

    fn touch(&self, name: &str) {
        std::fs::write(self.dir.path(name), "").unwrap();
    }

    /// The chain, run in a namespace where /dev/log is our socket.
    fn command(&self, chain: &[&str]) -> Command {
        let mut c = Command::new(require("unshare"));
        c.args(["-m", "sh", "-c", NAMESPACE, "sh"])
            .arg(&self.dir.0)
            .args(chain);
        c
    }

    /// The next datagram, as text.
    fn recv(&self) -> String {
        let mut buf = vec![0u8; 65536];
        let n = self
            .sock
            .as_ref()
            .expect("syslogd is running")
            .recv(&mut buf)
            .expect("a syslog message in time");
        String::from_utf8(buf[..n].to_vec()).expect("UTF-8 message")
    }

    /// The next message, checked and taken apart.
    fn message(&self) -> Message {
        Message::parse(&self.recv())
    }
}

#[derive(Debug)]
struct Message {
    pri: u32,
    stamp: String,
    tag: String,
    pid: i32,
    text: String,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Message {
    /// `<PRI>Mmm dd hh:mm:ss TAG[PID]: text`, strictly.
    fn parse(msg: &str) -> Message {
        let what = format!("not an RFC 3164 message: {msg:?}");
        let rest = msg.strip_prefix('<').expect(&what);
        let (pri, rest) = rest.split_once('>').expect(&what);
        assert!(pri.bytes().all(|b| b.is_ascii_digit()), "{what}");
        let stamp = rest.get(..15).expect(&what);
        let rest = &rest[15..];
        let b = stamp.as_bytes();
        assert!(MONTHS.contains(&&stamp[..3]), "month: {what}");
        assert!(b[3] == b' ' && b[6] == b' ' && b[9] == b':' && b[12] == b':');
        let day: u32 = stamp[4..6].trim_start().parse().expect(&what);
        assert!((1..=31).contains(&day), "{what}");
        assert!(b[4] != b'0', "the day is padded with a blank: {what}");
        for at in [7, 8, 10, 11, 13, 14] {
            assert!(b[at].is_ascii_digit(), "{what}");
        }
        let rest = rest.strip_prefix(' ').expect(&what);
        let (tag, rest) = rest.split_once('[').expect(&what);
        let (pid, text) = rest.split_once("]: ").expect(&what);
        Message {
            pri: pri.parse().expect(&what),
            stamp: stamp.to_owned(),
            tag: tag.to_owned(),
            pid: pid.parse().expect(&what),
            text: text.to_owned(),
        }
    }
}

/// The local time as syslog(3) shows it, from date(1).
fn clock() -> String {
    let out = run(cmd("date", &["+%b %e %H:%M:%S"]));
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

fn seconds_of_day(stamp: &str) -> u32 {
    let h: u32 = stamp[7..9].parse().unwrap();
    let m: u32 = stamp[10..12].parse().unwrap();
    let s: u32 = stamp[13..15].parse().unwrap();
    h * 3600 + m * 60 + s
}

/// The logger: the child of `pid` named skd-log.
fn logger_of(pid: i32) -> i32 {
    let mut logger = 0;
    wait_until("the logger child", || {
        logger = children(pid)
            .into_iter()
            .map(|(c, _)| c)
            .find(|&c| comm(c).as_deref() == Some("skd-log"))
            .unwrap_or(0);
        logger != 0
    });
    logger
}

/// Whether a process is gone (or a zombie waiting for its reaper).
fn is_gone(pid: i32) -> bool {
    matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// The system call a process is blocked in (`/proc/PID/syscall`).
fn syscall_of(pid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// A close-on-exec copy of `fd` numbered 50 or more: never one of the
/// small numbers a test moves descriptors to in a child.
fn high_copy(fd: RawFd) -> OwnedFd {
    // SAFETY: F_DUPFD_CLOEXEC takes no pointers; a valid result is a new
    // descriptor that nothing else owns.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 50) };
    assert!(new >= 50, "fcntl: {}", std::io::Error::last_os_error());
    // SAFETY: as above, the descriptor is ours alone.
    unsafe { OwnedFd::from_raw_fd(new) }
}

/// A process group started for a test, killed when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        signal(-(self.0.id() as i32), 9);
        let _ = self.0.wait();
    }
}

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

fn log_chain<'a>(spec: &'a str, script: &'a str) -> Vec<&'a str> {
    let mut chain = vec![SKD_LOG, spec];
    chain.extend(sh(script));
    chain
}

/// Reads one line from a connection.
fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while s.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

// ------------------------------------------------------------------ files

#[test]
fn a_file_is_truncated_with_one_angle_and_appended_to_with_two() {
    let dir = TempDir::new();
    let path = dir.path("log");
    let p = path.to_str().unwrap();
    for (spec, expected) in [
        (format!(">{p}"), "new\n"),
        (format!("> {p}"), "new\n"),
        (format!(">>{p}"), "old\nnew\n"),
        (format!(">> \t{p}"), "old\nnew\n"),
    ] {
        std::fs::write(&path, "old\n").unwrap();
        let out = run(cmd(SKD_LOG, &[&spec, "sh", "-c", "echo new >&2; echo out"]));
        assert!(out.status.success(), "{spec}: {out:?}");
        assert_eq!(out.stdout, b"out\n", "stdout is left alone");
        assert_eq!(out.stderr, b"", "{spec}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected, "{spec}");
    }
    // A new file is created, without execute or group/other write bits.
    let fresh = dir.path("fresh");
    let spec = format!(">>{}", fresh.to_str().unwrap());
    let out = run(cmd(SKD_LOG, &[&spec, "sh", "-c", "echo first >&2"]));
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "first\n");
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o644, 0, "mode {mode:o}");
}

#[test]
fn the_log_file_is_on_fd_2_and_nowhere_else() {
    let dir = TempDir::new();
    let path = dir.path("log");
    let spec = format!(">{}", path.to_str().unwrap());
    let out = run(cmd(SKD_LOG, &[&spec, "sh", "-c", "ls -l /proc/$$/fd"]));
    let listing = String::from_utf8(out.stdout).unwrap();
    let mut fds: Vec<(i32, &str)> = listing
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .map(|(l, t)| (l.rsplit(' ').next().unwrap().parse().unwrap(), t))
        .collect();
    fds.sort();
    let mut expected = vec![0, 1, 2];
    expected.extend(inheritable_fds());
    expected.sort();
    assert_eq!(
        fds.iter().map(|f| f.0).collect::<Vec<_>>(),
        expected,
        "{listing}"
    );
    let to_log: Vec<i32> = fds
        .iter()
        .filter(|f| f.1 == path.to_str().unwrap())
        .map(|f| f.0)
        .collect();
    assert_eq!(to_log, [2], "{listing}");
}

#[test]
fn a_hundred_concurrent_handlers_log_every_line_once_to_a_file() {
    const CLIENTS: usize = 100;
    let dir = TempDir::new();
    let path = dir.path("log");
    let spec = format!(">>{}", path.to_str().unwrap());
    let srv = Server::start(cmd(
        SKD_BIND,
        &[
            "-t",
            "127.0.0.1:0",
            SKD_LOG,
            &spec,
            SKD_ACCEPT,
            "-v",
            "sh",
            "-c",
            "echo line-$TCPREMOTEPORT >&2",
        ],
    ));
    let port = srv.port();
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(port)).collect();
    let ports: Vec<u16> = clients
        .iter()
        .map(|c| c.local_addr().unwrap().port())
        .collect();
    for mut c in clients {
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
    }
    let mut text = String::new();
    wait_until("every handler's line and exit report", || {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        text.matches("exited with status 0").count() == CLIENTS
            && text.matches("line-").count() == CLIENTS
    });
    let mut seen: HashMap<u16, usize> = HashMap::new();
    for line in text.lines() {
        if let Some(port) = line.strip_prefix("line-") {
            *seen.entry(port.parse().expect("a whole line")).or_default() += 1;
        } else {
            // The chain's own messages go to the file too.
            assert!(line.starts_with("skd-accept: info: "), "torn line {line:?}");
        }
    }
    for port in ports {
        assert_eq!(seen.get(&port), Some(&1), "line-{port}");
    }
    assert_eq!(text.matches("accepted connection").count(), CLIENTS);
    assert!(srv.stderr().is_empty(), "{}", srv.stderr());
}

// ------------------------------------------------------------------ syslog

#[test]
fn syslog_gets_each_line_as_an_rfc_3164_message() {
    let syslogd = Syslogd::start();
    let before = clock();
    let mut srv = Server::start(syslogd.command(&log_chain(
        "web",
        "echo hello >&2; echo '  two  blanks ' >&2; echo >&2; printf 'no newline' >&2",
    )));
    let pid = srv.pid();
    let msgs: Vec<Message> = (0..3).map(|_| syslogd.message()).collect();
    let after = clock();
    assert!(srv.wait().success(), "{}", srv.stderr());
    let texts: Vec<&str> = msgs.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["hello", "  two  blanks ", "no newline"]);
    for m in &msgs {
        assert_eq!(m.pri, 3 * 8 + 5, "daemon.notice by default");
        assert_eq!(m.tag, "web");
        assert_eq!(m.pid, pid, "the service's pid");
        // Local time, as date(1) tells it (unless midnight came between).
        if seconds_of_day(&before) <= seconds_of_day(&after) {
            assert_eq!(m.stamp[..6], after[..6], "{m:?}");
            let t = seconds_of_day(&m.stamp);
            assert!(
                (seconds_of_day(&before)..=seconds_of_day(&after)).contains(&t),
                "{m:?} not within {before} .. {after}"
            );
        }
    }
    // The stderr we started with saw nothing.
    assert_eq!(srv.stderr(), "");
}

#[test]
fn facility_and_priority_make_the_pri_value() {
    let syslogd = Syslogd::start();
    for (spec, pri) in [
        ("web:local3.err", 19 * 8 + 3),
        ("web:kern.emerg", 0),
        ("web:local7.debug", 23 * 8 + 7),
        ("web:mail.warn", 2 * 8 + 4),
        ("a.b-c:AUTHPRIV.Info", 10 * 8 + 6),
    ] {
        let out = run(syslogd.command(&log_chain(spec, "echo x >&2")));
        assert!(out.status.success(), "{spec}: {out:?}");
        let m = syslogd.message();
        assert_eq!((m.pri, m.text.as_str()), (pri, "x"), "{spec}");
        assert_eq!(m.tag, spec.split(':').next().unwrap());
    }
}

#[test]
fn long_lines_are_split_into_several_messages_without_loss() {
    let syslogd = Syslogd::start();
    let long: String = (0..3000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let euros = "€".repeat(400); // 1200 bytes; a cut at 1024 would split a €
    let mut c = syslogd.command(&log_chain(
        "web",
        "printf '%s\\n' \"$LONG\" >&2; printf '%s\\n' \"$EUROS\" >&2",
    ));
    c.env("LONG", &long).env("EUROS", &euros);
    let out = run(c);
    assert!(out.status.success(), "{out:?}");
    let pieces: Vec<String> = (0..3).map(|_| syslogd.message().text).collect();
    assert_eq!(
        pieces.iter().map(String::len).collect::<Vec<_>>(),
        [1024, 1024, 952]
    );
    assert_eq!(pieces.concat(), long);
    let pieces: Vec<String> = (0..2).map(|_| syslogd.message().text).collect();
    assert_eq!(
        pieces.iter().map(String::len).collect::<Vec<_>>(),
        [1023, 177]
    );
    assert_eq!(pieces.concat(), euros);
}

#[test]
fn a_hundred_concurrent_handlers_log_every_line_once_to_syslog() {
    const CLIENTS: usize = 100;
    let syslogd = Syslogd::start();
    let srv = Server::start(syslogd.command(&[
        SKD_BIND,
        "-t",
        "127.0.0.1:0",
        SKD_LOG,
        "web",
        SKD_ACCEPT,
        "sh",
        "-c",
        "echo line-$TCPREMOTEPORT >&2",
    ]));
    let port = srv.port();
    let clients = thread::spawn(move || {
        let conns: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(port)).collect();
        let ports: Vec<u16> = conns
            .iter()
            .map(|c| c.local_addr().unwrap().port())
            .collect();
        for mut c in conns {
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).unwrap();
        }
        ports
    });
    let mut seen: HashMap<u16, usize> = HashMap::new();
    for _ in 0..CLIENTS {
        let m = syslogd.message();
        let port = m.text.strip_prefix("line-").expect("a handler's line");
        *seen.entry(port.parse().unwrap()).or_default() += 1;
    }
    for port in clients.join().unwrap() {
        assert_eq!(seen.get(&port), Some(&1), "line-{port}");
    }
}

#[test]
fn the_logger_reconnects_when_syslog_restarts() {
    let mut syslogd = Syslogd::start();
    let script = format!(
        "echo one >&2
         while [ ! -e {go} ]; do sleep 0.02; done; echo two >&2
         while [ ! -e {go2} ]; do sleep 0.02; done; echo three >&2",
        go = syslogd.file("go"),
        go2 = syslogd.file("go2"),
    );
    let mut srv = Server::start(syslogd.command(&log_chain("web", &script)));
    assert_eq!(syslogd.message().text, "one");
    // An instant restart: the old socket is gone, a new one is there.
    syslogd.restart();
    syslogd.touch("go");
    assert_eq!(syslogd.message().text, "two");
    // A restart with some downtime: the line waits for syslog to return.
    syslogd.stop();
    syslogd.touch("go2");
    thread::sleep(Duration::from_millis(300));
    syslogd.start_again();
    assert_eq!(syslogd.message().text, "three");
    assert!(srv.wait().success(), "{}", srv.stderr());
}

#[test]
fn a_line_syslog_never_took_is_counted_and_reported_when_it_returns() {
    let mut syslogd = Syslogd::start();
    let script = format!(
        "echo one >&2
         while [ ! -e {go} ]; do sleep 0.02; done; echo lost >&2
         while [ ! -e {go2} ]; do sleep 0.02; done; echo back >&2",
        go = syslogd.file("go"),
        go2 = syslogd.file("go2"),
    );
    let mut srv = Server::start(syslogd.command(&log_chain("web:local1.info", &script)));
    let logger = logger_of(srv.pid());
    assert_eq!(syslogd.message().text, "one");
    syslogd.stop();
    syslogd.touch("go");
    // The logger retries for a while (sleeping between attempts), then
    // drops the line and goes back to reading its pipe.
    wait_until("the logger to retry", || {
        syslogd.dir.path("go").exists() && syscall_of(logger).is_some_and(|n| n != libc::SYS_read)
    });
    wait_until("the logger to give up", || {
        syscall_of(logger) == Some(libc::SYS_read)
    });
    syslogd.start_again();
    syslogd.touch("go2");
    let notice = syslogd.message();
    assert_eq!(
        notice.text,
        "skd-log: warning: 1 line lost while syslog was unreachable"
    );
    assert_eq!(notice.pri, 17 * 8 + 4, "local1.warning");
    assert_eq!(syslogd.message().text, "back");
    assert!(srv.wait().success(), "{}", srv.stderr());
}

#[test]
fn a_stream_socket_at_dev_log_works_too() {
    let syslogd = Syslogd::stopped();
    let listener = UnixListener::bind(syslogd.dir.path("log.sock")).unwrap();
    let child = Group(
        syslogd
            .command(&log_chain("web", "echo a >&2; echo b >&2"))
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        conn.read_to_end(&mut all).unwrap();
        let _ = tx.send(all);
    });
    let all = rx.recv_timeout(TIMEOUT).expect("the logger to finish");
    let records: Vec<&[u8]> = all.split(|&b| b == 0).collect();
    assert_eq!(records.len(), 3, "NUL-terminated records: {all:?}");
    assert_eq!(records[2], b"");
    for (record, text) in records.iter().zip(["a", "b"]) {
        let m = Message::parse(std::str::from_utf8(record).unwrap());
        assert_eq!((m.pid, m.text.as_str()), (pid as i32, text));
    }
}

#[test]
fn the_logger_outlives_the_service_until_every_writer_is_gone() {
    let syslogd = Syslogd::start();
    let script = format!(
        "echo first >&2
         ( while [ ! -e {late} ]; do sleep 0.02; done; echo late >&2 ) &
         while [ ! -e {exit} ]; do sleep 0.02; done",
        late = syslogd.file("late"),
        exit = syslogd.file("exit"),
    );
    let mut srv = Server::start(syslogd.command(&log_chain("web", &script)));
    let logger = logger_of(srv.pid());
    assert_eq!(syslogd.message().text, "first");
    syslogd.touch("exit");
    assert!(srv.wait().success());
    // The service is gone; a child of it still writes to the log.
    assert!(!is_gone(logger), "the logger left with a writer alive");
    syslogd.touch("late");
    assert_eq!(syslogd.message().text, "late");
    wait_until("the logger to exit", || is_gone(logger));
}

#[test]
fn sigterm_to_the_process_group_loses_no_line() {
    // The syslog queue holds max_dgram_qlen (10 by default) messages; we
    // do not read until after the signal, so most lines are still in the
    // pipe or the logger when SIGTERM comes.
    let qlen: usize = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .map_or(10, |s| s.trim().parse().unwrap());
    let lines = qlen + 30;
    let syslogd = Syslogd::start();
    let script = format!(
        "i=0; while [ $i -lt {lines} ]; do echo line-$i >&2; i=$((i+1)); done
         : > {written}; exec sleep 60",
        written = syslogd.file("written"),
    );
    let mut srv = Server::start(syslogd.command(&log_chain("web", &script)));
    let logger = logger_of(srv.pid());
    wait_until("every line written", || {
        syslogd.dir.path("written").exists()
    });
    signal(-srv.pid(), libc::SIGTERM);
    assert_eq!(srv.wait().signal(), Some(libc::SIGTERM));
    for i in 0..lines {
        assert_eq!(syslogd.message().text, format!("line-{i}"));
    }
    wait_until("the logger to exit", || is_gone(logger));
}

#[test]
fn the_logger_holds_its_pipe_and_socket_and_nothing_else() {
    let syslogd = Syslogd::start();
    let extra = high_copy(
        std::fs::File::create(syslogd.dir.path("extra"))
            .unwrap()
            .as_raw_fd(),
    );
    let (ready_read, ready_write) = std::io::pipe().unwrap();
    let ready_write = {
        let original = ready_write;
        high_copy(original.as_raw_fd())
    };
    let (extra_fd, ready_fd) = (extra.as_raw_fd(), ready_write.as_raw_fd());
    let mut c = syslogd.command(&log_chain("web", "echo up >&2; exec sleep 60 >/dev/null"));
    c.env("SKD_READY_FD", "5")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0);
    // SAFETY: between fork and exec only dup2, which is async-signal-safe,
    // on descriptors that stay open in the parent until spawn returns.
    // The copies are not close-on-exec: a caller's inherited descriptor
    // (7) and the readiness descriptor of skd-background (5).
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(extra_fd, 7) == -1 || libc::dup2(ready_fd, 5) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = Group(c.spawn().unwrap());
    drop((extra, ready_write));
    let pid = child.0.id() as i32;
    assert_eq!(syslogd.message().text, "up");
    let logger = logger_of(pid);

    // Neither the caller's stdout nor the readiness pipe is held: both
    // reach end of file while the service and the logger run.
    let mut stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        let mut ready = Vec::new();
        let mut ready_read = ready_read;
        let _ = ready_read.read_to_end(&mut ready);
        let _ = tx.send((out, ready));
    });
    let (out, ready) = rx
        .recv_timeout(TIMEOUT)
        .expect("stdout and the readiness pipe to reach end of file");
    assert_eq!((out, ready), (vec![], vec![]));
    assert!(!is_gone(logger) && !is_gone(pid));

    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{logger}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let fd = e.file_name().to_str().unwrap().parse().unwrap();
            let target = std::fs::read_link(e.path()).unwrap();
            (fd, target.to_string_lossy().into_owned())
        })
        .collect();
    fds.sort();
    let listing = format!("{fds:?}");
    assert_eq!(fds.len(), 5, "{listing}");
    for (fd, target) in &fds[..3] {
        assert!(*fd <= 2 && target == "/dev/null", "{listing}");
    }
    let rest: Vec<&str> = fds[3..].iter().map(|f| f.1.as_str()).collect();
    assert!(
        rest.iter().any(|t| t.starts_with("pipe:"))
            && rest.iter().any(|t| t.starts_with("socket:")),
        "{listing}"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{logger}/cwd")).unwrap(),
        std::path::Path::new("/")
    );
    // It ignores the signals that stop the service.
    let status = std::fs::read_to_string(format!("/proc/{logger}/status")).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE] {
        assert_ne!(ignored & (1 << (sig - 1)), 0, "signal {sig} is not ignored");
    }
}

#[test]
fn a_caller_that_closed_stdin_and_stdout_still_gets_its_log() {
    let syslogd = Syslogd::start();
    let mut c = syslogd.command(&log_chain("web", "echo one >&2; echo two >&2"));
    // SAFETY: only close(2), async-signal-safe, between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::close(0);
            libc::close(1);
            Ok(())
        });
    }
    let mut child = Group(c.stderr(Stdio::piped()).spawn().unwrap());
    assert_eq!(syslogd.message().text, "one");
    assert_eq!(syslogd.message().text, "two");
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn dash_u_runs_the_logger_as_the_unprivileged_user_outside_root() {
    let mut syslogd = Syslogd::start();
    let script = format!(
        "echo one >&2
         while [ ! -e {go} ]; do sleep 0.02; done; echo two >&2
         exec sleep 60",
        go = syslogd.file("go"),
    );
    let mut chain = vec![SKD_LOG, "-U", "web"];
    chain.extend(sh(&script));
    let mut c = syslogd.command(&chain);
    c.env("UID", "65534")
        .env("GID", "65534")
        .env("GIDLIST", "65534,100")
        .env("ROOT", &syslogd.dir.0);
    let srv = Server::start(c);
    let pid = srv.pid();
    let logger = logger_of(pid);
    assert_eq!(syslogd.message().text, "one");
    assert_eq!(
        proc_ids(logger),
        "Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nGroups:\t100 65534\n"
    );
    // The service itself is untouched (skd-setuid would be its step).
    assert!(
        proc_ids(pid).starts_with("Uid:\t0\t0\t0\t0\n"),
        "{}",
        proc_ids(pid)
    );
    // No chroot for the logger: it must find /dev/log again...
    assert_eq!(
        std::fs::read_link(format!("/proc/{logger}/root")).unwrap(),
        std::path::Path::new("/")
    );
    // ...as it does, unprivileged, when syslog restarts.
    syslogd.restart();
    syslogd.touch("go");
    assert_eq!(syslogd.message().text, "two");
    drop(srv);
}

#[test]
fn a_failed_privilege_drop_in_the_logger_stops_the_chain() {
    let syslogd = Syslogd::start();
    // Already unprivileged, the logger cannot set its groups.
    let mut c = syslogd.command(&[SKD_SETUID, SKD_LOG, "-U", "web", "echo", "ran"]);
    c.env("UID", "65534").env("GID", "65534");
    let out = run(c);
    assert_eq!(out.status.code(), Some(111), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd-log: fatal: unable to set the supplementary groups: Operation not permitted\n"
    );
    assert_eq!(out.stdout, b"", "the program must not run");
}

#[test]
fn a_logger_does_not_take_a_connection_slot() {
    let syslogd = Syslogd::start();
    let srv = Server::start(syslogd.command(&[
        SKD_BIND,
        "-t",
        "127.0.0.1:0",
        SKD_LOG,
        "web",
        SKD_ACCEPT,
        "-c",
        "1",
        "sh",
        "-c",
        "echo served; echo handler >&2; exec cat",
    ]));
    let port = srv.port();
    let pid = srv.pid();
    let logger = logger_of(pid);
    // With -c 1 and the logger running as its child, skd-accept serves.
    let mut first = connect(port);
    assert_eq!(read_line(&mut first), "served");
    assert_eq!(syslogd.message().text, "handler");
    let kids = children(pid);
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert!(kids.iter().any(|k| k.0 == logger));
    // The limit still holds: a second client waits for the first.
    let mut second = connect(port);
    second.write_all(b"hi").unwrap();
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(10));
        assert_eq!(children(pid).len(), 2, "more handlers than -c 1 allows");
    }
    first.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_line(&mut second), "served");
    second.shutdown(Shutdown::Write).unwrap();
    let mut echo = String::new();
    second.read_to_string(&mut echo).unwrap();
    assert_eq!(echo, "hi");
}

#[test]
fn no_syslog_at_start_is_a_failure_reported_at_once() {
    let syslogd = Syslogd::stopped();
    let out = run(syslogd.command(&[SKD_LOG, "web", "echo", "ran"]));
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd-log: fatal: unable to connect to /dev/log: No such file or directory\n"
    );
    assert_eq!(out.stdout, b"");
}

/// Environment variables to set.
type Vars<'a> = &'a [(&'a str, &'a str)];

#[test]
fn bad_input_gives_one_line_and_the_right_status() {
    let dir = TempDir::new();
    let cases: &[(&[&str], Vars, i32, &str)] = &[
        (&[], &[], 100, "no log destination given"),
        (&["-U"], &[], 100, "no log destination given"),
        (&["web"], &[], 100, "no program to run"),
        (&[">>x"], &[], 100, "no program to run"),
        (&["-q", "web", "true"], &[], 100, "invalid option '-q'"),
        (&[":daemon.info", "true"], &[], 100, "no syslog tag given"),
        (&["> ", "true"], &[], 100, "no file name after '>'"),
        (
            &["web:daemon", "true"],
            &[],
            100,
            "invalid syslog level \"daemon\"",
        ),
        (
            &["web:demon.info", "true"],
            &[],
            100,
            "unknown syslog facility \"demon\" (valid: kern user mail daemon auth syslog lpr news uucp cron authpriv ftp local0 local1 local2 local3 local4 local5 local6 local7)",
        ),
        (
            &["web:daemon.loud", "true"],
            &[],
            100,
            "unknown syslog priority \"loud\" (valid: emerg alert crit err warning notice info debug panic error warn)",
        ),
        (&["-U", "web", "true"], &[], 100, "UID is not set"),
        (
            &["-U", "web", "true"],
            &[("UID", "1")],
            100,
            "GID is not set",
        ),
        (
            &["-U", "web", "true"],
            &[("UID", "x"), ("GID", "1")],
            100,
            "invalid UID: \"x\"",
        ),
        (
            &[">/nonexistent/dir/log", "true"],
            &[],
            111,
            "unable to open /nonexistent/dir/log: No such file or directory",
        ),
    ];
    for (args, vars, code, text) in cases {
        let mut c = cmd(SKD_LOG, args);
        c.current_dir(&dir.0).env_remove("UID").env_remove("GID");
        c.envs(vars.iter().copied());
        let out = run(c);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("skd-log: fatal: "), "{args:?}: {err}");
        assert!(err.contains(text), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
}
