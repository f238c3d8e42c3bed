//! Domain errors meet gRPC here, and only here: [`ApiError::kind`] is the one classification of
//! what went wrong, and `From<ApiError> for Status` the one conversion. The caller's mistakes
//! name the field and the reason; the service's own faults are logged in full and answered
//! with a bare `Internal`.

use tonic::{Code, Status};

use crate::api::auth::{RateLimited, Unauthenticated};
use crate::core::lifecycle::LifecycleError;
use crate::core::policy::Forbidden;
use crate::core::token::IssueError;
use crate::core::token::LoginError;
use crate::state::live::AdminError;
use crate::state::store::StoreError;

/// Everything an RPC can fail with, kept as the domain said it; [`ApiError::kind`] decides
/// what the caller is told.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No profile has this name.
    #[error(transparent)]
    UnknownProfile(#[from] UnknownProfile),
    /// A request field cannot become a domain value.
    #[error(transparent)]
    Field(#[from] crate::api::convert::FieldError),
    /// A token could not be issued.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// A login link could not be made.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// An admin action could not be done.
    #[error(transparent)]
    Admin(AdminError),
    /// The call proved no caller identity.
    #[error(transparent)]
    Unauthenticated(#[from] Unauthenticated),
    /// A known caller asked for something its `[[callers]]` entry does not allow.
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// A caller is over its rate.
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// A refresh, revocation or pair could not be done.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The token store did not answer; the call fails closed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A profile name no profile has, cut by [`shown`] so an answer never echoes a huge name.
#[derive(Debug, thiserror::Error)]
#[error("profile {0:?} does not exist")]
pub struct UnknownProfile(String);

impl UnknownProfile {
    /// The error for a caller's `name`, cut as logs and answers show caller text.
    pub fn named(name: &str) -> UnknownProfile {
        UnknownProfile(shown(name).to_owned())
    }
}

/// Which gRPC answer an error gets; [`ApiError::kind`] decides, `Status` and logs follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No such profile.
    NotFound,
    /// The caller's mistake; the message names the field and the reason.
    InvalidArgument,
    /// The request is fine but the profile cannot do it.
    FailedPrecondition,
    /// No credentials, or credentials that prove nothing, or a token shown to Refresh or Revoke
    /// that is refused; the message says why.
    Unauthenticated,
    /// A known caller outside its policy; the message names the caller, RPC, profile and rule.
    PermissionDenied,
    /// A caller over its rate.
    ResourceExhausted,
    /// Our own fault; the message is logged, never sent.
    Internal,
    /// The token store cannot be reached.
    Unavailable,
}

impl Kind {
    /// The name a call's log line gives as its `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NotFound => "not_found",
            Kind::InvalidArgument => "invalid_argument",
            Kind::FailedPrecondition => "failed_precondition",
            Kind::Unauthenticated => "unauthenticated",
            Kind::PermissionDenied => "permission_denied",
            Kind::ResourceExhausted => "resource_exhausted",
            Kind::Internal => "internal",
            Kind::Unavailable => "unavailable",
        }
    }

    /// The gRPC status code of this kind.
    pub fn code(self) -> Code {
        match self {
            Kind::NotFound => Code::NotFound,
            Kind::InvalidArgument => Code::InvalidArgument,
            Kind::FailedPrecondition => Code::FailedPrecondition,
            Kind::Unauthenticated => Code::Unauthenticated,
            Kind::PermissionDenied => Code::PermissionDenied,
            Kind::ResourceExhausted => Code::ResourceExhausted,
            Kind::Internal => Code::Internal,
            Kind::Unavailable => Code::Unavailable,
        }
    }
}

impl ApiError {
    /// Whose fault the error is, and so which status it gets: the only place that decides.
    pub fn kind(&self) -> Kind {
        match self {
            ApiError::UnknownProfile(_) | ApiError::Admin(AdminError::UnknownProfile(_)) => {
                Kind::NotFound
            }
            ApiError::Field(_) | ApiError::Login(LoginError::Next(_)) => Kind::InvalidArgument,
            ApiError::Login(LoginError::NoLoginUrl { .. })
            | ApiError::Admin(AdminError::NotManaged(_) | AdminError::Reload(_)) => {
                Kind::FailedPrecondition
            }
            ApiError::Admin(AdminError::Failed(_)) => Kind::Internal,
            ApiError::Unauthenticated(_) => Kind::Unauthenticated,
            ApiError::Forbidden(_) => Kind::PermissionDenied,
            ApiError::RateLimited(_) => Kind::ResourceExhausted,
            ApiError::Store(_) => Kind::Unavailable,
            ApiError::Lifecycle(e) => match e {
                LifecycleError::NoRefresh(_) | LifecycleError::NotRevocable(_) => {
                    Kind::FailedPrecondition
                }
                LifecycleError::FamilyClaimGiven
                | LifecycleError::Empty(_)
                | LifecycleError::NoTarget => Kind::InvalidArgument,
                LifecycleError::RefreshRefused(_) | LifecycleError::TokenRefused(_) => {
                    Kind::Unauthenticated
                }
                LifecycleError::RefreshProfileGone(_) | LifecycleError::Random => Kind::Internal,
            },
            ApiError::Issue(e) | ApiError::Login(LoginError::Issue(e)) => match e {
                IssueError::VerifyOnly { .. } | IssueError::NoActiveKey { .. } => {
                    Kind::FailedPrecondition
                }
                IssueError::Sign(_) | IssueError::Clock | IssueError::KeyWindow { .. } => {
                    Kind::Internal
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
                | IssueError::TokenTooLarge { .. } => Kind::InvalidArgument,
            },
        }
    }
}

/// Caller text (a profile name, a path) as logs and answers show it: cut to 64 characters,
/// the longest a profile name can be, by slicing, so the common case allocates nothing.
pub(crate) fn shown(text: &str) -> &str {
    text.char_indices()
        .nth(64)
        .map_or(text, |(end, _)| &text[..end])
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            // The admin layer keeps the name whole; answers cut it like every other service.
            AdminError::UnknownProfile(name) => UnknownProfile::named(&name).into(),
            e => ApiError::Admin(e),
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e.kind() {
            Kind::Internal => {
                tracing::error!(error = %e, "internal error");
                Status::internal("internal error; the service log has the details")
            }
            kind => Status::new(kind.code(), e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::convert::ttl_from_proto;

    #[test]
    fn an_internal_fault_is_answered_without_its_details() {
        let cause = anyhow::anyhow!("disk full").context("writing state.json");
        let e = ApiError::from(AdminError::Failed(cause));
        assert_eq!(e.kind(), Kind::Internal);
        assert_eq!(e.to_string(), "writing state.json: disk full");
        let status = Status::from(e);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("disk"), "{}", status.message());
    }

    #[test]
    fn a_refused_reload_names_every_cause_to_the_caller() {
        let cause = anyhow::anyhow!("no such file").context("reading keys/a.pem");
        let status = Status::from(ApiError::from(AdminError::Reload(cause)));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            status.message(),
            "the configuration was not reloaded, the previous one keeps serving: reading keys/a.pem: no such file"
        );
    }

    #[test]
    fn an_unknown_profile_is_not_found_with_its_name_cut_whichever_service_is_asked() {
        let long = "p".repeat(100);
        let cut = format!("profile {:?} does not exist", "p".repeat(64));
        for e in [
            ApiError::from(AdminError::UnknownProfile(long.clone())),
            UnknownProfile::named(&long).into(),
        ] {
            assert_eq!(e.kind(), Kind::NotFound);
            let status = Status::from(e);
            assert_eq!(status.code(), Code::NotFound);
            assert_eq!(status.message(), cut);
        }
    }

    #[test]
    fn a_bad_request_field_is_an_invalid_argument_naming_the_field() {
        let negative = prost_types::Duration {
            seconds: -1,
            nanos: 0,
        };
        let e = ApiError::from(ttl_from_proto(Some(negative)).unwrap_err());
        assert_eq!(e.kind(), Kind::InvalidArgument);
        let status = Status::from(e);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "ttl: must be a positive duration");
    }
}
