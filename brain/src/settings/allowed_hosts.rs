//! The persisted Host-header allow-list (`~/.z4j/allowed-hosts`): managed
//! by `z4j allowed-hosts`, re-read live by the Host validation layer.

use std::path::{Path, PathBuf};

/// Where `z4j allowed-hosts` keeps the list.
pub fn path(home: &Path) -> PathBuf {
    home.join("allowed-hosts")
}

/// Entries of the persisted list (`#` comments and blank lines skipped).
pub fn read(path: &Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Replaces the list atomically (temporary file, then rename).
pub fn write(home: &Path, path: &Path, hosts: &[String]) -> std::io::Result<()> {
    std::fs::create_dir_all(home)?;
    let tmp = path.with_extension("tmp");
    let mut text = String::from(
        "# Host headers this brain accepts, one per line (managed by `z4j allowed-hosts`).\n",
    );
    for h in hosts {
        text.push_str(h);
        text.push('\n');
    }
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
