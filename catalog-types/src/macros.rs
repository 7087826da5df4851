//! The declaration macro that binds a payload struct to its catalog metadata.

/// Implements [`CatalogEvent`](crate::CatalogEvent) for a payload struct.
///
/// The struct's name must be the PascalCase of its event type; the schema ref is
/// derived from it (`payload.<Name>.v1`), and a test checks the two agree.
///
/// ```ignore
/// catalog_event!(TicketStatusChanged {
///     event_type: "TICKET_STATUS_CHANGED",
///     name: "Ticket Status Changed",
///     description: "Ticket moved between statuses.",
///     category: Tickets,
///     ordering_key: "ticket" => ticket_id,
///     example: TicketStatusChanged { .. },
/// });
/// ```
#[macro_export]
macro_rules! catalog_event {
    ($ty:ident {
        event_type: $event_type:literal,
        name: $name:literal,
        description: $description:literal,
        category: $category:ident,
        ordering_key: $prefix:literal => $key_field:ident,
        example: $example:expr $(,)?
    }) => {
        impl $crate::CatalogEvent for $ty {
            const EVENT_TYPE: &'static str = $event_type;
            const NAME: &'static str = $name;
            const DESCRIPTION: &'static str = $description;
            const CATEGORY: $crate::Category = $crate::Category::$category;
            const SCHEMA_REF: &'static str = concat!("payload.", stringify!($ty), ".v1");

            fn tenant_id(&self) -> Option<::uuid::Uuid> {
                Some(self.tenant_id)
            }

            fn ordering_key(&self) -> Option<String> {
                Some(format!("{}:{}", $prefix, self.$key_field))
            }

            fn example() -> Self {
                $example
            }
        }
    };
}
