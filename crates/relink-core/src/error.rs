//! Errors of the core: configuration that does not make sense.

use alloc::string::String;

/// A configuration value was rejected; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `field` holds a value outside what it allows; `reason` says what.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The configuration field, as spelled in serde config (e.g. `max_delay`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// The field this error is about.
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::Invalid { field, .. } => field,
        }
    }
}
