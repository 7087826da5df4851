//! Prints the JSON Schema of one catalog event: `cargo run -p catalog-types --example print_schema -- TICKET_CREATED`.
fn main() {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "TICKET_CREATED".to_owned());
    match catalog_types::registry().find(&name) {
        Some(entry) => println!(
            "{}",
            serde_json::to_string_pretty(&entry.schema).unwrap_or_default()
        ),
        None => eprintln!("unknown event {name}"),
    }
}
