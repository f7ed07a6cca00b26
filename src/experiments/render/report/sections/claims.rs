//! The paper's claims checked on this run: verdict, what F measures, and per comparison the
//! test, the effect with its interval, the rank effect size and the p-value.
use crate::experiments::claims::{self, f_words, Claim, Verdict};
use crate::experiments::render::html::{esc, table_aligned};
use crate::experiments::render::report::{Report, Section, Shared};
use crate::experiments::{significance, stats};
use crate::format::num;

pub(super) fn section(r: &Report, shared: &Shared) -> Option<Section> {
    Some(Section {
        id: "claims",
        title: "The paper's claims on this data".into(),
        nav: Some("Claims"),
        body: claims_html(r, &shared.claims),
    })
}

fn claims_html(r: &Report, cl: &[Claim]) -> String {
    let f = f_words(r.run);
    let items: String = cl
        .iter()
        .map(|c| {
            let (class, word) = match c.verdict {
                Verdict::Holds => ("holds", "holds"),
                Verdict::DoesNotHold => ("does_not_hold", "does not hold"),
                Verdict::NotEnoughData => ("not_enough_data", "not enough data"),
            };
            let target = if c.target == "none" {
                "<span class=\"ev\">F is not involved (class-level comparison of the atlas)</span>"
                    .to_string()
            } else {
                format!("<span class=\"ev\">measures F = {}</span>", esc(&f))
            };
            let rows: Vec<Vec<String>> = c
                .comparisons
                .iter()
                .map(|x| {
                    vec![
                        format!(
                            "{}<br><small>{}, claimed {}</small>",
                            esc(&x.what),
                            esc(&x.test),
                            if x.claimed_positive {
                                "&gt; 0"
                            } else {
                                "&lt; 0"
                            }
                        ),
                        format!("{} {}", x.n, esc(&x.unit)),
                        crate::experiments::render::report::ci_str(&x.effect),
                        x.rank_biserial.map_or("—".into(), num),
                        num(x.p),
                    ]
                })
                .collect();
            // What the evidence says beyond the comparisons (where the numbers came from).
            let notes: Vec<&str> = c
                .evidence
                .split("; ")
                .filter(|part| {
                    !c.comparisons
                        .iter()
                        .any(|x| part.starts_with(x.what.as_str()))
                })
                .collect();
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!("<span class=\"ev\">{}</span>", esc(&notes.join("; ")))
            };
            let table = if rows.is_empty() {
                notes
            } else {
                notes
                    + &table_aligned(
                        &[
                            "comparison (test, claimed sign)",
                            "n",
                            "effect [95% CI]",
                            "rank-biserial r",
                            "p",
                        ],
                        "lrrrr",
                        &rows,
                    )
            };
            format!(
                "<li><span class=\"badge {class}\">{word}</span>{}{target}{table}</li>",
                esc(&c.claim)
            )
        })
        .collect();
    format!("<ul class=\"claims\">{items}</ul><p class=\"note\">Each claim is tested on this run's per-image values (Wilcoxon signed-rank test on paired differences, exact for up to {} differences without ties; class pairs: a two-sample permutation test). It holds when p &lt; {} and the effect points the claimed way; with fewer than {} images, or one class for a class-level claim, the verdict is \"not enough data\". Effects are mean differences with a 95% bootstrap interval ({} resamples, seed {}), the same interval wherever the number appears.</p>", significance::WILCOXON_EXACT_MAX, claims::ALPHA, claims::MIN_IMAGES, stats::BOOTSTRAP_RESAMPLES, stats::BOOTSTRAP_SEED)
}
