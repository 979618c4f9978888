//! The crate's error: a message that names the cause and, where there is one, the fix.

use std::fmt;

/// An error from this crate, already worded for a person: what failed, why, and how to fix it.
#[derive(Debug)]
pub struct Error(String);

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Return early with an [`Error`] formatted like `format!`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::new(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// Adds what was being done to an error from a lower layer (`io`, `der`, `rsa`, ...).
pub(crate) trait Context<T> {
    /// `"<message>: <cause>"`.
    fn context(self, message: impl fmt::Display) -> Result<T>;
    /// Like [`Context::context`], the message built only on error.
    fn with_context<M: fmt::Display>(self, message: impl FnOnce() -> M) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, message: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error(format!("{message}: {e}")))
    }
    fn with_context<M: fmt::Display>(self, message: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", message())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_puts_what_was_done_before_the_cause() {
        let r: std::result::Result<(), std::io::Error> =
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        let e = r.context("reading a.sys").unwrap_err();
        assert_eq!(e.to_string(), "reading a.sys: gone");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert_eq!(boxed.to_string(), "reading a.sys: gone");
    }
}
