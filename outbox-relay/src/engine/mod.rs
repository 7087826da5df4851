//! Pure decisions over plain data: no I/O, no clock of its own, no server needed to test.
//!
//! [`event`] is the
//! claimed event and its ordering scope, the type the store produces and
//! the broker's message builder consumes. `waves` decides how a claim goes out: which
//! events form each wave, which are held back or released when an earlier event of their
//! scope is unreadable, rejected or not confirmed, and when the lease is too short for
//! another wave. [`filter`] is the operator commands' selection of events, validated, and
//! [`audit`] the `audit` command's selection of audit records.
//! [`feed_claim`] and [`feed_settle`] are the same decisions for the partitioned feed of
//! engine v3's step 4b (docs/delivery-engine.md): what a claim of one partition publishes,
//! where its frontier moves, which gaps it notes or forgets and which scopes it holds, and
//! which held scopes a settle changes; `tests/tests/partitioned_feed.rs` reads a live outbox
//! with them.
//! [`outcome`] is what a settle records per event and how a batch of outcomes becomes its
//! statements. [`lease`] lays out claim tokens that name the relay process holding them; [`status`] names
//! an event's states.
//! `service/relay.rs` is the shell that does the claiming, publishing and settling these
//! decisions describe.
//!
//! This layer imports nothing from the rest of the crate.

pub mod audit;
pub mod event;
pub mod feed_claim;
pub mod feed_settle;
pub mod filter;
pub mod lease;
pub mod outcome;
pub mod status;
pub(crate) mod waves;
