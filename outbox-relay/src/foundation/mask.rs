//! Connection URLs with their passwords hidden, for logs and errors.

/// Returns `url` with any password replaced by `***`; text that is not a URL is returned
/// without its `user:password@` part.
pub fn mask_url(url: &str) -> String {
    // A password with an unencoded `@` (or `/`) splits the URL where a parser does not
    // expect: everything up to the last `@` goes, user name included.
    if let Some((start, at)) = ambiguous_userinfo(url) {
        return format!("{}***@{}", &url[..start], mask_url_tail(&url[at + 1..]));
    }
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
                return "<unprintable url>".to_owned();
            }
            // Postgres also takes the password as a query parameter.
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    if k.eq_ignore_ascii_case("password") {
                        (k.into_owned(), "***".to_owned())
                    } else {
                        (k.into_owned(), v.into_owned())
                    }
                })
                .collect();
            if !pairs.is_empty() {
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}***@{}", &url[..scheme_end + 3], &url[at + 1..])
            }
            _ => url.to_owned(),
        },
    }
}

/// The user-info span (from after `://` to its last `@`) of a URL whose user-info holds an
/// unencoded `@`, which parsers split at the first `@` (so part of the password would
/// show as a host or path); `None` for a URL with at most one `@` before its query.
fn ambiguous_userinfo(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let end = url[start..]
        .find(['?', '#'])
        .map_or(url.len(), |i| start + i);
    let region = &url[start..end];
    (region.matches('@').count() > 1).then(|| (start, start + region.rfind('@').unwrap_or(0)))
}

/// The host-and-path part of a URL (after its user-info), with a query's password masked.
fn mask_url_tail(tail: &str) -> String {
    match mask_url(&format!("x://{tail}")).strip_prefix("x://") {
        Some(masked) => masked.to_owned(),
        None => tail.to_owned(),
    }
}

/// Hides every occurrence of `secret` in `text` (errors from client libraries sometimes
/// echo the URL they were given).
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        text = text.replace(secret.as_str(), "***");
    }
    text
}

/// The password of a URL, if it has one (to pass to [`redact`]).
pub fn password_of(url: &str) -> Option<String> {
    if let Some((start, at)) = ambiguous_userinfo(url) {
        let userinfo = &url[start..at];
        return userinfo
            .find(':')
            .map(|colon| userinfo[colon + 1..].to_owned());
    }
    let parsed = url::Url::parse(url).ok()?;
    let from_userinfo = parsed.password().map(percent_decode);
    from_userinfo.or_else(|| {
        parsed
            .query_pairs()
            .find(|(k, _)| k.eq_ignore_ascii_case("password"))
            .map(|(_, v)| v.into_owned())
    })
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords_in_every_form() {
        assert_eq!(
            mask_url("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            mask_url("postgres://app:pa%40ss@db:5432/main?sslmode=require"),
            "postgres://app:***@db:5432/main?sslmode=require"
        );
        assert!(!mask_url("postgres://db/main?user=app&password=hunter2").contains("hunter2"));
        assert_eq!(
            mask_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert!(!mask_url("not a url://user:hunter2@host").contains("hunter2"));
    }

    #[test]
    fn a_password_with_an_unencoded_at_or_slash_is_hidden_whole() {
        let url = "amqp://u:S3c@ret/Pw@127.0.0.1:5672/v";
        let masked = mask_url(url);
        assert_eq!(masked, "amqp://***@127.0.0.1:5672/v");
        for part in ["S3c", "ret", "Pw"] {
            assert!(!masked.contains(part), "{masked}");
        }
        assert_eq!(password_of(url).as_deref(), Some("S3c@ret/Pw"));
        let with_query = mask_url("postgres://a:b@c@db/main?password=hunter2&sslmode=require");
        assert!(
            !with_query.contains("hunter2") && !with_query.contains("b@c"),
            "{with_query}"
        );
        assert!(with_query.ends_with("sslmode=require"), "{with_query}");
    }

    #[test]
    fn redacts_decoded_passwords_from_error_text() {
        let secret = password_of("postgres://app:pa%40ss@db/main").unwrap_or_default();
        assert_eq!(secret, "pa@ss");
        assert_eq!(
            redact("auth failed for pa@ss", &[secret]),
            "auth failed for ***"
        );
    }
}
