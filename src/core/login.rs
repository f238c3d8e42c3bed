//! The login URL template, parsed once at start-up, filled per call; and the `next` rule that
//! keeps login links from becoming open redirects.
//!
//! Issuing a link is [`crate::core::token::issue_link`]'s job. This module imports nothing
//! from the rest of the core, so a [`Profile`](crate::core::profile::Profile) can hold a
//! parsed [`LoginUrl`] without the template depending back on profiles or tokens.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::{Origin, Url};

/// Everything but RFC 3986 unreserved characters is encoded, so a value stays one query value.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Token,
    Next,
}

/// A login URL template such as `https://host/sso-auto-login/?token={token}&next={next}`,
/// with the origins an absolute `next` may point to.
#[derive(Debug, Clone)]
pub struct LoginUrl {
    parts: Vec<Part>,
    allowed_next_origins: Vec<Origin>,
}

/// Why a template or its origin list was refused at start-up.
#[derive(Debug, thiserror::Error)]
pub enum LoginUrlConfigError {
    #[error("login_url must contain {{token}} exactly once (found it {0} times)")]
    TokenCount(usize),
    #[error("login_url has an unknown placeholder {{{0}}}; only {{token}} and {{next}} exist")]
    UnknownPlaceholder(String),
    #[error("login_url has an unmatched brace at byte {0}")]
    UnmatchedBrace(usize),
    #[error("login_url is not an absolute http(s) URL: {0}")]
    NotHttpUrl(String),
    #[error(
        "allowed_next_origins entry {0:?} is not an origin like \"https://host[:port]\" (no path, query or user)"
    )]
    BadOrigin(String),
}

/// Why a request's `next` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NextError {
    #[error(
        "must be a relative path starting with a single \"/\" or an absolute URL whose origin is in the profile's allowed_next_origins"
    )]
    NotAllowed,
    #[error("contains a backslash, whitespace or a control character")]
    BadCharacter,
    #[error("the origin {0} is not in the profile's allowed_next_origins")]
    OriginNotAllowed(String),
    #[error("the profile's login_url has no {{next}} placeholder")]
    NoPlaceholder,
    #[error("is longer than 2048 bytes")]
    TooLong,
}

impl LoginUrl {
    /// Parses a template with `{token}` exactly once and `{next}` any number of times, and the
    /// origins an absolute `next` may point to.
    pub fn parse(
        template: &str,
        allowed_next_origins: &[String],
    ) -> Result<LoginUrl, LoginUrlConfigError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        let mut offset = 0;
        while let Some(i) = rest.find(['{', '}']) {
            if rest.as_bytes()[i] == b'}' {
                return Err(LoginUrlConfigError::UnmatchedBrace(offset + i));
            }
            let close = rest[i..]
                .find('}')
                .ok_or(LoginUrlConfigError::UnmatchedBrace(offset + i))?;
            let name = &rest[i + 1..i + close];
            literal.push_str(&rest[..i]);
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(match name {
                "token" => Part::Token,
                "next" => Part::Next,
                other => return Err(LoginUrlConfigError::UnknownPlaceholder(other.to_owned())),
            });
            offset += i + close + 1;
            rest = &rest[i + close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let tokens = parts.iter().filter(|p| **p == Part::Token).count();
        if tokens != 1 {
            return Err(LoginUrlConfigError::TokenCount(tokens));
        }
        let login = LoginUrl {
            parts,
            allowed_next_origins: Vec::new(),
        };
        let sample = login.fill("t", "/");
        match Url::parse(&sample) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            Ok(url) => {
                return Err(LoginUrlConfigError::NotHttpUrl(format!(
                    "scheme {:?}",
                    url.scheme()
                )));
            }
            Err(e) => return Err(LoginUrlConfigError::NotHttpUrl(e.to_string())),
        }
        let allowed_next_origins = allowed_next_origins
            .iter()
            .map(|o| parse_origin(o))
            .collect::<Result<_, _>>()?;
        Ok(LoginUrl {
            allowed_next_origins,
            ..login
        })
    }

    /// Whether the template has a `{next}` placeholder.
    pub fn takes_next(&self) -> bool {
        self.parts.contains(&Part::Next)
    }

    /// Checks a request's `next`: empty, a relative path, or an absolute URL on an allowed origin.
    pub fn check_next(&self, next: &str) -> Result<(), NextError> {
        if next.is_empty() {
            return Ok(());
        }
        if !self.takes_next() {
            return Err(NextError::NoPlaceholder);
        }
        if next.len() > 2048 {
            return Err(NextError::TooLong);
        }
        // Browsers read "\" as "/" and drop tabs and newlines, so "/\evil.com" and "/\t/evil.com"
        // would leave the site; refusing them outright is simpler than normalising like a browser.
        if next
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
        {
            return Err(NextError::BadCharacter);
        }
        if next.starts_with('/') {
            if next.starts_with("//") {
                return Err(NextError::NotAllowed);
            }
            return Ok(());
        }
        let url = Url::parse(next).map_err(|_| NextError::NotAllowed)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NextError::NotAllowed);
        }
        let origin = url.origin();
        if self.allowed_next_origins.contains(&origin) {
            Ok(())
        } else {
            Err(NextError::OriginNotAllowed(origin.ascii_serialization()))
        }
    }

    /// The link: the template with `token` and `next` percent-encoded into it.
    pub fn fill(&self, token: &str, next: &str) -> String {
        let mut out = String::with_capacity(128 + token.len() + next.len() * 3);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Token => out.extend(utf8_percent_encode(token, COMPONENT)),
                Part::Next => out.extend(utf8_percent_encode(next, COMPONENT)),
            }
        }
        out
    }
}

fn parse_origin(text: &str) -> Result<Origin, LoginUrlConfigError> {
    let bad = || LoginUrlConfigError::BadOrigin(text.to_owned());
    let url = Url::parse(text).map_err(|_| bad())?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    let no_user = url.username().is_empty() && url.password().is_none();
    if !matches!(url.scheme(), "http" | "https") || !bare || !no_user {
        return Err(bad());
    }
    Ok(url.origin())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seatable() -> LoginUrl {
        LoginUrl::parse(
            "https://cloud.seatable.io/sso-auto-login/?token={token}&next={next}",
            &["https://cloud.seatable.io".to_owned()],
        )
        .unwrap()
    }

    #[test]
    fn fill_percent_encodes_token_and_next() {
        let url = seatable().fill("a.b-c_d", "/dtable/1?x=1&y=2");
        assert_eq!(
            url,
            "https://cloud.seatable.io/sso-auto-login/?token=a.b-c_d&next=%2Fdtable%2F1%3Fx%3D1%26y%3D2"
        );
    }

    #[test]
    fn next_rules_refuse_open_redirects() {
        let login = seatable();
        for ok in [
            "",
            "/",
            "/workspace/1",
            "https://cloud.seatable.io/x",
            "https://cloud.seatable.io:443/y",
        ] {
            assert_eq!(login.check_next(ok), Ok(()), "{ok}");
        }
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https://evil.com/",
            "https://cloud.seatable.io.evil.com/",
            "https://cloud.seatable.io@evil.com/",
            "http://cloud.seatable.io/",
            "javascript:alert(1)",
            "evil.com",
            "/\t/evil.com",
            "https://cloud.seatable.io:8443/",
        ] {
            assert!(login.check_next(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_are_checked_at_start_up() {
        assert!(matches!(
            LoginUrl::parse("https://h/?t={token}{token}", &[]),
            Err(LoginUrlConfigError::TokenCount(2))
        ));
        assert!(matches!(
            LoginUrl::parse("https://h/?n={next}", &[]),
            Err(LoginUrlConfigError::TokenCount(0))
        ));
        assert!(matches!(
            LoginUrl::parse("https://h/?t={tok}", &[]),
            Err(LoginUrlConfigError::UnknownPlaceholder(_))
        ));
        assert!(matches!(
            LoginUrl::parse("https://h/?t={token", &[]),
            Err(LoginUrlConfigError::UnmatchedBrace(_))
        ));
        assert!(matches!(
            LoginUrl::parse("ftp://h/?t={token}", &[]),
            Err(LoginUrlConfigError::NotHttpUrl(_))
        ));
        assert!(matches!(
            LoginUrl::parse("https://h/?t={token}", &["https://h/path".to_owned()]),
            Err(LoginUrlConfigError::BadOrigin(_))
        ));
        assert!(
            LoginUrl::parse(
                "https://h/?t={token}",
                &["https://h:8443".to_owned(), "https://h/".to_owned()]
            )
            .is_ok()
        );
    }
}
