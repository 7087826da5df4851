//! What a failed database call means for an operator: the cause in a few words and what to
//! do about it, without the driver's repeated chains or the server's source line numbers.

use std::io::ErrorKind;

/// One line: the cause of `error` and, where one exists, what to do.
pub fn database(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => {
                "connection refused: is PostgreSQL running and listening at that host and port?"
                    .to_owned()
            }
            ErrorKind::TimedOut => {
                "connection timed out: is the host reachable (firewall, address)?".to_owned()
            }
            // Not a host name that does not resolve (that is "failed to lookup address
            // information", below): a file of the URL (`sslrootcert`, `sslcert`, `sslkey`) or
            // a Unix socket that is not there.
            ErrorKind::NotFound => format!(
                "not found: {io}: check the files the URL names (sslrootcert, sslcert, sslkey), or the Unix socket's directory"
            ),
            ErrorKind::InvalidData if certificate_refused(io) => format!(
                "TLS failed: {io}: check sslrootcert (it must hold the CA that signed the server's certificate) and the host name"
            ),
            _ => format!("network error: {io}"),
        },
        sqlx::Error::Tls(tls) => format!("TLS failed: {tls}"),
        sqlx::Error::PoolTimedOut => {
            "no connection became available in time (the server is unreachable or every connection is busy)"
                .to_owned()
        }
        sqlx::Error::Configuration(config) => format!("invalid connection settings: {config}"),
        sqlx::Error::Database(db) => {
            let message = db.message();
            match db.code().as_deref() {
                Some("3D000") => {
                    format!("{message}: create it, or fix the database name in the URL")
                }
                Some("28P01" | "28000") => {
                    format!("{message}: check the user and password")
                }
                Some("42P01" | "42883") => format!(
                    "{message}: the outbox schema is not migrated; run `outbox-relay migrate` (or call `outbox_core::migrate` from your service)"
                ),
                Some("42501") => format!(
                    "{message}: the role lacks a grant (see deploy/postgres/grants.sql for what each role needs)"
                ),
                Some("57P03") => format!("{message}: the server is starting up or shutting down; retry"),
                Some("53300") => format!("{message}: the server has no connection slots left"),
                _ => message.to_owned(),
            }
        }
        other => other.to_string(),
    }
}

/// The first database error in an error's chain, explained by [`database`].
pub fn database_in_chain(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(sqlx) = current.downcast_ref::<sqlx::Error>() {
            return Some(database(sqlx));
        }
        next = current.source();
    }
    None
}

/// Whether a failed first contact may heal by itself: the network, a server starting up or
/// shutting down, no free connection slot, an outbox table not created yet. Authentication,
/// a missing database, a missing grant, TLS and malformed settings do not.
pub fn refusal_heals(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => !matches!(
            db.code().as_deref(),
            Some("28P01" | "28000" | "3D000" | "42501")
        ),
        sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => false,
        sqlx::Error::Io(io) => !certificate_refused(io),
        _ => true,
    }
}

/// Whether an I/O error is a TLS handshake that failed on a certificate (not signed by a
/// CA of `sslrootcert`, a wrong host name, expired; or the server refusing ours). rustls
/// reports these as I/O errors of kind `InvalidData`, and sqlx passes them on as
/// `sqlx::Error::Io`, not as `sqlx::Error::Tls`.
pub fn certificate_refused(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::InvalidData
        && io.to_string().to_lowercase().contains("certificate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_says_what_to_check() {
        let error = sqlx::Error::Io(std::io::Error::from(ErrorKind::ConnectionRefused));
        assert!(database(&error).contains("is PostgreSQL running"));
    }

    #[test]
    fn a_database_error_deep_in_a_chain_is_found() {
        #[derive(Debug, thiserror::Error)]
        #[error("replay failed")]
        struct Wrapper(#[source] sqlx::Error);
        let wrapped = Wrapper(sqlx::Error::PoolTimedOut);
        assert!(
            database_in_chain(&wrapped)
                .unwrap()
                .contains("no connection became available")
        );
    }

    /// rustls's refusal of the server's certificate reaches us as an I/O error: it cannot
    /// heal, unlike the network errors next to it.
    #[test]
    fn an_untrusted_certificate_does_not_heal_but_the_network_does() {
        let io = |kind, text: &str| sqlx::Error::Io(std::io::Error::new(kind, text.to_owned()));
        use std::io::ErrorKind::{ConnectionRefused, InvalidData, TimedOut};
        assert!(!refusal_heals(&io(
            InvalidData,
            "invalid peer certificate: UnknownIssuer"
        )));
        assert!(!refusal_heals(&io(
            InvalidData,
            "invalid peer certificate: NotValidForName"
        )));
        assert!(refusal_heals(&io(ConnectionRefused, "connection refused")));
        assert!(refusal_heals(&io(TimedOut, "no answer")));
        assert!(refusal_heals(&io(InvalidData, "unexpected message")));
    }
}
