//! The parsers never panic: randomized inputs from a fixed seed (std only,
//! so every run tries the same cases and a failure is reproducible), half
//! arbitrary bytes, half built from the pieces the grammar is made of.
//! Every answer must be a usage error (exit 100) or a value that keeps the
//! parser's promises.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::panic::{AssertUnwindSafe, catch_unwind};

use skd::addr::{self, InetSpec};
use skd::chain::Env;
use skd::error::{self, Error};
use skd::{accept, args, background, bind, classic, dgram, log, pidfile, setuid};

/// Cases per parser.
const CASES: usize = 20_000;

/// SplitMix64: small, fast, and good enough to spread test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Arbitrary bytes (no NUL: no argument can hold one), mostly short.
    fn bytes(&mut self) -> Vec<u8> {
        let len = match self.below(10) {
            0 => self.below(300),
            _ => self.below(12),
        };
        (0..len).map(|_| (self.next() % 255) as u8 + 1).collect()
    }

    /// A string made of the grammar's pieces.
    fn pieces(&mut self, pieces: &[&str]) -> Vec<u8> {
        let n = self.below(6);
        let mut out = Vec::new();
        for _ in 0..n {
            out.extend_from_slice(self.pick(pieces).as_bytes());
        }
        out
    }
}

/// Runs `f`, turning a panic into a test failure that shows the input.
fn no_panic<T>(what: &str, input: &dyn std::fmt::Debug, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("{what} panicked on {input:?}"))
}

/// A usage error, printed as exactly one line whatever the input held.
fn usage(what: &str, input: &dyn std::fmt::Debug, err: &Error) {
    assert_eq!(err.code, 100, "{what} on {input:?}: {err:?}");
    assert!(!err.msg.is_empty(), "{what} on {input:?}: {err:?}");
    let line = error::line("skd-x", "fatal", &err.msg);
    let body = line.strip_suffix('\n').expect("a final newline");
    assert!(
        !body.chars().any(char::is_control),
        "{what} on {input:?}: {line:?}"
    );
}

const ADDRESS_PIECES: &[&str] = &[
    "0",
    "1",
    "8",
    "80",
    "65535",
    "65536",
    "99999",
    ":",
    "::",
    "[",
    "]",
    "[::1]",
    "::1",
    ".",
    "127.0.0.1",
    "localhost",
    "-",
    "+",
    " ",
    "x",
    "é",
    "%eth0",
    "0x1",
    "4294967296",
];

#[test]
fn address_specs() {
    let mut rng = Rng(0x5eed_0001);
    let (mut ok, mut bad) = (0, 0);
    for i in 0..CASES {
        let input = if i % 2 == 0 {
            rng.bytes()
        } else {
            rng.pieces(ADDRESS_PIECES)
        };
        let spec = OsStr::from_bytes(&input);
        match no_panic("InetSpec::parse", &spec, || InetSpec::parse(spec)) {
            Ok(parsed) => {
                ok += 1;
                // A port, and a host that is not empty and holds no
                // bracket; the text ended with the port.
                let text = spec.to_str().expect("accepted text is UTF-8");
                assert!(text.ends_with(&parsed.port.to_string()), "{text:?}");
                if let Some(host) = &parsed.host {
                    assert!(!host.is_empty() && !host.contains(['[', ']']), "{text:?}");
                }
            }
            Err(e) => {
                bad += 1;
                usage("InetSpec::parse", &spec, &e);
                assert!(e.msg.starts_with("invalid address"), "{e:?}");
            }
        }
    }
    assert!(ok > 100 && bad > 100, "{ok} accepted, {bad} refused");
    println!("address specs: {ok} accepted, {bad} refused");
}

#[test]
fn numbers() {
    let mut rng = Rng(0x5eed_0002);
    let pieces = [
        "0",
        "1",
        "7",
        "9",
        "00",
        "-",
        "+",
        " ",
        "x",
        "e",
        "٣",
        "18446744073709551615",
    ];
    let (mut ok, mut bad) = (0, 0);
    for i in 0..CASES {
        let input = if i % 2 == 0 {
            rng.bytes()
        } else {
            rng.pieces(&pieces)
        };
        let value = OsString::from_vec(input);
        let a = rng.next() % 1000;
        let b = match rng.below(3) {
            0 => a + rng.next() % 1000,
            1 => u64::MAX,
            _ => i32::MAX as u64,
        };
        match no_panic("args::number", &value, || args::number('c', &value, a, b)) {
            Ok(n) => {
                ok += 1;
                assert!((a..=b).contains(&n), "{value:?} gave {n}");
                let text = value.to_str().unwrap();
                assert!(text.bytes().all(|c| c.is_ascii_digit()), "{value:?}");
                assert_eq!(text.trim_start_matches('0').parse().unwrap_or(0), n);
            }
            Err(e) => {
                bad += 1;
                usage("args::number", &value, &e);
                assert!(e.msg.starts_with("invalid value for -c"), "{e:?}");
            }
        }
    }
    assert!(ok > 100 && bad > 100, "{ok} accepted, {bad} refused");
}

#[test]
fn unix_paths() {
    let mut rng = Rng(0x5eed_0003);
    for _ in 0..CASES {
        let path = OsString::from_vec(rng.bytes());
        let checked = no_panic("addr::unix_path", &path, || addr::unix_path(&path));
        let len = path.len();
        match checked {
            Ok(()) => assert!((1..=107).contains(&len), "{path:?}"),
            Err(e) => {
                usage("addr::unix_path", &path, &e);
                assert!(len == 0 || len > 107, "{path:?}");
            }
        }
    }
}

/// Command lines for a tool: tokens from its option letters, values
/// good and bad, operands, and arbitrary bytes.
fn argv(rng: &mut Rng, vocabulary: &[&str]) -> Vec<OsString> {
    let n = rng.below(7);
    (0..n)
        .map(|_| match rng.below(4) {
            0 => OsString::from_vec(rng.bytes()),
            1 => OsString::from_vec(rng.pieces(ADDRESS_PIECES)),
            _ => OsString::from(*rng.pick(vocabulary)),
        })
        .collect()
}

/// Runs a tool's parser over random command lines: it either refuses with
/// a usage error or returns a program to run that is a tail of the input.
fn command_lines<T>(
    name: &str,
    seed: u64,
    vocabulary: &[&str],
    parse: impl Fn(Vec<OsString>) -> Result<T, Error>,
    program: impl Fn(&T) -> &Vec<OsString>,
) {
    let mut rng = Rng(seed);
    let (mut ok, mut bad) = (0, 0);
    for _ in 0..CASES {
        let line = argv(&mut rng, vocabulary);
        match no_panic(name, &line, || parse(line.clone())) {
            Ok(opts) => {
                ok += 1;
                let prog = program(&opts);
                assert!(!prog.is_empty(), "{name} on {line:?}: no program");
                assert!(line.ends_with(prog), "{name} on {line:?}: {prog:?}");
            }
            Err(e) => {
                bad += 1;
                usage(name, &line, &e);
            }
        }
    }
    assert!(
        ok > 100 && bad > 100,
        "{name}: {ok} accepted, {bad} refused"
    );
}

#[test]
fn skd_bind_command_lines() {
    let vocabulary = [
        "-i",
        "-t",
        "-u",
        "-l",
        "-x",
        "-s",
        "-d",
        "-b",
        "-b5",
        "-t0",
        "-tl",
        "-sd",
        "--",
        "-",
        "--long",
        "-q",
        "0",
        "5",
        "127.0.0.1:0",
        "/tmp/s",
        "",
        "cat",
        "-c",
    ];
    command_lines("bind::parse", 0x5eed_0004, &vocabulary, bind::parse, |o| {
        &o.argv
    });
}

#[test]
fn skd_accept_command_lines() {
    let vocabulary = [
        "-c",
        "-n",
        "-v",
        "-nv",
        "-c5",
        "-c0",
        "-vc",
        "--",
        "-",
        "--long",
        "-q",
        "0",
        "5",
        "-1",
        "4294967296",
        "",
        "cat",
    ];
    command_lines(
        "accept::parse",
        0x5eed_0005,
        &vocabulary,
        accept::parse,
        |o| &o.argv,
    );
}

#[test]
fn other_tools_command_lines() {
    let vocabulary = [
        "-v",
        "-vv",
        "--",
        "-",
        "--long",
        "-q",
        "",
        "cat",
        "/run/x.pid",
    ];
    command_lines(
        "dgram::parse",
        0x5eed_0006,
        &vocabulary,
        dgram::parse,
        |o| &o.argv,
    );
    command_lines(
        "background::parse",
        0x5eed_0007,
        &vocabulary,
        background::parse,
        |o| &o.argv,
    );
    command_lines(
        "pidfile::parse",
        0x5eed_0008,
        &vocabulary,
        pidfile::parse,
        |o| &o.argv,
    );
}

#[test]
fn log_specs() {
    let mut rng = Rng(0x5eed_0009);
    let pieces = [
        "tag", ":", ".", "daemon", "info", "local7", "emerg", "kern", "bogus", ">", ">>", " ",
        "/tmp/f", "é", "DAEMON",
    ];
    let (mut ok, mut bad) = (0, 0);
    for i in 0..CASES {
        let input = if i % 2 == 0 {
            rng.bytes()
        } else {
            rng.pieces(&pieces)
        };
        let spec = OsStr::from_bytes(&input);
        match no_panic("log::parse_spec", &spec, || log::parse_spec(spec)) {
            Ok(log::Spec::Syslog {
                tag,
                facility,
                priority,
            }) => {
                ok += 1;
                assert!(!tag.is_empty() && !tag.contains(&b':'), "{spec:?}");
                assert!(facility < 24 && priority < 8, "{spec:?}");
            }
            Ok(log::Spec::File { path, .. }) => {
                ok += 1;
                assert!(input.starts_with(b">") && !path.is_empty(), "{spec:?}");
            }
            Err(e) => {
                bad += 1;
                usage("log::parse_spec", &spec, &e);
            }
        }
    }
    assert!(ok > 100 && bad > 100, "{ok} accepted, {bad} refused");
}

#[test]
fn privilege_variables() {
    let mut rng = Rng(0x5eed_000a);
    let pieces = [
        "0",
        "1",
        "65534",
        "4294967294",
        "4294967295",
        ",",
        "-",
        " ",
        "x",
        "/",
    ];
    let (mut ok, mut bad) = (0, 0);
    for _ in 0..CASES {
        let mut env = Env::default();
        for name in ["UID", "GID", "GIDLIST", "ROOT"] {
            match rng.below(8) {
                0 => {}
                1 => env.set(name, OsString::from_vec(rng.bytes())),
                2 | 3 => env.set(name, OsString::from_vec(rng.pieces(&pieces))),
                // Mostly a plausible value, so that some sets pass.
                _ if name == "ROOT" => env.set(name, "/var/empty"),
                _ => env.set(name, *rng.pick(&["0", "65534", "4294967294"])),
            }
        }
        match no_panic("Creds::from_env", &env, || setuid::Creds::from_env(&env)) {
            Ok(creds) => {
                ok += 1;
                assert!(creds.uid <= setuid::MAX_ID && creds.gid <= setuid::MAX_ID);
                assert!(creds.groups.iter().all(|&g| g <= setuid::MAX_ID));
                assert!(creds.root.as_ref().is_none_or(|r| !r.is_empty()));
            }
            Err(e) => {
                bad += 1;
                usage("Creds::from_env", &env, &e);
            }
        }
    }
    assert!(ok > 100 && bad > 100, "{ok} accepted, {bad} refused");
}

#[test]
fn skd_log_and_skd_setuid_command_lines() {
    let vocabulary = [
        "-U",
        "-Uv",
        "--",
        "-",
        "--long",
        "tag",
        "tag:daemon.info",
        ">f",
        ">> f",
        "",
        "cat",
        "-c",
    ];
    command_lines("log::parse", 0x5eed_000b, &vocabulary, log::parse, |o| {
        &o.argv
    });
    command_lines(
        "setuid::parse",
        0x5eed_000c,
        &vocabulary,
        setuid::parse,
        |o| &o.argv,
    );
}

/// Parses a translated chain stage by stage with each tool's own parser,
/// as the tools will when it runs; returns what is left: the program.
fn walk_chain(mut argv: Vec<OsString>, line: &[OsString]) -> Vec<OsString> {
    let fail = |stage: &OsString, e: Error| -> ! {
        panic!("skd {line:?}: stage {stage:?} refuses its arguments: {e:?}")
    };
    loop {
        let Some(stage) = argv.first().cloned() else {
            panic!("skd {line:?}: an empty chain")
        };
        let rest = argv[1..].to_vec();
        argv = match stage.to_str() {
            Some("skd-background") => background::parse(rest).map(|o| o.argv),
            Some("skd-bind") => bind::parse(rest).map(|o| o.argv),
            Some("skd-pidfile") => pidfile::parse(rest).map(|o| o.argv),
            Some("skd-log") => log::parse(rest).map(|o| o.argv),
            Some("skd-setuid") => setuid::parse(rest).map(|o| o.argv),
            Some("skd-accept") => accept::parse(rest).map(|o| o.argv),
            Some("skd-dgram") => dgram::parse(rest).map(|o| o.argv),
            // The supervisor stage: skd -S [-v] prog...
            Some("skd") => match classic::parse(rest) {
                Ok(classic::Command::Run(o)) if o.supervise => return o.argv,
                other => panic!("skd {line:?}: supervisor stage gave {other:?}"),
            },
            _ => return argv,
        }
        .unwrap_or_else(|e| fail(&stage, e));
    }
}

#[test]
fn classic_command_lines_translate_into_chains_every_tool_accepts() {
    let vocabulary = [
        "-s",
        "-d",
        "-i",
        "-t",
        "-u",
        "-l",
        "-x",
        "-b",
        "-c",
        "-n",
        "-v",
        "-B",
        "-L",
        "-P",
        "-S",
        "-U",
        "-V",
        "-vt",
        "-BP",
        "-nvc",
        "--",
        "-",
        "0",
        "80",
        "127.0.0.1:0",
        "[::1]:0",
        "/tmp/s",
        "5",
        "tag",
        "tag:daemon.info",
        ">f",
        ">>f",
        "-odd",
        "cat",
        "p.pid",
        "",
    ];
    let mut rng = Rng(0x5eed_000d);
    let (mut chains, mut bad) = (0, 0);
    for _ in 0..CASES {
        let n = rng.below(9);
        let line: Vec<OsString> = (0..n)
            .map(|_| match rng.below(8) {
                0 => OsString::from_vec(rng.bytes()),
                _ => OsString::from(*rng.pick(&vocabulary)),
            })
            .collect();
        match no_panic("classic::parse", &line, || classic::parse(line.clone())) {
            Ok(classic::Command::Version) => {}
            Ok(classic::Command::Run(opts)) => {
                chains += 1;
                let argv = no_panic("classic::translate", &line, || classic::translate(&opts));
                let program = walk_chain(argv, &line);
                assert_eq!(program, opts.argv, "skd {line:?}");
                assert!(line.ends_with(&program), "skd {line:?}");
            }
            Err(e) => {
                bad += 1;
                usage("classic::parse", &line, &e);
            }
        }
    }
    assert!(chains > 100 && bad > 100, "{chains} chains, {bad} refused");
    println!("classic command lines: {chains} chains walked, {bad} refused");
}
