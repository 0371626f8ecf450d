//! Durable files: every result file and checkpoint is written to a temporary sibling, synced,
//! and renamed over its name, so a crash never leaves a half-written file under the final name.

/// Write a file atomically: a temporary sibling, then a rename, so a crash never leaves a
/// half-written file under the final name.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    write_atomic_with(path, |tmp| std::fs::write(tmp, bytes).with_context(|| format!("writing {}", tmp.display())))
}

/// Atomic write through a writer of our choice: `write` fills a temporary sibling of `path`;
/// it is then flushed to disk (fsync), renamed over `path`, and the folder is synced so the
/// rename itself survives a power loss. A crash at any point leaves the old file or the new one.
pub fn write_atomic_with(path: &std::path::Path, write: impl FnOnce(&std::path::Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    use anyhow::Context;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    write(&tmp)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Best effort: not every filesystem lets a directory be opened for syncing.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}
