//! The report: ONE self-contained HTML file (inline SVG figures, inline PNG thumbnails, no
//! external requests) with the run's configuration, a summary, the paper's claims checked on
//! this data, every experiment's figures and tables, and a section per image.
//!
//! The page is a list of [`Section`]s, each built by one function in its own file and listed
//! once in [`SECTIONS`] (`sections/mod.rs`): adding a section is that file and one line there.
use crate::experiments::atlas::{self, Atlas};
use crate::experiments::claims::{self, Claim};
use crate::experiments::detail::{ImageDetail, NeuronView};
use crate::experiments::error::Result;
use crate::experiments::manipulation::Manipulation;
use crate::experiments::pruning::Pruning;
use crate::experiments::render::html::{page, section};
use crate::experiments::stats::Spread;
use crate::format::interval;
use crate::io::results::{Method, Results};
use crate::output::{mark_html, mark_json, write_atomic};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

mod sections;

pub use sections::SECTIONS;

/// What the report shows. Only `run` is required: without a manipulation the probability
/// deviations come from the records' own removed/enhanced probabilities (no accuracy deviation);
/// without pruning that section says how to add it.
pub struct Report<'a> {
    /// The `discover` results the report is about.
    pub run: &'a Results,
    /// How the results file is named in the page.
    pub results_name: String,
    /// The `ablate` results, when computed.
    pub manipulation: Option<&'a Manipulation>,
    /// The `prune` results, when computed.
    pub pruning: Option<&'a Pruning>,
    /// Groups of look-alike classes; empty: built-in groups for known class names (Fashion-MNIST),
    /// else the model's confusions from the manipulation.
    pub look_alike: Vec<Vec<usize>>,
    /// `data:` URIs of input thumbnails by image index.
    pub thumbnails: BTreeMap<u64, String>,
    /// Light-grey versions of the detailed images, under their heat maps.
    pub greys: BTreeMap<u64, String>,
    /// At most this many images shown in detail (picture, path diagram, heat maps): a sample
    /// covering the classes, the rest in the table.
    pub max_images: usize,
    /// Patch maps and JAS terms of the detailed images (computed with the model).
    pub details: BTreeMap<u64, ImageDetail>,
    /// The neurons recurring on classes' paths and the images that activate them most.
    pub dataset: Vec<NeuronView>,
    /// At most this many classes in per-class figures.
    pub max_classes: usize,
    /// Lines shown under the summary (what was skipped and why).
    pub notes: Vec<String>,
}

impl<'a> Report<'a> {
    /// Images shown in detail unless told otherwise (the embedded run's 100 samples all are).
    pub const DEFAULT_MAX_IMAGES: usize = 100;
    /// Rows of the image table at most (the results file and CSVs hold every image).
    pub const MAX_TABLE_ROWS: usize = 20_000;

    /// A report of `run` alone (no manipulation, pruning, thumbnails or details; defaults for
    /// the limits), the results file shown as `results_name`.
    pub fn new(run: &'a Results, results_name: &str) -> Self {
        Report {
            run,
            results_name: results_name.to_string(),
            manipulation: None,
            pruning: None,
            look_alike: Vec::new(),
            thumbnails: BTreeMap::new(),
            greys: BTreeMap::new(),
            max_images: Self::DEFAULT_MAX_IMAGES,
            details: BTreeMap::new(),
            dataset: Vec::new(),
            max_classes: 30,
            notes: Vec::new(),
        }
    }
}

/// One section of the page.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    /// Anchor of the section (`#id`), unique on the page.
    pub id: &'static str,
    /// Its heading.
    pub title: String,
    /// Its link in the navigation bar; `None`: not linked.
    pub nav: Option<&'static str>,
    /// Its HTML (figures inline).
    pub body: String,
}

/// What several sections show, computed once per page.
pub struct Shared {
    /// The atlas of the paper's paths (else of the run's first method), when there are paths.
    pub atlas: Option<Atlas>,
    /// The paper's claims checked on this run.
    pub claims: Vec<Claim>,
    /// Images shown in detail, in index order.
    pub sample: Vec<u64>,
}

impl Shared {
    fn new(r: &Report) -> Shared {
        let run = r.run;
        let method = if run.has_method(Method::Path) {
            Method::Path
        } else {
            run.methods.first().copied().unwrap_or(Method::Path)
        };
        let atlas = atlas::from_run(run, method).ok();
        let claims = claims::check_all(
            run,
            r.manipulation,
            r.pruning,
            atlas.as_ref(),
            &r.look_alike,
        );
        let sample = crate::experiments::detail::sample(run, r.max_images);
        Shared {
            atlas,
            claims,
            sample,
        }
    }
}

/// Builds a section from the report's inputs; `None` leaves it out of the page.
pub type SectionFn = fn(&Report, &Shared) -> Option<Section>;

/// Where the report's claims and summary go: `out` with a .json extension.
pub fn json_path(out: &Path) -> std::path::PathBuf {
    out.with_extension("json")
}

/// Where the report's patch maps go: `out`'s stem + `-maps.npy`.
pub fn maps_path(out: &Path) -> std::path::PathBuf {
    let stem = out
        .file_stem()
        .map_or("report".into(), |s| s.to_string_lossy());
    out.with_file_name(format!("{stem}-maps.npy"))
}

/// Writes the report to `out` (an .html file), its claims and summary to `out` with a .json
/// extension and, when images were explained, their patch maps to `out`'s stem + `-maps.npy`
/// (images, L + 1, G, G: each layer's path neuron, then F through the path; the .json's
/// `maps` lists the images in that order with every method's per-layer JAS terms); returns the
/// claims.
pub fn write_report(r: &Report, out: &Path) -> Result<Vec<Claim>> {
    let (html, claims) = render(r)?;
    write_atomic(out, mark_html(&html).as_bytes())?;
    let mut summary = json!({"results": r.results_name, "images": r.run.images.len(), "errors": r.run.errors.len(), "claims": claims});
    if let Some(first) = r.details.values().next() {
        let npy = maps_path(out);
        let (g, maps) = (first.spatial.grid, first.spatial.neurons.len() + 1);
        let data: Vec<f64> = r
            .details
            .values()
            .flat_map(|d| d.spatial.to_array())
            .collect();
        let shape = [r.details.len(), maps, g, g];
        write_atomic(&npy, &crate::io::npy_out::npy_f64(&data, &shape))?;
        let sources: BTreeMap<u64, &str> = r
            .run
            .images
            .iter()
            .map(|x| (x.index, x.source.as_str()))
            .collect();
        let images: Vec<serde_json::Value> = r
            .details
            .values()
            .map(|d| {
                let m = |p: &crate::attribution::spatial::PatchMap| {
                    json!({"layer": p.layer, "unit": p.unit, "value": p.value, "baseline": p.baseline, "delta": p.delta})
                };
                json!({
                    "index": d.index,
                    "source": sources.get(&d.index),
                    "jas_terms": d.terms,
                    "maps": d.spatial.neurons.iter().chain(std::iter::once(&d.spatial.path)).map(m).collect::<Vec<_>>(),
                })
            })
            .collect();
        summary["maps"] = json!({
            "file": npy.file_name().map(|f| f.to_string_lossy()),
            "shape": shape,
            "steps": first.spatial.steps,
            "images": images,
        });
    }
    write_atomic(&json_path(out), mark_json("report", &summary).as_bytes())?;
    Ok(claims)
}

/// The page and the claims.
pub fn render(r: &Report) -> Result<(String, Vec<Claim>)> {
    let shared = Shared::new(r);
    let sections: Vec<Section> = SECTIONS.iter().filter_map(|f| f(r, &shared)).collect();
    let nav: Vec<(&str, &str)> = sections
        .iter()
        .filter_map(|s| Some((s.id, s.nav?)))
        .collect();
    let body: String = sections
        .iter()
        .map(|s| section(s.id, &s.title, &s.body))
        .collect();
    let subtitle = format!(
        "{} — {} images, model {}",
        r.results_name,
        r.run.images.len(),
        r.run.header.model.path
    );
    Ok((
        page("Influential neuron paths: report", &subtitle, &nav, &body),
        shared.claims,
    ))
}

/// A mean with its 95% interval, as table cells show it.
pub(crate) fn ci_str(s: &Spread) -> String {
    let [m, l, h] = interval(s.mean, s.ci_low, s.ci_high);
    format!("{m} <small>[{l}, {h}]</small>")
}
