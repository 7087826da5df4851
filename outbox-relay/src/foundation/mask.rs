//! Connection URLs with their passwords hidden, for logs and errors.

/// Returns `url` with any password replaced by `***`; text that is not a URL is returned
/// without its `user:password@` part.
pub fn mask_url(url: &str) -> String {
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
    fn redacts_decoded_passwords_from_error_text() {
        let secret = password_of("postgres://app:pa%40ss@db/main").unwrap_or_default();
        assert_eq!(secret, "pa@ss");
        assert_eq!(
            redact("auth failed for pa@ss", &[secret]),
            "auth failed for ***"
        );
    }
}
