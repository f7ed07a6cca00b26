//! How to read the report: what each term means, in this run's words, and the paper to cite.
use crate::experiments::claims::f_words;
use crate::experiments::render::html::esc;
use crate::experiments::render::report::{Report, Section, Shared};
use crate::io::results::Results;
use crate::model::Rows;

pub(super) fn section(r: &Report, _: &Shared) -> Option<Section> {
    Some(Section {
        id: "howto",
        title: "How to read this report".into(),
        nav: Some("How to read"),
        body: body(r.run),
    })
}

/// The paper, as the report cites it.
pub const CITATION: &str = "Yifan Wang, Yifei Liu, Yingdong Shi, Changming Li, Anqi Pang, Sibei Yang, Jingyi Yu, Kan Ren. \
Discovering Influential Neuron Path in Vision Transformers. International Conference on Learning Representations (ICLR), 2025. arXiv:2503.09046.";

fn body(run: &Results) -> String {
    let rows = match run.rows {
        Rows::Cls => "read at the class token (CLS)",
        _ => "summed over the patch tokens (the MAE variant)",
    };
    let f = esc(&f_words(run));
    let m = run.header.steps;
    let defs: [(&str, String); 8] = [
        ("Neuron", format!("one hidden unit of a transformer block's MLP (after the GELU), {rows}. <b>L3 #55</b> is unit 55 of block 3, counted from 0. Indices are names, not positions: neurons 55 and 56 are no more alike than 55 and 900, so no chart here draws indices on an axis.")),
        ("Path", "one neuron per layer, from the first block to the last, found layer by layer: at layer T the neuron whose integrated gradient, together with the path already chosen below it, most explains F (the layer-progressive search). The baselines pick per layer the neuron with the largest activation (<i>activation</i>), the largest single-neuron integrated gradient (<i>influence</i>), or one at random (<i>random</i>).".into()),
        ("F", format!("what is explained: {f} (the run's objective; the paper uses the probability).")),
        ("JAS (Joint Attribution Score)", format!("how much the path's neurons jointly drive F, from integrated gradients with every path neuron scaled from 0 to its value together (m = {m} steps). Reference form (the paper's, the default): (1/m) (Σ<sub>l</sub> A<sub>l</sub>) (Σ<sub>k</sub> Σ<sub>l</sub> g<sub>l,k</sub>), the activations' sum times the gradients' sum. Additive form: (1/m) Σ<sub>l</sub> A<sub>l</sub> Σ<sub>k</sub> g<sub>l,k</sub>, plain integrated gradients over the path neurons: its terms, one per layer, are the node sizes of the path diagrams and they add up to the additive JAS.")),
        ("Delta (completeness)", "integrated gradients over a set of inputs add up to F at the input minus F at the baseline; the Riemann sum misses a little, and that gap is the delta (it shrinks like 1/m). The heat maps show their own delta per map (hover a map).".into()),
        ("Margin", "per layer, the search's best score minus the runner-up's: a small margin means another neuron was nearly as good and the path is fragile there.".into()),
        ("Removal and enhancement", "the path's neurons multiplied by 0 (removed) or 2 (enhanced) in one forward pass, each after the edits below it; F(edited) / F(clean) below 1 means the edit lowered F. A path that matters lowers F more when removed, and raises it more when enhanced, than the baselines' paths.".into()),
        ("Heat maps", "where in the image a path neuron looks: integrated gradients of the neuron's activation with respect to each patch's embedding (from all-zero patches to the image, summed over the embedding dimension, signed). Red patches raise the activation, blue lower it; all neurons of an image share one colour scale, the last map (F through the path alone) has its own. This view is beyond the paper.".into()),
    ];
    let mut out = String::from("<dl class=\"defs\">");
    for (t, d) in defs {
        out += &format!("<dt>{t}</dt><dd>{d}</dd>");
    }
    out += "</dl><p>Claims are verdicts with statistics: a paired test on the per-image values, its effect size with a 95% bootstrap interval and its p-value; fewer than 10 images give \"not enough data\". Numbers read alike everywhere: about three significant digits (scientific notation below 0.001), percentages with one decimal, accuracy changes in percentage points (pp); the CSV files keep every digit. Tables and CSVs name each image's source file and each class by name.</p>";
    out += &format!("<p><b>Cite:</b> {}</p>", esc(CITATION));
    out
}
