//! One broker connection, with a heartbeat and a bounded wait.

use lapin::{Connection, ConnectionProperties};

use crate::{ConsumerConfig, ConsumerError};

/// Where the broker is, without credentials: `host:port/vhost`, for logs.
pub(crate) fn broker_name(url: &str) -> String {
    match url.parse::<lapin::uri::AMQPUri>() {
        Ok(uri) => format!(
            "{}:{}/{}",
            uri.authority.host, uri.authority.port, uri.vhost
        ),
        Err(_) => "the broker".to_owned(),
    }
}

/// Connects to the broker of `config`, asking for its heartbeat unless the URL sets one.
pub(crate) async fn connect(config: &ConsumerConfig) -> Result<Connection, ConsumerError> {
    let mut uri: lapin::uri::AMQPUri = config
        .amqp_url
        .parse()
        .map_err(|_| ConsumerError::Config("the broker URL does not parse".to_owned()))?;
    uri.query.heartbeat.get_or_insert(config.heartbeat);
    let name = broker_name(&config.amqp_url);
    match tokio::time::timeout(
        config.connect_timeout,
        Connection::connect_uri(uri, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(ConsumerError::broker(
            format!("connecting to {name}"),
            error,
        )),
        Err(_) => Err(ConsumerError::Unreachable(format!(
            "connecting to {name}: no answer within {:?}",
            config.connect_timeout
        ))),
    }
}
