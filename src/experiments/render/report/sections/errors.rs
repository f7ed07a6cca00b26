//! The images that failed in discover, with their errors (only when there are any).
use crate::experiments::render::html::{esc, table};
use crate::experiments::render::report::{Report, Section, Shared};

pub(super) fn section(r: &Report, _: &Shared) -> Option<Section> {
    let errors = &r.run.errors;
    if errors.is_empty() {
        return None;
    }
    let rows: Vec<Vec<String>> = errors
        .iter()
        .map(|(i, s, e)| vec![i.to_string(), esc(s), esc(e)])
        .collect();
    Some(Section {
        id: "errors",
        title: "Images that failed".into(),
        nav: None,
        body: table(&["index", "source", "error"], &rows),
    })
}
