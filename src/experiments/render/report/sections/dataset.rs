//! The dataset view: for the neurons that recur on a class's paths, the run's images that
//! activate them most, so a reader sees what each neuron responds to.
use crate::experiments::detail::TOP_IMAGES;
use crate::experiments::render::detail::thumb;
use crate::experiments::render::html::esc;
use crate::experiments::render::report::{Report, Section, Shared};
use crate::format::num;

pub(super) fn section(r: &Report, shared: &Shared) -> Option<Section> {
    shared.atlas.as_ref()?;
    Some(Section {
        id: "neurons",
        title: "What the recurring neurons respond to".into(),
        nav: Some("Neurons"),
        body: body(r),
    })
}

fn body(r: &Report) -> String {
    let run = r.run;
    if r.dataset.is_empty() {
        return "<p class=\"note\">No neuron recurs on two or more paths of a class here, or the report ran without the model (the activations need it).</p>".into();
    }
    let mut out = format!(
        "<p>For each class, the neurons on most of its paths (at least two), and the {TOP_IMAGES} images of this run that activate each most (clean activation <i>a</i>; green frame: an image of that class). Images of other classes among them show what else the neuron responds to.</p>"
    );
    let class_of: std::collections::BTreeMap<u64, usize> =
        run.images.iter().map(|x| (x.index, x.class())).collect();
    let mut class = usize::MAX;
    for v in &r.dataset {
        if v.class != class {
            class = v.class;
            out += &format!("<h3>{}</h3>", esc(&run.class_names[class]));
        }
        out += &format!(
            "<div data-class=\"{}\" data-miss=\"0\"><p class=\"note\"><b>L{} #{}</b>: on {} of {} paths; mean activation over the run {}</p>",
            v.class, v.layer, v.unit, v.count, v.images, num(v.mean)
        );
        for &(i, a) in &v.top {
            let c = class_of.get(&i).copied().unwrap_or(usize::MAX);
            let cname = run.class_names.get(c).map_or("?", String::as_str);
            let fig = thumb(
                r.thumbnails.get(&i),
                &format!("image {i}"),
                &format!("{i} · {}<br>a = {}", esc(cname), num(a)),
            );
            out += &if c == v.class {
                fig.replacen("class=\"th\"", "class=\"th same\"", 1)
            } else {
                fig
            };
        }
        out += "</div>";
    }
    out
}
