//! Output folders written so that a crash never leaves a half-written folder in place: a
//! temporary sibling first, then a rename (single files go through `crate::output::write_atomic`).
use std::io;
use std::path::{Path, PathBuf};

fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = format!(".{}.{tag}-{}", name.unwrap_or_default(), std::process::id());
    path.with_file_name(name)
}

/// Fills a temporary sibling folder of `dest` with `fill`, then puts it at `dest`. An existing
/// `dest` is replaced only when `force` (moved aside first, removed once the new one is in place).
pub fn write_dir<E: From<io::Error>>(
    dest: &Path,
    force: bool,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    if dest.exists() && !force {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists; pass --force to replace it", dest.display()),
        )
        .into());
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = sibling(dest, "tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir(&tmp)?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let old = sibling(dest, "old");
    let moved = dest.exists();
    if moved {
        std::fs::rename(dest, &old)?;
    }
    std::fs::rename(&tmp, dest)?;
    if moved {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}
