//! What a failed database call, or a broker's refusal, means for an operator: the cause in
//! a few words and what to do about it, without the driver's repeated chains, the server's
//! source line numbers or the AMQP client's frame dumps.

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

/// Where in its conversation with the broker the relay was refused: the same reply code
/// means different things at different steps (a 403 while connecting is a failed login, on
/// `exchange.declare` a missing permission).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerStep {
    /// Opening the connection: the login and the virtual host.
    Connect,
    /// Preparing a channel: declaring the exchange, confirm mode.
    Declare,
    /// Publishing on a prepared channel.
    Publish,
}

/// Who the relay is on the broker, to name in a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerIdentity<'a> {
    /// The user of the AMQP URL.
    pub user: &'a str,
    /// The virtual host of the AMQP URL (`/` for `%2f`).
    pub vhost: &'a str,
    /// The exchange the relay publishes to.
    pub exchange: &'a str,
}

/// The kinds of refusal a broker answers the relay with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalClass {
    /// The login was refused (403 `ACCESS_REFUSED` while connecting).
    Authentication,
    /// The virtual host does not exist (530 `NOT_ALLOWED` while connecting).
    VhostMissing,
    /// The user may not use the virtual host (530 `NOT_ALLOWED` while connecting).
    VhostNotPermitted,
    /// The exchange exists with another type or other arguments (406
    /// `PRECONDITION_FAILED` on `exchange.declare`).
    ExchangeMismatch,
    /// The user may not configure or write to the exchange (403 `ACCESS_REFUSED` on
    /// `exchange.declare` or `basic.publish`).
    AccessRefused,
    /// The vhost's or the user's connection limit is reached (530 `NOT_ALLOWED` while
    /// connecting).
    ConnectionLimit,
    /// The connection allows fewer channels than the relay opens.
    ChannelLimit,
    /// The broker refused a frame or the connection's tuning (5xx frame and syntax errors
    /// while connecting or preparing a channel).
    FrameRefused,
    /// The broker lacks a resource (506 `RESOURCE_ERROR`).
    ResourceShortage,
    /// The broker's TLS certificate is not trusted (no reply code: the handshake failed).
    TlsUntrusted,
    /// The two ends do not speak the same protocol: TLS to a plain AMQP port, plain AMQP
    /// to a TLS port, or AMQP to something that is not a broker (no reply code).
    ProtocolMismatch,
}

impl RefusalClass {
    /// Whether the refusal may end without anyone changing the relay's settings or the
    /// broker's definitions: a limit other connections free up, a resource that returns.
    /// Every other refusal stays until an operator acts, so at start it ends the relay.
    pub fn heals(self) -> bool {
        matches!(
            self,
            RefusalClass::ConnectionLimit | RefusalClass::ResourceShortage
        )
    }
}

/// A refusal by the broker, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRefusal {
    /// What kind of refusal it is.
    pub class: RefusalClass,
    /// The cause in words, for the log and `/readyz` (`vhost "x" does not exist`).
    pub cause: String,
    /// What to do about it.
    pub remedy: String,
}

impl BrokerRefusal {
    fn new(class: RefusalClass, cause: String, remedy: String) -> Self {
        BrokerRefusal {
            class,
            cause,
            remedy,
        }
    }

    /// Whether it may end by itself ([`RefusalClass::heals`]).
    pub fn heals(&self) -> bool {
        self.class.heals()
    }
}

impl std::fmt::Display for BrokerRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.cause, self.remedy)
    }
}

/// The AMQP reply codes the relay tells apart (AMQP 0-9-1, section 1.9).
pub mod reply_code {
    /// `ACCESS_REFUSED`.
    pub const ACCESS_REFUSED: u16 = 403;
    /// `PRECONDITION_FAILED`.
    pub const PRECONDITION_FAILED: u16 = 406;
    /// `FRAME_ERROR`.
    pub const FRAME_ERROR: u16 = 501;
    /// `SYNTAX_ERROR`.
    pub const SYNTAX_ERROR: u16 = 502;
    /// `COMMAND_INVALID`.
    pub const COMMAND_INVALID: u16 = 503;
    /// `UNEXPECTED_FRAME`.
    pub const UNEXPECTED_FRAME: u16 = 505;
    /// `RESOURCE_ERROR`.
    pub const RESOURCE_ERROR: u16 = 506;
    /// `NOT_ALLOWED`.
    pub const NOT_ALLOWED: u16 = 530;
}

/// What the broker's answer `reply_code` (with its `reply_text`) at `step` means, or `None`
/// when it is no refusal of the relay (the broker shutting down or closing the connection,
/// a message of its own refused while publishing: those are retried, or are the event's
/// own failure).
///
/// The class comes from the reply code and the step. Only `NOT_ALLOWED` (530) while
/// connecting covers several causes in RabbitMQ, told apart by its reply text: `vhost x not
/// found`, `access to vhost 'x' refused for user 'u'`, and the same with `: connection
/// limit (n) is reached`.
pub fn broker_refusal(
    step: BrokerStep,
    code: u16,
    reply_text: &str,
    who: BrokerIdentity<'_>,
) -> Option<BrokerRefusal> {
    use RefusalClass::*;
    use reply_code::*;
    let BrokerIdentity {
        user,
        vhost,
        exchange,
    } = who;
    let said = broker_says(reply_text);
    let refusal = match (step, code) {
        (BrokerStep::Connect, ACCESS_REFUSED) => BrokerRefusal::new(
            Authentication,
            format!("authentication failed for user \"{user}\""),
            "check the user name and password in --amqp-url".to_owned(),
        ),
        (BrokerStep::Connect, NOT_ALLOWED) => {
            let text = reply_text.to_lowercase();
            if text.contains("limit") {
                BrokerRefusal::new(
                    ConnectionLimit,
                    format!("the broker refuses more connections ({said})"),
                    format!(
                        "close other connections, or raise the limit (rabbitmqctl set_vhost_limits -p {vhost} / set_user_limits {user})"
                    ),
                )
            } else if text.contains("not found") {
                BrokerRefusal::new(
                    VhostMissing,
                    format!("vhost \"{vhost}\" does not exist"),
                    format!(
                        "create it (rabbitmqctl add_vhost {vhost}) and let user \"{user}\" use it (rabbitmqctl set_permissions), or fix the vhost in --amqp-url (the path after the port; %2f is \"/\")"
                    ),
                )
            } else {
                BrokerRefusal::new(
                    VhostNotPermitted,
                    format!("user \"{user}\" may not use vhost \"{vhost}\""),
                    format!(
                        "grant it: rabbitmqctl set_permissions -p {vhost} {user} <configure> <write> <read>, with configure and write matching \"{exchange}\""
                    ),
                )
            }
        }
        (BrokerStep::Declare, PRECONDITION_FAILED) => BrokerRefusal::new(
            ExchangeMismatch,
            format!(
                "exchange \"{exchange}\" exists with another type or other arguments than the relay's durable topic exchange ({said})"
            ),
            "delete it so that the relay can declare it, or give the relay an exchange of its own with --exchange".to_owned(),
        ),
        (BrokerStep::Declare, ACCESS_REFUSED) => BrokerRefusal::new(
            AccessRefused,
            format!(
                "user \"{user}\" may not declare exchange \"{exchange}\" in vhost \"{vhost}\""
            ),
            format!(
                "grant configure and write permission on it (rabbitmqctl set_permissions -p {vhost} {user} <configure> <write> <read>); names starting with \"amq.\" are the broker's own"
            ),
        ),
        (BrokerStep::Publish, ACCESS_REFUSED) => BrokerRefusal::new(
            AccessRefused,
            format!(
                "user \"{user}\" may not publish to exchange \"{exchange}\" in vhost \"{vhost}\""
            ),
            format!(
                "grant write permission on it (rabbitmqctl set_permissions -p {vhost} {user} <configure> <write> <read>)"
            ),
        ),
        (
            BrokerStep::Connect | BrokerStep::Declare,
            FRAME_ERROR | SYNTAX_ERROR | COMMAND_INVALID | UNEXPECTED_FRAME,
        ) => BrokerRefusal::new(
            FrameRefused,
            format!("the broker refused the relay's frames ({code}: {said})"),
            "check frame_max and channel_max in --amqp-url against the broker's limits, and that the server speaks AMQP 0-9-1".to_owned(),
        ),
        (BrokerStep::Declare, NOT_ALLOWED) => BrokerRefusal::new(
            ChannelLimit,
            format!("the broker refused a channel ({said})"),
            "raise the broker's channel_max, or lower --in-flight-batches".to_owned(),
        ),
        (_, RESOURCE_ERROR) => BrokerRefusal::new(
            ResourceShortage,
            format!("the broker is short of a resource ({said})"),
            "check the broker's memory, disk and limits".to_owned(),
        ),
        _ => return None,
    };
    Some(refusal)
}

/// The connection negotiated `allowed` channels, fewer than the `needed` the relay opens
/// (one per delivery loop).
pub fn channel_limit(allowed: u16, needed: u32) -> BrokerRefusal {
    BrokerRefusal::new(
        RefusalClass::ChannelLimit,
        format!(
            "the connection allows {allowed} channel(s), the relay opens {needed} (one per --in-flight-batches)"
        ),
        "raise channel_max (in --amqp-url or the broker's), or lower --in-flight-batches"
            .to_owned(),
    )
}

/// The TLS handshake failed on the broker's certificate (`detail`: the TLS library's
/// reason).
pub fn tls_untrusted(detail: &str) -> BrokerRefusal {
    BrokerRefusal::new(
        RefusalClass::TlsUntrusted,
        format!("TLS certificate not trusted ({detail})"),
        "check --amqp-ca-file: it must hold the CA that signed the broker's certificate, and the host name must match it".to_owned(),
    )
}

/// The TLS handshake met a server that does not speak TLS (`detail`: the TLS library's
/// reason): `amqps://` to a plain AMQP port.
pub fn tls_not_spoken(detail: &str) -> BrokerRefusal {
    BrokerRefusal::new(
        RefusalClass::ProtocolMismatch,
        format!("the server does not speak TLS on this port ({detail})"),
        "use amqp:// for a plain port, or the broker's TLS port (5671 by default) with amqps://"
            .to_owned(),
    )
}

/// The server answered the AMQP greeting with something else (or closed at once): a port
/// that is not an AMQP broker's, or a TLS port spoken to in plain text.
pub fn not_amqp(detail: &str) -> BrokerRefusal {
    BrokerRefusal::new(
        RefusalClass::ProtocolMismatch,
        format!("the server at this address does not answer as an AMQP broker ({detail})"),
        "check the host and port of --amqp-url (5672 for amqp://, 5671 for amqps://)".to_owned(),
    )
}

/// The broker's reply text without the reply code's name it starts with
/// (`NOT_ALLOWED - vhost x not found` → `vhost x not found`).
fn broker_says(reply_text: &str) -> &str {
    match reply_text.split_once(" - ") {
        Some((name, rest))
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_') =>
        {
            rest
        }
        _ => reply_text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHO: BrokerIdentity<'static> = BrokerIdentity {
        user: "relay",
        vhost: "orders",
        exchange: "outbox.events",
    };

    fn class_of(step: BrokerStep, code: u16, text: &str) -> Option<RefusalClass> {
        broker_refusal(step, code, text, WHO).map(|refusal| refusal.class)
    }

    /// Each refusal class RabbitMQ answers with, from its reply code and the step (the
    /// texts are RabbitMQ 3.10's); what no operator must fix is no refusal.
    #[test]
    fn each_broker_refusal_is_told_apart_by_its_reply_code_and_step() {
        use BrokerStep::*;
        use RefusalClass::*;
        let cases = [
            (
                Connect,
                403,
                "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.",
                Some(Authentication),
            ),
            (
                Connect,
                530,
                "NOT_ALLOWED - vhost orders not found",
                Some(VhostMissing),
            ),
            (
                Connect,
                530,
                "NOT_ALLOWED - access to vhost 'orders' refused for user 'relay'",
                Some(VhostNotPermitted),
            ),
            (
                Connect,
                530,
                "NOT_ALLOWED - access to vhost 'orders' refused for user 'relay': connection limit (0) is reached",
                Some(ConnectionLimit),
            ),
            (
                Declare,
                406,
                "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'outbox.events' in vhost 'orders': received 'topic' but current is 'fanout'",
                Some(ExchangeMismatch),
            ),
            (
                Declare,
                403,
                "ACCESS_REFUSED - access to exchange 'outbox.events' in vhost 'orders' refused for user 'relay'",
                Some(AccessRefused),
            ),
            (
                Publish,
                403,
                "ACCESS_REFUSED - access to exchange 'outbox.events' in vhost 'orders' refused for user 'relay'",
                Some(AccessRefused),
            ),
            (
                Declare,
                530,
                "NOT_ALLOWED - number of channels opened (3) has reached the negotiated channel_max (2)",
                Some(ChannelLimit),
            ),
            (
                Connect,
                501,
                "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,140000,131064}",
                Some(FrameRefused),
            ),
            (
                Connect,
                506,
                "RESOURCE_ERROR - out of memory",
                Some(ResourceShortage),
            ),
            // Not refusals of the relay: retried, or the event's own failure.
            (
                Connect,
                320,
                "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
                None,
            ),
            (Declare, 541, "INTERNAL_ERROR", None),
            (
                Publish,
                404,
                "NOT_FOUND - no exchange 'outbox.events' in vhost 'orders'",
                None,
            ),
            (
                Publish,
                406,
                "PRECONDITION_FAILED - message size 200000 is larger than configured max size 131072",
                None,
            ),
            (Publish, 501, "FRAME_ERROR", None),
        ];
        for (step, code, text, expected) in cases {
            assert_eq!(
                class_of(step, code, text),
                expected,
                "{step:?} {code} {text}"
            );
        }
    }

    /// The words name the user, the vhost or the exchange concerned, say what to do, and
    /// keep the broker's own detail where it tells more (which argument differs) without
    /// the reply code's name.
    #[test]
    fn a_refusal_names_what_is_refused_and_what_to_do() {
        let vhost = broker_refusal(
            BrokerStep::Connect,
            530,
            "NOT_ALLOWED - vhost orders not found",
            WHO,
        )
        .unwrap();
        assert_eq!(vhost.cause, "vhost \"orders\" does not exist");
        assert!(
            vhost.remedy.contains("rabbitmqctl add_vhost orders"),
            "{}",
            vhost.remedy
        );
        assert!(!vhost.heals());

        let mismatch = broker_refusal(
            BrokerStep::Declare,
            406,
            "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'outbox.events' in vhost 'orders': received 'topic' but current is 'fanout'",
            WHO,
        )
        .unwrap();
        assert!(
            mismatch
                .cause
                .starts_with("exchange \"outbox.events\" exists with another type")
                && mismatch.cause.contains("(inequivalent arg 'type'")
                && mismatch.cause.contains("current is 'fanout'")
                && !mismatch.cause.contains("PRECONDITION_FAILED"),
            "{}",
            mismatch.cause
        );
        assert!(mismatch.remedy.contains("--exchange"));

        let login = broker_refusal(
            BrokerStep::Connect,
            403,
            "ACCESS_REFUSED - Login was refused",
            WHO,
        )
        .unwrap();
        assert_eq!(login.cause, "authentication failed for user \"relay\"");
        assert!(
            login
                .to_string()
                .contains("check the user name and password")
        );

        let access = broker_refusal(
            BrokerStep::Declare,
            403,
            "ACCESS_REFUSED - access to exchange",
            WHO,
        )
        .unwrap();
        assert!(
            access
                .cause
                .contains("may not declare exchange \"outbox.events\""),
            "{}",
            access.cause
        );
        assert!(
            access.remedy.contains("set_permissions -p orders relay"),
            "{}",
            access.remedy
        );

        let limit = broker_refusal(BrokerStep::Connect, 530, "NOT_ALLOWED - access to vhost 'orders' refused for user 'relay': connection limit (0) is reached", WHO).unwrap();
        assert!(limit.heals(), "other connections may close");

        let channels = channel_limit(2, 3);
        assert!(
            channels
                .cause
                .contains("allows 2 channel(s), the relay opens 3"),
            "{}",
            channels.cause
        );
        assert!(!channels.heals());
    }

    #[test]
    fn the_reply_codes_name_is_left_out_of_the_brokers_words() {
        assert_eq!(
            broker_says("NOT_ALLOWED - vhost x not found"),
            "vhost x not found"
        );
        assert_eq!(broker_says("INTERNAL_ERROR"), "INTERNAL_ERROR");
        assert_eq!(broker_says("a - b"), "a - b");
    }

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
