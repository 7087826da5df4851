//! The text report of a catalog diff: one line per change, grouped by event, then a summary
//! and the verdict.

use std::fmt::Write as _;

use super::{CatalogDiff, EventStatus};

/// Renders `diff` for people (and for `grep`: every change line starts with its class).
pub(super) fn text(diff: &CatalogDiff) -> String {
    let mut out = String::new();
    if diff.is_empty() {
        out.push_str("no differences\n");
        return out;
    }
    let (mut breaking, mut compatible, mut versions, mut added, mut removed) = (0, 0, 0, 0, 0);
    for event in &diff.events {
        let refs = match (&event.old_ref, &event.new_ref) {
            (Some(a), Some(b)) if a == b => a.clone(),
            (Some(a), Some(b)) => format!("{a} → {b}"),
            (Some(a), None) | (None, Some(a)) => a.clone(),
            (None, None) => String::new(),
        };
        let status = match event.status {
            EventStatus::Added => {
                added += 1;
                "added"
            }
            EventStatus::Removed => {
                removed += 1;
                "removed"
            }
            EventStatus::Changed => "changed",
            EventStatus::NewVersion => {
                versions += 1;
                "new version"
            }
        };
        let _ = writeln!(out, "{} ({refs}): {status}", event.event_type);
        for change in &event.changes {
            let class = if !change.breaking {
                compatible += 1;
                "compatible"
            } else if event.status == EventStatus::NewVersion {
                "versioned "
            } else {
                breaking += 1;
                "BREAKING  "
            };
            let subject = if change.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", change.path)
            };
            let _ = writeln!(out, "  {class}  {subject}{}", change.detail);
        }
    }
    let _ = writeln!(
        out,
        "\n{breaking} breaking, {compatible} compatible; {versions} new version(s), {added} event(s) added, {removed} removed"
    );
    if breaking > 0 {
        out.push_str(
            "BREAKING: consumers of the old catalog would break. Revert the change, or publish it \
             under a new schema ref version (`payload.<Name>.v2`).\n",
        );
    } else {
        out.push_str("compatible: no change breaks consumers of the old catalog\n");
    }
    out
}
