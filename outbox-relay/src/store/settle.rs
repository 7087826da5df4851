//! Settling: record what happened to each event of a claim, in one transaction.
//!
//! A settle of a feed claim (engine v3, step 4b) ends the partition's lease and moves its
//! frontier over the claim's segment — only while the claim still holds the lease: a claim
//! whose lease ran out or whose relay was found gone settles nothing, and its events go out
//! again from the partition's next claim (at least once, never lost, never out of order).
//! It notes and forgets gaps, counts failures per event (`outbox_attempts`), and holds the
//! scopes whose next event did not go out (`outbox_held`). Nothing is written per delivered
//! event.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::foundation::db::within_deadline;
use crate::store::claim::Claim;
use crate::store::feed;

pub use crate::engine::outcome::Outcome;

/// Counts of a settled claim (the feed's own).
pub use crate::store::feed::FeedSettled as Settled;

/// Records the outcomes of `claim`, all in one transaction.
pub async fn settle(
    pool: &PgPool,
    claim: &Claim,
    max_attempts: u32,
    outcomes: &[(Uuid, Outcome)],
) -> Result<Settled, sqlx::Error> {
    if claim.feed.is_none() {
        return Ok(Settled::default());
    }
    let mut conn = pool.acquire().await?;
    settle_on(&mut conn, claim, max_attempts, outcomes).await
}

/// [`settle`] within `deadline` (taking a connection included): a database that stops
/// answering fails the settle then, and its connection is closed, not given back to the
/// pool (see [`within_deadline`]). Whether the transaction committed is then unknown; it
/// is safe to settle again: a settle changes nothing once the partition's lease under the
/// claim's token has ended.
pub async fn settle_within(
    pool: &PgPool,
    deadline: Duration,
    claim: &Claim,
    max_attempts: u32,
    outcomes: &[(Uuid, Outcome)],
) -> Result<Settled, sqlx::Error> {
    if claim.feed.is_none() {
        return Ok(Settled::default());
    }
    within_deadline(pool, deadline, async |conn| {
        settle_on(conn, claim, max_attempts, outcomes).await
    })
    .await
}

/// [`settle`] on a connection the caller holds.
async fn settle_on(
    conn: &mut PgConnection,
    claim: &Claim,
    max_attempts: u32,
    outcomes: &[(Uuid, Outcome)],
) -> Result<Settled, sqlx::Error> {
    let Some(feed_claim) = &claim.feed else {
        return Ok(Settled::default());
    };
    let mut tx = sqlx::Connection::begin_with(&mut *conn, super::RELAY_BEGIN).await?;
    let done = feed::settle(&mut tx, claim.token, feed_claim, max_attempts, outcomes).await?;
    tx.commit().await?;
    Ok(done)
}
