//! Errors a user can fix (bad input or usage) are `InputError`: the CLI exits with code 2 and
//! prints the one-line message. Anything else is an internal failure (exit code 1).

use std::fmt;

/// A user-fixable error (bad input or usage): the CLI prints its message and exits with code 2.
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

/// An `InputError` with message `msg`, wrapped in anyhow.
pub fn input_error(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InputError(msg.into()))
}
