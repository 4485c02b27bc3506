//! Side-by-side benchmark of skd against its peers and the spawn floor.
//!
//!     cargo bench --bench peers            # full run (several minutes)
//!     cargo bench --bench peers -- --quick # under a minute
//!     cargo bench --bench peers -- --only skd-bind  # one server, to profile
//!
//! Every server is started once; then, round by round, each is driven in
//! turn (A B C, B C A, C A B, ...) by C concurrent clients for a fixed time, each
//! connection read to end-of-file. Ratios are taken within a round, where
//! all servers shared the same machine conditions, and reported as medians
//! over the rounds. Peers come from Debian packages (ucspi-tcp-ipv6 for
//! tcpserver, s6 for s6-ipcserver); a missing one is reported, not skipped
//! silently.

use std::io::Read;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use skd::sys;

const SKD_BIND: &str = env!("CARGO_BIN_EXE_skd-bind");
const SKD_ACCEPT: &str = env!("CARGO_BIN_EXE_skd-accept");
const SKD: &str = env!("CARGO_BIN_EXE_skd");

const TRUE: &[&str] = &["/bin/true"];
const ECHO: &[&str] = &["/bin/echo", "hello"];

struct Config {
    /// `--only NAME`: measure only the servers whose name contains NAME
    /// (for profiling one of them; the ratios then show as –).
    only: Option<String>,
    rounds: usize,
    seconds: f64,
    clients: usize,
    startup_runs: usize,
}

/// What is being measured: a server reached over TCP or a unix socket, or
/// the spawn floor (no sockets at all).
#[derive(Clone)]
enum Target {
    Tcp(u16),
    Unix(PathBuf),
    Floor,
}

struct Server {
    name: String,
    child: Option<Child>,
    target: Target,
    idle_rss_kb: u64,
}

impl Server {
    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = sys::kill(-(child.id() as i32), libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// One measurement of one server in one round.
#[derive(Clone, Copy, Default)]
struct Sample {
    conns_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    /// The serving process's own CPU time per connection (children
    /// excluded), in microseconds.
    cpu_us_per_conn: f64,
    /// The share of the machine's CPU time (all cores) that was busy.
    busy: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let cfg = if quick {
        Config {
            only,
            rounds: 3,
            seconds: 1.0,
            clients: 4,
            startup_runs: 30,
        }
    } else {
        Config {
            only,
            rounds: 7,
            seconds: 3.0,
            clients: 4,
            startup_runs: 200,
        }
    };
    println!(
        "# skd benchmark ({} mode)\n",
        if quick { "quick" } else { "full" }
    );
    println!("{}\n", machine());
    println!(
        "{} rounds of {} s per server, {} concurrent clients, each connection read to EOF.\n",
        cfg.rounds, cfg.seconds, cfg.clients
    );
    let dir = std::env::temp_dir().join(format!("skd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    for (label, handler) in [
        ("`/bin/true` handler", TRUE),
        ("small-response handler (`/bin/echo hello`)", ECHO),
    ] {
        println!("## TCP, {label}\n");
        let servers: Vec<Server> = [
            start_skd_classic_tcp(handler),
            start_skd_chain_tcp(handler),
            start_tcpserver(handler),
            floor(),
        ]
        .into_iter()
        .flatten()
        .collect();
        report(&cfg, &servers, "tcpserver", handler);
    }

    println!("## Unix stream, `/bin/true` handler\n");
    let servers: Vec<Server> = [
        start_skd_chain_unix(TRUE, &dir.join("skd.sock")),
        start_s6_ipcserver(TRUE, &dir.join("s6.sock")),
        floor(),
    ]
    .into_iter()
    .flatten()
    .collect();
    report(&cfg, &servers, "s6-ipcserver", TRUE);

    println!("## Start-up: from exec to the port line\n");
    startup(&cfg);
    println!("## Binary sizes\n");
    for bin in [SKD, SKD_BIND, SKD_ACCEPT] {
        let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
        println!(
            "- `{}`: {} KiB",
            Path::new(bin).file_name().unwrap().to_string_lossy(),
            size / 1024
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    format!("Machine: {cores} cores, {cpu}, Linux {}", kernel.trim())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/bin".into(), "/usr/lib/execline/bin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Starts a server in its own process group and reads the port it prints.
fn spawn_with_port(name: &str, mut cmd: Command) -> Option<Server> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().ok()?;
    let mut out = child.stdout.take()?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).ok()? == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let port: u16 = String::from_utf8_lossy(&line).trim().parse().ok()?;
    Some(Server {
        name: name.to_owned(),
        child: Some(child),
        target: Target::Tcp(port),
        idle_rss_kb: 0,
    })
}

/// Starts a server for the throughput tables, with its idle RSS.
fn start_tcp(name: &str, cmd: Command) -> Option<Server> {
    let mut server = spawn_with_port(name, cmd)?;
    // The port line comes before the last exec of a chain: let the serving
    // program settle before its idle RSS is read.
    thread::sleep(Duration::from_millis(100));
    server.idle_rss_kb = rss_kb(server.pid()?);
    Some(server)
}

fn start_skd_chain_tcp(handler: &[&str]) -> Option<Server> {
    let mut cmd = Command::new(SKD_BIND);
    cmd.args(["-t", "127.0.0.1:0", SKD_ACCEPT]).args(handler);
    start_tcp("skd-bind + skd-accept", cmd)
}

fn start_skd_classic_tcp(handler: &[&str]) -> Option<Server> {
    let mut cmd = Command::new(SKD);
    cmd.args(["-t", "127.0.0.1:0"]).args(handler);
    start_tcp("skd (classic front end)", cmd)
}

fn start_tcpserver(handler: &[&str]) -> Option<Server> {
    let Some(tcpserver) = which("tcpserver") else {
        println!("**tcpserver is missing** (apt-get install ucspi-tcp-ipv6): not measured.\n");
        return None;
    };
    let mut cmd = Command::new(tcpserver);
    cmd.args(["-1", "-HRl0", "-c", "10000", "-b", "4096", "127.0.0.1", "0"])
        .args(handler);
    start_tcp("tcpserver", cmd)
}

fn start_unix(name: &str, mut cmd: Command, path: &Path) -> Option<Server> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while UnixStream::connect(path).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(50));
    let mut server = Server {
        name: name.to_owned(),
        child: Some(child),
        target: Target::Unix(path.to_owned()),
        idle_rss_kb: 0,
    };
    server.idle_rss_kb = rss_kb(server.pid()?);
    Some(server)
}

fn start_skd_chain_unix(handler: &[&str], path: &Path) -> Option<Server> {
    let mut cmd = Command::new(SKD_BIND);
    cmd.arg("-l").arg(path).arg(SKD_ACCEPT).args(handler);
    start_unix("skd-bind + skd-accept", cmd, path)
}

fn start_s6_ipcserver(handler: &[&str], path: &Path) -> Option<Server> {
    let Some(s6) = which("s6-ipcserver") else {
        println!("**s6-ipcserver is missing** (apt-get install s6): not measured.\n");
        return None;
    };
    let mut cmd = Command::new(s6);
    cmd.args(["-c", "10000"]).arg(path).args(handler);
    start_unix("s6-ipcserver", cmd, path)
}

fn floor() -> Option<Server> {
    Some(Server {
        name: "spawn floor (posix_spawn + wait)".into(),
        child: None,
        target: Target::Floor,
        idle_rss_kb: 0,
    })
}

/// Resident set size of a process, in KiB.
fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time the process itself has used (user and system, all its
/// threads, children excluded), in microseconds. /proc/PID/task/*/schedstat
/// counts it in nanoseconds; /proc/PID/stat's utime and stime, in 10 ms
/// ticks, are too coarse for a one-second round.
fn cpu_us(pid: i32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return f64::NAN;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1000.0
}

/// The machine's (busy, total) CPU time so far, in clock ticks, over all
/// cores, from the first line of /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    // idle and iowait
    let idle = ticks.get(3).unwrap_or(&0) + ticks.get(4).unwrap_or(&0);
    (total - idle, total)
}

fn busy_since(before: (u64, u64)) -> f64 {
    let now = machine_ticks();
    (now.0 - before.0) as f64 / (now.1 - before.1).max(1) as f64
}

fn one_connection(target: &Target) -> bool {
    let mut buf = [0u8; 256];
    match target {
        Target::Tcp(port) => match TcpStream::connect(("127.0.0.1", *port)) {
            Ok(mut s) => loop {
                match s.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(_) => return false,
                }
            },
            Err(_) => false,
        },
        Target::Unix(path) => match UnixStream::connect(path) {
            Ok(mut s) => loop {
                match s.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(_) => return false,
                }
            },
            Err(_) => false,
        },
        Target::Floor => unreachable!(),
    }
}

/// The floor: one process keeps `clients` copies of the handler running
/// at a time (stdin and stdout on /dev/null), starting each with
/// posix_spawn and reaping it, as a single-threaded server would, but
/// with no sockets at all.
fn measure_floor(cfg: &Config, handler: &[&str]) -> (Vec<f64>, f64) {
    let null = sys::open_dev_null().unwrap();
    let path = std::ffi::CString::new(handler[0]).unwrap();
    let argv = sys::CArgs::new(
        handler
            .iter()
            .map(|a| std::ffi::CString::new(*a).unwrap())
            .collect(),
    );
    let envp = sys::CArgs::new(skd::chain::Env::from_process().to_c());
    let actions = sys::FileActions::stdin_stdout(null.as_raw_fd()).unwrap();
    let attr = sys::SpawnAttr::new(&sys::SigSet::of(&[libc::SIGPIPE])).unwrap();
    let spawn = || sys::spawn(&path, false, &actions, &attr, &argv, &envp).unwrap();
    let mut running = std::collections::HashMap::new();
    let mut lat = Vec::new();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(cfg.seconds);
    for _ in 0..cfg.clients {
        running.insert(spawn(), Instant::now());
    }
    while !running.is_empty() {
        let (pid, _) = sys::wait_any().unwrap();
        if let Some(t) = running.remove(&pid) {
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            if Instant::now() < end {
                running.insert(spawn(), Instant::now());
            }
        }
    }
    (lat, start.elapsed().as_secs_f64())
}

/// Drives one target for the configured time; returns the sample.
fn measure(cfg: &Config, server: &Server, handler: &[&str]) -> Sample {
    let ticks = machine_ticks();
    if matches!(server.target, Target::Floor) {
        let (mut lat, elapsed) = measure_floor(cfg, handler);
        return summarize(&mut lat, elapsed, f64::NAN, busy_since(ticks));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = server.pid().map(cpu_us);
    let start = Instant::now();
    let threads: Vec<_> = (0..cfg.clients)
        .map(|_| {
            let stop = stop.clone();
            let target = server.target.clone();
            thread::spawn(move || {
                let mut lat = Vec::new();
                let mut failures = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if one_connection(&target) {
                        lat.push(t.elapsed().as_secs_f64() * 1e6);
                    } else {
                        failures += 1;
                    }
                }
                (lat, failures)
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(cfg.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut failures = 0;
    for t in threads {
        let (l, f) = t.join().unwrap();
        lat.extend(l);
        failures += f;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let busy = busy_since(ticks);
    if failures > 0 {
        eprintln!("{}: {failures} failed connections", server.name);
    }
    let cpu = match (server.pid(), cpu_before) {
        (Some(pid), Some(before)) => (cpu_us(pid) - before) / lat.len().max(1) as f64,
        _ => f64::NAN,
    };
    // Let the last handlers finish before the next server's turn.
    thread::sleep(Duration::from_millis(200));
    summarize(&mut lat, elapsed, cpu, busy)
}

fn summarize(lat: &mut [f64], elapsed: f64, cpu: f64, busy: f64) -> Sample {
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Sample {
        conns_per_sec: lat.len() as f64 / elapsed,
        p50_us: percentile(lat, 0.50),
        p99_us: percentile(lat, 0.99),
        cpu_us_per_conn: cpu,
        busy,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Per-round ratios of `f` between two servers' samples.
fn ratios(a: &[Sample], b: &[Sample], f: fn(&Sample) -> f64) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| f(x) / f(y)).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn report(cfg: &Config, servers: &[Server], peer: &str, handler: &[&str]) {
    let servers: Vec<&Server> = servers
        .iter()
        .filter(|s| {
            cfg.only
                .as_ref()
                .is_none_or(|o| s.name.contains(o.as_str()))
        })
        .collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); servers.len()];
    // Round r starts with server r: no server always follows the same one.
    for round in 0..cfg.rounds {
        for k in 0..servers.len() {
            let i = (round + k) % servers.len();
            samples[i].push(measure(cfg, servers[i], handler));
        }
    }
    let peer_index = servers.iter().position(|s| s.name == peer);
    let floor_index = servers
        .iter()
        .position(|s| matches!(s.target, Target::Floor));
    println!(
        "| server | conn/s | p50 ms | p99 ms | server CPU µs/conn | idle RSS KiB | machine busy % | × {peer} (conn/s) | × floor (conn/s) | × {peer} (CPU/conn) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, s) in servers.iter().enumerate() {
        let col = |f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
        let ratio = |j: Option<usize>, f: fn(&Sample) -> f64| match j {
            Some(j) => median(ratios(&samples[i], &samples[j], f)),
            None => f64::NAN,
        };
        let fmt = |x: f64, d: usize| {
            if x.is_finite() {
                format!("{x:.d$}")
            } else {
                "–".into()
            }
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.name,
            fmt(col(|x| x.conns_per_sec), 0),
            fmt(col(|x| x.p50_us) / 1000.0, 2),
            fmt(col(|x| x.p99_us) / 1000.0, 2),
            fmt(col(|x| x.cpu_us_per_conn), 1),
            if s.child.is_some() {
                s.idle_rss_kb.to_string()
            } else {
                "–".into()
            },
            fmt(col(|x| x.busy) * 100.0, 0),
            fmt(ratio(peer_index, |x| x.conns_per_sec), 2),
            fmt(ratio(floor_index, |x| x.conns_per_sec), 2),
            fmt(ratio(peer_index, |x| x.cpu_us_per_conn), 2),
        );
    }
    // The spread behind the medians: how far one round can stray.
    if let Some(j) = floor_index {
        let ranges: Vec<String> = servers
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != j)
            .map(|(i, s)| {
                let r = ratios(&samples[i], &samples[j], |x| x.conns_per_sec);
                let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!("{} {lo:.2} to {hi:.2}", s.name)
            })
            .collect();
        println!(
            "\n× floor (conn/s) round by round, lowest to highest: {}.",
            ranges.join("; ")
        );
    }
    println!();
}

/// Median time from starting `skd-bind -t 127.0.0.1:0 skd-accept PROG` to
/// reading its port line, next to tcpserver -1 doing the same.
fn startup(cfg: &Config) {
    let mut rows = vec![
        ("skd -t 127.0.0.1:0 /bin/true", {
            let mut c = Command::new(SKD);
            c.args(["-t", "127.0.0.1:0", "/bin/true"]);
            c
        }),
        ("skd-bind + skd-accept", {
            let mut c = Command::new(SKD_BIND);
            c.args(["-t", "127.0.0.1:0", SKD_ACCEPT, "/bin/true"]);
            c
        }),
    ];
    if let Some(tcpserver) = which("tcpserver") {
        let mut c = Command::new(tcpserver);
        c.args(["-1", "-HRl0", "127.0.0.1", "0", "/bin/true"]);
        rows.push(("tcpserver", c));
    }
    println!("| chain | median ms | p90 ms |");
    println!("|---|---:|---:|");
    for (name, cmd) in rows {
        let mut times = Vec::new();
        for _ in 0..cfg.startup_runs {
            let t = Instant::now();
            if let Some(server) = spawn_with_port(name, {
                let mut c = Command::new(cmd.get_program());
                c.args(cmd.get_args());
                c
            }) {
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                drop(server);
            }
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {name} | {:.2} | {:.2} |",
            median(times.clone()),
            percentile(&times, 0.9)
        );
    }
    println!();
}
