//! `ceiling`: what the broker takes from one publisher with confirms, no database involved.
//!
//! The relay cannot deliver faster than RabbitMQ confirms its messages, so the drain rates
//! are read against this. `--messages` real envelopes (built by
//! `outbox_relay::broker::message::build` from catalog events with generated tenants and tickets,
//! so body, headers and routing keys are the relay's) are published persistent and
//! mandatory to a durable topic exchange with a durable queue bound to it, on one
//! confirm-mode channel with at most `--window` unconfirmed messages (the relay's batch
//! size); a confirm frees a slot at once (pipelined, not waves). The clock runs from the
//! first publish to the last confirm.

use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use catalog_types::registry;
use chrono::Utc;
use futures_util::StreamExt;
use futures_util::future::try_join_all;
use futures_util::stream::FuturesUnordered;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation};
use outbox_relay::broker::message::{self, DEFAULT_FRAME_MAX, Limits, OutgoingMessage};
use outbox_relay::engine::event::ClaimedEvent;
use outbox_relay::foundation::config::{DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_ROUTING_KEY};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::broker::{self, Broker};
use crate::harness;
use crate::load::{Payloads, TENANTS};

/// Flags of `ceiling`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Messages to publish.
    #[arg(long, default_value_t = 50_000)]
    pub messages: usize,
    /// Unconfirmed messages at most per channel (the relay's `--batch-size`).
    #[arg(long, default_value_t = 500)]
    pub window: usize,
    /// Confirm-mode channels on one connection, the messages split evenly (the relay's
    /// `--in-flight-batches`: its delivery loops publish side by side, each on a channel).
    #[arg(long, default_value_t = outbox_relay::foundation::config::DEFAULT_IN_FLIGHT_BATCHES as usize)]
    pub channels: usize,
    /// Ordering keys (tickets) the generated events are spread over.
    #[arg(long, default_value_t = 2_000)]
    pub keys: usize,
}

/// The result of one `ceiling` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Messages published and confirmed.
    pub messages: usize,
    /// Unconfirmed messages at most, per channel.
    pub window: usize,
    /// Publishing channels, on one connection.
    #[serde(default = "one", alias = "connections")]
    pub channels: usize,
    /// Mean body size, bytes (the envelope).
    pub body_bytes: f64,
    /// First publish to last confirm, seconds.
    pub seconds: f64,
    /// Confirmed messages per second.
    pub messages_per_second: f64,
}

fn one() -> usize {
    1
}

/// Runs `ceiling` against an exchange and queue of its own.
pub async fn run(args: &Args, amqp_url: &str) -> Result<Report> {
    broker::with_broker(amqp_url, "ceiling", async |broker: &Broker| {
        measure(args, amqp_url, broker).await
    })
    .await
}

/// Publishes `args.messages` envelopes to `broker`'s exchange and times their confirms.
pub async fn measure(args: &Args, amqp_url: &str, broker: &Broker) -> Result<Report> {
    ensure!(
        args.messages >= 1 && args.window >= 1 && args.keys >= 1 && args.channels >= 1,
        "--messages, --window, --channels and --keys must be at least 1"
    );
    let messages = envelopes(args.messages, args.keys)?;
    let body_bytes =
        messages.iter().map(|m| m.body.len()).sum::<usize>() as f64 / messages.len() as f64;
    // One connection and a channel per delivery loop, like the relay, open before the clock
    // starts.
    let connection = broker::connect(amqp_url).await?;
    let mut channels = Vec::with_capacity(args.channels);
    for _ in 0..args.channels {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channels.push(channel);
    }
    let share = messages.len().div_ceil(args.channels);
    let started = Instant::now();
    let published = try_join_all(
        channels
            .iter()
            .zip(messages.chunks(share))
            .map(|(channel, chunk)| publish(channel, &broker.exchange, chunk, args.window)),
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    connection.close(200, "done".into()).await?;
    let failures = published?
        .into_iter()
        .fold(Failures::default(), |all, one| Failures {
            returned: all.returned + one.returned,
            nacked: all.nacked + one.nacked,
        });
    ensure!(
        failures.returned == 0 && failures.nacked == 0,
        "{} messages returned (unroutable) and {} nacked",
        failures.returned,
        failures.nacked
    );
    let report = Report {
        messages: messages.len(),
        window: args.window,
        channels: args.channels,
        body_bytes,
        seconds,
        messages_per_second: messages.len() as f64 / seconds,
    };
    eprintln!(
        "  ceiling: {} messages of {:.0} B on {} channel(s) in {:.2} s = {:.0} msg/s",
        report.messages,
        report.body_bytes,
        report.channels,
        report.seconds,
        report.messages_per_second
    );
    Ok(report)
}

/// Publishes `messages` on `channel` with at most `window` unconfirmed: each confirm frees
/// its slot for the next message.
async fn publish(
    channel: &Channel,
    exchange: &str,
    messages: &[OutgoingMessage],
    window: usize,
) -> Result<Failures> {
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let mut failures = Failures::default();
    let mut in_flight = FuturesUnordered::new();
    for message in messages {
        if in_flight.len() >= window
            && let Some(confirmed) = in_flight.next().await
        {
            failures.count(confirmed)?;
        }
        let confirm = channel
            .basic_publish(
                exchange.into(),
                message.routing_key.as_str().into(),
                options,
                &message.body,
                message.properties.clone(),
            )
            .await
            .context("publishing")?;
        in_flight.push(confirm);
    }
    while let Some(confirmed) = in_flight.next().await {
        failures.count(confirmed)?;
    }
    Ok(failures)
}

/// Confirms that were not a plain ack.
#[derive(Debug, Default)]
struct Failures {
    returned: usize,
    nacked: usize,
}

impl Failures {
    fn count(&mut self, confirmed: lapin::Result<Confirmation>) -> Result<()> {
        match confirmed.context("awaiting a publisher confirm")? {
            Confirmation::Ack(None) => {}
            Confirmation::Ack(Some(_)) => self.returned += 1,
            Confirmation::Nack(_) => self.nacked += 1,
            Confirmation::NotRequested => bail!("the channel is not in confirm mode"),
        }
        Ok(())
    }
}

/// `count` messages as the relay would build them from stored events: the payloads of
/// `load::Payloads::tickets` with their own tenant (of 500) and ticket (of `keys`), the
/// payload text as PostgreSQL prints `jsonb` (so the body has the stored size).
pub fn envelopes(count: usize, keys: usize) -> Result<Vec<OutgoingMessage>> {
    let payloads = Payloads::tickets()?;
    let kinds = payloads.kinds();
    let tenants: Vec<Uuid> = (0..TENANTS).map(|_| Uuid::new_v4()).collect();
    let tickets: Vec<Uuid> = (0..keys).map(|_| Uuid::new_v4()).collect();
    let limits = Limits {
        max_body: DEFAULT_MAX_MESSAGE_SIZE,
        frame_max: DEFAULT_FRAME_MAX,
    };
    let mut messages = Vec::with_capacity(count);
    for i in 0..count {
        let (event_type, example) = payloads.get(i % kinds)?;
        let entry = registry()
            .by_event_type(event_type)
            .with_context(|| format!("{event_type} is not in the catalog"))?;
        let ticket = tickets.get(i % keys).copied().unwrap_or_default();
        let tenant = tenants.get(i % tenants.len()).copied().unwrap_or_default();
        let mut payload = example.clone();
        if let Some(fields) = payload.as_object_mut() {
            fields.insert("tenantId".to_owned(), tenant.to_string().into());
            fields.insert("ticketId".to_owned(), ticket.to_string().into());
        }
        let id = Uuid::now_v7();
        let event = ClaimedEvent {
            id,
            seq: i as i64 + 1,
            tenant_id: Some(tenant),
            event_type: event_type.to_owned(),
            schema_ref: entry.schema_ref.to_owned(),
            category: entry.category.name().to_owned(),
            ordering_key: Some(format!("ticket:{ticket}")),
            payload: jsonb_text(&payload)?,
            headers: serde_json::Value::Object(serde_json::Map::new()),
            dedupe_key: id.to_string(),
            occurred_at: Utc::now(),
            created_at: Utc::now(),
            attempts: 0,
        };
        messages.push(
            message::build(&event, DEFAULT_ROUTING_KEY, limits)
                .with_context(|| format!("building the message of a {event_type}"))?,
        );
    }
    Ok(messages)
}

/// JSON as PostgreSQL prints a `jsonb` value: `", "` and `": "` between items.
fn jsonb_text(value: &serde_json::Value) -> Result<String> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, JsonbFormatter);
    value.serialize(&mut serializer)?;
    Ok(String::from_utf8(out)?)
}

struct JsonbFormatter;

/// `", "` before every item but the first.
fn separate<W: ?Sized + std::io::Write>(writer: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

impl serde_json::ser::Formatter for JsonbFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separate(writer, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separate(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let caption = format!(
        "ceiling: {} persistent, mandatory messages of {:.0} B (envelopes) on {} channel(s) of one connection, at most {} unconfirmed on each, no database",
        report.messages, report.body_bytes, report.channels, report.window
    );
    let row = vec![
        report.messages.to_string(),
        format!("{:.2}", report.seconds),
        format!("{:.0}", report.messages_per_second),
    ];
    harness::table(&caption, 0, &["messages", "seconds", "msg/s"], &[row])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_text_is_spaced_like_jsonb() {
        let value = serde_json::json!({"a": 1, "b": [1, "x"], "c": {"d": null}});
        assert_eq!(
            jsonb_text(&value).ok().as_deref(),
            Some(r#"{"a": 1, "b": [1, "x"], "c": {"d": null}}"#)
        );
    }
}
