//! A directory tree as data, to compare the files two runs left behind.
//! Included by path by the file tests of `ferrite-wasi`, `ferrite-process`
//! and `ferrite-cli`.

use std::{fs, path::Path};

/// Every file and directory below a directory: its path below it, and the
/// contents of a file (`None` for a directory), sorted by path.
pub type Tree = Vec<(String, Option<Vec<u8>>)>;

/// The tree below `root`.
///
/// # Panics
/// If a directory or file cannot be read.
pub fn tree(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        for entry in fs::read_dir(dir).expect("a readable directory") {
            let path = entry.expect("a readable entry").path();
            let name = path
                .strip_prefix(root)
                .expect("below the root")
                .display()
                .to_string();
            if path.is_dir() {
                out.push((name, None));
                walk(root, &path, out);
            } else {
                out.push((name, Some(fs::read(&path).expect("a readable file"))));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}
