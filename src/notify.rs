//! Readiness notification the s6 way (s6-supervise's `notification-fd`):
//! once serving, write a newline to a descriptor our supervisor gave us,
//! and close it.

use std::ffi::OsString;
use std::io;
use std::os::fd::RawFd;

use crate::error::Error;
use crate::{args, sys};

/// Reads the value of `-d`: a descriptor number above 2 (the standard
/// descriptors have other jobs: fd 0 is the socket, 1 and 2 are output).
pub fn parse_fd(option: char, value: &OsString) -> Result<RawFd, Error> {
    Ok(args::number(option, value, 3, i32::MAX as u64)? as RawFd)
}

/// Tells the supervisor that we are ready: writes "\n" to `fd` and closes
/// it, so that no handler inherits it. A descriptor that is not open is an
/// error (exit 111): the supervisor would wait for readiness for ever.
pub fn ready(fd: RawFd) -> Result<(), Error> {
    let written = if sys::is_open(fd) {
        let result = sys::write_all(sys::borrow_raw(fd), b"\n");
        sys::close_raw(fd);
        result
    } else {
        Err(io::Error::from_raw_os_error(libc::EBADF))
    };
    written.map_err(|e| Error::sys(format_args!("write to notification fd {fd}"), &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_descriptors_are_refused() {
        for bad in ["0", "1", "2", "-3", "x", ""] {
            let err = parse_fd('d', &OsString::from(bad)).unwrap_err();
            assert_eq!(err.code, 100, "{bad}");
            assert!(err.msg.starts_with("invalid value for -d"), "{}", err.msg);
        }
        assert_eq!(parse_fd('d', &OsString::from("3")), Ok(3));
        assert_eq!(parse_fd('d', &OsString::from("42")), Ok(42));
    }
}
