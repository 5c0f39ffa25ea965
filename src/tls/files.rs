//! Crash-safe writes for generated certificate files.
//!
//! A file is written to a temporary sibling, synced, and renamed over the target, so a
//! reader (or the next start after a crash) sees either the old file or the new one,
//! never a torn PEM. Private keys are created with mode 0600 from the first byte.

use anyhow::Context;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Who may read a written file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Certificates: public by nature (mode 0644).
    Public,
    /// Private keys: owner only (mode 0600).
    Private,
}

impl Access {
    #[cfg(unix)]
    fn mode(self) -> u32 {
        match self {
            Access::Public => 0o644,
            Access::Private => 0o600,
        }
    }
}

/// Writes `contents` to `path` atomically (temporary file + fsync + rename + directory fsync).
pub(crate) fn write_atomic(path: &Path, contents: &[u8], access: Access) -> anyhow::Result<()> {
    let dir = path.parent().with_context(|| {
        format!(
            "cannot write {}: it has no parent directory",
            path.display()
        )
    })?;
    let file_name = path
        .file_name()
        .with_context(|| format!("cannot write {}: it has no file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    // A stale temporary file from a crashed run could carry a looser mode; start afresh.
    let _ = fs::remove_file(&tmp);

    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(access.mode());
    }
    let result = (|| {
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        set_mode(&file, access).with_context(|| format!("cannot set mode of {}", tmp.display()))?;
        file.write_all(contents)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        anyhow::Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir);
    Ok(())
}

/// Makes `path` owner-only if it is readable by group or others; returns whether it changed.
///
/// Used on reused key files, which an operator may have copied around with a looser mode.
pub(crate) fn tighten_key_mode(path: &Path) -> anyhow::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot chmod 600 {}", path.display()))?;
            return Ok(true);
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(false)
}

/// The umask may have narrowed the creation mode; set it exactly.
fn set_mode(file: &fs::File, access: Access) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(access.mode()))?;
    }
    #[cfg(not(unix))]
    let _ = (file, access);
    Ok(())
}

/// Persists the rename itself; best effort, as some filesystems refuse to open directories.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}
