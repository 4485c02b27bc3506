//! Reliability of skd-bind + skd-accept under load, faults and starvation:
//! real processes, real loopback sockets, every exchange counted.
//! See doc/reliability.md for what each test guarantees.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// `skd-bind -t ADDR skd-accept [accept_opts] handler...`
fn tcp_server(addr: &str, accept_opts: &[&str], handler: &[&str]) -> Server {
    let mut args = vec!["-t", addr, SKD_ACCEPT];
    args.extend_from_slice(accept_opts);
    args.extend_from_slice(handler);
    Server::start(cmd(SKD_BIND, &args))
}

/// The resident set size of `pid`, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// The CPU time `pid` has used so far (user + system), in clock ticks.
fn cpu_ticks(pid: i32) -> i64 {
    stat_field(pid, 14) + stat_field(pid, 15)
}

/// Clock ticks per second, the unit of `cpu_ticks`.
fn ticks_per_second() -> i64 {
    // SAFETY: sysconf takes no pointers and cannot fail for this name.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as i64 }
}

/// The smallest descriptor number `pid` does not use: the one its next
/// accept(2) would get.
fn lowest_free_fd(pid: i32) -> i32 {
    let used: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap()
}

/// Sets a resource limit of a running process with prlimit(1).
fn set_limit(pid: i32, resource: &str, value: &str) {
    let prlimit = require("prlimit");
    let out = run(cmd(
        &prlimit,
        &["--pid", &pid.to_string(), &format!("--{resource}={value}")],
    ));
    assert!(out.status.success(), "prlimit: {out:?}");
}

/// What a client sends on exchange `n`: a distinct payload of varying
/// length (1 byte to a few KiB), so that a mixed-up or short echo shows.
fn payload(client: usize, n: usize) -> Vec<u8> {
    let tag = format!("<{client}:{n}>");
    let len = 1 + (n * 7919 + client * 104_729) % 4096;
    tag.bytes().cycle().take(len.max(tag.len())).collect()
}

/// `clients` threads make `total` exchanges between them against a cat
/// server (send, half-close, read the echo to the end) and check each
/// echo byte for byte. Returns the number of intact exchanges.
fn echo_load(port: u16, clients: usize, total: usize) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let intact = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let (next, intact) = (next.clone(), intact.clone());
            thread::spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    let sent = payload(client, n);
                    let got = tcp_exchange(port, &sent);
                    assert!(got == sent, "exchange {n}: echo differs");
                    intact.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client failed");
    }
    intact.load(Ordering::Relaxed)
}

/// No handler left, not even as a zombie.
fn wait_no_children(pid: i32) {
    wait_until("every handler to be reaped", || children(pid).is_empty());
}

/// The lines of `text` that contain `what`.
fn count_lines(text: &str, what: &str) -> usize {
    text.lines().filter(|l| l.contains(what)).count()
}

// ---------------------------------------------------------------- load

#[test]
fn a_burst_of_5000_connections_from_32_clients_is_served_intact() {
    const CLIENTS: usize = 32;
    const TOTAL: usize = 5000;
    let srv = tcp_server("127.0.0.1:0", &["-c", "64"], &["cat"]);
    let port = srv.port();
    let pid = srv.pid();
    // Warm up, so that the server's tables have reached their working
    // size before we take the baseline.
    assert_eq!(echo_load(port, CLIENTS, 200), 200);
    wait_no_children(pid);
    let (fds, rss) = (fd_count(pid), rss_kib(pid));

    assert_eq!(echo_load(port, CLIENTS, TOTAL), TOTAL, "exchanges lost");

    wait_no_children(pid);
    assert_eq!(fd_count(pid), fds, "the server's descriptor count changed");
    let after = rss_kib(pid);
    assert!(
        after <= rss + 256,
        "the server's RSS grew from {rss} KiB to {after} KiB"
    );
    assert_eq!(srv.stderr(), "", "the server complained");
}

/// The long soak: run by `.ci/soak` (`cargo test --test reliability --
/// --ignored soak`). SKD_SOAK_CONNECTIONS overrides the count.
#[test]
#[ignore = "long: run by .ci/soak"]
fn soak_100000_connections_without_growth() {
    const CLIENTS: usize = 32;
    let total: usize = std::env::var("SKD_SOAK_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let srv = tcp_server("127.0.0.1:0", &["-c", "64"], &["cat"]);
    let port = srv.port();
    let pid = srv.pid();
    assert_eq!(echo_load(port, CLIENTS, 1000), 1000);
    wait_no_children(pid);
    let (fds, rss) = (fd_count(pid), rss_kib(pid));
    let start = Instant::now();
    let rounds = 10;
    let mut done = 0;
    for round in 1..=rounds {
        let n = total * round / rounds - done;
        assert_eq!(echo_load(port, CLIENTS, n), n, "exchanges lost");
        done += n;
        wait_no_children(pid);
        let (now_fds, now_rss) = (fd_count(pid), rss_kib(pid));
        println!(
            "soak: {done} connections in {:.0?}: {now_fds} descriptors (baseline {fds}), \
             RSS {now_rss} KiB (baseline {rss} KiB)",
            start.elapsed()
        );
        assert_eq!(now_fds, fds, "the server's descriptor count changed");
        assert!(
            now_rss <= rss + 256,
            "the server's RSS grew from {rss} KiB to {now_rss} KiB"
        );
    }
    assert_eq!(srv.stderr(), "", "the server complained");
}

// ---------------------------------------------------------------- starvation

/// Sends `data` and half-closes, leaving the reply to be read later.
fn send_and_half_close(port: u16, data: &[u8]) -> TcpStream {
    let s = connect(port);
    (&s).write_all(data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    s
}

fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    got
}

#[test]
fn descriptor_exhaustion_pauses_without_spinning_warns_once_per_episode_and_recovers() {
    const WARNING: &str = "skd-accept: warning: unable to accept: Too many open files";
    let srv = tcp_server("127.0.0.1:0", &[], &["cat"]);
    let port = srv.port();
    let pid = srv.pid();
    assert_eq!(tcp_exchange(port, b"before"), b"before");
    wait_no_children(pid);

    for episode in 1..=2 {
        // The next descriptor the server would get is now over its limit:
        // accept(2) fails with EMFILE and the connection stays queued.
        let lowest = lowest_free_fd(pid);
        set_limit(pid, "nofile", &format!("{lowest}:"));
        let first = send_and_half_close(port, b"first");
        srv.wait_stderr("the warning", |e| count_lines(e, WARNING) == episode);

        // Starved for two seconds, with more clients arriving: the server
        // sleeps (it retries about once a second) and warns no more.
        let t0 = cpu_ticks(pid);
        let mut waiting = vec![first];
        for i in 0..10 {
            thread::sleep(Duration::from_millis(200));
            waiting.push(send_and_half_close(port, format!("client {i}").as_bytes()));
        }
        let used = cpu_ticks(pid) - t0;
        assert!(
            used * 10 < 2 * ticks_per_second(),
            "the starved server used {used} ticks of CPU in 2 s"
        );
        let err = srv.stderr();
        assert_eq!(count_lines(&err, WARNING), episode, "{err}");

        // Descriptors to spare again: every waiting client is served.
        set_limit(pid, "nofile", "1024:");
        let mut expected = vec![b"first".to_vec()];
        expected.extend((0..10).map(|i| format!("client {i}").into_bytes()));
        for (s, want) in waiting.into_iter().zip(expected) {
            assert_eq!(read_all(s), want);
        }
        let err = srv.wait_stderr("the end of the episode", |e| {
            count_lines(e, "skd-accept: info: accepting again") == episode
        });
        assert_eq!(count_lines(&err, WARNING), episode, "{err}");
    }
    assert_eq!(srv.stderr().lines().count(), 4, "{}", srv.stderr());
    wait_no_children(pid);
}

#[test]
fn handlers_exiting_during_a_pause_end_it_rather_than_prolong_it() {
    const HELD: usize = 20;
    let srv = tcp_server("127.0.0.1:0", &[], &["cat"]);
    let port = srv.port();
    let pid = srv.pid();
    let held: Vec<TcpStream> = (0..HELD)
        .map(|i| {
            let s = connect(port);
            let msg = format!("held {i}");
            (&s).write_all(msg.as_bytes()).unwrap();
            let mut buf = vec![0; msg.len()];
            (&s).read_exact(&mut buf).unwrap();
            s
        })
        .collect();
    let lowest = lowest_free_fd(pid);
    set_limit(pid, "nofile", &format!("{lowest}:"));
    let mut late = send_and_half_close(port, b"late");
    srv.wait_stderr("the warning", |e| e.contains("Too many open files"));
    set_limit(pid, "nofile", "1024:");
    // Handlers now exit every quarter second. Each exit may end the
    // shortage, so the waiting client is served at the first exit (or
    // when the second's pause ends), not once the exits stop.
    late.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let mut got = Vec::new();
    let mut exits = 0;
    for s in held {
        s.shutdown(Shutdown::Write).unwrap();
        drop(s);
        exits += 1;
        match late.read_to_end(&mut got) {
            Ok(_) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(got, b"late");
    assert!(exits < HELD / 2, "served only after {exits} handler exits");
}

/// A uid that no other process on the machine uses, so that its process
/// count is ours alone.
fn private_uid() -> u32 {
    2_000_000_000 + std::process::id() % 1_000_000
}

/// A helper process that is killed and reaped when dropped, even when the
/// test fails; it gets no descriptor of ours (a stray holder of the test's
/// stdout would keep the harness waiting).
struct Reaped(std::process::Child);

impl Reaped {
    fn spawn(mut c: std::process::Command) -> Reaped {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Reaped(c.spawn().expect("spawn"))
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `setpriv` arguments that run the rest as `uid` (and gid), without
/// supplementary groups.
fn as_uid(uid: &str) -> Vec<String> {
    vec![
        require("setpriv"),
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".into(),
    ]
}

#[test]
fn process_exhaustion_drops_the_connection_warns_once_and_recovers() {
    const WARNING: &str = "skd-accept: warning: unable to spawn cat: \
        Resource temporarily unavailable (dropping the connection, pausing)";
    let uid = private_uid().to_string();
    // The uid may have 3 processes: the server, a handler, and a hog
    // started first, so that the second handler cannot be spawned. (We
    // lack CAP_SYS_RESOURCE, so the limit itself cannot be raised later.)
    let mut hog = cmd(&as_uid(&uid)[0], &as_uid(&uid)[1..]);
    hog.args(["sleep", "1000"]);
    let hog = Reaped::spawn(hog);
    let hog_pid = hog.0.id() as i32;
    wait_until("the hog to run as the uid", || {
        std::fs::read_to_string(format!("/proc/{hog_pid}/status"))
            .is_ok_and(|s| s.contains(&format!("Uid:\t{uid}\t")))
    });
    let mut args = vec!["--nproc=3".to_string()];
    args.extend(as_uid(&uid));
    args.extend([SKD_BIND, "-t", "127.0.0.1:0", SKD_ACCEPT, "-c", "2", "cat"].map(String::from));
    let srv = Server::start(cmd(&require("prlimit"), &args));
    let port = srv.port();
    let pid = srv.pid();
    let held = connect(port);
    (&held).write_all(b"held").unwrap();
    let mut buf = [0; 4];
    (&held).read_exact(&mut buf).unwrap();

    // The next connection cannot get a process: it is closed, and the
    // failure reported.
    let refused = connect(port);
    assert_eq!(read_all(refused), b"", "a connection without a handler");
    srv.wait_stderr("the warning", |e| count_lines(e, WARNING) == 1);

    // A flood meanwhile: the server pauses, retries about once a second,
    // and does not warn again; the running handler serves on.
    let mut waiting = Vec::new();
    for i in 0..10 {
        waiting.push(send_and_half_close(port, format!("client {i}").as_bytes()));
        thread::sleep(Duration::from_millis(200));
    }
    (&held).write_all(b"still").unwrap();
    let mut buf = [0; 5];
    (&held).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still");
    let err = srv.stderr();
    assert_eq!(count_lines(&err, WARNING), 1, "{err}");

    // A process to spare again: the clients still waiting are served and
    // the episode's end is reported with its count.
    drop(hog);
    let mut served = 0;
    for mut s in waiting {
        // Those taken during the flood were dropped (closed with their
        // data unread: a reset); the rest waited and are served.
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) if got.starts_with(b"client ") => served += 1,
            Ok(_) => assert_eq!(got, b""),
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        }
    }
    assert!(
        served >= 3,
        "only {served} of the 10 waiting clients served"
    );
    assert_eq!(tcp_exchange(port, b"after"), b"after");
    let err = srv.wait_stderr("the end of the episode", |e| {
        e.contains("skd-accept: info: spawning again, ")
    });
    let dropped: usize = err
        .lines()
        .find_map(|l| l.strip_prefix("skd-accept: info: spawning again, "))
        .and_then(|r| r.strip_suffix(" connections were dropped"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {err}"));
    assert_eq!(dropped, 1 + 10 - served, "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    drop(held);
    wait_no_children(pid);
}

// ---------------------------------------------------------------- faults

/// A handler that misbehaves as its first line asks.
const FAULTY: &str = r#"read -r what
case "$what" in
exit) exit 0 ;;
closeout) exec >&-; exec cat >/dev/null ;;
kill) kill -9 $$ ;;
noread) exec sleep 1000 ;;
*) echo "$what"; exec cat ;;
esac"#;

/// Connects and resets the connection at once (SO_LINGER 0, then close).
fn connect_and_reset(port: u16) {
    let s = connect(port);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: s is an open socket; linger is valid for the call.
    let ret = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(ret, 0);
    drop(s);
}

/// Whether nothing arrives on `s` for half a second.
fn quiet(s: &TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0; 1];
    let quiet = matches!(
        (&*s).read(&mut buf),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    );
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    quiet
}

#[test]
fn faulty_clients_and_handlers_do_not_disturb_the_server() {
    const MAX: usize = 3;
    let mut srv = tcp_server("127.0.0.1:0", &["-v", "-c", "3"], &["sh", "-c", FAULTY]);
    let port = srv.port();
    let pid = srv.pid();

    // A handler that never reads: the client fills the buffers, and only
    // its own writes stall.
    let noread = connect(port);
    (&noread).write_all(b"noread\n").unwrap();
    noread.set_nonblocking(true).unwrap();
    let chunk = [b'x'; 65536];
    let mut stuffed = 0;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match (&noread).write(&chunk) {
            Ok(n) => stuffed += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock && stuffed > 0 => break,
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("write: {e}"),
        }
        assert!(Instant::now() < deadline, "the buffers never filled");
    }
    // A slow client that sends nothing holds a second slot.
    let slow = connect(port);
    wait_until("two handlers", || children(pid).len() == 2);

    // Through the one slot left: resets, handlers that exit at once,
    // close stdout early or die by a signal, and good exchanges between.
    for round in 0..20 {
        for _ in 0..3 {
            connect_and_reset(port);
        }
        // (Nothing after the command line: data left unread when a
        // handler ends would make the client see a reset.)
        assert_eq!(tcp_exchange(port, b"exit\n"), b"");
        assert_eq!(tcp_exchange(port, b"closeout\nread and dropped"), b"");
        assert_eq!(tcp_exchange(port, b"kill\n"), b"");
        let msg = format!("round {round}\nand more");
        assert_eq!(tcp_exchange(port, msg.as_bytes()), msg.as_bytes());
    }

    // At the limit, a new client waits...
    let third = connect(port);
    wait_until("three handlers", || children(pid).len() == MAX);
    let waiting = send_and_half_close(port, b"waiting\n");
    assert!(quiet(&waiting), "served beyond the limit of -c");
    // ... until a slot frees.
    drop(slow);
    assert_eq!(read_all(waiting), b"waiting\n");

    let err = srv.wait_stderr("the killed handlers", |e| {
        count_lines(e, "was killed by signal 9") == 20
    });
    assert!(!err.contains("fatal") && !err.contains("warning"), "{err}");
    drop(third);
    // Only the handler that never reads is left, and no zombie.
    wait_until("the others to be reaped", || {
        let c = children(pid);
        c.len() == 1 && c[0].1 != 'Z'
    });
    assert_eq!(srv.stop(libc::SIGTERM).code(), Some(0));
    drop(noread);
}

// ---------------------------------------------------------------- signals

#[test]
fn sigterm_and_sigint_stop_the_server_at_the_limit_and_when_starved() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // At the limit of -c, with a connection waiting.
        let mut srv = tcp_server("127.0.0.1:0", &["-c", "1"], &["cat"]);
        let port = srv.port();
        let held = connect(port);
        wait_until("a handler", || children(srv.pid()).len() == 1);
        let waiting = send_and_half_close(port, b"x");
        assert_eq!(srv.stop(sig).code(), Some(0));
        drop((held, waiting));

        // Starved of descriptors, pausing. The port line comes from
        // skd-bind, before skd-accept has set itself up: one exchange first
        // proves it serves, so the limit cannot starve its set-up instead.
        let mut srv = tcp_server("127.0.0.1:0", &[], &["cat"]);
        let port = srv.port();
        assert_eq!(tcp_exchange(port, b"up"), b"up");
        wait_no_children(srv.pid());
        set_limit(
            srv.pid(),
            "nofile",
            &format!("{}:", lowest_free_fd(srv.pid())),
        );
        let waiting = send_and_half_close(port, b"x");
        srv.wait_stderr("the warning", |e| {
            e.contains("skd-accept: warning: unable to accept: Too many open files")
        });
        let status = srv.stop(sig);
        assert_eq!(status.code(), Some(0), "{}", srv.stderr());
        drop(waiting);
    }
}

#[test]
fn a_connection_taken_by_another_process_sharing_the_socket_does_not_hang_the_server() {
    // Another holder of the listening socket (a second server, a
    // prefork sibling) may take the connection that woke us between our
    // poll(2) and our accept(2). strace stretches that window to 1.5 s
    // so that the thief below wins every time: a blocking accept(2) would
    // then wait for the next client, deaf to signals.
    let strace = require("strace");
    let thief = "import select, socket, time\n\
        s = socket.socket(fileno=3)\n\
        print('ready', flush=True)\n\
        select.select([s], [], [])\n\
        time.sleep(0.5)\n\
        c, _ = s.accept()\n\
        c.sendall(b'stolen')\n\
        c.close()\n\
        time.sleep(1000)";
    let script = format!(
        "exec 3<&0; (python3 -c \"$THIEF\" &); exec 3<&- {strace} -o /dev/null \
         -e trace=poll,ppoll -e inject=poll,ppoll:delay_exit=1500000:when=2+ {SKD_ACCEPT} cat"
    );
    let mut c = cmd(SKD_BIND, &["-t", "127.0.0.1:0", "sh", "-c", &script]);
    c.env("THIEF", thief);
    let mut srv = Server::start(c);
    let port = srv.port();
    assert_eq!(srv.line(), "ready");
    let strace_pid = srv.pid();
    let server = children(strace_pid)
        .into_iter()
        .map(|c| c.0)
        .find(|&p| {
            std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e.ends_with("skd-accept"))
        })
        .expect("skd-accept under strace");
    // Its first poll(2) is the Rust runtime's check of fds 0-2, which is
    // not delayed; the second is the server's, waiting for a client.
    wait_until("the server to wait in poll", || {
        std::fs::read_to_string(format!("/proc/{server}/wchan"))
            .is_ok_and(|w| w.starts_with("poll_schedule_timeout"))
    });

    assert_eq!(tcp_exchange(port, b""), b"stolen");
    // Well after the server's delayed poll has returned and its accept
    // has found the queue empty: it must still answer SIGTERM.
    thread::sleep(Duration::from_secs(2));
    signal(server, libc::SIGTERM);
    let status = srv.wait();
    assert_eq!(status.code(), Some(0), "{}", srv.stderr());
}

/// A server whose stderr is a pipe nobody reads any more; it is killed
/// with its process group when dropped.
struct DeafServer {
    child: std::process::Child,
    port: u16,
}

impl DeafServer {
    fn start(mut c: std::process::Command) -> DeafServer {
        use std::io::BufRead;
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(writer);
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let mut child = c.spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("a port line");
        DeafServer { child, port }
    }
}

impl Drop for DeafServer {
    fn drop(&mut self) {
        signal(-(self.child.id() as i32), 9);
        let _ = self.child.wait();
    }
}

#[test]
fn sigpipe_never_kills_the_server() {
    // Every connection makes -v write to the broken pipe: EPIPE, and a
    // SIGPIPE that must not end the server.
    let mut srv = DeafServer::start(cmd(
        SKD_BIND,
        &["-t", "127.0.0.1:0", SKD_ACCEPT, "-v", "cat"],
    ));
    for i in 0..5 {
        let msg = format!("deaf {i}");
        assert_eq!(tcp_exchange(srv.port, msg.as_bytes()), msg.as_bytes());
    }
    let pid = srv.child.id() as i32;
    wait_until("the handlers to be reaped", || children(pid).is_empty());
    assert!(srv.child.try_wait().unwrap().is_none(), "the server died");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .and_then(|m| u64::from_str_radix(m, 16).ok())
        .unwrap();
    assert_ne!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE not ignored"
    );
}

#[test]
fn handlers_start_clean_whatever_the_caller_blocked() {
    // The caller blocks SIGUSR1 and SIGHUP and ignores SIGPIPE and
    // SIGHUP: the handler starts with an empty mask and SIGPIPE at its
    // default; only SIGHUP, which the caller chose to ignore, stays
    // ignored (as with tcpserver and s6: nohup keeps working). Python
    // itself ignores SIGXFSZ, and a shell's background job SIGQUIT: the
    // script puts them back.
    let script = "import os, signal, sys\n\
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGHUP})\n\
        signal.signal(signal.SIGHUP, signal.SIG_IGN)\n\
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)\n\
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n\
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)\n\
        os.execv(sys.argv[1], sys.argv[1:])";
    let srv = Server::start(cmd(
        &require("python3"),
        &[
            "-c",
            script,
            SKD_BIND,
            "-t",
            "127.0.0.1:0",
            SKD_ACCEPT,
            "grep",
            "-E",
            "^Sig(Blk|Ign)",
            "/proc/self/status",
        ],
    ));
    let out = String::from_utf8(tcp_exchange(srv.port(), b"")).unwrap();
    assert_eq!(
        out,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000001\n"
    );
}
