//! One module per catalog category; each payload struct implements [`CatalogEvent`](crate::CatalogEvent).

mod assets;
mod billing;
mod crm;
mod documents;
mod email;
mod existing;
mod integrations;
mod media;
mod notifications;
mod projects;
pub(crate) mod sample;
mod scheduling;
mod surveys;
mod tags;
mod tickets;

pub use assets::*;
pub use billing::*;
pub use crm::*;
pub use documents::*;
pub use email::*;
pub use existing::*;
pub use integrations::*;
pub use media::*;
pub use notifications::*;
pub use projects::*;
pub use scheduling::*;
pub use surveys::*;
pub use tags::*;
pub use tickets::*;

use crate::CatalogEntry;

/// Every catalog entry, sorted by category (catalog order) and then in declaration order.
pub(crate) fn entries() -> Vec<CatalogEntry> {
    let mut all = Vec::new();
    all.extend(existing::entries());
    all.extend(tickets::entries());
    all.extend(scheduling::entries());
    all.extend(projects::entries());
    all.extend(billing::entries());
    all.extend(crm::entries());
    all.extend(tags::entries());
    all.extend(documents::entries());
    all.extend(email::entries());
    all.extend(notifications::entries());
    all.extend(surveys::entries());
    all.extend(integrations::entries());
    all.extend(assets::entries());
    all.extend(media::entries());
    all.sort_by_key(|entry| entry.category);
    all
}
