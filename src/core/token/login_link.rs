//! Login links: a token issued with the profile's login lifetime and filled, with `next`,
//! into the profile's login URL. It sits beside issue because it issues; the template and the
//! `next` rule stay in [`crate::core::login`], which knows nothing of tokens or profiles.

use std::time::SystemTime;

use super::{IssueError, IssueRequest, Issued, issue};
use crate::core::login::NextError;
use crate::core::profile::{Profile, ProfileName};
use crate::core::random::Random;

/// A filled login link and the token inside it.
#[derive(Debug, Clone)]
pub struct LoginLink {
    pub url: String,
    pub issued: Issued,
}

/// Why a login link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("profile {profile:?} has no login_url")]
    NoLoginUrl { profile: ProfileName },
    #[error("next: {0}")]
    Next(#[source] NextError),
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// Issues a token with the profile's login lifetime (unless the request sets one) and wraps it,
/// with `next`, into the profile's login URL. `next` is checked before anything is signed.
pub fn issue_link(
    profile: &Profile,
    request: IssueRequest,
    next: &str,
    now: SystemTime,
    random: &Random,
) -> Result<LoginLink, LoginError> {
    let Some(template) = &profile.login_url else {
        return Err(LoginError::NoLoginUrl {
            profile: profile.name.clone(),
        });
    };
    template.check_next(next).map_err(LoginError::Next)?;
    let request = IssueRequest {
        ttl: request.ttl.or(Some(profile.login_ttl)),
        ..request
    };
    let issued = issue(profile, request, now, random)?;
    Ok(LoginLink {
        url: template.fill(&issued.token, next),
        issued,
    })
}
