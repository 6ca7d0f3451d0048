//! Files the tests read from the repository: the real challenge frames in
//! `tests/data/` and the golden outputs in `tests/golden/`.

use std::path::{Path, PathBuf};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A file of real challenge frames in `tests/data/` (see its README).
#[track_caller]
pub fn data_path(name: &str) -> PathBuf {
    let path = repo("tests/data").join(name);
    assert!(path.is_file(), "test data {} is missing", path.display());
    path
}

/// The bytes of [`data_path`].
#[track_caller]
pub fn data_file(name: &str) -> Vec<u8> {
    read(&data_path(name))
}

/// A golden output in `tests/golden/`.
#[track_caller]
pub fn golden(name: &str) -> String {
    let path = repo("tests/golden").join(name);
    String::from_utf8(read(&path)).expect("golden files are UTF-8")
}

#[track_caller]
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
