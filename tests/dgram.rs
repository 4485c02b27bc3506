//! skd-bind -u / -d + skd-dgram over real UDP and unix datagram sockets.
//! Handlers that answer are small Python scripts: they read the datagram
//! from stdin and reply with sendto to its sender.

mod common;

use std::io::{PipeWriter, Read};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;

/// Replies "PROTO PID DATA" to the sender of one datagram.
const REPLY: &str = r#"
import os, socket
s = socket.socket(fileno=0)
data, peer = s.recvfrom(65536)
s.sendto(b"%s %d %s" % (os.environ["PROTO"].encode(), os.getpid(), data), peer)
"#;

/// Sends one datagram back to its sender unchanged.
const ECHO: &str = r#"
import socket
s = socket.socket(fileno=0)
data, peer = s.recvfrom(65536)
s.sendto(data, peer)
"#;

/// Reads one datagram and exits without a word.
const SWALLOW: &str = r#"
import socket
socket.socket(fileno=0).recv(65536)
"#;

fn py(script: &str) -> Vec<&str> {
    vec!["python3", "-c", script]
}

/// `skd-bind BIND_ARGS skd-dgram DGRAM_OPTS handler...`
fn server(bind_args: &[&str], dgram_opts: &[&str], handler: &[&str]) -> Server {
    Server::start(chain(bind_args, dgram_opts, handler))
}

fn chain(bind_args: &[&str], dgram_opts: &[&str], handler: &[&str]) -> std::process::Command {
    let mut args = bind_args.to_vec();
    args.push(SKD_DGRAM);
    args.extend_from_slice(dgram_opts);
    args.extend_from_slice(handler);
    cmd(SKD_BIND, &args)
}

/// A UDP server on 127.0.0.1 and its address.
fn udp_server(dgram_opts: &[&str], handler: &[&str]) -> (Server, SocketAddr) {
    let srv = server(&["-u", "127.0.0.1:0"], dgram_opts, handler);
    let addr = SocketAddr::from(([127, 0, 0, 1], srv.port()));
    (srv, addr)
}

fn udp_client(addr: &str) -> UdpSocket {
    let c = UdpSocket::bind(addr).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c
}

/// Sends `msg` and returns the reply as text, checking it came from `to`.
fn ask(c: &UdpSocket, to: SocketAddr, msg: &str) -> String {
    c.send_to(msg.as_bytes(), to).unwrap();
    let mut buf = [0u8; 65536];
    let (n, from) = c
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no reply to {msg:?}: {e}"));
    assert_eq!(from, to, "the reply comes from the server's socket");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// "PROTO PID DATA" split into its parts.
fn parts(reply: &str) -> (String, i32, String) {
    let mut it = reply.splitn(3, ' ');
    let proto = it.next().unwrap().to_owned();
    let pid = it.next().unwrap().parse().unwrap();
    (proto, pid, it.next().unwrap_or("").to_owned())
}

fn unix_client(path: &Path) -> UnixDatagram {
    let c = UnixDatagram::bind(path).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c
}

#[test]
fn udp_v4_handler_replies_with_sendto() {
    let (srv, addr) = udp_server(&[], &py(REPLY));
    let c = udp_client("127.0.0.1:0");
    let (proto, pid, data) = parts(&ask(&c, addr, "hello"));
    assert_eq!((proto.as_str(), data.as_str()), ("UDP", "hello"));
    assert!(pid > 0);
    drop(srv);
}

#[test]
fn udp_v6_handler_replies_with_sendto() {
    let srv = server(&["-u", "[::1]:0"], &[], &py(REPLY));
    let addr: SocketAddr = format!("[::1]:{}", srv.port()).parse().unwrap();
    let c = udp_client("[::1]:0");
    let (proto, _, data) = parts(&ask(&c, addr, "six"));
    assert_eq!((proto.as_str(), data.as_str()), ("UDP", "six"));
}

#[test]
fn bind_makes_bound_datagram_sockets_on_fd_0() {
    // Neither listening nor connected; port 0 is reported before the next
    // program runs, and it is the port fd 0 is bound to.
    let inspect = "import socket; s = socket.socket(fileno=0); \
                   print(s.type == socket.SOCK_DGRAM, \
                   s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN), s.getsockname())";
    let a = "127.0.0.1:0";
    for letters in [&["-u", a][..], &["-d", "-i", a], &["-i", a, "-d"]] {
        let mut args = letters.to_vec();
        args.extend(["python3", "-c", inspect]);
        let out = run(cmd(SKD_BIND, &args));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {text}");
        let (port, rest) = text.split_once('\n').unwrap();
        assert_eq!(rest, format!("True 0 ('127.0.0.1', {port})\n"), "{args:?}");
    }
    let dir = TempDir::new();
    let path = dir.path("d.sock");
    let path = path.to_str().unwrap();
    let out = run(cmd(SKD_BIND, &["-d", "-l", path, "python3", "-c", inspect]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("True 0 {path}\n"),
        "no port line for a unix socket"
    );
}

#[test]
fn a_fresh_handler_per_initial_datagram() {
    let (srv, addr) = udp_server(&[], &py(REPLY));
    let c = udp_client("127.0.0.1:0");
    let mut pids = Vec::new();
    for i in 0..3 {
        let (_, pid, data) = parts(&ask(&c, addr, &format!("n{i}")));
        assert_eq!(data, format!("n{i}"));
        pids.push(pid);
    }
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 3, "one handler each");
    wait_until("every handler to be reaped", || {
        children(srv.pid()).is_empty()
    });
}

#[test]
fn datagrams_queued_while_a_handler_runs_are_its_to_read() {
    // The handler reads two datagrams: the server takes none of them, and
    // starts no second handler for the second.
    let two = r#"
import os, socket
s = socket.socket(fileno=0)
for _ in range(2):
    data, peer = s.recvfrom(65536)
    s.sendto(b"%d %s" % (os.getpid(), data), peer)
"#;
    let (_srv, addr) = udp_server(&[], &py(two));
    let c = udp_client("127.0.0.1:0");
    let a = ask(&c, addr, "a");
    let b = ask(&c, addr, "b");
    let c3 = ask(&c, addr, "c");
    let pid = |r: &str| r.split(' ').next().unwrap().to_owned();
    assert!(a.ends_with(" a") && b.ends_with(" b") && c3.ends_with(" c"));
    assert_eq!(pid(&a), pid(&b), "the running handler read both");
    assert_ne!(pid(&a), pid(&c3), "the third woke a new handler");
}

#[test]
fn exactly_one_handler_at_a_time() {
    // Each handler holds a lock file while it works; a second handler
    // running at the same time would find it taken.
    let slow = r#"
import os, socket, sys, time
s = socket.socket(fileno=0)
data, peer = s.recvfrom(65536)
try:
    os.close(os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    alone = True
except FileExistsError:
    alone = False
time.sleep(0.2)
if alone:
    os.unlink(sys.argv[1])
s.sendto(b"%d %s %s" % (os.getpid(), b"alone" if alone else b"overlap", data), peer)
"#;
    let dir = TempDir::new();
    let lock = dir.path("lock");
    let (srv, addr) = udp_server(&[], &["python3", "-c", slow, lock.to_str().unwrap()]);
    let c = udp_client("127.0.0.1:0");
    for i in 0..4 {
        c.send_to(format!("d{i}").as_bytes(), addr).unwrap();
    }
    let mut pids = Vec::new();
    let mut buf = [0u8; 256];
    for i in 0..4 {
        assert!(children(srv.pid()).len() <= 1, "more than one handler");
        let n = c.recv(&mut buf).expect("a reply");
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (pid, rest) = reply.split_once(' ').unwrap();
        assert_eq!(rest, format!("alone d{i}"), "in order, one at a time");
        pids.push(pid.to_owned());
    }
    pids.dedup();
    assert_eq!(pids.len(), 4);
}

#[test]
fn unix_datagram_handler_replies_to_a_bound_client() {
    let dir = TempDir::new();
    let path = dir.path("srv.sock");
    let srv = server(&["-d", "-l", path.to_str().unwrap()], &[], &py(REPLY));
    let c = unix_client(&dir.path("client.sock"));
    wait_until("socket file", || path.exists());
    c.send_to(b"local hello", &path).unwrap();
    let mut buf = [0u8; 256];
    let (n, from) = c.recv_from(&mut buf).expect("a reply");
    assert_eq!(from.as_pathname(), Some(path.as_path()));
    let (proto, pid, data) = parts(&String::from_utf8_lossy(&buf[..n]));
    assert_eq!(
        (proto.as_str(), data.as_str()),
        ("UNIX-DGRAM", "local hello")
    );
    assert_ne!(pid, srv.pid());
}

#[test]
fn verbose_names_each_udp_sender_and_each_exit() {
    let script = r#"
import os, socket, sys
data = socket.socket(fileno=0).recv(65536)
if data == b"kill":
    os.kill(os.getpid(), 9)
sys.exit(3)
"#;
    let (srv, addr) = udp_server(&["-v"], &py(script));
    let c = udp_client("127.0.0.1:0");
    let me = c.local_addr().unwrap().port();
    c.send_to(b"exit", addr).unwrap();
    srv.wait_stderr("the exit line", |e| e.contains("exited"));
    c.send_to(b"kill", addr).unwrap();
    let err = srv.wait_stderr("the second exit", |e| e.contains("killed"));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    let prefix =
        format!("skd-dgram: info: received initial datagram from [127.0.0.1]:{me}, handler pid ");
    let first = lines[0].strip_prefix(&prefix).expect(&err);
    let second = lines[2].strip_prefix(&prefix).expect(&err);
    assert_eq!(
        lines[1],
        format!("skd-dgram: info: handler pid {first} exited with status 3")
    );
    assert_eq!(
        lines[3],
        format!("skd-dgram: info: handler pid {second} was killed by signal 9")
    );
}

#[test]
fn verbose_names_a_bound_unix_sender_and_not_an_unnamed_one() {
    let dir = TempDir::new();
    let path = dir.path("srv.sock");
    let srv = server(&["-d", "-l", path.to_str().unwrap()], &["-v"], &py(SWALLOW));
    wait_until("socket file", || path.exists());
    let client_path = dir.path("client.sock");
    unix_client(&client_path).send_to(b"x", &path).unwrap();
    srv.wait_stderr("the exit line", |e| e.contains("exited"));
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"y", &path)
        .unwrap();
    let err = srv.wait_stderr("the second exit", |e| e.matches("exited").count() == 2);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    let named = format!(
        "skd-dgram: info: received initial local datagram from {}, handler pid ",
        client_path.display()
    );
    assert!(lines[0].starts_with(&named), "{err}");
    assert!(
        lines[2].starts_with("skd-dgram: info: received initial local datagram, handler pid "),
        "{err}"
    );
}

#[test]
fn stale_variables_do_not_reach_handlers() {
    let script = r#"
import os, re, socket
s = socket.socket(fileno=0)
data, peer = s.recvfrom(65536)
names = sorted(k + "=" + v for k, v in os.environ.items() if re.match("PROTO|TCP|PEER|SKD_", k))
s.sendto(" ".join(names).encode(), peer)
"#;
    let mut c = chain(&["-u", "127.0.0.1:0"], &[], &py(script));
    c.env("PROTO", "TCP")
        .env("TCPREMOTEIP", "192.0.2.9")
        .env("TCPLOCALPORT", "1")
        .env("PEERUID", "42")
        .env("SKD_READY_FD", "99");
    let srv = Server::start(c);
    let addr = SocketAddr::from(([127, 0, 0, 1], srv.port()));
    assert_eq!(ask(&udp_client("127.0.0.1:0"), addr, ""), "PROTO=UDP");
}

#[test]
fn handlers_see_only_the_socket_on_0_and_1_and_stderr() {
    // The handler lists its descriptors before it opens any (the listing's
    // own directory descriptor is gone by the time it is looked up).
    let script = r#"
import os, socket
fds = []
for name in os.listdir("/proc/self/fd"):
    try:
        fds.append("%s>%s" % (name, os.readlink("/proc/self/fd/" + name)))
    except FileNotFoundError:
        pass
s = socket.socket(fileno=0)
data, peer = s.recvfrom(65536)
s.sendto(" ".join(fds).encode(), peer)
"#;
    let (srv, addr) = udp_server(&[], &py(script));
    let out = ask(&udp_client("127.0.0.1:0"), addr, "");
    let mut fds: Vec<(i32, &str)> = out
        .split(' ')
        .map(|f| f.split_once('>').unwrap())
        .map(|(n, target)| (n.parse().unwrap(), target))
        .collect();
    fds.sort();
    let numbers: Vec<i32> = fds.iter().map(|f| f.0).collect();
    let mut expected = vec![0, 1, 2];
    expected.extend(inheritable_fds());
    expected.sort();
    assert_eq!(numbers, expected, "{out}");
    let bound = std::fs::read_link(format!("/proc/{}/fd/0", srv.pid())).unwrap();
    assert_eq!(
        fds[0].1,
        bound.to_str().unwrap(),
        "stdin is the bound socket: {out}"
    );
    assert_eq!(fds[1].1, fds[0].1, "stdout is the same socket: {out}");
}

#[test]
fn every_handler_gets_the_socket_in_blocking_mode() {
    // Each handler reports the mode it found, then leaves the socket
    // non-blocking: the next one must not inherit that.
    let script = r#"
import os, socket
blocking = os.get_blocking(0)
s = socket.socket(fileno=0)
data, peer = s.recvfrom(65536)
s.sendto(str(blocking).encode(), peer)
os.set_blocking(0, False)
"#;
    let (_srv, addr) = udp_server(&[], &py(script));
    let c = udp_client("127.0.0.1:0");
    for _ in 0..3 {
        assert_eq!(ask(&c, addr, "mode?"), "True");
    }
}

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_handler_that_leaves_its_datagram_unread_is_backed_off_and_the_next_gets_it() {
    // The handler counts its runs, and reads (echoes) only once the marker
    // file exists; until then it exits at once, leaving the datagram queued.
    let dir = TempDir::new();
    let count = dir.path("count");
    let marker = dir.path("marker");
    let (srv, addr) = udp_server(
        &[],
        &[
            "sh",
            "-c",
            "echo run >> \"$1\"; test -e \"$2\" || exit 3; exec python3 -c \"$3\"",
            "sh",
            count.to_str().unwrap(),
            marker.to_str().unwrap(),
            ECHO,
        ],
    );
    let c = udp_client("127.0.0.1:0");
    c.send_to(b"first", addr).unwrap();
    srv.wait_stderr("the warning", |e| e.contains("unread"));
    // Watch a while: backing off from 100 ms, doubling, makes five runs in
    // 1.5 s; a server that did not back off would make hundreds.
    thread::sleep(Duration::from_millis(1500));
    let runs = lines_in(&count);
    assert!(
        runs >= 2,
        "the datagram is offered to a next handler: {runs} runs"
    );
    assert!(runs <= 10, "{runs} handlers in 1.5 s: not backing off");
    let err = srv.stderr();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one warning per episode: {err}");
    let pid = lines[0]
        .strip_prefix("skd-dgram: warning: handler pid ")
        .and_then(|l| {
            l.strip_suffix(" exited with status 3 and left its datagram unread; backing off")
        })
        .unwrap_or_else(|| panic!("{err}"));
    assert!(pid.parse::<i32>().is_ok(), "{err}");

    // The handler can read now: the next run gets the very same datagram.
    std::fs::write(&marker, "").unwrap();
    let mut buf = [0u8; 64];
    let n = c.recv(&mut buf).expect("the echo of the kept datagram");
    assert_eq!(&buf[..n], b"first");

    // That ended the episode: a new one is reported anew.
    std::fs::remove_file(&marker).unwrap();
    c.send_to(b"second", addr).unwrap();
    srv.wait_stderr("a second warning", |e| e.lines().count() == 2);
}

#[test]
fn a_handler_that_cannot_be_started_is_backed_off_without_spinning() {
    let (mut srv, addr) = udp_server(&[], &["/nonexistent/handler"]);
    udp_client("127.0.0.1:0").send_to(b"x", addr).unwrap();
    srv.wait_stderr("the warning", |e| e.contains("unable to spawn"));
    let before = voluntary_switches(srv.pid());
    thread::sleep(Duration::from_secs(1));
    let switches = voluntary_switches(srv.pid()) - before;
    assert!(switches < 100, "{switches} blocking calls in 1 s: spinning");
    assert_eq!(
        srv.stderr(),
        "skd-dgram: warning: unable to spawn /nonexistent/handler: \
         No such file or directory; backing off\n"
    );
    // Backing off does not delay a stop.
    assert_eq!(srv.stop(15).code(), Some(0));
}

#[test]
fn a_socket_shut_down_by_a_handler_is_fatal_not_a_spin() {
    // After shutdown(SHUT_RD) poll reports the socket readable for ever.
    let script = r#"
import socket
s = socket.socket(fileno=0)
data, peer = s.recvfrom(65536)
try:
    s.shutdown(socket.SHUT_RD)
except OSError:
    pass
s.sendto(data, peer)
"#;
    let (mut srv, addr) = udp_server(&[], &py(script));
    assert_eq!(ask(&udp_client("127.0.0.1:0"), addr, "bye"), "bye");
    assert_eq!(srv.wait().code(), Some(111));
    assert_eq!(
        srv.stderr(),
        "skd-dgram: fatal: unable to wait for datagrams: \
         the socket was shut down for reading\n"
    );
}

#[test]
fn sigterm_and_sigint_stop_the_server_promptly() {
    // Idle, once serving (a first exchange shows it is).
    let (mut idle, addr) = udp_server(&[], &py(ECHO));
    assert_eq!(ask(&udp_client("127.0.0.1:0"), addr, "up?"), "up?");
    wait_until("the handler to be reaped", || {
        children(idle.pid()).is_empty()
    });
    assert_eq!(idle.stop(2).code(), Some(0));
    // With a handler running: the server exits, the handler is left alone.
    let (mut busy, addr) = udp_server(&[], &["sleep", "30"]);
    udp_client("127.0.0.1:0").send_to(b"x", addr).unwrap();
    wait_until("a handler", || !children(busy.pid()).is_empty());
    assert_eq!(busy.stop(15).code(), Some(0));
}

/// `std::io::pipe` gives close-on-exec ends; the child of `c` gets the
/// write end as `SKD_READY_FD`, as skd-background would pass it.
/// Returns what the read end gets up to end of file, and the write end,
/// for the caller to drop once the child is spawned.
fn with_ready_pipe(c: &mut std::process::Command) -> (mpsc::Receiver<Vec<u8>>, PipeWriter) {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let fd = writer.as_raw_fd();
    c.env("SKD_READY_FD", fd.to_string());
    // SAFETY: the closure only calls fcntl, which is async-signal-safe, on
    // a descriptor that stays open until the child is spawned.
    unsafe {
        c.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut got = Vec::new();
        let _ = reader.read_to_end(&mut got);
        let _ = tx.send(got);
    });
    (rx, writer)
}

#[test]
fn ready_once_serving_and_stdout_let_go() {
    let mut c = chain(&["-u", "127.0.0.1:0"], &[], &py(ECHO));
    let (rx, writer) = with_ready_pipe(&mut c);
    let srv = Server::start(c);
    drop(writer);
    let port = srv.port();
    // Releases a waiting skd-background: end of file, no failure byte.
    let got = rx
        .recv_timeout(TIMEOUT)
        .expect("end of file on the readiness pipe");
    assert_eq!(got, b"");
    // `port=$(...)` in a background chain returns.
    srv.wait_stdout_closed();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(ask(&udp_client("127.0.0.1:0"), addr, "still"), "still");
}

#[test]
fn a_failure_before_serving_is_reported_on_the_readiness_pipe() {
    let mut c = chain(&["-t", "127.0.0.1:0"], &[], &["cat"]);
    let (rx, writer) = with_ready_pipe(&mut c);
    let out = run(c);
    drop(writer);
    assert_eq!(out.status.code(), Some(100));
    assert_eq!(rx.recv_timeout(TIMEOUT).unwrap(), [100]);
}

#[test]
fn bad_input_gives_one_line_and_the_right_status() {
    let dir = TempDir::new();
    let stream_path = dir.path("stream.sock");
    let stream_path = stream_path.to_str().unwrap();
    // Puts a fresh socket of the given kind, unbound, on fd 0 and runs
    // skd-dgram.
    let unbound = "import os, socket, sys; \
                   s = socket.socket(getattr(socket, sys.argv[1]), socket.SOCK_DGRAM); \
                   os.dup2(s.fileno(), 0); os.execv(sys.argv[2], sys.argv[2:])";
    let not_dgram = "stdin is not a datagram socket";
    let cases: &[(&str, &[&str], i32, &str)] = &[
        (SKD_DGRAM, &[], 100, "no program to run"),
        (SKD_DGRAM, &["-v"], 100, "no program to run"),
        (SKD_DGRAM, &["-x", "cat"], 100, "invalid option '-x'"),
        (SKD_DGRAM, &["cat"], 100, not_dgram),
        (
            SKD_BIND,
            &["-t", "127.0.0.1:0", SKD_DGRAM, "cat"],
            100,
            not_dgram,
        ),
        (
            SKD_BIND,
            &["-l", stream_path, SKD_DGRAM, "cat"],
            100,
            not_dgram,
        ),
        (
            "python3",
            &["-c", unbound, "AF_INET", SKD_DGRAM, "cat"],
            100,
            "stdin is a datagram socket but is not bound to an address",
        ),
        (
            "python3",
            &["-c", unbound, "AF_UNIX", SKD_DGRAM, "cat"],
            100,
            "stdin is a datagram socket but is not bound to an address",
        ),
        (
            "python3",
            &["-c", unbound, "AF_NETLINK", SKD_DGRAM, "cat"],
            100,
            "stdin is not an internet or unix socket",
        ),
    ];
    for (tool, args, code, text) in cases {
        let out = run(cmd(tool, args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{tool} {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("skd-dgram: fatal: "), "{args:?}: {err}");
        assert!(err.contains(text), "{args:?}: {err}");
    }
}

#[test]
fn serves_a_unix_datagram_socket_bound_by_s6() {
    let binder = require("s6-ipcserver-socketbinder");
    let dir = TempDir::new();
    let path = dir.path("s6.sock");
    let mut args = vec!["-m", "-b", "0", path.to_str().unwrap(), SKD_DGRAM];
    args.extend(py(REPLY));
    let _srv = Server::start(cmd(&binder, &args));
    let c = unix_client(&dir.path("client.sock"));
    wait_until("socket file", || path.exists());
    c.send_to(b"from s6", &path).unwrap();
    let mut buf = [0u8; 256];
    let n = c.recv(&mut buf).expect("a reply");
    let (proto, _, data) = parts(&String::from_utf8_lossy(&buf[..n]));
    assert_eq!((proto.as_str(), data.as_str()), ("UNIX-DGRAM", "from s6"));
}
