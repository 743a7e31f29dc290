//! Where the store is, and how the inspection subcommands read it.
//!
//! The store is the directory given with `--store PATH`, else `$FERRITE_STORE`,
//! else `ferrite` in the user's data directory: `$XDG_DATA_HOME/ferrite`, or
//! `$HOME/.local/share/ferrite`.

use ferrite_pagestore::{check_key, StorageBackend, StorageError};
use std::{
    env,
    ffi::OsString,
    fs::{self, File},
    io::{self, Read, Seek, SeekFrom},
    ops::Range,
    path::{Path, PathBuf},
};

/// The store directory inside the user's data directory.
const STORE_DIR_NAME: &str = "ferrite";

/// Prefix of the temporary names `LocalStore::put_new` writes before linking an
/// object to its final name; they are not objects.
const TEMP_PREFIX: &str = ".tmp-";

/// The store directory: `option` (the `--store` value) if given, else
/// `$FERRITE_STORE`, else `$XDG_DATA_HOME/ferrite`, else
/// `$HOME/.local/share/ferrite`. Empty variables count as unset, and so does a
/// relative `$XDG_DATA_HOME`, as the XDG base-directory specification says.
///
/// Nothing is created or checked on the file system.
///
/// # Errors
/// An empty `--store`, or no variable to derive the directory from.
pub(crate) fn store_root(option: Option<&Path>) -> Result<PathBuf, String> {
    resolve(option, |name| env::var_os(name))
}

fn resolve(
    option: Option<&Path>,
    var: impl Fn(&str) -> Option<OsString>,
) -> Result<PathBuf, String> {
    if let Some(path) = option {
        if path.as_os_str().is_empty() {
            return Err("--store needs a directory, not an empty path".into());
        }
        return Ok(path.to_path_buf());
    }
    let set = |name| {
        var(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    if let Some(path) = set("FERRITE_STORE") {
        return Ok(path);
    }
    if let Some(data) = set("XDG_DATA_HOME").filter(|path| path.is_absolute()) {
        return Ok(data.join(STORE_DIR_NAME));
    }
    if let Some(home) = set("HOME") {
        return Ok(home.join(".local/share").join(STORE_DIR_NAME));
    }
    Err("cannot find the store: give --store PATH, or set FERRITE_STORE or HOME".into())
}

/// A local store directory opened for inspection: reads, lists and deletes
/// objects, never writes them.
///
/// `LocalStore::open` is not used here because it is a writer's open: it
/// creates the directory and removes every temporary file in the store, which
/// includes the object a running process is writing at that moment (its
/// `put_new` would then fail and poison that runner). Inspection must be
/// harmless to the processes it looks at. The key-to-file mapping is the one of
/// `LocalStore` (`docs/format.md`): one file per object, `/` as directory
/// separator.
#[derive(Debug)]
pub(crate) struct StoreDir {
    root: PathBuf,
}

impl StoreDir {
    /// The store at `root`, or `None` if the directory does not exist (a store
    /// with no objects).
    ///
    /// # Errors
    /// If `root` exists but is not a readable directory.
    pub(crate) fn open(root: &Path) -> Result<Option<Self>, String> {
        match fs::metadata(root) {
            Ok(meta) if meta.is_dir() => Ok(Some(Self {
                root: root.to_path_buf(),
            })),
            Ok(_) => Err(format!("store {} is not a directory", root.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read store {}: {e}", root.display())),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// The size in bytes of object `key`, or `None` if it does not exist (for
    /// example because a running process collected it since it was listed).
    ///
    /// # Errors
    /// An invalid key, or a failure other than a missing file.
    pub(crate) fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match fs::metadata(self.path(key)?) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(key, e)),
        }
    }

    /// Removes the temporary files and empty directories left below `prefix`
    /// (a process prefix, `procs/NAME/`) once its objects are deleted. Only for
    /// a process whose lock the caller holds: its temporaries then belong to
    /// writers that are gone. Best effort: what remains is harmless, as it is
    /// not an object.
    pub(crate) fn prune(&self, prefix: &str) {
        if check_key(prefix.trim_end_matches('/')).is_ok() {
            prune_dir(&self.root.join(prefix));
        }
    }
}

fn prune_dir(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                prune_dir(&entry.path());
            } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

impl StorageBackend for StoreDir {
    fn put_new(&self, key: &str, _bytes: &[u8]) -> Result<(), StorageError> {
        // Only `rm` deletes through this view; nothing here creates objects.
        Err(StorageError::Io {
            key: key.to_string(),
            source: io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the store is open for inspection only",
            ),
        })
    }

    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>, StorageError> {
        let mut file = File::open(self.path(key)?).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound {
                key: key.to_string(),
            },
            _ => StorageError::io(key, e),
        })?;
        let mut bytes = Vec::new();
        match range {
            None => file.read_to_end(&mut bytes),
            Some(range) => {
                file.seek(SeekFrom::Start(range.start))
                    .map_err(|e| StorageError::io(key, e))?;
                file.take(range.end.saturating_sub(range.start))
                    .read_to_end(&mut bytes)
            }
        }
        .map_err(|e| StorageError::io(key, e))?;
        Ok(bytes)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        ferrite_pagestore::list_keys(&self.root, prefix)
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        StoreDir::size(self, key)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        match fs::remove_file(self.path(key)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn resolve_with(option: Option<&str>, vars: &[(&str, &str)]) -> Result<PathBuf, String> {
        resolve(option.map(Path::new), |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        })
    }

    #[test]
    fn the_option_wins_then_ferrite_store_then_xdg_then_home() {
        let all = [
            ("FERRITE_STORE", "/env/store"),
            ("XDG_DATA_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        let path = |p: &str| Ok(PathBuf::from(p));
        assert_eq!(resolve_with(Some("/opt"), &all), path("/opt"));
        assert_eq!(resolve_with(None, &all), path("/env/store"));
        assert_eq!(resolve_with(None, &all[1..]), path("/xdg/ferrite"));
        assert_eq!(
            resolve_with(None, &all[2..]),
            path("/home/u/.local/share/ferrite")
        );
        assert!(resolve_with(None, &[]).is_err());
    }

    #[test]
    fn empty_and_relative_values_are_ignored() {
        let vars = [
            ("FERRITE_STORE", ""),
            ("XDG_DATA_HOME", "relative"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            resolve_with(None, &vars),
            Ok(PathBuf::from("/h/.local/share/ferrite"))
        );
        assert!(resolve_with(Some(""), &vars).is_err());
    }
}
