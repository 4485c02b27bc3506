//! Option parsing shared by the tools: lexopt, stopping at the first
//! operand (the next program's own options are never ours), values kept as
//! `OsString` until they are interpreted.

use std::ffi::OsString;

use crate::error::Error;

/// Turns a lexopt complaint into a usage error that shows the synopsis.
pub fn syntax(err: lexopt::Error, synopsis: &str) -> Error {
    Error::usage(format!("{err}; usage: {synopsis}"))
}

/// The error for a command line that names no program to run.
pub fn missing_program(synopsis: &str) -> Error {
    Error::usage(format!("no program to run; usage: {synopsis}"))
}

/// The first operand and everything after it, untouched: the next program
/// and its arguments.
pub fn program(first: OsString, parser: &mut lexopt::Parser) -> Vec<OsString> {
    let mut argv = vec![first];
    if let Ok(raw) = parser.raw_args() {
        argv.extend(raw);
    }
    argv
}

/// The command line of a tool that takes no option: everything from the
/// first operand on (a leading `--` is skipped) is the program to run.
pub fn program_only(
    args: impl IntoIterator<Item = OsString>,
    synopsis: &str,
) -> Result<Vec<OsString>, Error> {
    let mut parser = lexopt::Parser::from_args(args);
    match parser.next().map_err(|e| syntax(e, synopsis))? {
        Some(lexopt::Arg::Value(first)) => Ok(program(first, &mut parser)),
        Some(other) => Err(syntax(other.unexpected(), synopsis)),
        None => Err(missing_program(synopsis)),
    }
}

/// A decimal integer option value in `min..=max` (digits only: no sign,
/// no blanks, no radix prefix).
pub fn number(option: char, value: &OsString, min: u64, max: u64) -> Result<u64, Error> {
    let text = value.to_string_lossy();
    let bad = || {
        Error::usage(format!(
            "invalid value for -{option}: \"{text}\" (must be an integer from {min} to {max})"
        ))
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Result<u64, Error> {
        number('c', &OsString::from(s), 1, 1000)
    }

    #[test]
    fn numbers_are_plain_decimal_in_range() {
        assert_eq!(n("1"), Ok(1));
        assert_eq!(n("1000"), Ok(1000));
        assert_eq!(n("007"), Ok(7));
        for bad in [
            "",
            "0",
            "1001",
            "-1",
            "+1",
            " 1",
            "1 ",
            "0x10",
            "1e3",
            "99999999999999999999999",
        ] {
            let err = n(bad).unwrap_err();
            assert_eq!(err.code, 100, "{bad}");
            assert!(err.msg.starts_with("invalid value for -c"), "{}", err.msg);
        }
    }

    #[test]
    fn program_takes_everything_after_the_first_operand() {
        let mut p = lexopt::Parser::from_args(["-v", "sh", "-c", "echo", "--", "x"]);
        assert_eq!(p.next().unwrap(), Some(lexopt::Arg::Short('v')));
        let Some(lexopt::Arg::Value(first)) = p.next().unwrap() else {
            panic!("expected an operand")
        };
        assert_eq!(program(first, &mut p), ["sh", "-c", "echo", "--", "x"]);
    }
}
