//! Renders the catalog as JSON, SQL and Markdown.

/// Placeholder until the export lands.
pub fn placeholder() {}
