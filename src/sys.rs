//! The one place for `unsafe`: thin, safe wrappers over the libc calls the
//! tools need. Every wrapper returns `io::Result`, takes `BorrowedFd` and
//! hands back `OwnedFd`, and every descriptor it creates is close-on-exec
//! from birth.

use std::cell::{Cell, UnsafeCell};
use std::ffi::{CStr, CString};
use std::io;
use std::mem::{MaybeUninit, size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicI32, Ordering};

/// Turns libc's `-1` + errno convention into `io::Result`.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// As `cvt`, retrying while the call is interrupted by a signal.
fn cvt_r(mut call: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match cvt(call()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Takes ownership of a descriptor a successful call just returned.
fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: callers pass only a descriptor that a system call has just
    // created for us and that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The C library's text for an errno value ("Address already in use").
pub fn strerror(errno: i32) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: buf is writable for its whole length; the GNU/XSI variants
    // differ, so we use the XSI-compatible `__xpg_strerror_r` through libc's
    // `strerror_r`, which always writes a NUL-terminated string into buf.
    let ret = unsafe { libc::strerror_r(errno, buf.as_mut_ptr(), buf.len()) };
    if ret != 0 {
        return format!("error {errno}");
    }
    // SAFETY: strerror_r succeeded, so buf holds a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) };
    text.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------- fds

/// Whether `fd` is an open descriptor.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; any int is allowed.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Sets or clears close-on-exec on a descriptor.
pub fn set_cloexec(fd: BorrowedFd, on: bool) -> io::Result<()> {
    update_flag(fd, libc::F_GETFD, libc::F_SETFD, libc::FD_CLOEXEC, on)
}

/// Sets or clears one bit of a descriptor's flags (`get`/`set`: F_GETFD and
/// F_SETFD, or F_GETFL and F_SETFL), sparing the call when it is as asked.
fn update_flag(fd: BorrowedFd, get: i32, set: i32, bit: i32, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a borrowed, open descriptor; no pointers involved.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), get) })?;
    let new = if on { flags | bit } else { flags & !bit };
    if new != flags {
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), set, new) })?;
    }
    Ok(())
}

/// Makes `target` a copy of `fd` (not close-on-exec there). When `fd`
/// already is `target`, only clears close-on-exec.
pub fn move_to(fd: OwnedFd, target: RawFd) -> io::Result<()> {
    if fd.as_raw_fd() == target {
        set_cloexec(fd.as_fd(), false)?;
        std::mem::forget(fd);
        return Ok(());
    }
    // SAFETY: dup2 onto a fixed number; it atomically replaces whatever was
    // there, which is the point. `fd` stays owned and is closed on drop.
    cvt_r(|| unsafe { libc::dup2(fd.as_raw_fd(), target) })?;
    Ok(())
}

/// Makes `target` a copy of `fd`, keeping `fd` open.
pub fn dup_onto(fd: BorrowedFd, target: RawFd) -> io::Result<()> {
    if fd.as_raw_fd() != target {
        // SAFETY: see `move_to`.
        cvt_r(|| unsafe { libc::dup2(fd.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// A close-on-exec duplicate numbered at least `min`.
pub fn dup_at_least(fd: BorrowedFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor that we then own.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })?;
    Ok(owned(new))
}

/// Closes a raw descriptor we own but do not hold as an `OwnedFd` (for
/// example one adopted from the environment), ignoring errors.
pub fn close_raw(fd: RawFd) {
    // SAFETY: the caller owns `fd` and forgets it after this call.
    unsafe { libc::close(fd) };
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((owned(fds[0]), owned(fds[1])))
}

/// Opens /dev/null for reading and writing, close-on-exec.
pub fn open_dev_null() -> io::Result<OwnedFd> {
    // SAFETY: the path is a valid NUL-terminated string.
    let fd = cvt_r(|| unsafe {
        libc::open(
            c"/dev/null".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    })?;
    Ok(owned(fd))
}

/// `write(2)` retried on EINTR; returns the number of bytes written.
pub fn write(fd: BorrowedFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of buf.len() bytes.
    let n = cvt_r(|| unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) as _ })?;
    Ok(n as usize)
}

/// Writes all of `buf`.
pub fn write_all(fd: BorrowedFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write(fd, buf)?;
        buf = &buf[n..];
    }
    Ok(())
}

/// `read(2)` retried on EINTR.
pub fn read(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes.
    let n =
        cvt_r(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) as _ })?;
    Ok(n as usize)
}

/// A borrowed view of a raw descriptor number that is open for the whole
/// life of the process (0, 1, 2 or one adopted from our caller).
pub fn borrow_raw(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: callers only pass descriptors that stay open until exit or
    // exec (the standard descriptors, or ones they checked with `is_open`).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

// ---------------------------------------------------------------- sockets

/// A socket address in the kernel's form.
#[derive(Clone)]
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

/// The longest unix socket path, in bytes, that fits in `sun_path` with its
/// terminating NUL.
pub const UNIX_PATH_MAX: usize = {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let sun: libc::sockaddr_un = unsafe { zeroed() };
    sun.sun_path.len() - 1
};

impl RawAddr {
    fn empty() -> RawAddr {
        RawAddr {
            // SAFETY: sockaddr_storage is plain old data; zero is valid.
            storage: unsafe { zeroed() },
            len: size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    pub fn from_inet(addr: &SocketAddr) -> RawAddr {
        let mut raw = RawAddr::empty();
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for
                // any sockaddr type.
                let sin = unsafe { &mut *(&mut raw.storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                raw.len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above.
                let sin6 = unsafe { &mut *(&mut raw.storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                raw.len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        raw
    }

    /// A unix-domain address; the caller has checked the length.
    pub fn from_unix_path(path: &[u8]) -> io::Result<RawAddr> {
        if path.len() > UNIX_PATH_MAX || path.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        let mut raw = RawAddr::empty();
        // SAFETY: as in `from_inet`.
        let sun = unsafe { &mut *(&mut raw.storage as *mut _ as *mut libc::sockaddr_un) };
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in sun.sun_path.iter_mut().zip(path) {
            *dst = *src as libc::c_char;
        }
        raw.len = (size_of::<libc::sa_family_t>() + path.len() + 1) as libc::socklen_t;
        Ok(raw)
    }

    pub fn family(&self) -> i32 {
        self.storage.ss_family as i32
    }

    /// The internet address, if this is one.
    pub fn to_inet(&self) -> Option<SocketAddr> {
        match self.family() {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in6) };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }
}

/// The IP address with IPv4-mapped IPv6 addresses shown as plain IPv4, as a
/// dual-stack listener's v4 clients expect to see themselves.
pub fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A new close-on-exec socket.
pub fn socket(family: i32, socktype: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; the result is a fresh descriptor.
    let fd = cvt(unsafe { libc::socket(family, socktype | libc::SOCK_CLOEXEC, 0) })?;
    Ok(owned(fd))
}

pub fn bind(fd: BorrowedFd, addr: &RawAddr) -> io::Result<()> {
    // SAFETY: addr points at a valid sockaddr of addr.len bytes.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr(), addr.len) })?;
    Ok(())
}

pub fn listen(fd: BorrowedFd, backlog: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

pub fn setsockopt_int(fd: BorrowedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: value is a valid int for the duration of the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            size_of::<i32>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

pub fn getsockopt_int(fd: BorrowedFd, level: i32, name: i32) -> io::Result<i32> {
    let mut value: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of their sizes.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &mut value as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(value)
}

pub fn getsockname(fd: BorrowedFd) -> io::Result<RawAddr> {
    let mut addr = RawAddr::empty();
    // SAFETY: storage and len describe a writable sockaddr_storage.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            &mut addr.storage as *mut _ as *mut libc::sockaddr,
            &mut addr.len,
        )
    })?;
    Ok(addr)
}

/// Accepts a connection, close-on-exec, with the peer's address.
pub fn accept(fd: BorrowedFd) -> io::Result<(OwnedFd, RawAddr)> {
    let mut addr = RawAddr::empty();
    // SAFETY: storage and len describe a writable sockaddr_storage.
    let conn = cvt(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            &mut addr.storage as *mut _ as *mut libc::sockaddr,
            &mut addr.len,
            libc::SOCK_CLOEXEC,
        )
    })?;
    Ok((owned(conn), addr))
}

/// The peer's credentials on a unix socket: (pid, uid, gid).
pub fn peer_cred(fd: BorrowedFd) -> io::Result<(i32, u32, u32)> {
    // SAFETY: ucred is plain old data.
    let mut cred: libc::ucred = unsafe { zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writes of their sizes.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok((cred.pid, cred.uid, cred.gid))
}

/// Waits for events on `fds`; `timeout_ms` < 0 waits for ever. Returns the
/// number of ready entries (0 on timeout or interruption by a signal).
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: fds is a valid, writable array of fds.len() pollfd entries.
    match cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) }) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------- signals

/// A set of signals.
pub struct SigSet(libc::sigset_t);

impl SigSet {
    pub fn empty() -> SigSet {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the whole set.
        unsafe { libc::sigemptyset(set.as_mut_ptr()) };
        // SAFETY: initialised just above.
        SigSet(unsafe { set.assume_init() })
    }

    pub fn of(signals: &[i32]) -> SigSet {
        let mut set = SigSet::empty();
        for &sig in signals {
            // SAFETY: set is initialised; an invalid signal number only
            // makes sigaddset fail, which we do not need to know.
            unsafe { libc::sigaddset(&mut set.0, sig) };
        }
        set
    }

    /// Adds any signal number, including the two glibc reserves for itself
    /// (32 and 33), which `sigaddset` refuses.
    pub fn add_raw(&mut self, sig: i32) {
        let bits = libc::c_ulong::BITS as usize;
        let index = (sig - 1) as usize;
        assert!(index < size_of::<libc::sigset_t>() * 8);
        let words = &mut self.0 as *mut libc::sigset_t as *mut libc::c_ulong;
        // SAFETY: on Linux sigset_t is an array of unsigned longs with bit
        // (sig - 1) standing for sig; the index is checked to be inside it.
        unsafe { *words.add(index / bits) |= 1 << (index % bits) };
    }
}

/// The real-time signals glibc keeps for itself. Its posix_spawn leaves
/// them ignored in the child unless they are in the set of signals to
/// reset, so handlers would start with two signals ignored.
pub const GLIBC_INTERNAL_SIGNALS: [i32; 2] = [32, 33];

/// Blocks `set` in this thread (the process is single-threaded).
pub fn block_signals(set: &SigSet) -> io::Result<()> {
    // SAFETY: set is initialised; the old mask is not wanted.
    let ret = unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set.0, ptr::null_mut()) };
    cvt(ret).map(drop)
}

/// Sets the signal mask to `set`.
pub fn set_signal_mask(set: &SigSet) -> io::Result<()> {
    // SAFETY: as above.
    let ret = unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set.0, ptr::null_mut()) };
    cvt(ret).map(drop)
}

/// Restores the default disposition of `sig`.
pub fn default_signal(sig: i32) -> io::Result<()> {
    set_disposition(sig, libc::SIG_DFL)
}

/// Sets `sig` to SIG_DFL or SIG_IGN.
fn set_disposition(sig: i32, disposition: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: the callers pass SIG_DFL or SIG_IGN, always valid dispositions.
    if unsafe { libc::signal(sig, disposition) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A close-on-exec, non-blocking signalfd for `set` (which the caller blocks).
pub fn signalfd(set: &SigSet) -> io::Result<OwnedFd> {
    // SAFETY: set is initialised; -1 asks for a new descriptor.
    let fd = cvt(unsafe { libc::signalfd(-1, &set.0, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    Ok(owned(fd))
}

/// Reads one pending signal from a signalfd; `None` when none is pending.
pub fn read_signal(fd: BorrowedFd) -> io::Result<Option<i32>> {
    // SAFETY: signalfd_siginfo is plain old data.
    let mut info: libc::signalfd_siginfo = unsafe { zeroed() };
    let size = size_of::<libc::signalfd_siginfo>();
    // SAFETY: info is writable for `size` bytes.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            &mut info as *mut _ as *mut libc::c_void,
            size,
        )
    };
    if n == -1 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(info.ssi_signo as i32))
}

/// Puts signal handling back to what a freshly exec'd program expects: no
/// signal blocked and SIGPIPE at its default (the Rust runtime ignores it,
/// and an ignored signal stays ignored across exec).
pub fn reset_signals_for_exec() {
    // Failure is impossible with these arguments; nothing to report.
    let _ = set_signal_mask(&SigSet::empty());
    let _ = default_signal(libc::SIGPIPE);
}

// ---------------------------------------------------------------- processes

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    fn from_status(status: libc::c_int) -> Exit {
        if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        }
    }
}

/// Reaps one exited child without blocking: `None` when no child has exited.
/// `pid` is -1 for any child.
pub fn try_wait(pid: i32) -> io::Result<Option<(i32, Exit)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: status is a valid, writable int.
    let got = cvt_r(|| unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) })?;
    if got == 0 {
        return Ok(None);
    }
    Ok(Some((got, Exit::from_status(status))))
}

/// Waits for any child to end.
pub fn wait_any() -> io::Result<(i32, Exit)> {
    let mut status: libc::c_int = 0;
    // SAFETY: status is a valid, writable int.
    let pid = cvt_r(|| unsafe { libc::waitpid(-1, &mut status, 0) })?;
    Ok((pid, Exit::from_status(status)))
}

/// Waits for child `pid` to end.
pub fn wait(pid: i32) -> io::Result<Exit> {
    let mut status: libc::c_int = 0;
    // SAFETY: status is a valid, writable int.
    cvt_r(|| unsafe { libc::waitpid(pid, &mut status, 0) })?;
    Ok(Exit::from_status(status))
}

pub fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// Sends `sig` to `pid`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Ends the process at once, without running destructors or flushing stdio
/// (for a forked child, and for `exit` paths that must not unwind).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// `argv`/`envp` in the C form: NUL-terminated strings and a NULL-terminated
/// pointer array that points into them.
pub struct CArgs {
    _strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CArgs {
    pub fn new(strings: Vec<CString>) -> CArgs {
        let mut ptrs: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(ptr::null());
        CArgs {
            _strings: strings,
            ptrs,
        }
    }

    pub fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
}

/// Replaces this process with `path` (searched in $PATH when it holds no
/// slash). Returns only on failure.
pub fn execvpe(path: &CStr, argv: &CArgs, envp: &CArgs) -> io::Error {
    reset_signals_for_exec();
    // SAFETY: path is NUL-terminated and argv/envp are NULL-terminated
    // arrays of NUL-terminated strings that outlive the call.
    unsafe { libc::execvpe(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// Replaces this process with the program at exactly `path`.
pub fn execve(path: &CStr, argv: &CArgs, envp: &CArgs) -> io::Error {
    reset_signals_for_exec();
    // SAFETY: as in `execvpe`.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// posix_spawn settings: signal mask emptied and the given signals back at
/// their defaults in the child. (Handlers are started by `Spawner`; the
/// posix_spawn wrappers serve as the benchmark's spawn floor.)
pub struct SpawnAttr(libc::posix_spawnattr_t);

impl SpawnAttr {
    pub fn new(defaults: &SigSet) -> io::Result<SpawnAttr> {
        let mut attr = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        // SAFETY: init initialises the attribute object.
        check(unsafe { libc::posix_spawnattr_init(attr.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        let mut attr = SpawnAttr(unsafe { attr.assume_init() });
        let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
        // SAFETY: attr is initialised; the sets are valid for the calls.
        unsafe {
            check(libc::posix_spawnattr_setflags(&mut attr.0, flags as _))?;
            check(libc::posix_spawnattr_setsigmask(
                &mut attr.0,
                &SigSet::empty().0,
            ))?;
            check(libc::posix_spawnattr_setsigdefault(
                &mut attr.0,
                &defaults.0,
            ))?;
        }
        Ok(attr)
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: the object was initialised by `new`.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// The descriptor moves a spawned child makes before exec.
pub struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    /// Actions that put `fd` on the child's stdin and stdout.
    pub fn stdin_stdout(fd: RawFd) -> io::Result<FileActions> {
        let mut fa = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        // SAFETY: init initialises the object.
        check(unsafe { libc::posix_spawn_file_actions_init(fa.as_mut_ptr()) })?;
        // SAFETY: initialised just above.
        let mut fa = FileActions(unsafe { fa.assume_init() });
        // SAFETY: fa is initialised. dup2 in the child clears close-on-exec
        // on the targets; the source stays close-on-exec and so is closed.
        unsafe {
            check(libc::posix_spawn_file_actions_adddup2(&mut fa.0, fd, 0))?;
            check(libc::posix_spawn_file_actions_adddup2(&mut fa.0, fd, 1))?;
        }
        Ok(fa)
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: the object was initialised by its constructor.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// posix_spawn returns the error number instead of setting errno.
fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(ret))
    }
}

/// Starts `path` (searched in $PATH when `search`) as a child; returns its
/// pid. An exec failure in the child is reported here as the error.
pub fn spawn(
    path: &CStr,
    search: bool,
    actions: &FileActions,
    attr: &SpawnAttr,
    argv: &CArgs,
    envp: &CArgs,
) -> io::Result<i32> {
    let mut pid: libc::pid_t = 0;
    let call = if search {
        libc::posix_spawnp
    } else {
        libc::posix_spawn
    };
    // SAFETY: path is NUL-terminated; actions and attr are initialised;
    // argv and envp are NULL-terminated arrays of NUL-terminated strings,
    // borrowed for the call (posix_spawn keeps nothing after it returns).
    check(unsafe {
        call(
            &mut pid,
            path.as_ptr(),
            &actions.0,
            &attr.0,
            argv.as_ptr() as *const *mut libc::c_char,
            envp.as_ptr() as *const *mut libc::c_char,
        )
    })?;
    Ok(pid)
}

// ---------------------------------------------------------------- skd-dgram

/// Sets or clears `O_NONBLOCK` on the open file description behind `fd`
/// (shared by every duplicate of it, in every process that holds one).
pub fn set_nonblocking(fd: BorrowedFd, on: bool) -> io::Result<()> {
    update_flag(fd, libc::F_GETFL, libc::F_SETFL, libc::O_NONBLOCK, on)
}

/// Looks at the next queued datagram without taking it off the queue and
/// without blocking: copies up to `buf.len()` bytes of it into `buf` and
/// returns its full length and its sender's address.
pub fn peek_from(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<(usize, RawAddr)> {
    let mut addr = RawAddr::empty();
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC;
    let n = cvt_r(|| {
        addr.len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: buf is writable for buf.len() bytes; storage and len
        // describe a writable sockaddr_storage.
        unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
                &mut addr.storage as *mut _ as *mut libc::sockaddr,
                &mut addr.len,
            ) as libc::c_int
        }
    })?;
    Ok((n as usize, addr))
}

impl RawAddr {
    /// The name in a unix-domain address: a path, or an abstract name with
    /// its leading NUL byte. Empty for an unnamed socket or another family.
    pub fn unix_name(&self) -> Vec<u8> {
        if self.family() != libc::AF_UNIX {
            return Vec::new();
        }
        // SAFETY: the family says the storage holds a sockaddr_un.
        let sun = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_un) };
        let len = (self.len as usize)
            .saturating_sub(size_of::<libc::sa_family_t>())
            .min(sun.sun_path.len());
        let mut name: Vec<u8> = sun.sun_path[..len].iter().map(|&c| c as u8).collect();
        // A path ends at its first NUL; an abstract name starts with one and
        // runs for the whole length.
        if name.first() != Some(&0)
            && let Some(end) = name.iter().position(|&b| b == 0)
        {
            name.truncate(end);
        }
        name
    }
}

// ---------------------------------------------------------------- skd-background, skd-pidfile

/// Which side of a `fork` we are on.
#[derive(Debug, PartialEq, Eq)]
pub enum Forked {
    Child,
    Parent(i32),
}

/// Forks the process.
///
/// Only for single-threaded processes, which every skd tool is (the Rust
/// runtime starts no thread of its own): the child is then a complete copy
/// with no lock held by a vanished thread, so it may go on running
/// ordinary Rust code (allocate, format messages) up to its exec or exit.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: fork takes no arguments. The process is single-threaded (see
    // above), so the child inherits a consistent heap and stdio state and
    // is free to run any code, not only async-signal-safe functions.
    match cvt(unsafe { libc::fork() })? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Makes this process the leader of a new session (and process group),
/// without a controlling terminal.
pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments, no pointers.
    cvt(unsafe { libc::setsid() }).map(drop)
}

/// Whether `fd` is an open descriptor on a terminal.
pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty accepts any int; a closed descriptor gives 0.
    unsafe { libc::isatty(fd) == 1 }
}

/// Takes an exclusive `flock(2)` lock on `fd` without waiting; fails with
/// `EWOULDBLOCK` when another open file description holds a lock.
pub fn try_lock(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: flock on a borrowed, open descriptor; no pointers.
    cvt_r(|| unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }).map(drop)
}

// ---------------------------------------------------------------- skd-log, skd-setuid

/// Sets the supplementary groups to exactly `groups` (none when empty).
pub fn setgroups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: groups is valid for reads of groups.len() gid_t values (u32).
    cvt(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }).map(drop)
}

/// The supplementary groups of this process.
pub fn getgroups() -> io::Result<Vec<u32>> {
    // SAFETY: a size of 0 only asks for the count; the pointer is unused.
    let n = cvt(unsafe { libc::getgroups(0, ptr::null_mut()) })?;
    let mut groups = vec![0 as libc::gid_t; n as usize];
    // SAFETY: groups is writable for n entries; the kernel writes at most
    // n and returns how many it wrote.
    let n = cvt(unsafe { libc::getgroups(n, groups.as_mut_ptr()) })?;
    groups.truncate(n as usize);
    Ok(groups)
}

/// Sets the real, effective and saved group ids (as root).
pub fn setgid(gid: u32) -> io::Result<()> {
    // SAFETY: no pointers. glibc applies it to every thread.
    cvt(unsafe { libc::setgid(gid) }).map(drop)
}

/// Sets the real, effective and saved user ids (as root).
pub fn setuid(uid: u32) -> io::Result<()> {
    // SAFETY: no pointers. glibc applies it to every thread.
    cvt(unsafe { libc::setuid(uid) }).map(drop)
}

/// The real, effective and saved user ids.
pub fn getresuid() -> (u32, u32, u32) {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: the three pointers are valid, writable uid_t values; the
    // call cannot fail with valid pointers.
    unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    (r, e, s)
}

/// The real, effective and saved group ids.
pub fn getresgid() -> (u32, u32, u32) {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: as in `getresuid`.
    unsafe { libc::getresgid(&mut r, &mut e, &mut s) };
    (r, e, s)
}

/// Makes the process ignore `sig` (an ignored signal stays ignored
/// across exec: use only in a process that does not exec).
pub fn ignore_signal(sig: i32) -> io::Result<()> {
    set_disposition(sig, libc::SIG_IGN)
}

/// Closes every descriptor from 3 up except those in `keep`. The caller
/// guarantees that no live `OwnedFd` refers to a descriptor closed here.
pub fn close_fds_except(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&fd| fd >= 3)
        .map(|&fd| fd as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 3u32;
    let mut gaps = Vec::new();
    for &fd in &keep {
        if fd > from {
            gaps.push((from, fd - 1));
        }
        from = fd + 1;
    }
    gaps.push((from, u32::MAX));
    for (first, last) in gaps {
        // SAFETY: close_range takes no pointers; the caller vouches for
        // the ownership of everything in the range.
        if unsafe { libc::close_range(first, last, 0) } == 0 {
            continue;
        }
        // A kernel before 5.9: close what /proc says is open.
        let open: Vec<u32> = std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        for fd in open.into_iter().filter(|fd| (first..=last).contains(fd)) {
            close_raw(fd as RawFd);
        }
    }
}

/// Connects a socket.
pub fn connect(fd: BorrowedFd, addr: &RawAddr) -> io::Result<()> {
    // SAFETY: addr points at a valid sockaddr of addr.len bytes.
    cvt_r(|| unsafe { libc::connect(fd.as_raw_fd(), addr.as_ptr(), addr.len) })?;
    Ok(())
}

/// `send(2)` retried on EINTR, never raising SIGPIPE.
pub fn send(fd: BorrowedFd, buf: &[u8], flags: i32) -> io::Result<usize> {
    let flags = flags | libc::MSG_NOSIGNAL;
    // SAFETY: buf is valid for reads of buf.len() bytes.
    let n = cvt_r(|| unsafe {
        libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) as _
    })?;
    Ok(n as usize)
}

/// Bounds how long a blocking send on `fd` may wait.
pub fn set_send_timeout(fd: BorrowedFd, timeout: std::time::Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: tv is a valid timeval for the duration of the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// A moment in local time, as syslog(3) shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    /// 0 = January.
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

/// Reads the time zone ($TZ, else /etc/localtime) once, now, so that
/// later conversions need no file (after a privilege drop, for example).
pub fn tzset() {
    // POSIX, but not declared by the libc crate.
    unsafe extern "C" {
        fn tzset();
    }
    // SAFETY: tzset takes no arguments; the process is single-threaded.
    unsafe { tzset() };
}

/// Converts seconds since the epoch to local time.
pub fn localtime(secs: i64) -> io::Result<LocalTime> {
    let t = secs as libc::time_t;
    // SAFETY: tm is plain old data; all-zero is a valid value.
    let mut tm: libc::tm = unsafe { zeroed() };
    // SAFETY: t and tm are valid for the call; localtime_r is reentrant.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return Err(io::Error::last_os_error());
    }
    Ok(LocalTime {
        month: tm.tm_mon as u8,
        day: tm.tm_mday as u8,
        hour: tm.tm_hour as u8,
        minute: tm.tm_min as u8,
        second: tm.tm_sec as u8,
    })
}

// ---------------------------------------------------------------- fast spawn
//
// A server that waits, at each connection, until its handler has exec'd
// (vfork, posix_spawn) accepts nothing meanwhile: on a small machine that
// idles the CPU while clients wait. `Spawner` lets the child exec on its
// own: it starts the child in our memory (CLONE_VM: no copy of our page
// tables, like vfork) but does not suspend us (no CLONE_VFORK). Each child
// gets a slot of its own (a stack, its environment) that we leave alone
// until the kernel tells us, by zeroing the slot's `running` word
// (CLONE_CHILD_CLEARTID), that the child has exec'd or exited. The child
// runs beside us in our memory, so it makes its system calls without the C
// library: a libc wrapper would write errno, which is our thread's.

/// How many children may be between clone and exec at once; one more
/// waits for a slot (an exec takes well under a millisecond).
const SLOTS: usize = 8;
/// Each child's stack: it needs a few hundred bytes; only touched pages
/// become resident.
const STACK: usize = 64 * 1024;

/// A system call made without the C library: returns `-errno` on failure
/// and touches no memory but what the call itself reads or writes.
///
/// # Safety
/// The arguments must be valid for the system call `nr`.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_syscall(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes a valid call; the x86-64 system call
    // convention clobbers only rcx and r11, and the asm may read and write
    // memory (the default), as execve and rt_sigaction do.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// # Safety
/// As on x86-64.
#[cfg(target_arch = "aarch64")]
unsafe fn raw_syscall(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes a valid call; the aarch64 convention
    // returns in x0 and clobbers nothing else we use.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a as isize => ret,
            in("x1") b,
            in("x2") c,
            in("x3") d,
            options(nostack),
        );
    }
    ret
}

/// Elsewhere: the C library's `syscall`, whose errno write is harmless
/// because `SUSPEND` then keeps us waiting until the child is gone.
///
/// # Safety
/// As on x86-64.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn raw_syscall(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    // SAFETY: the caller passes a valid call.
    match unsafe { libc::syscall(nr, a, b, c, d) } {
        -1 => {
            -(io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO) as isize)
        }
        ret => ret as isize,
    }
}

/// Where the child can make errno-free system calls, we run on while it
/// execs; elsewhere we wait for it, as vfork does.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const SUSPEND: libc::c_int = 0;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SUSPEND: libc::c_int = libc::CLONE_VFORK;

/// What every child of a `Spawner` execs, prepared once and never changed.
struct Program {
    /// Programs to try in turn (one, unless $PATH is searched).
    _paths: Vec<CString>,
    path_ptrs: Vec<*const libc::c_char>,
    argv: CArgs,
    /// The environment every child gets, before its own variables.
    _base_env: Vec<CString>,
    base_env_ptrs: Vec<*const libc::c_char>,
    /// Signals to put back at their default disposition.
    defaults: Vec<libc::c_int>,
}

/// What one child reads between clone and exec, written by us only while
/// no child uses the slot.
struct Setup {
    program: *const Program,
    /// Put on the child's stdin and stdout; -1: leave both alone.
    fd: libc::c_int,
    envp: Vec<*const libc::c_char>,
    /// The child's own variables, which `envp` points into.
    vars: Vec<CString>,
}

struct Slot {
    /// Non-zero from before the clone until the child has exec'd or
    /// exited, when the kernel zeroes it and wakes futex waiters.
    running: AtomicI32,
    /// Written by the child when it cannot exec: the errno value.
    error: AtomicI32,
    /// The child, until its outcome is collected (0: none).
    pid: Cell<i32>,
    setup: UnsafeCell<Setup>,
}

/// The child's side: descriptors, signals, exec. Nothing here allocates,
/// locks, unwinds or touches errno.
extern "C" fn spawned_child(slot: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `slot` is the Slot the parent passed to clone; the parent
    // leaves its `setup` and the Program it points to alone until the kernel
    // zeroes `running`, which happens at our exec or exit. Every pointer in
    // them is valid and NUL-terminated (see `Spawner::start`). The child
    // writes only the atomic `error`.
    unsafe {
        let slot = &*(slot as *const Slot);
        let setup = &*slot.setup.get();
        let program = &*setup.program;
        let fd = setup.fd;
        if fd >= 0 {
            for target in [0, 1] {
                let ret = if fd == target {
                    raw_syscall(libc::SYS_fcntl, fd as usize, libc::F_SETFD as usize, 0, 0)
                } else {
                    raw_syscall(libc::SYS_dup3, fd as usize, target as usize, 0, 0)
                };
                if ret < 0 {
                    slot.error.store(-ret as i32, Ordering::Relaxed);
                    child_exit();
                }
            }
        }
        // A kernel sigaction of all zeroes is SIG_DFL with no flags, whatever
        // the architecture's field order; the raw call also reaches the two
        // signals glibc reserves, which its sigaction refuses.
        let default = [0u64; 4];
        for &sig in &program.defaults {
            raw_syscall(
                libc::SYS_rt_sigaction,
                sig as usize,
                default.as_ptr() as usize,
                0,
                KERNEL_SIGSET,
            );
        }
        let empty = [0u64; 2];
        raw_syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as usize,
            empty.as_ptr() as usize,
            0,
            KERNEL_SIGSET,
        );
        let mut error = libc::ENOENT;
        for &path in &program.path_ptrs {
            let ret = raw_syscall(
                libc::SYS_execve,
                path as usize,
                program.argv.as_ptr() as usize,
                setup.envp.as_ptr() as usize,
                0,
            );
            // As execvp: a file that is not there lets the search go on; a
            // file found but not executable is remembered.
            match -ret as i32 {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => error = libc::EACCES,
                e => {
                    error = e;
                    break;
                }
            }
        }
        slot.error.store(error, Ordering::Relaxed);
        child_exit()
    }
}

/// Ends the child with status 127 (the program could not be run).
fn child_exit() -> ! {
    loop {
        // SAFETY: exit_group takes a status and does not return.
        unsafe { raw_syscall(libc::SYS_exit_group, 127, 0, 0, 0) };
    }
}

/// The children's stacks: one anonymous mapping, a `STACK` per slot, the
/// lowest page of each made inaccessible so that an overflow faults
/// instead of running into a neighbour's stack.
struct Stacks(*mut libc::c_void);

impl Stacks {
    fn new() -> io::Result<Stacks> {
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                SLOTS * STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stacks = Stacks(base);
        let page = page_size();
        for i in 0..SLOTS {
            let guard = (base as usize + i * STACK) as *mut libc::c_void;
            // SAFETY: the page lies inside our mapping, unused yet.
            cvt(unsafe { libc::mprotect(guard, page, libc::PROT_NONE) })?;
        }
        Ok(stacks)
    }

    /// The top of slot `i`'s stack (stacks grow down; page aligned).
    fn top(&self, i: usize) -> *mut libc::c_void {
        (self.0 as usize + (i + 1) * STACK) as *mut libc::c_void
    }
}

impl Drop for Stacks {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours; `Spawner::drop` has waited until no
        // child runs on it.
        unsafe { libc::munmap(self.0, SLOTS * STACK) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// The size of the kernel's signal set, which its raw signal calls take:
/// 64 signals, but 128 on MIPS.
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const KERNEL_SIGSET: usize = 8;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const KERNEL_SIGSET: usize = 16;

/// Sets the calling thread's signal mask with the raw call: glibc's
/// wrappers quietly leave its two internal signals out of any set.
fn raw_sigmask(set: &[u64; 2], old: Option<&mut [u64; 2]>) {
    let old = old.map_or(ptr::null_mut(), |o| o.as_mut_ptr());
    // SAFETY: both sets are 16 bytes, at least KERNEL_SIGSET; `old` is
    // writable or null.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            set.as_ptr(),
            old,
            KERNEL_SIGSET,
        )
    };
}

/// The signals that have a handler of ours now (glibc's two internal
/// ones aside, which its sigaction does not report).
fn caught_signals() -> Vec<libc::c_int> {
    (1..=64)
        .filter(|sig| !GLIBC_INTERNAL_SIGNALS.contains(sig))
        .filter(|&sig| {
            // SAFETY: sigaction is plain old data; all-zero is valid.
            let mut old: libc::sigaction = unsafe { zeroed() };
            // SAFETY: a query only (no new action); `old` is writable.
            let ok = unsafe { libc::sigaction(sig, ptr::null(), &mut old) } == 0;
            ok && old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN
        })
        .collect()
}

/// What the children read: the program and the slots, in one allocation
/// that never moves and that only `Spawner::drop` frees.
struct Shared {
    program: Program,
    slots: [Slot; SLOTS],
}

/// Starts child processes the way glibc's posix_spawn does (a clone that
/// shares our memory: no copy of page tables), with less work: the child
/// resets only the signals that need it, where glibc's makes a sigaction
/// call for each of the 64, and we do not wait for its exec (see above).
pub struct Spawner {
    /// From `Box::into_raw`: children read it through raw pointers while
    /// we run, so we never hold it as a `Box` (which claims uniqueness).
    shared: ptr::NonNull<Shared>,
    stacks: Stacks,
    /// Where the search for a free slot starts.
    next: usize,
    /// Children that could not exec whose slot was reused before
    /// `exec_error` asked about them: (pid, errno).
    failed: Vec<(i32, i32)>,
}

impl Spawner {
    /// A spawner of children that exec the first of `paths` that can be
    /// run, with `argv` and `base_env` (plus each child's own variables).
    /// `defaults`: the signals the children must find at their default
    /// disposition (any signal number, glibc's reserved ones included);
    /// every signal we catch now is added, so that no handler of ours can
    /// run in a child before its exec.
    pub fn new(
        paths: Vec<CString>,
        argv: Vec<CString>,
        base_env: Vec<CString>,
        defaults: &[i32],
    ) -> io::Result<Spawner> {
        let stacks = Stacks::new()?;
        let mut defaults = defaults.to_vec();
        defaults.extend(caught_signals());
        defaults.sort_unstable();
        defaults.dedup();
        let program = Program {
            path_ptrs: paths.iter().map(|p| p.as_ptr()).collect(),
            _paths: paths,
            argv: CArgs::new(argv),
            base_env_ptrs: base_env.iter().map(|v| v.as_ptr()).collect(),
            _base_env: base_env,
            defaults,
        };
        let slots = std::array::from_fn(|_| Slot {
            running: AtomicI32::new(0),
            error: AtomicI32::new(0),
            pid: Cell::new(0),
            setup: UnsafeCell::new(Setup {
                program: ptr::null(),
                fd: -1,
                envp: Vec::new(),
                vars: Vec::new(),
            }),
        });
        let shared = Box::into_raw(Box::new(Shared { program, slots }));
        // SAFETY: just allocated, not null.
        let shared = unsafe { ptr::NonNull::new_unchecked(shared) };
        Ok(Spawner {
            shared,
            stacks,
            next: 0,
            failed: Vec::new(),
        })
    }

    fn shared(&self) -> &Shared {
        // SAFETY: allocated in `new`, freed only in `drop`; only shared
        // references to it are ever made (what changes is in atomics,
        // Cells and the UnsafeCell of free slots).
        unsafe { self.shared.as_ref() }
    }

    fn slot(&self, i: usize) -> &Slot {
        &self.shared().slots[i]
    }

    /// Starts a child with `fd` (unless -1) on its stdin and stdout, the
    /// base environment plus `vars`, an empty signal mask and our defaults
    /// reset. Returns its pid as soon as it exists: whether it could exec
    /// is told by `wait_exec` or, once it is reaped, by `exec_error`.
    pub fn start(&mut self, fd: RawFd, vars: Vec<CString>) -> io::Result<i32> {
        let i = self.free_slot();
        let shared = self.shared();
        let slot = &shared.slots[i];
        // SAFETY: the slot is free: its last child has exec'd or exited,
        // and no other reference to its setup exists.
        let setup = unsafe { &mut *slot.setup.get() };
        setup.program = &shared.program;
        setup.fd = fd;
        setup.vars = vars;
        setup.envp.clear();
        setup.envp.extend(&shared.program.base_env_ptrs);
        setup.envp.extend(setup.vars.iter().map(|v| v.as_ptr()));
        setup.envp.push(ptr::null());
        slot.running.store(1, Ordering::Relaxed);
        // Block every signal around the clone, glibc's internal ones too:
        // the child starts with this mask and keeps it until it has reset
        // the signals it must, so no handler of ours runs in it.
        let mut old = [0u64; 2];
        raw_sigmask(&[u64::MAX; 2], Some(&mut old));
        // SAFETY: `spawned_child` only reads the slot and the program and
        // makes raw system calls; the stack top is that of the slot's own
        // stack, which no other child uses; we leave the slot, the program
        // and the stack alone until the kernel zeroes `running` (our
        // `Drop` waits for that too).
        let pid = unsafe {
            libc::clone(
                spawned_child,
                self.stacks.top(i),
                libc::CLONE_VM | libc::CLONE_CHILD_CLEARTID | SUSPEND | libc::SIGCHLD,
                slot as *const Slot as *mut libc::c_void,
                ptr::null_mut::<libc::pid_t>(),
                ptr::null_mut::<libc::c_void>(),
                slot.running.as_ptr(),
            )
        };
        let clone_error = io::Error::last_os_error();
        raw_sigmask(&old, None);
        if pid < 0 {
            slot.running.store(0, Ordering::Relaxed);
            return Err(clone_error);
        }
        slot.pid.set(pid);
        Ok(pid)
    }

    /// Waits until child `pid`, just started, has exec'd. If it could not,
    /// reaps it and returns the exec error.
    pub fn wait_exec(&mut self, pid: i32) -> io::Result<()> {
        match self.outcome(pid) {
            Some(e) => {
                let _ = wait(pid);
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// For a child that has ended: the error that kept it from exec'ing,
    /// if that is why it ended.
    pub fn exec_error(&mut self, pid: i32) -> Option<io::Error> {
        if let Some(e) = self.outcome(pid) {
            return Some(e);
        }
        let k = self.failed.iter().position(|&(p, _)| p == pid)?;
        Some(io::Error::from_raw_os_error(self.failed.swap_remove(k).1))
    }

    /// Waits until child `pid`'s slot is free and collects its exec error.
    fn outcome(&mut self, pid: i32) -> Option<io::Error> {
        let slot = self.shared().slots.iter().find(|s| s.pid.get() == pid)?;
        while !slot_is_free(slot) {
            wait_a_little(slot);
        }
        slot.pid.set(0);
        match slot.error.swap(0, Ordering::Acquire) {
            0 => None,
            e => Some(io::Error::from_raw_os_error(e)),
        }
    }

    /// A slot whose child has exec'd or exited, waiting for one if need
    /// be (a child stopped before its exec holds only its own slot). An
    /// exec error nobody has asked about yet is filed in `failed`.
    fn free_slot(&mut self) -> usize {
        loop {
            let free = (0..SLOTS)
                .map(|k| (self.next + k) % SLOTS)
                .find(|&i| slot_is_free(self.slot(i)));
            if let Some(i) = free {
                let slot = self.slot(i);
                let pid = slot.pid.replace(0);
                match slot.error.swap(0, Ordering::Acquire) {
                    0 => {}
                    e => self.failed.push((pid, e)),
                }
                self.next = (i + 1) % SLOTS;
                return i;
            }
            wait_a_little(self.slot(self.next));
            self.next = (self.next + 1) % SLOTS;
        }
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        // The stacks and the shared part must outlive every child still on
        // its way to exec.
        for slot in &self.shared().slots {
            while !slot_is_free(slot) {
                wait_a_little(slot);
            }
        }
        // SAFETY: from `Box::into_raw` in `new`; no child reads it any more
        // and no reference to it is left.
        drop(unsafe { Box::from_raw(self.shared.as_ptr()) });
    }
}

/// Whether the slot's child has exec'd or exited. The kernel zeroes the
/// word before the child becomes a zombie, so a child found ended will not
/// write it again; one that dumped core before its exec may never zero it.
fn slot_is_free(slot: &Slot) -> bool {
    if slot.running.load(Ordering::Acquire) == 0 {
        return true;
    }
    if has_exited(slot.pid.get()) {
        slot.running.store(0, Ordering::Release);
        return true;
    }
    false
}

/// Sleeps until the slot's word changes, or 10 ms.
fn wait_a_little(slot: &Slot) {
    futex_wait(&slot.running, 1, std::time::Duration::from_millis(10));
}

/// Sleeps while `word` holds `expected`, until woken or `timeout` passes.
fn futex_wait(word: &AtomicI32, expected: i32, timeout: std::time::Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned 32-bit integer and `ts` a valid
    // timespec for the duration of the call. Not FUTEX_PRIVATE: the kernel's
    // wake-up for CLONE_CHILD_CLEARTID is a shared one.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

/// Whether child `pid` has ended (or was reaped already), without reaping it.
fn has_exited(pid: i32) -> bool {
    // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { zeroed() };
    // SAFETY: `info` is valid and writable; WNOWAIT leaves the child
    // unreaped.
    let ret = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if ret < 0 {
        return io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD);
    }
    // SAFETY: waitid filled `info` (si_pid stays 0 if no child changed).
    unsafe { info.si_pid() != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    /// A spawner whose children spend a while before their exec: they try
    /// thousands of missing paths first.
    fn slow_spawner() -> Spawner {
        let mut paths: Vec<CString> = (0..20_000)
            .map(|i| c(&format!("/nonexistent/skd-test/{i}")))
            .collect();
        paths.push(c("/bin/true"));
        Spawner::new(paths, vec![c("true")], Vec::new(), &[]).unwrap()
    }

    #[test]
    fn a_child_stopped_before_its_exec_holds_only_its_own_slot() {
        let mut spawner = slow_spawner();
        let stopped = spawner.start(-1, Vec::new()).unwrap();
        kill(stopped, libc::SIGSTOP).unwrap();
        // Still our own program: stopped before its exec.
        let exe = std::fs::read_link(format!("/proc/{stopped}/exe")).unwrap();
        assert_eq!(exe, std::env::current_exe().unwrap());
        // Should the spawner wait for that one slot, this lets it go on
        // after 20 s rather than hang the test.
        let watchdog = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(20));
            let _ = kill(stopped, libc::SIGCONT);
        });
        let t = Instant::now();
        let others: Vec<i32> = (0..2 * SLOTS)
            .map(|_| spawner.start(-1, Vec::new()).unwrap())
            .collect();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        for pid in others {
            assert_eq!(wait(pid).unwrap(), Exit::Code(0));
            assert!(spawner.exec_error(pid).is_none());
        }
        kill(stopped, libc::SIGKILL).unwrap();
        assert_eq!(wait(stopped).unwrap(), Exit::Signal(libc::SIGKILL));
        assert!(spawner.exec_error(stopped).is_none());
        drop(spawner);
        drop(watchdog);
    }

    #[test]
    fn every_caught_signal_is_reset_in_the_child() {
        // The Rust runtime catches SIGSEGV and SIGBUS (stack overflows):
        // no handler of ours may run in a child on our memory.
        let caught = caught_signals();
        assert!(caught.contains(&libc::SIGSEGV), "{caught:?}");
        let spawner = Spawner::new(vec![c("/bin/true")], vec![c("true")], Vec::new(), &[]).unwrap();
        let defaults = &spawner.shared().program.defaults;
        assert!(caught.iter().all(|s| defaults.contains(s)), "{defaults:?}");
    }
}
