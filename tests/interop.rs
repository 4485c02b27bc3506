//! Living with other suites: the real s6, execline, runit and daemontools
//! binaries in our chains and our tools in theirs; s6 readiness
//! notification; the systemd LISTEN_FDS protocol both ways; and the service
//! examples of doc/examples, run as shipped (only the port and PATH differ).

mod common;

use std::ffi::OsString;
use std::io::Read;
use std::net::{Shutdown, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;

use common::*;

// ---------------------------------------------------------------- helpers

/// The directory holding the binaries under test.
fn bin_dir() -> PathBuf {
    Path::new(SKD_BIND).parent().unwrap().to_path_buf()
}

/// $PATH with the binaries under test first, as a service script sees it
/// once they are installed.
fn path_with_bins() -> OsString {
    let mut paths = vec![bin_dir()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// Makes `fd` (ours) descriptor `target` of the child, not close-on-exec.
fn pass_fd(c: &mut Command, fd: RawFd, target: RawFd) {
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls fcntl and dup2, which are async-signal-safe, and allocates
    // nothing.
    unsafe {
        c.pre_exec(move || {
            let ret = if fd == target {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC)
            } else {
                libc::dup2(fd, target)
            };
            if ret == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}

/// Reads `r` to end of file in a thread, failing the test after `TIMEOUT`.
fn read_to_eof(mut r: impl Read + Send + 'static) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut out = Vec::new();
        let _ = r.read_to_end(&mut out);
        let _ = tx.send(out);
    });
    rx.recv_timeout(TIMEOUT)
        .expect("no end of file within the timeout")
}

/// A port that was free a moment ago, for services that need a fixed one.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every descendant of `pid`, from /proc.
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for (child, _) in children(p) {
            out.push(child);
            todo.push(child);
        }
    }
    out
}

/// Kills a supervisor and everything under it when dropped, whether the
/// test passed or not: supervisors start services in sessions of their
/// own, out of reach of a process-group kill.
struct KillTree(i32);

impl Drop for KillTree {
    fn drop(&mut self) {
        let all = descendants(self.0);
        signal(self.0, 9);
        for pid in all {
            signal(pid, 9);
        }
    }
}

/// The text of an example file under doc/examples.
fn example(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("doc/examples")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The example's text with its port (8007) replaced; the port must be
/// there, or the example has drifted from the test.
fn with_port(text: &str, port: u16) -> String {
    assert!(
        text.contains(":8007"),
        "the example no longer uses port 8007"
    );
    text.replace(":8007", &format!(":{port}"))
}

/// The example's text with `from` replaced by `to`; `from` must be there.
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer holds {from:?}");
    text.replace(from, to)
}

fn install(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn try_exchange(port: u16, input: &[u8]) -> Option<Vec<u8>> {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    Some(exchange(s, input, |s| s.shutdown(Shutdown::Write).unwrap()))
}

/// Waits until a service on `port` echoes.
fn wait_echo(port: u16) {
    wait_until("the service to echo", || {
        try_exchange(port, b"ping").as_deref() == Some(b"ping")
    });
}

/// Runs `argv` the way systemd runs an `Accept=no` service: the listening
/// socket on fd 3, `LISTEN_FDS=1`, `LISTEN_PID` = the service's pid (the
/// shell's, kept by exec), stdin /dev/null.
fn activated(listener: RawFd, fds: &str, pid: Option<&str>, argv: &[&str]) -> Command {
    let script = match pid {
        None => "LISTEN_PID=$$; export LISTEN_PID; exec \"$@\"",
        Some(_) => "exec \"$@\"",
    };
    let mut c = cmd("sh", &["-c", script, "sh"]);
    c.args(argv).env("LISTEN_FDS", fds);
    if let Some(pid) = pid {
        c.env("LISTEN_PID", pid);
    }
    pass_fd(&mut c, listener, 3);
    c
}

// ---------------------------------------------------------------- s6 sockets

#[test]
fn s6_ipcserver_socketbinder_feeds_skd_accept() {
    let binder = require("s6-ipcserver-socketbinder");
    let dir = TempDir::new();
    let path = dir.path("s6.sock");
    let _srv = Server::start(cmd(
        &binder,
        &[
            path.to_str().unwrap(),
            SKD_ACCEPT,
            "sh",
            "-c",
            "echo $PROTO $PEERUID; cat",
        ],
    ));
    wait_until("the socket", || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    });
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    assert_eq!(
        String::from_utf8_lossy(&unix_exchange(&path, b"from s6")),
        format!("UNIX-STREAM {uid}\nfrom s6")
    );
}

#[test]
fn skd_bind_feeds_s6_ipcserverd() {
    let server = require("s6-ipcserverd");
    let dir = TempDir::new();
    let path = dir.path("skd.sock");
    let _srv = Server::start(cmd(
        SKD_BIND,
        &[
            "-l",
            path.to_str().unwrap(),
            &server,
            "sh",
            "-c",
            "echo $PROTO $IPCREMOTEEUID; cat",
        ],
    ));
    wait_until("the socket", || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    });
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    assert_eq!(
        String::from_utf8_lossy(&unix_exchange(&path, b"to s6")),
        format!("IPC {uid}\nto s6")
    );
}

// ---------------------------------------------------------------- privileges

/// `skd-bind -t 127.0.0.1:0 TOOL... skd-accept id`: the handler runs as
/// nobody with nobody's group and no other.
fn drops_to_nobody(tool: &[&str]) {
    let mut args = vec!["-t", "127.0.0.1:0"];
    args.extend_from_slice(tool);
    args.extend_from_slice(&[SKD_ACCEPT, "sh", "-c", "id -u; id -g; id -G"]);
    let srv = Server::start(cmd(SKD_BIND, &args));
    let port = srv.port();
    let out = String::from_utf8(tcp_exchange(port, b"")).unwrap();
    assert_eq!(out, "65534\n65534\n65534\n", "{}", srv.stderr());
}

#[test]
fn s6_setuidgid_slots_into_the_chain() {
    drops_to_nobody(&[&require("s6-setuidgid"), "nobody"]);
}

#[test]
fn chpst_u_slots_into_the_chain() {
    drops_to_nobody(&[&require("chpst"), "-u", "nobody"]);
}

#[test]
fn daemontools_setuidgid_slots_into_the_chain() {
    drops_to_nobody(&[&require("setuidgid"), "nobody"]);
}

// ---------------------------------------------------------------- notification fd

#[test]
fn notification_fd_gets_one_newline_once_serving_and_is_closed() {
    let (reader, writer) = std::io::pipe().unwrap();
    let mut c = cmd(
        SKD_BIND,
        &[
            "-t",
            "127.0.0.1:0",
            SKD_ACCEPT,
            "-d",
            "5",
            "sh",
            "-c",
            "if [ -L /proc/$$/fd/5 ]; then echo fd 5 leaked; fi; cat",
        ],
    );
    pass_fd(&mut c, writer.as_raw_fd(), 5);
    let srv = Server::start(c);
    drop(writer);
    let port = srv.port();
    // A newline, then end of file: nobody holds the descriptor any more.
    assert_eq!(read_to_eof(reader), b"\n", "{}", srv.stderr());
    assert_eq!(tcp_exchange(port, b"served"), b"served");
}

#[test]
fn a_notification_fd_that_is_not_open_is_fatal() {
    let out = run(cmd(
        SKD_BIND,
        &["-t", "127.0.0.1:0", SKD_ACCEPT, "-d", "9", "cat"],
    ));
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd-accept: fatal: unable to write to notification fd 9: Bad file descriptor\n"
    );
}

#[test]
fn a_notification_fd_must_not_be_a_standard_descriptor() {
    for fd in ["0", "1", "2"] {
        let out = run(cmd(
            SKD_BIND,
            &["-t", "127.0.0.1:0", SKD_ACCEPT, "-d", fd, "cat"],
        ));
        assert_eq!(out.status.code(), Some(100));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!(
                "skd-accept: fatal: invalid value for -d: \"{fd}\""
            )),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------- LISTEN_FDS in

#[test]
fn listen_fds_in_serves_fd_3_and_hides_the_protocol_from_handlers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut c = activated(
        listener.as_raw_fd(),
        "1",
        None,
        &[
            SKD_ACCEPT,
            "sh",
            "-c",
            "if [ -L /proc/$$/fd/3 ]; then echo fd 3 leaked; fi; env | grep ^LISTEN_; echo $PROTO; cat",
        ],
    );
    c.env("LISTEN_FDNAMES", "echo");
    let srv = Server::start(c);
    drop(listener);
    let out = tcp_exchange(port, b"activated");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "TCP\nactivated",
        "{}",
        srv.stderr()
    );
}

#[test]
fn listen_fds_for_another_pid_is_not_ours() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(activated(
        listener.as_raw_fd(),
        "1",
        Some("1"),
        &[SKD_ACCEPT, "cat"],
    ));
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd-accept: fatal: stdin is not a listening stream socket\n"
    );
}

#[test]
fn listen_fds_other_than_one_is_a_usage_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(activated(
        listener.as_raw_fd(),
        "2",
        None,
        &[SKD_ACCEPT, "cat"],
    ));
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd-accept: fatal: unsupported LISTEN_FDS=\"2\": exactly one socket (fd 3) can be served\n"
    );
}

#[test]
fn an_activated_socket_of_the_wrong_kind_is_refused() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = run(activated(udp.as_raw_fd(), "1", None, &[SKD_ACCEPT, "cat"]));
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd-accept: fatal: fd 3 (LISTEN_FDS) is not a listening stream socket\n"
    );
}

#[test]
fn the_notification_fd_cannot_be_the_activated_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(activated(
        listener.as_raw_fd(),
        "1",
        None,
        &[SKD_ACCEPT, "-d", "3", "cat"],
    ));
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd-accept: fatal: the notification fd is fd 3 (LISTEN_FDS), the socket to serve\n"
    );
}

#[test]
fn a_socket_on_stdin_wins_over_stale_activation_variables() {
    // skd-bind puts its socket on fd 0; LISTEN_* left over from a service
    // manager (even naming this very pid) neither divert skd-accept to
    // fd 3 nor reach handlers.
    let srv = Server::start({
        let mut c = cmd(
            "sh",
            &[
                "-c",
                "LISTEN_PID=$$; export LISTEN_PID; exec \"$@\"",
                "sh",
                SKD_BIND,
                "-t",
                "127.0.0.1:0",
                SKD_ACCEPT,
                "sh",
                "-c",
                "env | grep ^LISTEN_; echo clean",
            ],
        );
        c.env("LISTEN_FDS", "1").env("LISTEN_FDNAMES", "stale");
        c
    });
    assert_eq!(
        tcp_exchange(srv.port(), b""),
        b"clean\n",
        "{}",
        srv.stderr()
    );
}

// ---------------------------------------------------------------- LISTEN_FDS out

/// Checks, from a program written for socket activation, what it was
/// given; answers the first client with its findings.
const ACTIVATED_PY: &str = r#"
import os, socket, stat
env = os.environ
found = [
    "fds=" + env.get("LISTEN_FDS", "-"),
    "pid=" + ("ours" if env.get("LISTEN_PID") == str(os.getpid()) else env.get("LISTEN_PID", "-")),
    "names=" + env.get("LISTEN_FDNAMES", "-"),
    "stdin=" + ("socket" if stat.S_ISSOCK(os.fstat(0).st_mode) else "kept"),
]
s = socket.socket(fileno=3)
found.append("type=" + ("stream" if s.type == socket.SOCK_STREAM else str(s.type)))
found.append("cloexec=" + str(not os.get_inheritable(3)))
c, _ = s.accept()
c.sendall((" ".join(found) + "\n").encode())
c.close()
"#;

#[test]
fn skd_bind_a_hands_the_socket_on_the_systemd_way() {
    let python = require("python3");
    let mut c = cmd(
        SKD_BIND,
        &["-a", "-t", "127.0.0.1:0", &python, "-c", ACTIVATED_PY],
    );
    c.env("LISTEN_FDNAMES", "stale");
    let srv = Server::start(c);
    let port = srv.port();
    assert_eq!(
        String::from_utf8_lossy(&tcp_exchange(port, b"")),
        "fds=1 pid=ours names=- stdin=kept type=stream cloexec=False\n",
        "{}",
        srv.stderr()
    );
}

#[test]
fn skd_bind_a_chains_into_skd_accept() {
    let srv = Server::start(cmd(
        SKD_BIND,
        &[
            "-a",
            "-t",
            "127.0.0.1:0",
            SKD_ACCEPT,
            "sh",
            "-c",
            "env | grep ^LISTEN_; cat",
        ],
    ));
    let port = srv.port();
    for _ in 0..2 {
        assert_eq!(tcp_exchange(port, b"twice"), b"twice", "{}", srv.stderr());
    }
}

#[test]
fn skd_bind_a_moves_a_readiness_fd_off_fd_3() {
    // The skd-background readiness pipe on fd 3, as it may well be: -a must
    // not clobber it, and skd-accept must still release it once serving.
    let (reader, writer) = std::io::pipe().unwrap();
    let mut c = cmd(SKD_BIND, &["-a", "-t", "127.0.0.1:0", SKD_ACCEPT, "cat"]);
    c.env("SKD_READY_FD", "3");
    pass_fd(&mut c, writer.as_raw_fd(), 3);
    let srv = Server::start(c);
    drop(writer);
    let port = srv.port();
    assert_eq!(read_to_eof(reader), b"", "{}", srv.stderr());
    assert_eq!(tcp_exchange(port, b"ready"), b"ready", "{}", srv.stderr());
}

#[test]
fn skd_bind_a_keeps_a_pidfile_lock_off_fd_3() {
    // fd 3 closed first, so the pidfile's locked descriptor lands there.
    let dir = TempDir::new();
    let pidfile = dir.path("svc.pid");
    let pidfile = pidfile.to_str().unwrap();
    let srv = Server::start(cmd(
        "sh",
        &[
            "-c",
            "exec 3>&-; exec \"$@\"",
            "sh",
            SKD_PIDFILE,
            pidfile,
            SKD_BIND,
            "-a",
            "-t",
            "127.0.0.1:0",
            SKD_ACCEPT,
            "cat",
        ],
    ));
    let port = srv.port();
    assert_eq!(tcp_exchange(port, b"locked"), b"locked", "{}", srv.stderr());
    let out = run(cmd("flock", &["-n", pidfile, "true"]));
    assert_eq!(out.status.code(), Some(1), "the pidfile lock was lost");
}

// ---------------------------------------------------------------- skd-dgram

/// Answers one datagram with what the handler was given: its protocol,
/// any LISTEN_* variable, and whether it holds a descriptor 3.
const DGRAM_REPORT: &str = r#"
import os, socket
s = socket.socket(fileno=0)
data, peer = s.recvfrom(65536)
listen = sorted(k for k in os.environ if k.startswith("LISTEN_"))
try:
    os.fstat(3)
    fd3 = "fd3"
except OSError:
    fd3 = "no-fd3"
s.sendto(" ".join([os.environ["PROTO"], ",".join(listen) or "-", fd3, data.decode()]).encode(), peer)
"#;

fn ask_udp(port: u16, msg: &str) -> String {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let n = c.recv(&mut buf).unwrap_or_else(|e| panic!("no reply: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn skd_dgram_serves_an_activated_socket_on_fd_3() {
    let python = require("python3");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let mut c = activated(
        udp.as_raw_fd(),
        "1",
        None,
        &[SKD_DGRAM, &python, "-c", DGRAM_REPORT],
    );
    c.env("LISTEN_FDNAMES", "dgram");
    let srv = Server::start(c);
    drop(udp);
    assert_eq!(ask_udp(port, "hi"), "UDP - no-fd3 hi", "{}", srv.stderr());
}

#[test]
fn skd_dgram_refuses_an_activated_stream_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(activated(
        listener.as_raw_fd(),
        "1",
        None,
        &[SKD_DGRAM, "cat"],
    ));
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd-dgram: fatal: fd 3 (LISTEN_FDS) is not a datagram socket\n"
    );
}

#[test]
fn skd_bind_a_chains_into_skd_dgram() {
    let python = require("python3");
    let srv = Server::start(cmd(
        SKD_BIND,
        &[
            "-a",
            "-u",
            "127.0.0.1:0",
            SKD_DGRAM,
            &python,
            "-c",
            DGRAM_REPORT,
        ],
    ));
    let port = srv.port();
    assert_eq!(ask_udp(port, "out"), "UDP - no-fd3 out", "{}", srv.stderr());
}

#[test]
fn skd_dgram_notification_fd_gets_one_newline_once_serving() {
    let python = require("python3");
    let (reader, writer) = std::io::pipe().unwrap();
    let mut c = cmd(
        SKD_BIND,
        &[
            "-u",
            "127.0.0.1:0",
            SKD_DGRAM,
            "-d",
            "5",
            &python,
            "-c",
            DGRAM_REPORT,
        ],
    );
    pass_fd(&mut c, writer.as_raw_fd(), 5);
    let srv = Server::start(c);
    drop(writer);
    let port = srv.port();
    assert_eq!(read_to_eof(reader), b"\n", "{}", srv.stderr());
    let reply = ask_udp(port, "ready");
    assert!(
        reply.starts_with("UDP - ") && reply.ends_with(" ready"),
        "{reply}"
    );
}

#[test]
fn skd_dgram_notification_fd_that_is_not_open_is_fatal() {
    let out = run(cmd(
        SKD_BIND,
        &["-u", "127.0.0.1:0", SKD_DGRAM, "-d", "9", "cat"],
    ));
    assert_eq!(out.status.code(), Some(111));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd-dgram: fatal: unable to write to notification fd 9: Bad file descriptor\n"
    );
}

// ---------------------------------------------------------------- examples

/// The value of `key=` in a unit file.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

#[test]
fn systemd_example_units_serve_with_accept_no() {
    let socket = example("systemd/skd-echo.socket");
    let service = example("systemd/skd-echo.service");
    assert_eq!(unit_value(&socket, "Accept"), "no");
    let listen = unit_value(&socket, "ListenStream");
    assert_eq!(listen, "127.0.0.1:8007");
    // Play systemd: bind what the socket unit says (on a free port), start
    // ExecStart (with our binaries) the Accept=no way.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let exec_start = unit_value(&service, "ExecStart");
    let exec_start = exec_start.replace("/usr/local/bin/", &format!("{}/", bin_dir().display()));
    let argv: Vec<&str> = exec_start.split_whitespace().collect();
    assert!(argv[0].ends_with("/skd-accept"), "{exec_start}");
    let srv = Server::start(activated(listener.as_raw_fd(), "1", None, &argv));
    drop(listener);
    assert_eq!(
        tcp_exchange(port, b"systemd"),
        b"systemd",
        "{}",
        srv.stderr()
    );
    srv.wait_stderr("the connection report", |e| {
        e.contains("skd-accept: info: accepted connection from [127.0.0.1]:")
    });
}

/// `sv ARGS... DIR`, bounded.
fn sv(args: &[&str], dir: &Path) -> std::process::Output {
    let mut c = cmd(&require("sv"), args);
    c.arg(dir);
    run(c)
}

#[test]
fn runit_example_under_runsv_restarts_and_logs() {
    let runsv = require("runsv");
    require("svlogd");
    let dir = TempDir::new();
    let svc = dir.path("skd-echo");
    let port = free_port();
    install(
        &svc.join("run"),
        &with_port(&example("runit/run"), port),
        0o755,
    );
    install(&svc.join("log/run"), &example("runit/log/run"), 0o755);

    let mut c = cmd(&runsv, &[&svc]);
    c.env("PATH", path_with_bins());
    let mut srv = Server::start(c);
    let _tree = KillTree(srv.pid());
    wait_echo(port);
    let pid_file = svc.join("supervise/pid");
    let first = std::fs::read_to_string(&pid_file).unwrap();

    let out = sv(&["-w", "10", "restart"], &svc);
    assert!(out.status.success(), "{out:?}");
    wait_until("a new pid", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty() && p != first)
    });
    wait_echo(port);

    // Both runs reported their connections through svlogd, which stamps
    // each line (-tt: "2026-11-23_21:42:00.12345 skd-accept: info: ...").
    let log = svc.join("log/main/current");
    let accepted = |text: &str| {
        text.lines()
            .filter(|l| l.contains(" skd-accept: info: accepted connection from [127.0.0.1]:"))
            .count()
    };
    wait_until("both runs in the log", || {
        accepted(&std::fs::read_to_string(&log).unwrap_or_default()) >= 2
    });

    let out = sv(&["exit"], &svc);
    assert!(out.status.success(), "{out:?}");
    assert!(srv.wait().success());
}

/// `s6-svc ARGS... DIR`, bounded.
fn s6_svc(args: &[&str], dir: &Path) -> std::process::Output {
    let mut c = cmd(&require("s6-svc"), args);
    c.arg(dir);
    run(c)
}

fn s6_pid(dir: &Path) -> String {
    let out = run(cmd(&require("s6-svstat"), &["-p", dir.to_str().unwrap()]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn s6_example_notifies_readiness_to_s6_svwait() {
    let supervise = require("s6-supervise");
    require("execlineb");
    let dir = TempDir::new();
    let svc = dir.path("skd-echo");
    let port = free_port();
    install(
        &svc.join("run"),
        &with_port(&example("s6/run"), port),
        0o755,
    );
    install(
        &svc.join("notification-fd"),
        &example("s6/notification-fd"),
        0o644,
    );

    let mut c = cmd(&supervise, &[&svc]);
    c.env("PATH", path_with_bins());
    let mut srv = Server::start(c);
    let _tree = KillTree(srv.pid());
    wait_until("s6-supervise to set up", || {
        svc.join("supervise/status").exists() && svc.join("event").exists()
    });

    // Ready means serving: s6-svwait -U returns, and the first connection
    // made right after it is served.
    let out = run(cmd(
        &require("s6-svwait"),
        &["-U", "-t", "8000", svc.to_str().unwrap()],
    ));
    assert!(out.status.success(), "{out:?}; {}", srv.stderr());
    assert_eq!(try_exchange(port, b"s6").as_deref(), Some(&b"s6"[..]));
    let first = s6_pid(&svc);

    // Restart and wait for readiness again, through s6-svc itself.
    let out = s6_svc(&["-r", "-wR", "-T", "8000"], &svc);
    assert!(out.status.success(), "{out:?}");
    assert_ne!(s6_pid(&svc), first);
    assert_eq!(try_exchange(port, b"again").as_deref(), Some(&b"again"[..]));

    let out = s6_svc(&["-dx"], &svc);
    assert!(out.status.success(), "{out:?}");
    assert!(srv.wait().success());
}

// ---------------------------------------------------------------- sysvinit

/// Kills the daemon a pidfile names, and everything under it, when
/// dropped: a background service has left the test's process groups.
struct KillPidfile(PathBuf);

impl Drop for KillPidfile {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|&p| p > 1) {
            drop(KillTree(pid));
        }
    }
}

#[test]
fn sysv_example_starts_reports_and_stops_through_the_pidfile() {
    require("flock");
    let dir = TempDir::new();
    let script = dir.path("skd-echo");
    let port = free_port();
    // Our binaries (skd and the tools beside it) first in the script's PATH.
    let text = substitute(
        &with_port(&example("sysv/skd-echo"), port),
        "\nPATH=/usr/local/sbin:",
        &format!("\nPATH={}:/usr/local/sbin:", bin_dir().display()),
    );
    install(&script, &text, 0o755);
    let pidfile = dir.path("skd-echo.pid");
    let logfile = dir.path("skd-echo.log");
    let _daemon = KillPidfile(pidfile.clone());
    let init = |action: &str| {
        let mut c = cmd(script.to_str().unwrap(), &[action]);
        c.env("PIDFILE", &pidfile).env("LOGFILE", &logfile);
        run(c)
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    // start returns once the service serves, and leaves nothing of its own
    // on the script's output (run() waits for end of file on both).
    let out = init("start");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(tcp_exchange(port, b"sysv"), b"sysv");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The pidfile names the server itself.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("skd-accept"), "{exe:?}");
    let out = init("status");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), format!("skd-echo: running, pid {pid}\n"));
    let out = init("start");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("skd-echo: already running, pid {pid}\n")
    );
    wait_until("the connection in the log", || {
        std::fs::read_to_string(&logfile)
            .unwrap_or_default()
            .contains("skd-accept: info: accepted connection from [127.0.0.1]:")
    });

    let out = init("stop");
    assert!(out.status.success(), "{out:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still serving after stop"
    );
    let out = init("status");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "skd-echo: not running\n");

    // A start that fails says so: skd -B waits for the chain's verdict.
    let blocker = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let out = init("start");
    assert_eq!(out.status.code(), Some(111), "{out:?}");
    assert!(
        text(&out.stderr).starts_with("skd-bind: fatal: unable to bind to 127.0.0.1 port "),
        "{out:?}"
    );
    drop(blocker);
}

#[test]
fn a_passed_socket_we_do_not_serve_is_kept_from_handlers() {
    // fd 0 is skd-bind's socket; systemd-style variables also announce an
    // (inheritable) socket on fd 3 for us: handlers must not get it.
    let passed = TcpListener::bind("127.0.0.1:0").unwrap();
    let srv = Server::start(activated(
        passed.as_raw_fd(),
        "1",
        None,
        &[
            SKD_BIND,
            "-t",
            "127.0.0.1:0",
            SKD_ACCEPT,
            "sh",
            "-c",
            "if [ -e /proc/$$/fd/3 ]; then echo fd 3 leaked; else echo clean; fi",
        ],
    ));
    let port = srv.port();
    assert_eq!(tcp_exchange(port, b""), b"clean\n", "{}", srv.stderr());
}

#[test]
fn a_notification_fd_that_is_the_readiness_fd_is_refused() {
    let (reader, writer) = std::io::pipe().unwrap();
    let mut c = cmd(
        SKD_BIND,
        &["-t", "127.0.0.1:0", SKD_ACCEPT, "-d", "5", "cat"],
    );
    pass_fd(&mut c, writer.as_raw_fd(), 5);
    c.env("SKD_READY_FD", "5");
    let out = run(c);
    drop(writer);
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd-accept: fatal: the notification fd 5 is one the chain itself uses\n"
    );
    // The waiting side hears the usage failure, not a bogus newline.
    assert_eq!(read_to_eof(reader), [100]);
}
