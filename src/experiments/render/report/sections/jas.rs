//! JAS per method: the box plot and the per-class means.
use crate::experiments::render::figures;
use crate::experiments::render::html::{esc, figure, table};
use crate::experiments::render::report::{Report, Section, Shared};
use crate::experiments::stats;
use crate::format::num;
use crate::io::results::{ImageRecord, Results};

pub(super) fn section(r: &Report, _: &Shared) -> Option<Section> {
    Some(Section {
        id: "jas",
        title: "Joint Attribution Score per method".into(),
        nav: Some("JAS"),
        body: body(r.run),
    })
}

fn body(run: &Results) -> String {
    let mut out = figure(&figures::jas(run), "Boxes: quartiles; whiskers: 1.5 IQR; diamond: mean. Higher JAS = the path's neurons jointly explain more of F.");
    let mut heads = vec!["class".to_string(), "images".into()];
    heads.extend(run.methods.iter().map(|m| format!("mean JAS {m}")));
    let rows: Vec<Vec<String>> = run
        .classes_present()
        .into_iter()
        .map(|c| {
            let imgs: Vec<&ImageRecord> = run.images.iter().filter(|r| r.class() == c).collect();
            let mut row = vec![esc(&run.class_names[c]), imgs.len().to_string()];
            for m in &run.methods {
                let v: Vec<f64> = imgs
                    .iter()
                    .filter_map(|r| r.result.methods.get(m).map(|x| x.jas.reference))
                    .collect();
                row.push(num(stats::mean(&v)));
            }
            row
        })
        .collect();
    out += "<h3>Per class</h3>";
    out += &table(&heads.iter().map(String::as_str).collect::<Vec<_>>(), &rows);
    out
}
