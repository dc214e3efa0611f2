//! The API's own error answers (§3.5): `{"error": message, "code": code}` with an HTTP status.

#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn public(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "SoftLayer_Exception_Public", message)
    }

    pub(crate) fn invalid_value(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "SoftLayer_Exception_InvalidValue", message)
    }

    /// SLDN's message for an unknown id (§3.5), with HTTP 404.
    pub(crate) fn not_found(id: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            404,
            "SoftLayer_Exception_ObjectNotFound",
            format!("Unable to find object with id of '{id}'."),
        )
    }

    /// The web server's answer to a path that names no service.
    pub(crate) fn no_service() -> ApiError {
        ApiError::new(404, "SoftLayer_Exception_Public", "Service does not exist")
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "SoftLayer_Exception_WebService_BadRequest", message)
    }

    /// A real API method that this local portal does not implement: a loud failure, so a
    /// test never passes on a made-up answer.
    pub(crate) fn not_implemented(service: &str, method: &str) -> ApiError {
        ApiError::new(
            500,
            "SoftLayer_Exception_NotImplemented",
            format!(
                "local test portal: {service}::{method} is a real method but is not implemented here"
            ),
        )
    }
}
