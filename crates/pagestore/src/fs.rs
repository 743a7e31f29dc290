//! The file-system seam under [`LocalStore`](crate::LocalStore): the few calls
//! the local backend makes, so that a simulated file system (`ferrite-sim`) can
//! stand in for the real one and decide what a power loss keeps.
//!
//! The real one, [`StdFs`], is a zero-sized type and every call is a direct
//! `std::fs` call; `LocalStore` is generic over the seam (default `StdFs`), so
//! the read path (`pread` on a cached handle) costs what it did without it.

use std::{
    fmt,
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::Path,
};

/// An open file: positioned reads and writes, its length, and `fsync`.
pub trait FileHandle: fmt::Debug + Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset`.
    ///
    /// # Errors
    /// I/O errors, and `UnexpectedEof` past the end.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset`.
    ///
    /// # Errors
    /// I/O errors.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// The length in bytes.
    ///
    /// # Errors
    /// I/O errors.
    fn size(&self) -> io::Result<u64>;

    /// Makes the contents durable (`fsync`), not the name.
    ///
    /// # Errors
    /// I/O errors; after one, nothing written through any descriptor of the file
    /// is known to be durable.
    fn sync(&self) -> io::Result<()>;
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

/// The file-system calls of [`LocalStore`](crate::LocalStore).
pub trait FileSystem: fmt::Debug + Send + Sync {
    /// An open file of this file system.
    type File: FileHandle;

    /// Creates `path` for reading and writing; fails with `AlreadyExists` if the
    /// name exists (`O_CREAT | O_EXCL`).
    ///
    /// # Errors
    /// I/O errors.
    fn create_new(&self, path: &Path) -> io::Result<Self::File>;

    /// Opens the existing file `path` for reading.
    ///
    /// # Errors
    /// `NotFound` and other I/O errors.
    fn open(&self, path: &Path) -> io::Result<Self::File>;

    /// Creates the directory `path` (one level); `AlreadyExists` if it exists,
    /// `NotFound` if its parent does not.
    ///
    /// # Errors
    /// I/O errors.
    fn mkdir(&self, path: &Path) -> io::Result<()>;

    /// Makes the entries of directory `path` durable (`fsync` of the directory).
    ///
    /// # Errors
    /// I/O errors.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Gives the file `source` the second name `target`; `AlreadyExists` if
    /// `target` exists.
    ///
    /// # Errors
    /// I/O errors.
    fn link(&self, source: &Path, target: &Path) -> io::Result<()>;

    /// Renames `source` to `target`, replacing it.
    ///
    /// # Errors
    /// I/O errors.
    fn rename(&self, source: &Path, target: &Path) -> io::Result<()>;

    /// Removes the name `path` of a file.
    ///
    /// # Errors
    /// `NotFound` and other I/O errors.
    fn unlink(&self, path: &Path) -> io::Result<()>;

    /// The entries of directory `path`, in no particular order.
    ///
    /// # Errors
    /// `NotFound` and other I/O errors.
    fn list(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
}

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

impl FileHandle for File {
    #[inline]
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn sync(&self) -> io::Result<()> {
        self.sync_all()
    }
}

impl FileSystem for StdFs {
    type File = File;

    fn create_new(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        File::open(path)
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn link(&self, source: &Path, target: &Path) -> io::Result<()> {
        fs::hard_link(source, target)
    }

    fn rename(&self, source: &Path, target: &Path) -> io::Result<()> {
        fs::rename(source, target)
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            entries.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                is_dir: entry.file_type()?.is_dir(),
            });
        }
        Ok(entries)
    }
}
