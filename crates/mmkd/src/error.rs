//! Errors a user can fix (bad input or usage) are `InputError`: the CLI exits with code 2 and
//! prints the one-line message. Anything else is an internal failure (exit code 1).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// `bail_input!("{}: ...", path)` returns an `InputError` wrapped in anyhow.
#[macro_export]
macro_rules! bail_input {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::error::InputError(format!($($arg)*))))
    };
}

pub fn input_error(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InputError(msg.into()))
}

/// Write a file atomically: a temporary sibling, then a rename, so a crash never leaves a
/// half-written file under the final name.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
