//! The images: one table of every image (filter by class, misclassified only, text; sort by
//! any column), then a sample in detail: picture, facts, every method's path diagram, the
//! path's patch heat maps and the numbers per method.
use crate::attribution::spatial::PatchMap;
use crate::experiments::claims::f_of;
use crate::experiments::manipulation::ImageOutcome;
use crate::experiments::render::detail;
use crate::experiments::render::html::{esc, figure, table_aligned, TOP};
use crate::experiments::render::report::{Report, Section, Shared};
use crate::experiments::stats;
use crate::format::{num, pct};
use crate::io::results::{ImageRecord, Method};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn section(r: &Report, shared: &Shared) -> Option<Section> {
    Some(Section {
        id: "images",
        title: "Images".into(),
        nav: Some("Images"),
        body: body(r, shared),
    })
}

fn misclassified(x: &ImageRecord) -> bool {
    x.result.label.is_some_and(|l| l != x.result.prediction)
}

fn filters(r: &Report) -> String {
    let run = r.run;
    let options: String = run
        .classes_present()
        .into_iter()
        .map(|c| {
            format!(
                "<option value=\"{c}\">{}</option>",
                esc(&run.class_names[c])
            )
        })
        .collect();
    format!(
        "<div class=\"filters\"><label>class <select id=\"f-class\"><option value=\"\">all classes</option>{options}</select></label>\
         <label><input type=\"checkbox\" id=\"f-miss\"> misclassified only</label>\
         <label>search <input type=\"search\" id=\"f-text\" placeholder=\"file, class, neuron\" size=\"16\"></label>\
         <span id=\"f-count\" class=\"note\"></span></div>"
    )
}

fn body(r: &Report, shared: &Shared) -> String {
    let run = r.run;
    let detailed: BTreeSet<u64> = shared.sample.iter().copied().collect();
    let name = |c: usize| esc(&run.class_names[c]);
    let listed: Vec<&ImageRecord> = run.images.iter().take(Report::MAX_TABLE_ROWS).collect();
    let misses = run.images.iter().filter(|x| misclassified(x)).count();
    let shown = if detailed.len() == run.images.len() {
        "Every image is shown in detail below (linked from its number).".to_string()
    } else {
        format!(
            "{} of them are shown in detail below (linked from their number): a sample covering every class, each class's first images first (<code>--max-images</code> sets how many); the rest are in this table and the results file.",
            detailed.len()
        )
    };
    let mut out = format!(
        "<p>{} images, {misses} misclassified (flagged ✗). Filter by class, show the misclassified only, or search; click a column heading to sort. {shown}</p>",
        run.images.len(),
    );
    out += &filters(r);
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|x| {
            let res = &x.result;
            let jas = res
                .methods
                .get(&Method::Path)
                .map_or("—".into(), |p| num(p.jas.reference));
            let link = if detailed.contains(&x.index) {
                format!("<a href=\"#img-{0}\">{0}</a>", x.index)
            } else {
                x.index.to_string()
            };
            let pred = if misclassified(x) {
                format!(
                    "<span class=\"miss\" title=\"misclassified\">✗</span> {}",
                    name(res.prediction)
                )
            } else {
                name(res.prediction)
            };
            vec![
                link,
                name(x.class()),
                pred,
                num(res.prob_target),
                jas,
                esc(&x.source),
            ]
        })
        .collect();
    let table = table_aligned(
        &[
            "image",
            "class",
            "prediction",
            "F clean",
            "JAS path",
            "source",
        ],
        "rllrrl",
        &rows,
    );
    // Rows carry their class and whether they are misclassified, for the filter.
    let mut table = table.replace("<th>", "<th class=\"sort\">");
    for x in &listed {
        table = table.replacen(
            "<tr><td",
            &format!(
                "<tr data-class=\"{}\" data-miss=\"{}\"><td",
                x.class(),
                u8::from(misclassified(x))
            ),
            1,
        );
    }
    out += &table;
    if run.images.len() > listed.len() {
        out += &format!(
            "<p class=\"note\">The table lists the first {} of {} images; the results file has all.</p>",
            listed.len(),
            run.images.len()
        );
    }
    if let Some(steps) = r.details.values().next().map(|d| d.spatial.steps) {
        out += &completeness_note(r, steps);
    } else {
        out += "<p class=\"note\">Patch heat maps and node sizes need the model: run the report with it (<code>neuronpath report --model ...</code>).</p>";
    }
    let manip: BTreeMap<u64, &ImageOutcome> = r
        .manipulation
        .map(|m| m.images.iter().map(|o| (o.index, o)).collect())
        .unwrap_or_default();
    for x in run.images.iter().filter(|x| detailed.contains(&x.index)) {
        out += &image_section(r, x, manip.get(&x.index).copied());
    }
    out
}

/// How complete the maps are. A ratio to the target's change is only meaningful where the
/// target changes, so: the median relative delta, and the largest absolute delta in the units of
/// the neuron maps and of the F maps.
fn completeness_note(r: &Report, steps: usize) -> String {
    let neurons = r.details.values().flat_map(|d| &d.spatial.neurons);
    let paths = r.details.values().map(|d| &d.spatial.path);
    let mut rel: Vec<f64> = neurons
        .clone()
        .chain(paths.clone())
        .map(|m| (m.delta / (m.value - m.baseline).abs().max(1e-12)).abs())
        .collect();
    rel.sort_by(f64::total_cmp);
    let largest =
        |it: &mut dyn Iterator<Item = &PatchMap>| it.map(|m| m.delta.abs()).fold(0.0, f64::max);
    format!(
        "<p class=\"note\">Heat maps: {steps} integration steps (<code>--map-steps</code>). Completeness delta, what the patches' sum misses of the target's change: median {} of the change over the {} maps; the largest is {} in activation units on the neuron maps and {} on the maps of F. More steps shrink it; hover a map for its own.</p>",
        pct(stats::quantile(&rel, 0.5)),
        rel.len(),
        num(largest(&mut neurons.clone())),
        num(largest(&mut paths.clone()))
    )
}

fn image_section(r: &Report, x: &ImageRecord, m: Option<&ImageOutcome>) -> String {
    let (run, res) = (r.run, &x.result);
    let name = |c: usize| esc(&run.class_names[c]);
    let thumb = r.thumbnails.get(&x.index).map_or(String::new(), |u| {
        format!("<img src=\"{u}\" alt=\"image {}\">", x.index)
    });
    let flag = if misclassified(x) {
        " <span class=\"miss\">✗ misclassified</span>"
    } else {
        ""
    };
    let facts = format!(
        "<div><b>{}</b><br>class: {}<br>prediction: {} (score {}){flag}<br>F = {} = {}</div>",
        esc(&x.source),
        name(x.class()),
        name(res.prediction),
        num(res.prob_prediction),
        esc(&f_of(run, res.target)),
        num(res.prob_target)
    );
    let d = r.details.get(&x.index);
    let mut rows = Vec::new();
    for me in &run.methods {
        let Some(p) = res.methods.get(me) else {
            continue;
        };
        let mut row = vec![
            esc(me.name()),
            p.path
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" → "),
            num(p.jas.reference),
            num(p.jas.additive),
            num(p.prob_removed),
            num(p.prob_enhanced),
        ];
        if let Some(o) = m.and_then(|o| o.methods.get(me)) {
            row.push(
                o.iter()
                    .map(|e| format!("×{}: {} ({})", num(e.factor), num(e.prob), name(e.top1)))
                    .collect::<Vec<_>>()
                    .join("<br>"),
            );
        }
        rows.push(row);
    }
    let mut heads = vec![
        "method",
        "neuron per layer",
        "JAS ref.",
        "JAS add.",
        "F removed",
        "F enhanced",
    ];
    if m.is_some() {
        heads.push("F after edit (top-1)");
    }
    let mut out = format!(
        "<div class=\"detail\" id=\"img-{}\" data-class=\"{}\" data-miss=\"{}\"><h3>Image {} — {}</h3><div class=\"img\">{thumb}{facts}</div>",
        x.index,
        x.class(),
        u8::from(misclassified(x)),
        x.index,
        name(x.class()),
    );
    out += &figure(
        &detail::path_diagram(run, x, d.map(|d| &d.terms)),
        "A row per method, a column per layer; each node is the method's neuron at that layer.",
    );
    if let Some(d) = d {
        out += &figure(
            &detail::heat_maps(x.index, d, r.greys.get(&x.index).map(String::as_str)),
            "Integrated gradients per patch of each path neuron's activation (shared scale), and of F through the path alone (own scale). Red raises, blue lowers.",
        );
    }
    out += &table_aligned(&heads, "llrrrrl", &rows);
    if let Some(mg) = res
        .methods
        .get(&Method::Path)
        .and_then(|p| p.margins.as_ref())
    {
        let v: Vec<String> = mg.iter().map(|v| num(*v)).collect();
        out += &format!(
            "<p class=\"note\">Search margins (best minus runner-up score) per layer: {}</p>",
            v.join(", ")
        );
    }
    out + TOP + "</div>"
}
