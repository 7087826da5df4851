//! A service's own event types, against the real Postgres and RabbitMQ: registered in the
//! catalog table (by the service, or by `outbox-relay migrate --service-events`), emitted
//! typed and untyped, refused when a payload breaks its schema, delivered by the relay;
//! names that collide with the catalog's or with another registered definition refused.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use catalog_types::{CatalogEvent, Category, EventDefinition, Registry, service_event};
use integration_tests::{
    RunningRelay, TestBroker, TestDb, relay_cli, relay_config, relay_offline, unique_suffix,
    wait_until,
};
use outbox_core::{Conflict, EmitError, EmitOptions, RegisterError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A widget was made: an event the catalog does not have, defined by the `acme` service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
struct WidgetCreated {
    /// Tenant of the widget.
    tenant_id: Uuid,
    /// The new widget.
    widget_id: Uuid,
    /// Its colour.
    colour: String,
}

service_event!(WidgetCreated {
    namespace: "acme",
    event_type: "WIDGET_CREATED",
    version: 1,
    name: "Widget Created",
    description: "A widget was created.",
    category: Assets,
    ordering_key: "widget" => widget_id,
    example: WidgetCreated {
        tenant_id: Uuid::nil(),
        widget_id: Uuid::max(),
        colour: "blue".to_owned(),
    },
});

/// A service type that takes a catalog event's name.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct TicketCreated {
    tenant_id: Uuid,
}

impl CatalogEvent for TicketCreated {
    const EVENT_TYPE: &'static str = "TICKET_CREATED";
    const NAME: &'static str = "Ticket Created";
    const DESCRIPTION: &'static str = "Ours, not the catalog's.";
    const CATEGORY: Category = Category::Tickets;
    const SCHEMA_REF: &'static str = "acme.payload.TicketCreated.v1";
    fn tenant_id(&self) -> Option<Uuid> {
        Some(self.tenant_id)
    }
    fn ordering_key(&self) -> Option<String> {
        None
    }
    fn example() -> Self {
        TicketCreated {
            tenant_id: Uuid::nil(),
        }
    }
    fn payload_schema() -> serde_json::Value {
        schemars::schema_for!(Self).to_value()
    }
}

fn acme_registry() -> Result<Registry> {
    Ok(Registry::builder().event::<WidgetCreated>().build()?)
}

/// The registered row of an event type: schema ref, category, payload schema.
async fn registered(
    db: &TestDb,
    event_type: &str,
) -> Result<Option<(String, String, serde_json::Value)>> {
    Ok(sqlx::query_as(
        "SELECT payload_schema_ref, category, payload_schema
           FROM system_event_catalog WHERE event_type = $1",
    )
    .bind(event_type)
    .fetch_optional(&db.pool)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_event_is_registered_emitted_refused_when_invalid_and_delivered() -> Result<()> {
    let db = TestDb::new().await?;
    let broker = TestBroker::new(&["#"]).await?;
    let registry = acme_registry()?;
    let tenant = Uuid::now_v7();
    let widget = WidgetCreated {
        tenant_id: tenant,
        widget_id: Uuid::now_v7(),
        colour: "red".to_owned(),
    };

    // Unregistered, the database refuses it (and the shipped registry does not know it).
    let mut tx = db.pool.begin().await?;
    let unregistered = outbox_core::emit(&mut tx, &widget).await;
    assert!(
        matches!(&unregistered, Err(EmitError::Database(_)))
            && unregistered.as_ref().is_err_and(|e| e
                .to_string()
                .contains("unknown event type \"acme.WIDGET_CREATED\"")),
        "{unregistered:?}"
    );
    tx.rollback().await?;

    let registration = outbox_core::register_events(&db.pool, &registry).await?;
    assert_eq!(registration.added, ["acme.WIDGET_CREATED"]);
    let again = outbox_core::register_events(&db.pool, &registry).await?;
    assert_eq!(again.unchanged, ["acme.WIDGET_CREATED"]);
    assert!(again.added.is_empty() && again.upgraded.is_empty());
    let row = registered(&db, "acme.WIDGET_CREATED").await?;
    assert_eq!(
        row.as_ref().map(|(r, c, _)| (r.as_str(), c.as_str())),
        Some(("acme.payload.WidgetCreated.v1", "Assets"))
    );
    // Migrating again (a relay's `migrate`) keeps the service's row.
    outbox_core::migrate(&db.pool).await?;
    assert!(registered(&db, "acme.WIDGET_CREATED").await?.is_some());

    // Emitted typed and untyped in one transaction; an invalid payload is refused before
    // any SQL, so the transaction still commits the other two.
    let mut tx = db.pool.begin().await?;
    let typed = outbox_core::emit(&mut tx, &widget).await?;
    let mut payload = serde_json::to_value(&widget)?;
    payload["colour"] = "green".into();
    let untyped = outbox_core::emit_untyped_in(
        &mut tx,
        &registry,
        "acme.WIDGET_CREATED",
        payload.clone(),
        EmitOptions::new(),
    )
    .await?;
    payload["widgetId"] = 7.into();
    let invalid = outbox_core::emit_untyped_in(
        &mut tx,
        &registry,
        "acme.WIDGET_CREATED",
        payload.clone(),
        EmitOptions::new(),
    )
    .await;
    let message = invalid.as_ref().err().map(ToString::to_string);
    assert!(
        matches!(invalid, Err(EmitError::InvalidPayload(_)))
            && message
                .as_deref()
                .is_some_and(|m| m.starts_with("invalid `acme.WIDGET_CREATED` payload: /widgetId:")),
        "{message:?}"
    );
    let unknown =
        outbox_core::emit_untyped(&mut tx, "acme.WIDGET_CREATED", payload, EmitOptions::new())
            .await;
    assert!(
        matches!(&unknown, Err(EmitError::UnknownEventType(t)) if t == "acme.WIDGET_CREATED"),
        "the shipped registry does not know the service's events: {unknown:?}"
    );
    tx.commit().await?;
    assert_eq!(db.count_events().await?, 2);

    // The relay delivers them from the row: type, routing key, headers, envelope.
    let relay = RunningRelay::start(relay_config(&db, &broker));
    let received = broker.collect(2, Duration::from_secs(30)).await?;
    assert_eq!(received.len(), 2, "{received:?}");
    for message in &received {
        assert!(
            [typed.to_string(), untyped.to_string()].contains(&message.message_id),
            "{message:?}"
        );
        assert_eq!(message.kind, "acme.WIDGET_CREATED");
        assert_eq!(message.routing_key, "assets.acme.widget_created");
        assert_eq!(
            message.headers.get("x-schema-ref").map(String::as_str),
            Some("acme.payload.WidgetCreated.v1")
        );
        assert_eq!(
            message.headers.get("x-category").map(String::as_str),
            Some("Assets")
        );
        assert_eq!(
            message.headers.get("x-ordering-key"),
            Some(&format!("widget:{}", widget.widget_id))
        );
        assert_eq!(message.body["eventType"], "acme.WIDGET_CREATED");
        assert_eq!(
            message.body["payload"]["widgetId"],
            widget.widget_id.to_string()
        );
    }
    wait_until(Duration::from_secs(10), "both rows delivered", || async {
        Ok(integration_tests::count_status(&db.pool, "delivered").await? == 2)
    })
    .await?;
    relay.stop().await?;

    // Operators name it like a catalog event.
    let (code, stdout, stderr) = relay_cli(
        &db,
        &[
            "replay",
            "--status",
            "delivered",
            "--event-type",
            "acme.WIDGET_CREATED",
            "--dry-run",
            "--format",
            "json",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["count"], 2, "{stdout}");

    broker.cleanup().await?;
    db.cleanup().await
}

#[tokio::test]
async fn a_service_event_colliding_with_the_catalog_or_a_registered_definition_is_refused()
-> Result<()> {
    let db = TestDb::new().await?;

    // A catalog event's name: refused by the registry, and by registration from a file.
    let impostor = Registry::builder().event::<TicketCreated>().build();
    let Err(error) = impostor else {
        bail!("a service event named TICKET_CREATED was accepted");
    };
    assert!(
        error
            .to_string()
            .starts_with("`TICKET_CREATED` collides with the catalog's event `TICKET_CREATED`"),
        "{error}"
    );
    let acme = acme_registry()?;
    let widget = acme
        .by_event_type("acme.WIDGET_CREATED")
        .map(EventDefinition::of)
        .context("the registry holds the widget")?;
    let named_like_the_catalog = EventDefinition {
        event_type: "ticket_created".to_owned(),
        ..widget.clone()
    };
    let refused = outbox_core::register_definitions(&db.pool, &[named_like_the_catalog]).await;
    assert!(
        matches!(&refused, Err(RegisterError::Invalid(_)))
            && refused.as_ref().is_err_and(|e| e
                .to_string()
                .contains("collides with the catalog's event `TICKET_CREATED`")),
        "{refused:?}"
    );

    // Another service's definition of the same name, same version, other schema.
    outbox_core::register_events(&db.pool, &acme).await?;
    let mut other_schema = widget.clone();
    other_schema.payload_schema["required"] = serde_json::json!(["widgetId", "size"]);
    let refused = outbox_core::register_definitions(&db.pool, &[other_schema.clone()]).await;
    let Err(RegisterError::Conflicts(conflicts)) = &refused else {
        bail!("a second schema at the same version was accepted: {refused:?}");
    };
    assert!(
        matches!(conflicts.as_slice(), [Conflict::Differs { event_type, what, .. }]
            if event_type == "acme.WIDGET_CREATED" && what == "payload schema"),
        "{conflicts:?}"
    );
    assert!(
        refused.as_ref().is_err_and(|e| e.to_string().contains(
            "`acme.WIDGET_CREATED` is registered already as `acme.payload.WidgetCreated.v1` with a different payload schema"
        )),
        "{refused:?}"
    );
    let row = registered(&db, "acme.WIDGET_CREATED").await?;
    assert_eq!(
        row.map(|(_, _, schema)| schema),
        Some(widget.payload_schema.clone()),
        "the refused registration wrote nothing"
    );

    // A version bump upgrades; the older build may not take it back.
    let v2 = EventDefinition {
        payload_schema_ref: "acme.payload.WidgetCreated.v2".to_owned(),
        ..other_schema
    };
    let upgraded = outbox_core::register_definitions(&db.pool, &[v2]).await?;
    assert_eq!(upgraded.upgraded, ["acme.WIDGET_CREATED"]);
    let older = outbox_core::register_events(&db.pool, &acme).await;
    assert!(
        matches!(&older, Err(RegisterError::Conflicts(c)) if matches!(c.as_slice(), [Conflict::Older { .. }])),
        "{older:?}"
    );
    assert_eq!(
        registered(&db, "acme.WIDGET_CREATED")
            .await?
            .map(|(schema_ref, _, _)| schema_ref)
            .as_deref(),
        Some("acme.payload.WidgetCreated.v2")
    );
    db.cleanup().await
}

/// The service's registry as its JSON export, in a scratch file.
fn export_file(registry: &Registry, text: Option<String>) -> Result<std::path::PathBuf> {
    let path = std::env::temp_dir().join(format!("acme-events-{}.json", unique_suffix()));
    let text = match text {
        Some(text) => text,
        None => catalog_types::export::json(registry)?,
    };
    std::fs::write(&path, text)?;
    Ok(path)
}

#[tokio::test]
async fn migrate_registers_the_service_events_of_an_export_and_refuses_a_collision() -> Result<()> {
    let db = TestDb::empty().await?;
    let acme = acme_registry()?;
    let export = export_file(&acme, None)?;
    let shown = export.display().to_string();
    let (code, _, stderr) = relay_cli(&db, &["migrate", "--service-events", &shown]).await?;
    assert_eq!(code, 0, "{stderr}");
    let row = registered(&db, "acme.WIDGET_CREATED").await?;
    assert_eq!(
        row.map(|(schema_ref, _, _)| schema_ref).as_deref(),
        Some("acme.payload.WidgetCreated.v1")
    );
    // The export also held the catalog: its events are the relay's own rows, once each.
    let catalog_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM system_event_catalog")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(catalog_rows as usize, acme.len());

    // A name of the catalog's in the file: nothing registered, the conflict named.
    let mut entries: serde_json::Value =
        serde_json::from_str(&catalog_types::export::json(&acme)?)?;
    let Some(last) = entries
        .as_array()
        .and_then(|list| list.len().checked_sub(1))
    else {
        bail!("the export is not an array of entries");
    };
    entries[last]["eventType"] = "ticket_created".into();
    let colliding = export_file(&acme, Some(entries.to_string()))?;
    let (code, _, stderr) = relay_cli(
        &db,
        &[
            "migrate",
            "--service-events",
            &colliding.display().to_string(),
        ],
    )
    .await?;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("`ticket_created` collides with the catalog's event `TICKET_CREATED`"),
        "{stderr}"
    );

    // Another schema under the registered name and version: refused, the row kept.
    entries[last]["eventType"] = "acme.WIDGET_CREATED".into();
    entries[last]["payloadSchema"]["properties"]["colour"]["type"] = "integer".into();
    let conflicting = export_file(&acme, Some(entries.to_string()))?;
    let (code, _, stderr) = relay_cli(
        &db,
        &[
            "migrate",
            "--service-events",
            &conflicting.display().to_string(),
        ],
    )
    .await?;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("`acme.WIDGET_CREATED` is registered already as `acme.payload.WidgetCreated.v1` with a different payload schema"),
        "{stderr}"
    );

    // `catalog diff` reads services' exports: the change breaks consumers without a bump.
    let (code, stdout, stderr) = relay_offline(&[
        "catalog",
        "diff",
        &shown,
        &conflicting.display().to_string(),
    ])?;
    assert_ne!(code, 0, "{stdout}");
    assert!(stdout.contains("acme.WIDGET_CREATED"), "{stdout}");
    assert!(stderr.contains("breaking change(s)"), "{stderr}");
    for file in [export, colliding, conflicting] {
        std::fs::remove_file(file)?;
    }
    db.cleanup().await
}
