//! The classic skd command line, end to end: the README's examples, the
//! scripting patterns, the defects of skd 1.2 that must not return, the
//! -S supervisor, and the multicall binary.

mod common;

use std::fs::File;
use std::io::Read;
use std::net::{Shutdown, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ------------------------------------------------------------ helpers

/// What a command that puts itself in the background left behind: its
/// exit status, its whole stdout (read to end of file, as `$(...)` does),
/// and its stderr so far.
struct Foreground {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `c` the way `x=$(c)` does: returns once stdout reaches end of file
/// and the command has exited, failing the test after `TIMEOUT`. Stderr
/// goes to a file, which a daemon may keep open.
fn run_foreground(mut c: Command, dir: &TempDir) -> Foreground {
    let err_path = dir.path("foreground.stderr");
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&err_path).unwrap());
    let mut child = c.spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let stdout = rx.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
        signal(child.id() as i32, 9);
        panic!(
            "stdout still open after {TIMEOUT:?}; stderr: {}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        )
    });
    Foreground {
        status: wait_bounded(&mut child),
        stdout,
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    }
}

/// Runs `c` with stdout and stderr on files, which a daemon may keep open
/// (as `-B` leaves stdout alone when it is not a terminal, a standalone
/// daemon keeps a pipe open): returns once the command has exited.
fn run_detached(mut c: Command, dir: &TempDir) -> Foreground {
    let out_path = dir.path("foreground.stdout");
    let err_path = dir.path("foreground.stderr");
    c.stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap());
    let mut child = c.spawn().expect("spawn");
    Foreground {
        status: wait_bounded(&mut child),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    }
}

fn wait_bounded(child: &mut std::process::Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            signal(child.id() as i32, 9);
            panic!("the foreground did not exit within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until a unix stream socket at `path` accepts connections (the
/// file appears at bind time, before listen).
fn wait_listening(path: &Path) {
    wait_until("the socket to listen", || {
        std::os::unix::net::UnixStream::connect(path).is_ok()
    });
}

/// A daemon started by a test: its whole process group (its session, as
/// the background step calls setsid) is killed when the test ends.
struct Daemon(i32);

impl Daemon {
    fn from_pidfile(path: &Path) -> Daemon {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("pidfile {path:?} unreadable: {e}"));
        Daemon(
            text.trim()
                .parse()
                .unwrap_or_else(|_| panic!("pidfile holds {text:?}")),
        )
    }

    fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.0))
            .ok()
            .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
            .is_some_and(|state| state != 'Z')
    }

    /// The program the process runs now (argv[0] of its last exec).
    fn argv0(&self) -> String {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.0)).unwrap_or_default();
        let first = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        String::from_utf8_lossy(first).into_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        signal(-self.0, 9);
        signal(self.0, 9);
    }
}

/// A syslog socket owned by the test: the command is run in a mount
/// namespace of its own whose /dev is a small tmpfs holding the usual
/// device nodes and `log`, a symlink to a datagram socket in `dir`. The
/// machine's /dev is never touched.
struct Syslog {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Syslog {
    fn new(dir: &TempDir) -> Syslog {
        let path = dir.path("log");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        Syslog { socket, path }
    }

    /// `program args...` in a namespace where /dev/log is this socket.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        const SETUP: &str = r#"set -e
d=$(mktemp -d)
mount -t tmpfs -o mode=755 skd-test-dev "$d"
for n in null zero full random urandom tty; do
    touch "$d/$n"
    mount --bind "/dev/$n" "$d/$n"
done
ln -s /proc/self/fd "$d/fd"
ln -s "$1" "$d/log"
mount --move "$d" /dev
rmdir "$d"
shift
exec "$@""#;
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SETUP,
            "sh",
        ]);
        c.arg(&self.path).arg(program).args(args);
        c
    }

    /// Waits for a message containing `text`; returns it.
    fn expect(&self, text: &str) -> String {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self
                .socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no syslog message with {text:?} ({e}); got {seen:?}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains(text) {
                return msg;
            }
            seen.push(msg);
        }
    }
}

// ---------------------------------------------------- the README examples

#[test]
fn readme_unix_domain_echo_server() {
    // skd -vl /dev/cat.sock cat
    let dir = TempDir::new();
    let path = dir.path("cat.sock");
    let srv = Server::start(cmd(SKD, &["-vl", s(&path), "cat"]));
    wait_listening(&path);
    assert_eq!(unix_exchange(&path, b"meow"), b"meow");
    let err = srv.wait_stderr("the verbose line", |e| e.contains("accepted"));
    assert!(
        err.starts_with(&format!(
            "skd-accept: info: accepted local connection from pid {}",
            std::process::id()
        )),
        "{err}"
    );
}

#[test]
fn readme_motd_server_in_the_background_with_pidfile_and_syslog() {
    // skd -vt 3000 -BP /var/run/motd.pid -L testsrv:daemon.info cat /etc/motd
    let dir = TempDir::new();
    let motd = dir.path("motd");
    std::fs::write(&motd, "welcome\n").unwrap();
    let pidfile = dir.path("motd.pid");
    let log = Syslog::new(&dir);
    let fg = run_foreground(
        log.command(
            SKD,
            &[
                "-vt",
                "127.0.0.1:0",
                "-BP",
                s(&pidfile),
                "-L",
                "testsrv:daemon.info",
                "cat",
                s(&motd),
            ],
        ),
        &dir,
    );
    assert!(fg.status.success(), "{:?}: {}", fg.status, fg.stderr);
    let port: u16 = fg.stdout.trim().parse().expect(&fg.stdout);
    // The pidfile is there when the foreground returns, and names the
    // daemon: the server itself.
    let daemon = Daemon::from_pidfile(&pidfile);
    assert!(daemon.alive());
    assert!(daemon.argv0().ends_with("skd-accept"), "{}", daemon.argv0());
    let s = connect(port);
    let me = s.local_addr().unwrap().port();
    let out = exchange(s, b"", |s| s.shutdown(Shutdown::Write).unwrap());
    assert_eq!(out, b"welcome\n");
    // daemon.info is priority 3 * 8 + 6.
    let msg = log.expect(&format!("accepted connection from [127.0.0.1]:{me}"));
    assert!(msg.starts_with("<30>"), "{msg}");
    assert!(msg.contains("testsrv"), "{msg}");
    assert_eq!(fg.stderr, "", "nothing on the foreground's stderr");
}

#[test]
fn readme_standalone_program_in_the_background_logging_to_syslog() {
    // skd -BL uschedule:daemon.notice -- uscheduled -d /var/lib/uschedule
    let dir = TempDir::new();
    let pidfile = dir.path("prog.pid");
    let script = format!(
        "echo $$ > {}; echo \"started with $*\" >&2; exec sleep 60",
        s(&pidfile)
    );
    let log = Syslog::new(&dir);
    let fg = run_detached(
        log.command(
            SKD,
            &[
                "-BL",
                "uschedule:daemon.notice",
                "--",
                "sh",
                "-c",
                &script,
                "uscheduled",
                "-d",
                "/var/lib/uschedule",
            ],
        ),
        &dir,
    );
    assert!(fg.status.success(), "{:?}: {}", fg.status, fg.stderr);
    assert_eq!(fg.stdout, "");
    let msg = log.expect("started with -d /var/lib/uschedule");
    // daemon.notice is priority 3 * 8 + 5.
    assert!(msg.starts_with("<29>"), "{msg}");
    assert!(msg.contains("uschedule"), "{msg}");
    let daemon = Daemon::from_pidfile(&pidfile);
    assert!(daemon.alive());
}

// ------------------------------------------------ scripting patterns

#[test]
fn port_capture_in_the_background_returns_promptly() {
    // port=$(skd -B -t 127.0.0.1:0 prog)
    let dir = TempDir::new();
    let pidfile = dir.path("pid");
    let fg = run_foreground(
        cmd(
            SKD,
            &["-B", "-P", s(&pidfile), "-t", "127.0.0.1:0", "echo", "hi"],
        ),
        &dir,
    );
    // The pidfile holds the daemon's pid as soon as the foreground returns.
    let daemon = Daemon::from_pidfile(&pidfile);
    assert!(fg.status.success(), "{:?}: {}", fg.status, fg.stderr);
    assert!(daemon.alive());
    assert!(daemon.argv0().ends_with("skd-accept"), "{}", daemon.argv0());
    let port: u16 = fg.stdout.trim().parse().expect(&fg.stdout);
    assert_eq!(fg.stdout, format!("{port}\n"));
    assert_eq!(tcp_exchange(port, b""), b"hi\n");
}

#[test]
fn background_with_a_port_in_use_fails_in_the_foreground() {
    let dir = TempDir::new();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let fg = run_foreground(
        cmd(SKD, &["-B", "-t", &format!("127.0.0.1:{port}"), "cat"]),
        &dir,
    );
    assert_eq!(fg.status.code(), Some(111), "{}", fg.stderr);
    assert_eq!(
        fg.stderr,
        format!(
            "skd-bind: fatal: unable to bind to 127.0.0.1 port {port}: Address already in use\n"
        )
    );
    assert_eq!(fg.stdout, "");
}

#[test]
fn background_with_a_missing_program_fails_in_the_foreground() {
    let dir = TempDir::new();
    let fg = run_foreground(cmd(SKD, &["-B", "/nonexistent/prog"]), &dir);
    assert_eq!(fg.status.code(), Some(127), "{}", fg.stderr);
    assert!(
        fg.stderr
            .ends_with("unable to exec /nonexistent/prog: No such file or directory\n"),
        "{}",
        fg.stderr
    );
}

#[test]
fn relative_paths_work_in_the_background() {
    // As with skd 1.2, -B does not change directory.
    let dir = TempDir::new();
    let mut c = cmd(SKD, &["-B", "-P", "x.pid", "-l", "x.sock", "cat"]);
    c.current_dir(&dir.0);
    let fg = run_foreground(c, &dir);
    let daemon = Daemon::from_pidfile(&dir.path("x.pid"));
    assert!(fg.status.success(), "{:?}: {}", fg.status, fg.stderr);
    assert!(daemon.alive());
    assert_eq!(unix_exchange(&dir.path("x.sock"), b"rel"), b"rel");
}

#[test]
fn the_pidfile_does_not_follow_a_symlink() {
    // Defect 9: skd 1.2 wrote the pidfile with fopen("w").
    let dir = TempDir::new();
    let victim = dir.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let link = dir.path("link.pid");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let fg = run_detached(cmd(SKD, &["-B", "-P", s(&link), "sleep", "60"]), &dir);
    assert_eq!(fg.status.code(), Some(111), "{}", fg.stderr);
    assert!(
        fg.stderr.starts_with("skd-pidfile: fatal: "),
        "{}",
        fg.stderr
    );
    assert_eq!(fg.stderr.lines().count(), 1, "{}", fg.stderr);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn log_to_a_file_truncating_or_appending() {
    let dir = TempDir::new();
    let file = dir.path("err.log");
    std::fs::write(&file, "old\n").unwrap();
    let out = run(cmd(
        SKD,
        &["-L", &format!(">{}", s(&file)), "sh", "-c", "echo one >&2"],
    ));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "one\n");
    // Blanks after '>' are allowed, as in skd 1.2.
    let out = run(cmd(
        SKD,
        &[
            "-L",
            &format!(">> {}", s(&file)),
            "sh",
            "-c",
            "echo two >&2",
        ],
    ));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "one\ntwo\n");
    assert_eq!(out.stderr, b"");
}

#[test]
fn privileges_are_dropped_after_binding_and_for_the_logger() {
    // The socket is in a directory only root may enter: binding it needs
    // root, serving it does not.
    let dir = TempDir::new();
    let private = dir.path("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = private.join("sock");
    let log = Syslog::new(&dir);
    let mut c = log.command(
        SKD,
        &[
            "-U",
            "-L",
            "dropper",
            "-l",
            s(&path),
            "sh",
            "-c",
            "echo $(id -u):$(id -g):$(id -G)",
        ],
    );
    c.env("UID", "65534").env("GID", "65534");
    let srv = Server::start(c);
    wait_listening(&path);
    assert_eq!(unix_exchange(&path, b""), b"65534:65534:65534\n");
    let uid_of = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|u| u.split_whitespace().next().unwrap().to_owned())
            })
            .unwrap_or_default()
    };
    assert_eq!(uid_of(srv.pid()), "65534", "the server");
    // The logger is a child of the server that was forked by skd-log and
    // never exec'd: it still has skd-log's command line.
    let loggers: Vec<i32> = children(srv.pid())
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"skd-log\0-U\0dropper\0"))
        })
        .collect();
    assert_eq!(loggers.len(), 1, "{loggers:?}");
    assert_eq!(uid_of(loggers[0]), "65534", "the logger");
}

/// Copies `file` to `to`, then waits until it can be executed (another
/// test's fork may briefly hold the copy open for writing: ETXTBSY).
fn copy_executable(file: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(file, to).unwrap();
    wait_until("the copy to be runnable", || {
        Command::new(to)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
}

/// Copies the shared libraries `program` needs into `root`, at the same
/// paths.
fn copy_libraries(program: &Path, root: &Path) {
    let out = run(cmd("ldd", &[s(program)]));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let lib = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
            let to = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(lib, to).unwrap();
        }
    }
}

#[test]
fn privileges_are_dropped_into_a_chroot() {
    // $ROOT: the server runs inside it, so it needs skd there (as
    // skd-accept, found through PATH) and its C library, like the handler.
    let dir = TempDir::new();
    let root = dir.path("root");
    copy_executable(Path::new(SKD), &root.join("bin/skd-accept"));
    copy_libraries(Path::new(SKD), &root);
    let busybox = require("busybox");
    copy_executable(Path::new(&busybox), &root.join("bin/busybox"));
    copy_libraries(Path::new(&busybox), &root);
    // The server points its stdout at /dev/null once it runs there.
    std::fs::create_dir(root.join("dev")).unwrap();
    let out = run(cmd(
        "mknod",
        &["-m", "666", s(&root.join("dev/null")), "c", "1", "3"],
    ));
    assert!(out.status.success(), "{out:?}");
    let path = dir.path("sock");
    let mut c = cmd(
        SKD,
        &[
            "-U",
            "-l",
            s(&path),
            "busybox",
            "sh",
            "-c",
            "echo $(busybox id -u) $(busybox ls /)",
        ],
    );
    c.env("UID", "65534")
        .env("GID", "65534")
        .env("ROOT", &root)
        .env("PATH", "/bin");
    let _srv = Server::start(c);
    wait_listening(&path);
    assert_eq!(unix_exchange(&path, b""), b"65534 bin dev lib lib64\n");
}

#[test]
fn udp_datagrams_are_served() {
    let script = "import socket; s = socket.socket(fileno=0); d, a = s.recvfrom(100); \
                  s.sendto(d.upper() + b' ' + __import__('os').environ['PROTO'].encode(), a)";
    let srv = Server::start(cmd(SKD, &["-vu", "127.0.0.1:0", "python3", "-c", script]));
    let port = srv.port();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 100];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"PING UDP");
    srv.wait_stderr("the verbose line", |e| e.starts_with("skd-dgram: info: "));
}

#[test]
fn unix_datagrams_are_served() {
    let dir = TempDir::new();
    let path = dir.path("dgram.sock");
    let script = "import socket; s = socket.socket(fileno=0); d, a = s.recvfrom(100); \
                  s.sendto(d.upper(), a)";
    let _srv = Server::start(cmd(SKD, &["-d", "-l", s(&path), "python3", "-c", script]));
    wait_until("the socket", || path.exists());
    let client = UnixDatagram::bind(dir.path("client.sock")).unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.send_to(b"pong", &path).unwrap();
    let mut buf = [0u8; 100];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"PONG");
}

// ------------------------------------- defects of skd 1.2 that must not return

#[test]
fn a_handlers_own_options_are_its_own() {
    // Defect 1: getopt permutation took sh's -c for skd's.
    let srv = Server::start(cmd(
        SKD,
        &[
            "-t",
            "127.0.0.1:0",
            "sh",
            "-c",
            "echo \"$0 $1\"",
            "-v",
            "-c",
        ],
    ));
    assert_eq!(tcp_exchange(srv.port(), b""), b"-v -c\n");
}

#[test]
fn the_port_reaches_a_pipe_at_once_and_the_socket_is_listening() {
    // Defect 2: the port sat in a stdio buffer, and was printed before
    // listen(). Connect the moment the line arrives.
    for _ in 0..3 {
        let srv = Server::start(cmd(SKD, &["-t", "127.0.0.1:0", "echo", "ok"]));
        assert_eq!(tcp_exchange(srv.port(), b""), b"ok\n");
    }
}

#[test]
fn nodelay_is_set_on_every_connection() {
    // Defect 4: -n went to the listener, after the first accept.
    let script = "import socket; s = socket.socket(fileno=0); \
                  print(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))";
    let srv = Server::start(cmd(
        SKD,
        &["-n", "-t", "127.0.0.1:0", "python3", "-c", script],
    ));
    let port = srv.port();
    for _ in 0..2 {
        assert_eq!(tcp_exchange(port, b""), b"1\n");
    }
}

#[test]
fn handlers_get_the_connection_and_not_the_listener() {
    // Defect 5: the listening socket leaked into every handler.
    let srv = Server::start(cmd(
        SKD,
        &["-t", "127.0.0.1:0", "sh", "-c", "ls -l /proc/$$/fd"],
    ));
    let out = String::from_utf8(tcp_exchange(srv.port(), b"")).unwrap();
    let mut numbers: Vec<i32> = out
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .map(|(l, _)| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    numbers.sort();
    let mut expected = vec![0, 1, 2];
    expected.extend(inheritable_fds());
    expected.sort();
    assert_eq!(numbers, expected, "{out}");
}

#[test]
fn a_port_above_65535_is_refused() {
    // Defect 7: -t 99999 served on 34463.
    let out = run(cmd(SKD, &["-t", "99999", "cat"]));
    assert_eq!(out.status.code(), Some(100));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("skd: fatal: invalid address \"99999\": the port must be a number from 0 to 65535; usage: skd "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

// ------------------------------------------------ the -S supervisor

/// Counts the lines of `text` equal to `line`.
fn count(text: &str, line: &str) -> usize {
    text.lines().filter(|l| *l == line).count()
}

#[test]
fn the_supervisor_restarts_a_failing_program_about_once_a_second() {
    // Defect 6: skd 1.2 restarted it thousands of times a second.
    let began = Instant::now();
    let mut srv = Server::start(cmd(SKD, &["-Sv", "sh", "-c", "exit 3"]));
    srv.wait_stderr("a restart", |e| count(e, "skd: info: Started sh") >= 2);
    thread::sleep(Duration::from_millis(2500));
    let err = srv.stderr();
    let elapsed = began.elapsed().as_secs_f64();
    let starts = count(&err, "skd: info: Started sh");
    // Starts are at least a second apart, whatever the load.
    assert!(
        starts >= 3 && starts as f64 <= elapsed + 1.0,
        "{starts} starts in {elapsed:.1} s: {err}"
    );
    let exits = count(&err, "skd: info: sh exited abnormally with status 3");
    assert!(exits + 1 >= starts && exits <= starts, "{err}");
    assert_eq!(srv.stop(15).code(), Some(0));
}

#[test]
fn the_supervisor_reports_a_program_killed_by_a_signal() {
    let mut srv = Server::start(cmd(SKD, &["-Sv", "sh", "-c", "kill -9 $$"]));
    let err = srv.wait_stderr("the signal line", |e| e.contains("terminated"));
    assert!(
        err.starts_with("skd: info: Started sh\nskd: info: sh was terminated by signal 9\n"),
        "{err}"
    );
    assert_eq!(srv.stop(15).code(), Some(0));
}

#[test]
fn the_supervisor_restarts_a_program_that_exits_successfully_quietly() {
    let mut srv = Server::start(cmd(SKD, &["-Sv", "echo", "tick"]));
    assert_eq!(srv.line(), "tick");
    assert_eq!(srv.line(), "tick");
    assert_eq!(srv.stop(15).code(), Some(0));
    let err = srv.stderr();
    assert!(err.lines().all(|l| l == "skd: info: Started echo"), "{err}");
}

const TRAPPER: &str = r#"
import signal, sys, time
def caught(sig, frame):
    print(signal.Signals(sig).name, flush=True)
    if sig != signal.SIGHUP:
        sys.exit(0)
for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, caught)
print("ready", flush=True)
while True:
    time.sleep(1)
"#;

#[test]
fn the_supervisor_forwards_signals_and_stops_on_term_and_int() {
    for (stop, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let mut srv = Server::start(cmd(SKD, &["-Sv", "python3", "-c", TRAPPER]));
        assert_eq!(srv.line(), "ready");
        signal(srv.pid(), libc::SIGHUP);
        assert_eq!(srv.line(), "SIGHUP");
        signal(srv.pid(), stop);
        assert_eq!(srv.line(), name);
        // The supervisor exits once the program has, without a restart.
        assert_eq!(srv.wait().code(), Some(0), "{}", srv.stderr());
        assert_eq!(srv.stderr(), "skd: info: Started python3\n");
    }
}

#[test]
fn the_supervisor_stops_at_once_between_two_runs() {
    let mut srv = Server::start(cmd(SKD, &["-Sv", "sh", "-c", "exit 1"]));
    srv.wait_stderr("the first exit", |e| e.contains("exited abnormally"));
    assert_eq!(srv.stop(15).code(), Some(0));
}

#[test]
fn the_supervisor_fails_when_the_program_cannot_be_run() {
    let out = run(cmd(SKD, &["-S", "/nonexistent/prog"]));
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "skd: fatal: unable to exec /nonexistent/prog: No such file or directory\n"
    );
}

#[test]
fn the_supervisor_in_the_background_holds_the_pidfile_and_passes_term_on() {
    let dir = TempDir::new();
    let pidfile = dir.path("sup.pid");
    let logfile = dir.path("log");
    let fg = run_detached(
        cmd(
            SKD,
            &[
                "-BSv",
                "-P",
                s(&pidfile),
                "-L",
                &format!(">>{}", s(&logfile)),
                "python3",
                "-c",
                TRAPPER,
            ],
        ),
        &dir,
    );
    assert!(fg.status.success(), "{:?}: {}", fg.status, fg.stderr);
    let daemon = Daemon::from_pidfile(&pidfile);
    assert_eq!(daemon.argv0(), "skd", "the pidfile names the supervisor");
    // -B leaves a stdout that is not a terminal alone: the program's
    // "ready" line goes to the foreground's stdout file.
    let out = dir.path("foreground.stdout");
    wait_until("the program to start", || {
        std::fs::read_to_string(&out).is_ok_and(|o| o == "ready\n")
    });
    signal(daemon.0, libc::SIGTERM);
    wait_until("the supervisor to exit", || !daemon.alive());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "ready\nSIGTERM\n");
    let log = std::fs::read_to_string(&logfile).unwrap();
    assert_eq!(log, "skd: info: Started python3\n");
}

// ------------------------------------------------ options and usage

#[test]
fn version() {
    let out = run(cmd(SKD, &["-V"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("skd {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(out.stderr, b"");
}

#[test]
fn usage_errors_give_one_line_with_the_usage_and_exit_100() {
    for args in [
        &[][..],
        &["-t", "80"],
        &["-q", "cat"],
        &["--help"],
        &["-t"],
        &["-b", "0", "cat"],
        &["-c", "x", "cat"],
        &["-t", "0", "-l", "/tmp/x", "cat"],
        &["-S", "-t", "0", "cat"],
    ] {
        let out = run(cmd(SKD, args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(100), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("skd: fatal: "), "{args:?}: {err}");
        assert!(err.contains("; usage: skd [-"), "{args:?}: {err}");
    }
}

#[test]
fn without_a_socket_the_program_is_run_directly() {
    // Server-only options are ignored, as by skd 1.2; the program replaces
    // skd (same pid, no tool left running).
    let out = run(cmd(
        SKD,
        &["-v", "-c", "3", "sh", "-c", "echo $$; cat /proc/$$/cmdline"],
    ));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("sh\0-c\0echo $$; cat /proc/$$/cmdline\0"),
        "{text}"
    );
}

#[test]
fn names_that_start_with_a_dash_are_not_options() {
    // A program and a pidfile called -hello and -odd.pid: each tool of the
    // chain gets a `--` before the one it would otherwise take for options.
    let dir = TempDir::new();
    std::os::unix::fs::symlink("/bin/echo", dir.path("-hello")).unwrap();
    let mut c = cmd(
        SKD,
        &[
            "-P",
            "-odd.pid",
            "-t",
            "127.0.0.1:0",
            "--",
            "-hello",
            "dashed",
        ],
    );
    c.current_dir(&dir.0)
        .env("PATH", format!("{}:/usr/bin:/bin", dir.0.display()));
    let srv = Server::start(c);
    assert_eq!(tcp_exchange(srv.port(), b""), b"dashed\n");
    let pid = std::fs::read_to_string(dir.path("-odd.pid")).unwrap();
    assert_eq!(pid.trim(), srv.pid().to_string());
}

#[test]
fn bundled_options() {
    let dir = TempDir::new();
    let path = dir.path("s");
    let srv = Server::start(cmd(SKD, &["-vc2", "-l", s(&path), "echo", "b"]));
    wait_listening(&path);
    assert_eq!(unix_exchange(&path, b""), b"b\n");
    srv.wait_stderr("the verbose line", |e| e.contains("1/2 running"));
}

// ------------------------------------------------ the multicall binary

/// A directory holding a copy of the skd binary alone.
fn lone_skd(dir: &TempDir) -> PathBuf {
    let bin = dir.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let skd = bin.join("skd");
    std::fs::copy(SKD, &skd).unwrap();
    // Another test's fork may briefly hold the copy open for writing
    // (ETXTBSY): wait until it runs.
    wait_until("the copy to be runnable", || {
        Command::new(&skd)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    skd
}

/// A command with nothing of ours on PATH.
fn clean(program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).env_clear().env("PATH", "/usr/bin:/bin");
    c
}

#[test]
fn a_lone_skd_binary_runs_the_whole_chain_as_itself() {
    let dir = TempDir::new();
    let skd = lone_skd(&dir);
    let srv = Server::start(clean(
        &skd,
        &["-v", "-t", "127.0.0.1:0", "sh", "-c", "echo served"],
    ));
    let port = srv.port();
    assert_eq!(tcp_exchange(port, b""), b"served\n");
    // It re-exec'd itself as skd-bind, then as skd-accept.
    srv.wait_stderr("the verbose line", |e| {
        e.starts_with("skd-accept: info: accepted connection")
    });
    let exe = std::fs::read_link(format!("/proc/{}/exe", srv.pid())).unwrap();
    assert_eq!(exe, skd);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", srv.pid())).unwrap();
    assert!(cmdline.starts_with(b"skd-accept\0-v\0"), "{cmdline:?}");
}

#[test]
fn a_lone_skd_binary_supervises_and_backgrounds() {
    let dir = TempDir::new();
    let skd = lone_skd(&dir);
    let pidfile = dir.path("pid");
    let fg = run_detached(
        clean(&skd, &["-BS", "-P", s(&pidfile), "sleep", "60"]),
        &dir,
    );
    assert!(fg.status.success(), "{:?}: {}", fg.status, fg.stderr);
    let daemon = Daemon::from_pidfile(&pidfile);
    assert_eq!(daemon.argv0(), "skd");
    signal(daemon.0, libc::SIGTERM);
    wait_until("the supervisor to exit", || !daemon.alive());
}

#[test]
fn a_lone_skd_binary_runs_every_stage_as_itself() {
    let dir = TempDir::new();
    let skd = lone_skd(&dir);
    let pidfile = dir.path("pid");
    let logfile = dir.path("log");
    let script = "import os, socket; s = socket.socket(fileno=0); d, a = s.recvfrom(100); \
                  s.sendto(str(os.getuid()).encode(), a)";
    let mut c = clean(
        &skd,
        &[
            "-B",
            "-P",
            s(&pidfile),
            "-L",
            &format!(">>{}", s(&logfile)),
            "-U",
            "-vu",
            "127.0.0.1:0",
            "python3",
            "-c",
            script,
        ],
    );
    c.env("UID", "65534").env("GID", "65534");
    let fg = run_foreground(c, &dir);
    assert!(fg.status.success(), "{:?}: {}", fg.status, fg.stderr);
    let port: u16 = fg.stdout.trim().parse().expect(&fg.stdout);
    let daemon = Daemon::from_pidfile(&pidfile);
    assert_eq!(daemon.argv0(), "skd-dgram");
    let exe = std::fs::read_link(format!("/proc/{}/exe", daemon.0)).unwrap();
    assert_eq!(exe, skd);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.send_to(b"who", ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 100];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"65534");
    wait_until("the verbose line in the log", || {
        std::fs::read_to_string(&logfile).is_ok_and(|l| l.starts_with("skd-dgram: info: "))
    });
}

#[test]
fn a_symlink_named_after_a_tool_is_that_tool() {
    let dir = TempDir::new();
    let skd = lone_skd(&dir);
    let bind = skd.with_file_name("skd-bind");
    std::os::unix::fs::symlink("skd", &bind).unwrap();
    let srv = Server::start(clean(
        &bind,
        &["-t", "127.0.0.1:0", "skd-accept", "sh", "-c", "echo linked"],
    ));
    assert_eq!(tcp_exchange(srv.port(), b""), b"linked\n");
    let out = run(clean(&bind, &["-t"]));
    assert_eq!(out.status.code(), Some(100));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("skd-bind: fatal: "),
        "{out:?}"
    );
}

#[test]
fn a_hard_link_named_after_a_tool_is_that_tool() {
    let dir = TempDir::new();
    let skd = lone_skd(&dir);
    let accept = skd.with_file_name("skd-accept");
    std::fs::hard_link(&skd, &accept).unwrap();
    // The front end finds the tool beside itself and runs it under its name.
    let srv = Server::start(clean(&skd, &["-t", "127.0.0.1:0", "sh", "-c", "echo hard"]));
    assert_eq!(tcp_exchange(srv.port(), b""), b"hard\n");
    let exe = std::fs::read_link(format!("/proc/{}/exe", srv.pid())).unwrap();
    assert_eq!(exe, accept);
}

#[test]
fn an_unknown_name_is_a_usage_error() {
    let dir = TempDir::new();
    let skd = lone_skd(&dir);
    let other = skd.with_file_name("skd-frobnicate");
    std::os::unix::fs::symlink("skd", &other).unwrap();
    let out = run(clean(&other, &["cat"]));
    assert_eq!(out.status.code(), Some(100));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("skd: fatal: unknown program name \""),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
