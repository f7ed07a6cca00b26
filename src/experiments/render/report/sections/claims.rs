//! The paper's claims checked on this run: verdict, target and evidence per claim.
use crate::experiments::claims::{self, Claim, Verdict};
use crate::experiments::render::html::esc;
use crate::experiments::render::report::{Report, Section, Shared};
use crate::experiments::{significance, stats};

pub(super) fn section(_: &Report, shared: &Shared) -> Option<Section> {
    Some(Section {
        id: "claims",
        title: "The paper's claims on this data".into(),
        nav: Some("Claims"),
        body: claims_html(&shared.claims),
    })
}

fn claims_html(cl: &[Claim]) -> String {
    let items: String = cl
        .iter()
        .map(|c| {
            let (class, word) = match c.verdict {
                Verdict::Holds => ("holds", "holds"),
                Verdict::DoesNotHold => ("does_not_hold", "does not hold"),
                Verdict::NotEnoughData => ("not_enough_data", "not enough data"),
            };
            let target = if c.target == "none" {
                String::new()
            } else {
                format!(" <span class=\"ev\">F = probability of the {}</span>", esc(&c.target))
            };
            format!("<li><span class=\"badge {class}\">{word}</span>{}{target}<span class=\"ev\">{}</span></li>", esc(&c.claim), esc(&c.evidence))
        })
        .collect();
    format!("<ul class=\"claims\">{items}</ul><p class=\"note\">Each claim is tested on this run's per-image values (Wilcoxon signed-rank test on paired differences, exact for up to {} differences without ties; class pairs: a two-sample permutation test). It holds when p &lt; {} and the effect points the claimed way; with fewer than {} images, or one class for a class-level claim, the verdict is \"not enough data\". Effects are mean differences with a 95% bootstrap interval ({} resamples, seed {}), the same interval wherever the number appears.</p>", significance::WILCOXON_EXACT_MAX, claims::ALPHA, claims::MIN_IMAGES, stats::BOOTSTRAP_RESAMPLES, stats::BOOTSTRAP_SEED)
}
