//! Domain errors meet gRPC here, and only here: the one mapping from what went wrong to a
//! `tonic::Status`. The caller's mistakes name the field and the reason; the service's own
//! faults are logged in full and answered with a bare `Internal`.

use tonic::Status;

use crate::core::token::IssueError;
use crate::core::token::LoginError;
use crate::state::live::AdminError;

/// Everything an RPC can fail with, in the service's words.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No profile has this name.
    #[error("profile {0:?} does not exist")]
    UnknownProfile(String),
    /// A request field is wrong; the message starts with the field name.
    #[error("{0}")]
    InvalidArgument(String),
    /// The profile cannot do what was asked.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The service failed; the message is logged, never sent.
    #[error("{0}")]
    Internal(String),
}

/// Caller text (a profile name, a path) as logs and answers show it: cut to 64 characters,
/// the longest a profile name can be, by slicing, so the common case allocates nothing.
pub(crate) fn shown(text: &str) -> &str {
    text.char_indices()
        .nth(64)
        .map_or(text, |(end, _)| &text[..end])
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::VerifyOnly { .. } | IssueError::NoActiveKey { .. } => {
                ApiError::FailedPrecondition(e.to_string())
            }
            IssueError::Sign(_) | IssueError::Clock | IssueError::KeyWindow { .. } => {
                ApiError::Internal(e.to_string())
            }
            IssueError::EmptySubject
            | IssueError::SubjectTooLong(_)
            | IssueError::ReservedClaim { .. }
            | IssueError::ClaimsTooLarge { .. }
            | IssueError::TtlTooLong { .. }
            | IssueError::TtlTooShort
            | IssueError::AudienceOverrideNotAllowed { .. }
            | IssueError::EmptyAudience
            | IssueError::MissingRequiredClaim(_)
            | IssueError::TokenTooLarge { .. } => ApiError::InvalidArgument(e.to_string()),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::NoLoginUrl { .. } => ApiError::FailedPrecondition(e.to_string()),
            LoginError::Next(_) => ApiError::InvalidArgument(e.to_string()),
            LoginError::Issue(e) => e.into(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::UnknownProfile(name) => ApiError::UnknownProfile(shown(&name).to_owned()),
            AdminError::NotManaged(_) | AdminError::Reload(_) => {
                ApiError::FailedPrecondition(e.to_string())
            }
            AdminError::Failed(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::api::convert::FieldError> for ApiError {
    fn from(e: crate::api::convert::FieldError) -> Self {
        ApiError::InvalidArgument(e.to_string())
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::UnknownProfile(_) => Status::not_found(e.to_string()),
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error; the service log has the details")
            }
        }
    }
}
