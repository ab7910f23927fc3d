//! `WebFetch(domain:..)`: the domain of a rule, the host of a URL, and whether one lies
//! within the other.
//!
//! The URL reader is deliberately narrow: it accepts `http` and `https` URLs whose host is
//! plain ASCII letters, digits, dots and hyphens, and reads anything else (percent-escapes,
//! IP literals, international names, no scheme) as a host it cannot name.

use super::RuleProblem;

/// The domain of a `domain:` specifier, lowercased and without a trailing dot.
pub(super) fn parse(text: &str) -> Result<String, RuleProblem> {
    let domain = text.trim().trim_end_matches('.').to_ascii_lowercase();
    if is_host(&domain) {
        Ok(domain)
    } else {
        Err(RuleProblem::BadDomain {
            domain: super::shown(text),
        })
    }
}

/// The host of an `http`/`https` URL, lowercased and without a trailing dot; `None` when
/// the URL is not one this reader can vouch for.
///
/// The authority ends at the first `/`, `?`, `#` or `\` (browsers read a backslash as a
/// slash), credentials end at the last `@`, and a port must be digits.
pub(super) fn host(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let authority = rest.split(['/', '?', '#', '\\']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return None,
        None => host_port,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    is_host(&host).then_some(host)
}

/// Whether `host` is `domain` or one of its subdomains (`docs.example.com` is within
/// `example.com`; `evil-example.com` is not).
pub(super) fn within(host: &str, domain: &str) -> bool {
    host.strip_suffix(domain)
        .is_some_and(|head| head.is_empty() || head.ends_with('.'))
}

/// Dot-separated non-empty labels of ASCII lowercase letters, digits and hyphens.
fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}
