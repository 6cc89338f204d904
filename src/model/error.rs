//! The single error type at the model boundary.

/// Why a webhook body could not be decoded, and where: `path` is the JSON path that failed
/// (e.g. `data[3].metadata.start_time`, or `.` for the document itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode Terra payload at {path}: {message}")]
pub struct DecodeError {
    /// JSON path of the value that failed.
    pub path: String,
    /// What was wrong with it (serde_json's message, with line and column).
    pub message: String,
}

impl DecodeError {
    pub(crate) fn from_path_error(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        DecodeError {
            path,
            message: err.into_inner().to_string(),
        }
    }
}
