//! (being written)

use super::{RelayStatus, StatusError};

/// Parses this format.
pub fn parse(_body: &[u8]) -> Result<RelayStatus, StatusError> {
    Err(StatusError::Missing { format: "x", message: "not yet".into() })
}
