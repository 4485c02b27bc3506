//! skd: the classic skd 1.2 command line, translated into a chain of the
//! skd tools and exec'd: `skd -vt 3000 -BP pidfile prog` becomes
//! `skd-background skd-bind -i 3000 skd-pidfile pidfile skd-accept -v prog`.

use std::convert::Infallible;
use std::ffi::{OsStr, OsString};
use std::io::Write;

use lexopt::Arg::{Short, Value};

use crate::addr::{self, InetSpec};
use crate::chain::{self, Env};
use crate::error::{self, Error};
use crate::{args, log, setuid, supervise};

pub const PROG: &str = "skd";
pub const SYNOPSIS: &str = "skd [-sdnvBSUV] [-i|-t|-u [host:]port | -l|-x path] \
     [-b backlog] [-c maxclients] [-L spec] [-P pidfile] prog...";

/// The socket to bind, as the user wrote it (already checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Inet(OsString),
    Unix(OsString),
}

/// The classic options. Values are kept as given: the tools of the chain
/// read them again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub address: Option<Address>,
    /// -d (or -u); the last of -s/-d/-t/-u wins.
    pub datagram: bool,
    pub backlog: Option<OsString>,
    pub max: Option<OsString>,
    pub nodelay: bool,
    pub verbose: bool,
    pub background: bool,
    pub log: Option<OsString>,
    pub pidfile: Option<OsString>,
    pub supervise: bool,
    pub setuid: bool,
    pub argv: Vec<OsString>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// -V: print the version and exit.
    Version,
    Run(Options),
}

/// Parses a classic command line. Every usage error ends with the
/// synopsis, as the classic skd printed its usage.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, Error> {
    parse_words(args).map_err(|mut err| {
        if !err.msg.contains("; usage: ") {
            err.msg = format!("{}; usage: {SYNOPSIS}", err.msg);
        }
        err
    })
}

fn parse_words(args: impl IntoIterator<Item = OsString>) -> Result<Command, Error> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut opts = Options::default();
    let syntax = |e| args::syntax(e, SYNOPSIS);
    while let Some(arg) = parser.next().map_err(syntax)? {
        match arg {
            Short('s') => opts.datagram = false,
            Short('d') => opts.datagram = true,
            Short(c @ ('i' | 't' | 'u')) => {
                let value = parser.value().map_err(syntax)?;
                InetSpec::parse(&value)?;
                match c {
                    't' => opts.datagram = false,
                    'u' => opts.datagram = true,
                    _ => {}
                }
                set_address(&mut opts, Address::Inet(value))?;
            }
            Short('l' | 'x') => {
                let value = parser.value().map_err(syntax)?;
                addr::unix_path(&value)?;
                set_address(&mut opts, Address::Unix(value))?;
            }
            Short('b') => {
                let value = parser.value().map_err(syntax)?;
                args::number('b', &value, 1, i32::MAX as u64)?;
                opts.backlog = Some(value);
            }
            Short('c') => {
                let value = parser.value().map_err(syntax)?;
                args::number('c', &value, 1, i32::MAX as u64)?;
                opts.max = Some(value);
            }
            Short('n') => opts.nodelay = true,
            Short('v') => opts.verbose = true,
            Short('B') => opts.background = true,
            // Checked here, as skd-log and skd-pidfile would, so that a bad
            // value fails before skd-bind has made a socket file or
            // skd-pidfile a pidfile: a usage error leaves nothing behind.
            Short('L') => {
                let value = parser.value().map_err(syntax)?;
                log::parse_spec(&value)?;
                opts.log = Some(value);
            }
            Short('P') => {
                let value = parser.value().map_err(syntax)?;
                if value.is_empty() {
                    return Err(Error::usage("the pidfile name is empty"));
                }
                opts.pidfile = Some(value);
            }
            Short('S') => opts.supervise = true,
            Short('U') => opts.setuid = true,
            Short('V') => return Ok(Command::Version),
            Value(first) => {
                if opts.supervise && opts.address.is_some() {
                    return Err(Error::usage("-S supervises a program run without a socket"));
                }
                opts.argv = args::program(first, &mut parser);
                return Ok(Command::Run(opts));
            }
            other => return Err(syntax(other.unexpected())),
        }
    }
    Err(args::missing_program(SYNOPSIS))
}

fn set_address(opts: &mut Options, address: Address) -> Result<(), Error> {
    match opts.address.replace(address) {
        None => Ok(()),
        Some(_) => Err(Error::usage("only one socket address may be given")),
    }
}

/// The chain that does what `opts` asks, in the classic order: background
/// (the foreground waits until everything below is set up), bind, pidfile
/// (so it holds the daemon's pid), logger, privilege drop, then the server.
/// Only the stages asked for appear, with only the options that differ
/// from the tool's defaults.
pub fn translate(opts: &Options) -> Vec<OsString> {
    let mut chain = Chain::default();
    if opts.background {
        chain.tool("skd-background", &[]);
    }
    if let Some(address) = &opts.address {
        chain.tool("skd-bind", &[]);
        if opts.datagram {
            chain.option("-d", None);
        } else if let Some(backlog) = &opts.backlog {
            chain.option("-b", Some(backlog));
        }
        match address {
            Address::Inet(spec) => chain.option("-i", Some(spec)),
            Address::Unix(path) => chain.option("-l", Some(path)),
        }
    }
    if let Some(pidfile) = &opts.pidfile {
        chain.tool("skd-pidfile", &[]);
        chain.operand(pidfile);
        chain.options_go_on();
    }
    if let Some(spec) = &opts.log {
        chain.tool("skd-log", &[("-U", opts.setuid)]);
        chain.operand(spec);
    }
    if opts.setuid {
        chain.tool("skd-setuid", &[]);
    }
    match (&opts.address, opts.datagram) {
        (Some(address), false) => {
            chain.tool("skd-accept", &[]);
            if let Some(max) = &opts.max {
                chain.option("-c", Some(max));
            }
            // TCP_NODELAY means nothing to a unix socket.
            let tcp = matches!(address, Address::Inet(_));
            chain.flags(&[("-n", opts.nodelay && tcp), ("-v", opts.verbose)]);
        }
        (Some(_), true) => chain.tool("skd-dgram", &[("-v", opts.verbose)]),
        (None, _) if opts.supervise => chain.tool(PROG, &[("-S", true), ("-v", opts.verbose)]),
        (None, _) => {}
    }
    if let Some((program, args)) = opts.argv.split_first() {
        chain.operand(program);
        chain.argv.extend(args.iter().cloned());
    }
    chain.argv
}

/// A chain being written out. Each tool reads its options up to its first
/// operand, so an operand that starts with '-' (a pidfile, a log spec, the
/// program) needs a `--` before it, once per tool; the next tool's name
/// ends the options of the one before anyway.
#[derive(Default)]
struct Chain {
    argv: Vec<OsString>,
    /// The last tool's options are over: operands go as they are.
    operands: bool,
    /// A `--` was written for the last tool.
    dashdash: bool,
}

impl Chain {
    /// Starts the next tool, with the flags that are on.
    fn tool(&mut self, name: &str, flags: &[(&str, bool)]) {
        self.argv.push(name.into());
        self.operands = false;
        self.dashdash = false;
        self.flags(flags);
    }

    fn flags(&mut self, flags: &[(&str, bool)]) {
        for (flag, on) in flags {
            if *on {
                self.argv.push(flag.into());
            }
        }
    }

    fn option(&mut self, option: &str, value: Option<&OsString>) {
        self.argv.push(option.into());
        self.argv.extend(value.cloned());
    }

    /// skd-pidfile reads options up to its second operand (the program),
    /// not only up to its first: unless a `--` came before the first, one
    /// is still needed before a program whose name begins with '-'.
    fn options_go_on(&mut self) {
        self.operands = self.dashdash;
    }

    fn operand(&mut self, value: &OsStr) {
        if !self.operands && !self.argv.is_empty() && value.as_encoded_bytes().starts_with(b"-") {
            self.argv.push("--".into());
            self.dashdash = true;
        }
        self.operands = true;
        self.argv.push(value.to_os_string());
    }
}

pub fn main() -> ! {
    error::run(PROG, || {
        let env = chain::start();
        match parse(std::env::args_os().skip(1))? {
            Command::Version => version(),
            Command::Run(opts) => run(opts, env),
        }
    })
}

fn version() -> ! {
    // A closed stdout is the caller's business.
    let _ = writeln!(std::io::stdout(), "{PROG} {}", env!("CARGO_PKG_VERSION"));
    std::process::exit(0)
}

fn run(opts: Options, env: Env) -> Result<Infallible, Error> {
    if opts.setuid {
        // $UID, $GID, $GIDLIST and $ROOT are checked before the chain
        // starts, for the same reason as -L and -P in `parse`.
        setuid::Creds::from_env(&env)?;
    }
    let argv = translate(&opts);
    if opts.supervise && argv[0] == PROG {
        // The chain is the supervisor alone: that is us, here and now.
        return supervise::run(opts.verbose, &opts.argv, env);
    }
    Err(chain::exec(&argv, env))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Command, Error> {
        parse(args.iter().map(OsString::from))
    }

    fn opts(args: &[&str]) -> Options {
        match parse_str(args) {
            Ok(Command::Run(o)) => o,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    /// The chain for a classic command line, as one string.
    fn chain(args: &[&str]) -> String {
        let argv = translate(&opts(args));
        let words: Vec<_> = argv.iter().map(|a| a.to_string_lossy()).collect();
        words.join(" ")
    }

    /// Every row of the README's table of classic command lines.
    #[test]
    fn the_readme_table() {
        let readme = include_str!("../README.md");
        let rows: Vec<(&str, &str)> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| `skd "))
            .filter_map(|l| l.split_once("` | `"))
            .map(|(classic, rest)| (classic, rest.trim_end_matches("` |")))
            .collect();
        assert!(rows.len() >= 8, "{rows:?}");
        for (classic, expected) in rows {
            let args: Vec<&str> = classic.split(' ').collect();
            assert_eq!(chain(&args), expected, "skd {classic}");
        }
    }

    #[test]
    fn the_readme_examples() {
        assert_eq!(
            chain(&["-vl", "/dev/cat.sock", "cat"]),
            "skd-bind -l /dev/cat.sock skd-accept -v cat"
        );
        assert_eq!(
            chain(&[
                "-vt",
                "3000",
                "-BP",
                "/var/run/motd.pid",
                "-L",
                "testsrv:daemon.info",
                "cat",
                "/etc/motd"
            ]),
            "skd-background skd-bind -i 3000 skd-pidfile /var/run/motd.pid \
             skd-log testsrv:daemon.info skd-accept -v cat /etc/motd"
        );
        assert_eq!(
            chain(&[
                "-BL",
                "uschedule:daemon.notice",
                "--",
                "uscheduled",
                "-d",
                "/var/lib/uschedule"
            ]),
            "skd-background skd-log uschedule:daemon.notice uscheduled -d /var/lib/uschedule"
        );
    }

    #[test]
    fn a_plain_program_is_run_as_it_is() {
        assert_eq!(chain(&["prog", "-x"]), "prog -x");
        // Options that only mean something to a server are ignored, as by
        // skd 1.2.
        assert_eq!(chain(&["-v", "-n", "-c", "3", "-b", "5", "prog"]), "prog");
    }

    #[test]
    fn each_stage_in_the_classic_order() {
        assert_eq!(
            chain(&["-U", "-L", "tag", "-P", "/p", "-B", "-t", "80", "prog"]),
            "skd-background skd-bind -i 80 skd-pidfile /p skd-log -U tag skd-setuid \
             skd-accept prog"
        );
        assert_eq!(chain(&["-B", "prog"]), "skd-background prog");
        assert_eq!(chain(&["-P", "/p", "prog"]), "skd-pidfile /p prog");
        assert_eq!(chain(&["-L", "tag", "prog"]), "skd-log tag prog");
        assert_eq!(chain(&["-U", "prog"]), "skd-setuid prog");
        assert_eq!(
            chain(&["-UL", ">>/var/log/x", "prog"]),
            "skd-log -U >>/var/log/x skd-setuid prog"
        );
    }

    #[test]
    fn socket_styles() {
        assert_eq!(chain(&["-t", "80", "p"]), "skd-bind -i 80 skd-accept p");
        assert_eq!(chain(&["-i", "80", "p"]), "skd-bind -i 80 skd-accept p");
        assert_eq!(chain(&["-u", "53", "p"]), "skd-bind -d -i 53 skd-dgram p");
        assert_eq!(
            chain(&["-d", "-i", "53", "p"]),
            "skd-bind -d -i 53 skd-dgram p"
        );
        assert_eq!(
            chain(&["-i", "53", "-d", "p"]),
            "skd-bind -d -i 53 skd-dgram p"
        );
        assert_eq!(chain(&["-x", "/s", "p"]), "skd-bind -l /s skd-accept p");
        assert_eq!(chain(&["-dl", "/s", "p"]), "skd-bind -d -l /s skd-dgram p");
        assert_eq!(
            chain(&["-l", "/s", "-vd", "p"]),
            "skd-bind -d -l /s skd-dgram -v p"
        );
    }

    #[test]
    fn the_last_of_s_and_d_wins() {
        assert_eq!(
            chain(&["-u", "53", "-s", "p"]),
            "skd-bind -i 53 skd-accept p"
        );
        assert_eq!(
            chain(&["-d", "-t", "53", "p"]),
            "skd-bind -i 53 skd-accept p"
        );
        assert_eq!(
            chain(&["-s", "-d", "-l", "/s", "p"]),
            "skd-bind -d -l /s skd-dgram p"
        );
        assert_eq!(
            chain(&["-d", "-s", "-l", "/s", "p"]),
            "skd-bind -l /s skd-accept p"
        );
    }

    #[test]
    fn server_options_go_where_they_mean_something() {
        assert_eq!(
            chain(&["-b", "5", "-c", "7", "-nvt", "127.0.0.1:0", "p"]),
            "skd-bind -b 5 -i 127.0.0.1:0 skd-accept -c 7 -n -v p"
        );
        // Backlog and limit are for streams, TCP_NODELAY for TCP.
        assert_eq!(
            chain(&["-b", "5", "-c", "7", "-nvu", "0", "p"]),
            "skd-bind -d -i 0 skd-dgram -v p"
        );
        assert_eq!(
            chain(&["-c", "7", "-nvl", "/s", "p"]),
            "skd-bind -l /s skd-accept -c 7 -v p"
        );
    }

    #[test]
    fn bundled_options_and_attached_values() {
        let o = opts(&["-vt3000", "-BPfile", "prog"]);
        assert!(o.verbose && o.background);
        assert_eq!(o.address, Some(Address::Inet("3000".into())));
        assert_eq!(o.pidfile, Some("file".into()));
        let o = opts(&["-BL", "-weird-tag", "prog"]);
        assert_eq!(o.log, Some("-weird-tag".into()));
    }

    #[test]
    fn supervisor() {
        assert_eq!(chain(&["-S", "prog"]), "skd -S prog");
        assert_eq!(chain(&["-Sv", "prog", "-v"]), "skd -S -v prog -v");
        assert_eq!(
            chain(&["-BSvUP", "/p", "-L", "t", "prog"]),
            "skd-background skd-pidfile /p skd-log -U t skd-setuid skd -S -v prog"
        );
    }

    #[test]
    fn options_end_at_the_first_operand() {
        let o = opts(&["-t", "80", "sh", "-c", "echo", "-v"]);
        assert_eq!(o.argv, ["sh", "-c", "echo", "-v"]);
        assert!(o.max.is_none() && !o.verbose);
        assert_eq!(opts(&["--", "-B"]).argv, ["-B"]);
        assert_eq!(opts(&["-B", "--", "--"]).argv, ["--"]);
    }

    #[test]
    fn a_program_named_like_an_option_gets_a_double_dash_before_it() {
        assert_eq!(chain(&["--", "-prog"]), "-prog");
        assert_eq!(
            chain(&["-B", "--", "-prog", "-x"]),
            "skd-background -- -prog -x"
        );
        assert_eq!(
            chain(&["-t", "0", "--", "-prog"]),
            "skd-bind -i 0 skd-accept -- -prog"
        );
        assert_eq!(chain(&["-S", "--", "-"]), "skd -S -- -");
        assert_eq!(chain(&["-B", "prog", "--"]), "skd-background prog --");
    }

    #[test]
    fn a_pidfile_or_log_spec_named_like_an_option_ends_the_options_once() {
        assert_eq!(chain(&["-P", "-p", "prog"]), "skd-pidfile -- -p prog");
        assert_eq!(
            chain(&["-P", "-p", "--", "-prog"]),
            "skd-pidfile -- -p -prog"
        );
        assert_eq!(
            chain(&["-L", "-t", "-P", "p", "--", "-prog"]),
            "skd-pidfile p skd-log -- -t -prog"
        );
        assert_eq!(
            chain(&["-UL", "-t", "--", "-prog"]),
            "skd-log -U -- -t skd-setuid -- -prog"
        );
        assert_eq!(chain(&["-L", ">>-f", "prog"]), "skd-log >>-f prog");
        // skd-pidfile reads options up to the program, its second operand.
        assert_eq!(chain(&["-P", "p", "--", "-prog"]), "skd-pidfile p -- -prog");
    }

    #[test]
    fn version_wins_over_what_follows() {
        assert_eq!(parse_str(&["-V"]), Ok(Command::Version));
        assert_eq!(parse_str(&["-vV", "-q"]), Ok(Command::Version));
    }

    #[test]
    fn usage_errors() {
        for (bad, text) in [
            (&[][..], "no program to run"),
            (&["-t", "80"], "no program to run"),
            (&["-q", "p"], "invalid option '-q'"),
            (&["--help"], "invalid option '--help'"),
            (&["-t"], "missing argument"),
            (&["-t", "99999", "p"], "invalid address \"99999\""),
            (&["-u", "65536", "p"], "invalid address"),
            (&["-i", "[::1:80", "p"], "unbalanced ["),
            (&["-l", "", "p"], "empty unix socket path"),
            (&["-b", "0", "p"], "invalid value for -b"),
            (&["-c", "-1", "p"], "invalid value for -c"),
            (&["-c", "x", "p"], "invalid value for -c"),
            (&["-t", "80", "-l", "/s", "p"], "only one socket address"),
            (
                &["-S", "-t", "80", "p"],
                "-S supervises a program run without a socket",
            ),
            (&["-l", "/s", "-S", "p"], "-S supervises"),
        ] {
            let err = parse_str(bad).unwrap_err();
            assert_eq!(err.code, 100, "{bad:?}");
            assert!(err.msg.contains(text), "{bad:?}: {}", err.msg);
            assert!(
                err.msg.ends_with(&format!("; usage: {SYNOPSIS}")),
                "{}",
                err.msg
            );
            assert_eq!(err.msg.matches("usage:").count(), 1, "{}", err.msg);
        }
    }
}
