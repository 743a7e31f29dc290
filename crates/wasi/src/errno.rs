//! WASI error numbers and their mapping from host I/O errors.

use std::{fmt, io};

macro_rules! errnos {
    ($($variant:ident = $value:literal, $name:literal;)*) => {
        /// A `wasi_snapshot_preview1` error number (`errno`).
        ///
        /// The values are those of the WASI ABI, not of the host: `Noent` is 44
        /// here and 2 on Linux.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Errno {
            $(
                #[doc = $name]
                $variant = $value,
            )*
        }

        impl Errno {
            /// The ABI value.
            pub fn code(self) -> u16 {
                self as u16
            }

            /// The symbolic name, as in the WASI headers without the `__WASI_ERRNO_` prefix.
            pub fn name(self) -> &'static str {
                match self {
                    $(Errno::$variant => $name,)*
                }
            }
        }
    };
}

errnos! {
    Success = 0, "SUCCESS";
    TooBig = 1, "2BIG";
    Acces = 2, "ACCES";
    Addrinuse = 3, "ADDRINUSE";
    Addrnotavail = 4, "ADDRNOTAVAIL";
    Afnosupport = 5, "AFNOSUPPORT";
    Again = 6, "AGAIN";
    Already = 7, "ALREADY";
    Badf = 8, "BADF";
    Badmsg = 9, "BADMSG";
    Busy = 10, "BUSY";
    Canceled = 11, "CANCELED";
    Child = 12, "CHILD";
    Connaborted = 13, "CONNABORTED";
    Connrefused = 14, "CONNREFUSED";
    Connreset = 15, "CONNRESET";
    Deadlk = 16, "DEADLK";
    Destaddrreq = 17, "DESTADDRREQ";
    Dom = 18, "DOM";
    Dquot = 19, "DQUOT";
    Exist = 20, "EXIST";
    Fault = 21, "FAULT";
    Fbig = 22, "FBIG";
    Hostunreach = 23, "HOSTUNREACH";
    Idrm = 24, "IDRM";
    Ilseq = 25, "ILSEQ";
    Inprogress = 26, "INPROGRESS";
    Intr = 27, "INTR";
    Inval = 28, "INVAL";
    Io = 29, "IO";
    Isconn = 30, "ISCONN";
    Isdir = 31, "ISDIR";
    Loop = 32, "LOOP";
    Mfile = 33, "MFILE";
    Mlink = 34, "MLINK";
    Msgsize = 35, "MSGSIZE";
    Multihop = 36, "MULTIHOP";
    Nametoolong = 37, "NAMETOOLONG";
    Netdown = 38, "NETDOWN";
    Netreset = 39, "NETRESET";
    Netunreach = 40, "NETUNREACH";
    Nfile = 41, "NFILE";
    Nobufs = 42, "NOBUFS";
    Nodev = 43, "NODEV";
    Noent = 44, "NOENT";
    Noexec = 45, "NOEXEC";
    Nolck = 46, "NOLCK";
    Nolink = 47, "NOLINK";
    Nomem = 48, "NOMEM";
    Nomsg = 49, "NOMSG";
    Noprotoopt = 50, "NOPROTOOPT";
    Nospc = 51, "NOSPC";
    Nosys = 52, "NOSYS";
    Notconn = 53, "NOTCONN";
    Notdir = 54, "NOTDIR";
    Notempty = 55, "NOTEMPTY";
    Notrecoverable = 56, "NOTRECOVERABLE";
    Notsock = 57, "NOTSOCK";
    Notsup = 58, "NOTSUP";
    Notty = 59, "NOTTY";
    Nxio = 60, "NXIO";
    Overflow = 61, "OVERFLOW";
    Ownerdead = 62, "OWNERDEAD";
    Perm = 63, "PERM";
    Pipe = 64, "PIPE";
    Proto = 65, "PROTO";
    Protonosupport = 66, "PROTONOSUPPORT";
    Prototype = 67, "PROTOTYPE";
    Range = 68, "RANGE";
    Rofs = 69, "ROFS";
    Spipe = 70, "SPIPE";
    Srch = 71, "SRCH";
    Stale = 72, "STALE";
    Timedout = 73, "TIMEDOUT";
    Txtbsy = 74, "TXTBSY";
    Xdev = 75, "XDEV";
    Notcapable = 76, "NOTCAPABLE";
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E{} ({})", self.name(), self.code())
    }
}

impl From<io::Error> for Errno {
    #[cold]
    fn from(error: io::Error) -> Self {
        from_io_error(&error)
    }
}

/// The WASI errno for a host I/O error: by the host's errno when the error has one,
/// otherwise by its kind (as wasmtime does, so that cap-std's sandbox refusals,
/// which carry no errno, become `EPERM`).
#[cold]
pub fn from_io_error(error: &io::Error) -> Errno {
    if let Some(raw) = error.raw_os_error() {
        return from_host_errno(rustix::io::Errno::from_raw_os_error(raw));
    }
    match error.kind() {
        io::ErrorKind::NotFound => Errno::Noent,
        io::ErrorKind::PermissionDenied => Errno::Perm,
        io::ErrorKind::AlreadyExists => Errno::Exist,
        io::ErrorKind::InvalidInput => Errno::Inval,
        io::ErrorKind::InvalidData => Errno::Ilseq,
        io::ErrorKind::Interrupted => Errno::Intr,
        io::ErrorKind::WouldBlock => Errno::Again,
        io::ErrorKind::Unsupported => Errno::Notsup,
        io::ErrorKind::OutOfMemory => Errno::Nomem,
        io::ErrorKind::BrokenPipe => Errno::Pipe,
        io::ErrorKind::NotADirectory => Errno::Notdir,
        io::ErrorKind::IsADirectory => Errno::Isdir,
        io::ErrorKind::DirectoryNotEmpty => Errno::Notempty,
        io::ErrorKind::FileTooLarge => Errno::Fbig,
        io::ErrorKind::StorageFull => Errno::Nospc,
        io::ErrorKind::InvalidFilename => Errno::Nametoolong,
        io::ErrorKind::NotSeekable => Errno::Spipe,
        _ => Errno::Io,
    }
}

/// The WASI errno for a host errno.
#[cold]
pub fn from_host_errno(errno: rustix::io::Errno) -> Errno {
    use rustix::io::Errno as E;
    match errno {
        E::TOOBIG => Errno::TooBig,
        E::ACCESS => Errno::Acces,
        E::ADDRINUSE => Errno::Addrinuse,
        E::ADDRNOTAVAIL => Errno::Addrnotavail,
        E::AFNOSUPPORT => Errno::Afnosupport,
        E::AGAIN => Errno::Again,
        E::ALREADY => Errno::Already,
        E::BADF => Errno::Badf,
        E::BADMSG => Errno::Badmsg,
        E::BUSY => Errno::Busy,
        E::CANCELED => Errno::Canceled,
        E::CHILD => Errno::Child,
        E::CONNABORTED => Errno::Connaborted,
        E::CONNREFUSED => Errno::Connrefused,
        E::CONNRESET => Errno::Connreset,
        E::DEADLK => Errno::Deadlk,
        E::DESTADDRREQ => Errno::Destaddrreq,
        E::DOM => Errno::Dom,
        E::DQUOT => Errno::Dquot,
        E::EXIST => Errno::Exist,
        E::FAULT => Errno::Fault,
        E::FBIG => Errno::Fbig,
        E::HOSTUNREACH => Errno::Hostunreach,
        E::IDRM => Errno::Idrm,
        E::ILSEQ => Errno::Ilseq,
        E::INPROGRESS => Errno::Inprogress,
        E::INTR => Errno::Intr,
        E::INVAL => Errno::Inval,
        E::IO => Errno::Io,
        E::ISCONN => Errno::Isconn,
        E::ISDIR => Errno::Isdir,
        E::LOOP => Errno::Loop,
        E::MFILE => Errno::Mfile,
        E::MLINK => Errno::Mlink,
        E::MSGSIZE => Errno::Msgsize,
        E::MULTIHOP => Errno::Multihop,
        E::NAMETOOLONG => Errno::Nametoolong,
        E::NETDOWN => Errno::Netdown,
        E::NETRESET => Errno::Netreset,
        E::NETUNREACH => Errno::Netunreach,
        E::NFILE => Errno::Nfile,
        E::NOBUFS => Errno::Nobufs,
        E::NODEV => Errno::Nodev,
        E::NOENT => Errno::Noent,
        E::NOEXEC => Errno::Noexec,
        E::NOLCK => Errno::Nolck,
        E::NOLINK => Errno::Nolink,
        E::NOMEM => Errno::Nomem,
        E::NOMSG => Errno::Nomsg,
        E::NOPROTOOPT => Errno::Noprotoopt,
        E::NOSPC => Errno::Nospc,
        E::NOSYS => Errno::Nosys,
        E::NOTCONN => Errno::Notconn,
        E::NOTDIR => Errno::Notdir,
        E::NOTEMPTY => Errno::Notempty,
        E::NOTRECOVERABLE => Errno::Notrecoverable,
        E::NOTSOCK => Errno::Notsock,
        E::NOTSUP => Errno::Notsup,
        E::NOTTY => Errno::Notty,
        E::NXIO => Errno::Nxio,
        E::OVERFLOW => Errno::Overflow,
        E::OWNERDEAD => Errno::Ownerdead,
        E::PERM => Errno::Perm,
        E::PIPE => Errno::Pipe,
        E::PROTO => Errno::Proto,
        E::PROTONOSUPPORT => Errno::Protonosupport,
        E::PROTOTYPE => Errno::Prototype,
        E::RANGE => Errno::Range,
        E::ROFS => Errno::Rofs,
        E::SPIPE => Errno::Spipe,
        E::SRCH => Errno::Srch,
        E::STALE => Errno::Stale,
        E::TIMEDOUT => Errno::Timedout,
        E::TXTBSY => Errno::Txtbsy,
        E::XDEV => Errno::Xdev,
        _ => Errno::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_errors_map_by_number_then_kind() {
        assert_eq!(Errno::from(io::Error::from_raw_os_error(2)), Errno::Noent);
        assert_eq!(
            Errno::from(io::Error::from(rustix::io::Errno::NOTEMPTY)),
            Errno::Notempty
        );
        assert_eq!(
            Errno::from(io::Error::from(rustix::io::Errno::LOOP)),
            Errno::Loop
        );
        // cap-std's sandbox refusal carries no errno.
        let escape = io::Error::new(io::ErrorKind::PermissionDenied, "outside");
        assert_eq!(Errno::from(escape), Errno::Perm);
        assert_eq!(Errno::from(io::Error::other("x")), Errno::Io);
    }

    #[test]
    fn names_and_codes() {
        assert_eq!(Errno::Notcapable.code(), 76);
        assert_eq!(Errno::TooBig.name(), "2BIG");
        assert_eq!(Errno::Noent.to_string(), "ENOENT (44)");
    }
}
