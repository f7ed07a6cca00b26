//! Class atlas (SPEC section 9): F[c, l, n] = number of images of class c whose path uses neuron
//! n at layer l, class-to-class cosine similarity of the flattened F, and the per-layer
//! distribution of path neurons per class. Counts are kept sparse: a class touches at most
//! (images x layers) of the layers x mlp_dim cells.
use super::error::{invalid, Result};
use crate::format::{csv_field, csv_num};
use crate::io::results::{Method, Results};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Another class and its similarity.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Neighbour {
    /// Class index.
    pub class: usize,
    /// Cosine similarity of the two classes' neuron-usage vectors.
    pub similarity: f64,
}

/// One class of the atlas.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassEntry {
    /// Class index.
    pub class: usize,
    /// Class name.
    pub name: String,
    /// Images of this class in the run.
    pub images: usize,
    /// Per layer, neuron -> number of this class's paths through it.
    pub counts: Vec<BTreeMap<usize, u32>>,
    /// Per layer, the most used neuron (smallest index on a tie) and its count.
    pub modal_path: Vec<(usize, u32)>,
    /// The other class whose paths are most alike (`None` with one class).
    pub most_similar: Option<Neighbour>,
    /// The other class whose paths are least alike.
    pub least_similar: Option<Neighbour>,
}

impl ClassEntry {
    /// Layer `l`'s path neurons by rank: (neuron, count), most frequent first, the smaller
    /// index first on a tie. Neuron indices have no order, so ranks are what can be summarised.
    pub fn ranked(&self, l: usize) -> Vec<(usize, u32)> {
        let mut v: Vec<(usize, u32)> = self.counts[l].iter().map(|(&n, &c)| (n, c)).collect();
        v.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        v
    }

    /// Flattened F as sorted (layer * mlp_dim + neuron, count).
    fn flat(&self, mlp_dim: usize) -> Vec<(usize, f64)> {
        let mut v = Vec::new();
        for (l, m) in self.counts.iter().enumerate() {
            v.extend(m.iter().map(|(&n, &c)| (l * mlp_dim + n, c as f64)));
        }
        v
    }
}

/// The atlas of one method's paths.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Atlas {
    /// The method whose paths were counted.
    pub method: Method,
    /// Blocks of the model (path length).
    pub layers: usize,
    /// Hidden units per block.
    pub mlp_dim: usize,
    /// Classes with at least one image, ascending.
    pub classes: Vec<ClassEntry>,
    /// Cosine similarity between `classes[i]` and `classes[j]`.
    pub similarity: Vec<Vec<f64>>,
}

impl Atlas {
    /// Position of a class in `classes`.
    pub fn position(&self, class: usize) -> Option<usize> {
        self.classes.iter().position(|e| e.class == class)
    }

    /// Similarity of two classes, when both have images.
    pub fn sim(&self, a: usize, b: usize) -> Option<f64> {
        Some(self.similarity[self.position(a)?][self.position(b)?])
    }
}

/// The atlas of `method` over the run's images, grouped by class (label, else target).
pub fn from_run(run: &Results, method: Method) -> Result<Atlas> {
    if !run.has_method(method) {
        let names: Vec<&str> = run.methods.iter().map(|m| m.name()).collect();
        invalid!(
            "the run has no `{method}` paths (methods: {})",
            names.join(", ")
        );
    }
    let paths: Vec<(usize, Vec<usize>)> = run
        .images
        .iter()
        .filter_map(|r| {
            r.result
                .methods
                .get(&method)
                .map(|m| (r.class(), m.path.clone()))
        })
        .collect();
    build(
        method,
        &paths,
        run.config.layers,
        run.config.mlp_dim,
        &run.class_names,
    )
}

/// The atlas of (class, path) pairs; `names[c]` names class c.
pub fn build(
    method: Method,
    paths: &[(usize, Vec<usize>)],
    layers: usize,
    mlp_dim: usize,
    names: &[String],
) -> Result<Atlas> {
    let mut by_class: BTreeMap<usize, ClassEntry> = BTreeMap::new();
    for (c, path) in paths {
        if path.len() != layers {
            invalid!("a path of {} layers in a {layers}-layer atlas", path.len());
        }
        if let Some(&n) = path.iter().find(|&&n| n >= mlp_dim) {
            invalid!("neuron {n} on a path, but layers have {mlp_dim} neurons");
        }
        let e = by_class.entry(*c).or_insert_with(|| ClassEntry {
            class: *c,
            name: names
                .get(*c)
                .cloned()
                .unwrap_or_else(|| format!("class {c}")),
            images: 0,
            counts: vec![BTreeMap::new(); layers],
            modal_path: Vec::new(),
            most_similar: None,
            least_similar: None,
        });
        e.images += 1;
        for (l, &n) in path.iter().enumerate() {
            *e.counts[l].entry(n).or_default() += 1;
        }
    }
    let mut classes: Vec<ClassEntry> = by_class.into_values().collect();
    for e in &mut classes {
        e.modal_path = e
            .counts
            .iter()
            .map(|m| {
                m.iter().fold(
                    (0, 0),
                    |best, (&n, &c)| if c > best.1 { (n, c) } else { best },
                )
            })
            .collect();
    }
    let flats: Vec<Vec<(usize, f64)>> = classes.iter().map(|e| e.flat(mlp_dim)).collect();
    let norms: Vec<f64> = flats
        .iter()
        .map(|f| f.iter().map(|(_, c)| c * c).sum::<f64>().sqrt())
        .collect();
    let k = classes.len();
    let mut similarity = vec![vec![0.0; k]; k];
    for i in 0..k {
        for j in i..k {
            let s = sparse_dot(&flats[i], &flats[j]) / (norms[i] * norms[j]);
            similarity[i][j] = s;
            similarity[j][i] = s;
        }
    }
    for (i, e) in classes.iter_mut().enumerate() {
        let others = (0..k).filter(|&j| j != i).map(|j| Neighbour {
            class: j,
            similarity: similarity[i][j],
        });
        // `class` holds the position for now; mapped to the class id below.
        e.most_similar = others.clone().max_by(|a, b| {
            a.similarity
                .total_cmp(&b.similarity)
                .then(b.class.cmp(&a.class))
        });
        e.least_similar = others.min_by(|a, b| {
            a.similarity
                .total_cmp(&b.similarity)
                .then(a.class.cmp(&b.class))
        });
    }
    let ids: Vec<usize> = classes.iter().map(|e| e.class).collect();
    for e in &mut classes {
        for n in [&mut e.most_similar, &mut e.least_similar]
            .into_iter()
            .flatten()
        {
            n.class = ids[n.class];
        }
    }
    Ok(Atlas {
        method,
        layers,
        mlp_dim,
        classes,
        similarity,
    })
}

/// Dot product of two sparse vectors sorted by index.
fn sparse_dot(a: &[(usize, f64)], b: &[(usize, f64)]) -> f64 {
    let (mut i, mut j, mut s) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                s += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    s
}

/// The similarity matrix as CSV: a row per class (index and name), a column per class name.
pub fn similarity_csv(a: &Atlas) -> String {
    let mut out = String::from("class,class_name");
    for e in &a.classes {
        out += &format!(",{}", csv_field(&e.name));
    }
    out.push('\n');
    for (e, row) in a.classes.iter().zip(&a.similarity) {
        out += &format!("{},{}", e.class, csv_field(&e.name));
        for &v in row {
            out += &format!(",{}", csv_num(v));
        }
        out.push('\n');
    }
    out
}

/// Per class and layer, how concentrated the class's path neurons are, by rank (indices have no
/// order, so no mean or quantile of them): the most and second most frequent neuron with their
/// counts and shares of the class's images, the share of the three most frequent, the number of
/// distinct neurons, and the effective number of neurons 1 / sum(share^2) (1: every path passes
/// through one neuron; the image count: no two paths share one). As CSV.
pub fn layers_csv(a: &Atlas) -> String {
    let mut out = String::from(
        "class,class_name,layer,images,distinct_neurons,top_neuron,top_count,top_share,second_neuron,second_count,second_share,top3_share,effective_neurons\n",
    );
    for e in &a.classes {
        let n = e.images.max(1) as f64;
        for l in 0..a.layers {
            let r = e.ranked(l);
            let share = |c: u32| csv_num(f64::from(c) / n);
            let at = |k: usize| match r.get(k) {
                Some(&(neuron, c)) => format!("{neuron},{c},{}", share(c)),
                None => ",,".into(),
            };
            let top3: u32 = r.iter().take(3).map(|x| x.1).sum();
            let simpson: f64 = r.iter().map(|x| (f64::from(x.1) / n).powi(2)).sum();
            out += &format!(
                "{},{},{l},{},{},{},{},{},{}\n",
                e.class,
                csv_field(&e.name),
                e.images,
                r.len(),
                at(0),
                at(1),
                share(top3),
                csv_num(1.0 / simpson)
            );
        }
    }
    out
}
