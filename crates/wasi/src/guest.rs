//! Typed access to guest memory for the host functions.
//!
//! Linear memory is paged, so it is never borrowed as one slice: every access
//! copies through [`LinearMemory::read`] and [`LinearMemory::write`], which check
//! bounds as a whole. A pointer or length outside memory is `EFAULT`, never a panic.
//! Every length that makes the host allocate is bounded first.

use crate::{abi::size, Errno};
use ferrite_vm::LinearMemory;

/// The most iovecs one `fd_read`/`fd_write` call may pass (Linux's `IOV_MAX`).
pub const IOVECS_MAX: u32 = 1024;

/// The most bytes one read or write call moves; larger requests are short reads
/// and writes, which callers (and wasi-libc) handle by looping.
pub const IO_BYTES_MAX: u32 = 16 << 20;

/// The longest path a guest may pass; longer ones fail with `ENAMETOOLONG`
/// before any host allocation.
pub const PATH_BYTES_MAX: u32 = 64 << 10;

/// One `iovec`/`ciovec`: a guest buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoVec {
    pub ptr: u32,
    pub len: u32,
}

/// The guest's memory during one host call (absent if the module exports none).
pub struct Guest<'a> {
    memory: Option<&'a mut LinearMemory>,
}

impl<'a> Guest<'a> {
    pub fn new(memory: Option<&'a mut LinearMemory>) -> Self {
        Self { memory }
    }

    fn memory(&mut self) -> Result<&mut LinearMemory, Errno> {
        self.memory.as_deref_mut().ok_or(Errno::Fault)
    }

    /// Fails with `EFAULT` unless `len` bytes at `ptr` lie inside memory.
    pub fn check(&mut self, ptr: u32, len: u64) -> Result<(), Errno> {
        let size = self.memory()?.size_bytes();
        if u64::from(ptr).saturating_add(len) <= size {
            Ok(())
        } else {
            Err(Errno::Fault)
        }
    }

    pub fn read_u8(&mut self, ptr: u32) -> Result<u8, Errno> {
        Ok(self.load::<1>(ptr)?[0])
    }

    pub fn read_u16(&mut self, ptr: u32) -> Result<u16, Errno> {
        Ok(u16::from_le_bytes(self.load(ptr)?))
    }

    pub fn read_u32(&mut self, ptr: u32) -> Result<u32, Errno> {
        Ok(u32::from_le_bytes(self.load(ptr)?))
    }

    pub fn read_u64(&mut self, ptr: u32) -> Result<u64, Errno> {
        Ok(u64::from_le_bytes(self.load(ptr)?))
    }

    fn load<const N: usize>(&mut self, ptr: u32) -> Result<[u8; N], Errno> {
        self.memory()?
            .load::<N>(u64::from(ptr))
            .map_err(|_| Errno::Fault)
    }

    pub fn write_u32(&mut self, ptr: u32, value: u32) -> Result<(), Errno> {
        self.store(ptr, value.to_le_bytes())
    }

    pub fn write_u64(&mut self, ptr: u32, value: u64) -> Result<(), Errno> {
        self.store(ptr, value.to_le_bytes())
    }

    fn store<const N: usize>(&mut self, ptr: u32, bytes: [u8; N]) -> Result<(), Errno> {
        self.memory()?
            .store::<N>(u64::from(ptr), bytes)
            .map_err(|_| Errno::Fault)
    }

    /// Copies `len` guest bytes at `ptr`; the caller bounds `len`.
    pub fn read_bytes(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>, Errno> {
        self.check(ptr, u64::from(len))?;
        let mut bytes = vec![0; len as usize];
        self.memory()?
            .read(u64::from(ptr), &mut bytes)
            .map_err(|_| Errno::Fault)?;
        Ok(bytes)
    }

    pub fn write_bytes(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), Errno> {
        self.memory()?
            .write(u64::from(ptr), bytes)
            .map_err(|_| Errno::Fault)
    }

    /// A UTF-8 path of `len` bytes at `ptr`.
    ///
    /// # Errors
    /// `ENAMETOOLONG` past [`PATH_BYTES_MAX`], `EFAULT` outside memory, `EILSEQ`
    /// for invalid UTF-8.
    pub fn read_path(&mut self, ptr: u32, len: u32) -> Result<String, Errno> {
        if len > PATH_BYTES_MAX {
            return Err(Errno::Nametoolong);
        }
        String::from_utf8(self.read_bytes(ptr, len)?).map_err(|_| Errno::Ilseq)
    }

    /// The `count` iovecs at `ptr`, each checked to lie inside memory.
    ///
    /// # Errors
    /// `EINVAL` past [`IOVECS_MAX`], `EFAULT` for an array or buffer outside memory.
    pub fn iovecs(&mut self, ptr: u32, count: u32) -> Result<Vec<IoVec>, Errno> {
        if count > IOVECS_MAX {
            return Err(Errno::Inval);
        }
        self.check(ptr, u64::from(count) * u64::from(size::IOVEC))?;
        let mut iovecs = Vec::with_capacity(count as usize);
        for i in 0..count {
            let at = ptr + i * size::IOVEC;
            let iovec = IoVec {
                ptr: self.read_u32(at)?,
                len: self.read_u32(at + 4)?,
            };
            self.check(iovec.ptr, u64::from(iovec.len))?;
            iovecs.push(iovec);
        }
        Ok(iovecs)
    }

    /// The bytes of `iovecs`, concatenated, at most [`IO_BYTES_MAX`] of them.
    pub fn gather(&mut self, iovecs: &[IoVec]) -> Result<Vec<u8>, Errno> {
        let mut bytes = Vec::new();
        for iovec in iovecs {
            let room = IO_BYTES_MAX as usize - bytes.len();
            let len = (iovec.len as usize).min(room);
            let start = bytes.len();
            bytes.resize(start + len, 0);
            self.memory()?
                .read(u64::from(iovec.ptr), &mut bytes[start..])
                .map_err(|_| Errno::Fault)?;
            if bytes.len() == IO_BYTES_MAX as usize {
                break;
            }
        }
        Ok(bytes)
    }

    /// Copies `bytes` into `iovecs` in order; `bytes` fits (it was sized by
    /// [`scatter_capacity`]).
    pub fn scatter(&mut self, iovecs: &[IoVec], bytes: &[u8]) -> Result<(), Errno> {
        let mut rest = bytes;
        for iovec in iovecs {
            if rest.is_empty() {
                break;
            }
            let len = (iovec.len as usize).min(rest.len());
            let (head, tail) = rest.split_at(len);
            self.write_bytes(iovec.ptr, head)?;
            rest = tail;
        }
        debug_assert!(
            rest.is_empty(),
            "scatter of more bytes than the iovecs hold"
        );
        Ok(())
    }
}

/// How many bytes a read into `iovecs` takes: their total, at most [`IO_BYTES_MAX`].
pub fn scatter_capacity(iovecs: &[IoVec]) -> usize {
    let total: u64 = iovecs.iter().map(|iovec| u64::from(iovec.len)).sum();
    total.min(u64::from(IO_BYTES_MAX)) as usize
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn memory() -> LinearMemory {
        LinearMemory::new(1, Some(1)).unwrap()
    }

    #[test]
    fn out_of_bounds_is_efault() {
        let mut memory = memory();
        let mut guest = Guest::new(Some(&mut memory));
        assert_eq!(guest.read_u32(65533), Err(Errno::Fault));
        assert_eq!(guest.write_u64(u32::MAX, 1), Err(Errno::Fault));
        assert_eq!(guest.read_bytes(65535, 2), Err(Errno::Fault));
        assert_eq!(guest.check(65536, 0), Ok(()));
        assert_eq!(guest.check(65536, 1), Err(Errno::Fault));
        let mut none = Guest::new(None);
        assert_eq!(none.read_u8(0), Err(Errno::Fault));
    }

    #[test]
    fn iovecs_are_bounded_and_checked() {
        let mut memory = memory();
        let mut guest = Guest::new(Some(&mut memory));
        assert_eq!(guest.iovecs(0, IOVECS_MAX + 1), Err(Errno::Inval));
        assert_eq!(guest.iovecs(0, u32::MAX), Err(Errno::Inval));
        // One iovec pointing past the end of memory.
        guest.write_u32(0, 65000).unwrap();
        guest.write_u32(4, 1000).unwrap();
        assert_eq!(guest.iovecs(0, 1), Err(Errno::Fault));
        guest.write_u32(4, 10).unwrap();
        assert_eq!(
            guest.iovecs(0, 1),
            Ok(vec![IoVec {
                ptr: 65000,
                len: 10
            }])
        );
    }

    #[test]
    fn gather_and_scatter_round_trip() {
        let mut memory = memory();
        let mut guest = Guest::new(Some(&mut memory));
        let iovecs = [
            IoVec { ptr: 100, len: 3 },
            IoVec { ptr: 200, len: 0 },
            IoVec { ptr: 300, len: 4 },
        ];
        assert_eq!(scatter_capacity(&iovecs), 7);
        guest.scatter(&iovecs, b"abcdefg").unwrap();
        assert_eq!(guest.gather(&iovecs).unwrap(), b"abcdefg");
        assert_eq!(guest.read_bytes(300, 4).unwrap(), b"defg");
        assert_eq!(guest.read_path(100, 3).unwrap(), "abc");
        guest.write_bytes(400, &[0xff, 0xfe]).unwrap();
        assert_eq!(guest.read_path(400, 2), Err(Errno::Ilseq));
        assert_eq!(
            guest.read_path(0, PATH_BYTES_MAX + 1),
            Err(Errno::Nametoolong)
        );
    }
}
